/* Endpoints of the token's owner with their grey-list state and parked jobs
 * (GET /v1/endpoints), and the owner-scoped release of a grey-listed
 * endpoint (POST /v1/endpoints/release), like hookd_release_endpoint(url)
 * but only for this owner's endpoint. */
#include "api.h"

#include "hookd/log.h"

#include <stdio.h>
#include <string.h>

#define ENDPOINT_JSON                                                                              \
    "json_build_object('id', e.id, 'url', e.url,"                                                  \
    " 'subscriptions', (SELECT count(*) FROM subscriptions s WHERE s.endpoint_id = e.id),"        \
    " 'consecutive_failures', e.consecutive_failures, 'greylist_level', e.greylist_level,"         \
    " 'greylisted', coalesce(e.greylisted_until > now(), false),"                                  \
    " 'greylisted_until', " API_TS("e.greylisted_until") ","                                       \
    " 'parked_jobs', (SELECT count(*) FROM parked_jobs p WHERE p.endpoint_id = e.id),"            \
    " 'last_failure_at', " API_TS("e.last_failure_at") ","                                         \
    " 'last_failure_class', e.last_failure_class, 'last_status_code', e.last_status_code,"         \
    " 'last_error', e.last_error, 'last_success_at', " API_TS("e.last_success_at") ","             \
    " 'created_at', " API_TS("e.created_at") ")"

static const api_field_t release_fields[] = {
    {"url", API_F_STRING, false, 4096, 0},
    {"endpoint_id", API_F_STRING, false, 64, 0},
    {NULL, 0, false, 0, 0},
};

/* Lists endpoints that still matter: with a subscription, parked jobs or
 * failure state. ?greylisted=true narrows to grey-listed ones. */
static void on_list(api_ctx_t *c)
{
    int limit;
    const char *cursor;
    char lim[16];
    if (api_page_params(c, false, &limit, &cursor) < 0) return;
    const char *grey = http_query(c->req, "greylisted");
    if (grey && strcmp(grey, "true") != 0 && strcmp(grey, "false") != 0) {
        api_error(c, 400, "invalid_query", "greylisted", "greylisted must be true or false");
        return;
    }
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *params[] = {API_OWNER_PARAMS(c), cursor, lim, grey};
    PGresult *r = api_query(
        c,
        "SELECT e.id, " ENDPOINT_JSON " FROM endpoints e"
        " WHERE e.owner_kind = $1 AND e.owner_id = $2 AND ($3::text IS NULL OR e.id > $3)"
        " AND (EXISTS (SELECT 1 FROM subscriptions s WHERE s.endpoint_id = e.id)"
        "      OR EXISTS (SELECT 1 FROM parked_jobs p WHERE p.endpoint_id = e.id)"
        "      OR e.consecutive_failures > 0 OR e.greylisted_until IS NOT NULL)"
        " AND ($5::boolean IS NULL OR coalesce(e.greylisted_until > now(), false) = $5::boolean)"
        " ORDER BY e.id LIMIT $4::integer",
        5, params);
    if (!r) return;
    api_reply_page(c, r, limit);
    PQclear(r);
}

/* Ends the grey-listing of one of the owner's endpoints (by "url" or
 * "endpoint_id") and makes its parked jobs due now. */
static void on_release(api_ctx_t *c)
{
    if (api_check_fields(c, release_fields) < 0) return;
    const char *url = api_body_str(c, "url");
    const char *eid = api_body_str(c, "endpoint_id");
    if ((url == NULL) == (eid == NULL)) {
        api_error(c, 400, "missing_field", "url", "give exactly one of 'url' and 'endpoint_id'");
        return;
    }
    const char *params[] = {API_OWNER_PARAMS(c), url, eid};
    PGresult *r = api_query(
        c,
        "WITH e AS (UPDATE endpoints SET consecutive_failures = 0, greylist_level = 0,"
        "     greylisted_until = NULL, probe_job_id = NULL, probe_lease_until = NULL,"
        "     updated_at = now()"
        "   WHERE owner_kind = $1 AND owner_id = $2"
        "     AND ($3::text IS NULL OR url = $3) AND ($4::text IS NULL OR id = $4)"
        "   RETURNING id, url),"
        " p AS (UPDATE parked_jobs SET not_before = now(), lease_owner = NULL, lease_until = NULL"
        "   WHERE endpoint_id IN (SELECT id FROM e) RETURNING 1)"
        " SELECT json_build_object('id', e.id, 'url', e.url, 'released', true,"
        "   'parked_jobs_due', (SELECT count(*) FROM p)) FROM e",
        4, params);
    if (!r) return;
    if (PQntuples(r) == 0) {
        api_error(c, 404, "not_found", NULL, "no such endpoint");
    } else {
        log_info("endpoint_released owner=%s:%s", c->owner_kind, c->owner_id);
        api_reply(c, 200, PQgetvalue(r, 0, 0));
    }
    PQclear(r);
}

const api_route_t api_endpoints_routes[] = {
    {"GET", "/v1/endpoints", on_list, API_STYLE_NATIVE, API_BODY_NONE},
    {"POST", "/v1/endpoints/release", on_release, API_STYLE_NATIVE, API_BODY_REQUIRED},
    {NULL, NULL, NULL, 0, 0},
};
