/* Delivery log and redelivery: GET /v1/webhooks/:id/deliveries (newest
 * first, cursor pagination) and POST /v1/deliveries/:id/redeliver, which
 * hands the retained job back to the worker's scheduler as a 'retry' row in
 * parked_jobs under a new, deterministic job id. */
#include "api.h"

#include "hookd/json.h"
#include "hookd/log.h"
#include "hookd/sign.h"

#include <stdio.h>
#include <string.h>

#define DELIVERY_JSON                                                                              \
    "json_build_object('id', d.id::text, 'job_id', replace(d.job_id::text, '-', ''),"             \
    " 'job_ids', (SELECT json_agg(replace(x.j::text, '-', '') ORDER BY x.o)"                       \
    "  FROM unnest(coalesce(d.job_ids, ARRAY[d.job_id])) WITH ORDINALITY AS x(j, o)),"             \
    " 'webhook_id', d.webhook_id, 'subscription_id', d.subscription_id,"                           \
    " 'endpoint_id', d.endpoint_id, 'event_id', d.event_id, 'event_type', d.event_type,"           \
    " 'attempt', d.attempt, 'outcome', d.outcome, 'error_class', d.error_class,"                   \
    " 'status_code', d.status_code, 'latency_ms', d.latency_ms, 'batch_size', d.batch_size,"       \
    " 'response_excerpt', d.response_excerpt, 'redeliverable', d.job IS NOT NULL,"                 \
    " 'created_at', " API_TS("d.created_at") ")"

static const char *const outcomes[] = {"success", "failure", "failed",  "gone",
                                       "cancelled", "expired", "parked"};

static const api_field_t no_fields[] = {{NULL, 0, false, 0, 0}};

static void on_list(api_ctx_t *c)
{
    int limit;
    const char *cursor;
    char lim[16];
    const char *id = http_param(c->req, "id");
    if (!id || !api_valid_id(id)) {
        api_error(c, 404, "not_found", NULL, "no such webhook");
        return;
    }
    if (api_page_params(c, true, &limit, &cursor) < 0) return;
    const char *outcome = http_query(c->req, "outcome");
    if (outcome) {
        size_t i = 0;
        while (i < HOOKD_ARRAY_LEN(outcomes) && strcmp(outcomes[i], outcome) != 0) i++;
        if (i == HOOKD_ARRAY_LEN(outcomes)) {
            api_error(c, 400, "invalid_query", "outcome",
                      "outcome must be one of success, failure, failed, gone, cancelled, "
                      "expired, parked");
            return;
        }
    }
    const char *params[] = {API_OWNER_PARAMS(c), id};
    PGresult *r = api_query(c,
                            "SELECT 1 FROM subscriptions s WHERE s.owner_kind = $1"
                            " AND s.owner_id = $2 AND s.id = $3",
                            3, params);
    if (!r) return;
    bool found = PQntuples(r) > 0;
    PQclear(r);
    if (!found) {
        api_error(c, 404, "not_found", NULL, "no such webhook");
        return;
    }
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *lp[] = {id, cursor, lim, outcome};
    r = api_query(c,
                  "SELECT d.id::text, " DELIVERY_JSON " FROM deliveries d"
                  " WHERE d.subscription_id = $1 AND ($2::bigint IS NULL OR d.id < $2::bigint)"
                  " AND ($4::text IS NULL OR d.outcome = $4)"
                  " ORDER BY d.id DESC LIMIT $3::integer",
                  4, lp);
    if (!r) return;
    api_reply_page(c, r, limit);
    PQclear(r);
}

/* Replaces the top-level "id" member of the job JSON with 'new_id',
 * leaving every other byte as the worker wrote it. Returns 0 or -1. */
static int job_with_id(const char *job, size_t len, const char *new_id, strbuf_t *out)
{
    json_member_t m[32];
    int n = 0;
    if (json_scan_depth(job, len, JSON_JOB_MAX_DEPTH, m, 32, &n, NULL, 0) != JSON_OBJECT) return -1;
    const json_member_t *id = json_find(m, n < 32 ? n : 32, "id");
    if (!id || id->type != JSON_STRING) return -1;
    strbuf_append(out, job, (size_t)(id->value.p - job));
    strbuf_printf(out, "\"%s\"", new_id);
    const char *rest = id->value.p + id->value.len;
    strbuf_append(out, rest, (size_t)(job + len - rest));
    return 0;
}

/* Redelivery schedules a copy of the job: job id = first 32 hex of
 * SHA-256(original job id ":redeliver:" delivery id), so asking twice for
 * the same delivery makes one row. 202 when scheduled now, 200 with status
 * "already_scheduled" when it is already waiting, 409 already_redelivered
 * when that copy has finished (redeliver its own delivery row instead), 409
 * not_retained when the log row kept no job (successful or old attempts). */
static void on_redeliver(api_ctx_t *c)
{
    const char *did = http_param(c->req, "id");
    size_t dlen = did ? strlen(did) : 0;
    bool digits = dlen > 0 && dlen <= 18;
    for (size_t i = 0; digits && i < dlen; i++) digits = did[i] >= '0' && did[i] <= '9';
    if (!digits) {
        api_error(c, 404, "not_found", NULL, "no such delivery");
        return;
    }
    if (api_check_fields(c, no_fields) < 0) return;
    const char *params[] = {API_OWNER_PARAMS(c), did};
    PGresult *r = api_query(c,
                            "SELECT replace(d.job_id::text, '-', ''), d.job, d.endpoint_id,"
                            " d.subscription_id FROM deliveries d"
                            " JOIN subscriptions s ON s.id = d.subscription_id"
                            " WHERE s.owner_kind = $1 AND s.owner_id = $2 AND d.id = $3::bigint",
                            3, params);
    if (!r) return;
    strbuf_t job, seed;
    strbuf_init(&job, 1024);
    strbuf_init(&seed, 128);
    if (PQntuples(r) == 0) {
        api_error(c, 404, "not_found", NULL, "no such delivery");
        goto done;
    }
    if (PQgetisnull(r, 0, 1)) {
        api_error(c, 409, "not_retained", NULL,
                  "this delivery's job was not retained (only failed attempts keep it); it "
                  "cannot be redelivered");
        goto done;
    }
    char hash[65], new_id[SIGN_JOB_ID_LEN + 1];
    strbuf_printf(&seed, "%s:redeliver:%s", PQgetvalue(r, 0, 0), did);
    sign_sha256_hex(seed.data, seed.len, hash);
    memcpy(new_id, hash, SIGN_JOB_ID_LEN);
    new_id[SIGN_JOB_ID_LEN] = '\0';
    if (job_with_id(PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1), new_id, &job) < 0) {
        log_error("redeliver_bad_job delivery=%s", did);
        api_error(c, 409, "not_retained", NULL,
                  "this delivery's retained job is unreadable; it cannot be redelivered");
        goto done;
    }
    char hours[24];
    snprintf(hours, sizeof(hours), "%lld", (long long)c->ing->cfg.park_retention_h);
    const char *ins[] = {new_id, PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), job.data, hours};
    PGresult *q = api_query(c,
                            "WITH ins AS (INSERT INTO parked_jobs (job_id, endpoint_id,"
                            "   subscription_id, reason, attempt, not_before, job, expires_at)"
                            " SELECT $1::uuid, $2, $3, 'retry', 0, now(), $4,"
                            "   now() + make_interval(hours => $5::integer)"
                            " WHERE NOT EXISTS (SELECT 1 FROM finished_jobs f WHERE f.job_id = $1::uuid)"
                            " ON CONFLICT (job_id) DO NOTHING RETURNING 1)"
                            " SELECT (SELECT count(*) FROM ins),"
                            "  (SELECT f.state FROM finished_jobs f WHERE f.job_id = $1::uuid)",
                            5, ins);
    if (!q) goto done;
    strbuf_t body;
    strbuf_init(&body, 160);
    bool inserted = strcmp(PQgetvalue(q, 0, 0), "0") != 0;
    if (inserted) {
        log_info("delivery_redelivery_scheduled delivery=%s job=%s owner=%s:%s", did, new_id,
                 c->owner_kind, c->owner_id);
        strbuf_printf(&body, "{\"status\":\"scheduled\",\"delivery_id\":\"%s\",\"job_id\":\"%s\"}",
                      did, new_id);
        api_reply(c, 202, body.data);
    } else if (!PQgetisnull(q, 0, 1)) {
        api_error(c, 409, "already_redelivered", NULL,
                  "this delivery was already redelivered (job %s finished: %s); redeliver that "
                  "attempt's delivery instead",
                  new_id, PQgetvalue(q, 0, 1));
    } else {
        strbuf_printf(&body,
                      "{\"status\":\"already_scheduled\",\"delivery_id\":\"%s\",\"job_id\":\"%s\"}",
                      did, new_id);
        api_reply(c, 200, body.data);
    }
    strbuf_free(&body);
    PQclear(q);
done:
    strbuf_free(&job);
    strbuf_free(&seed);
    PQclear(r);
}

const api_route_t api_deliveries_routes[] = {
    {"GET", "/v1/webhooks/:id/deliveries", on_list, API_STYLE_NATIVE, API_BODY_NONE},
    {"POST", "/v1/deliveries/:id/redeliver", on_redeliver, API_STYLE_NATIVE, API_BODY_OPTIONAL},
    {NULL, NULL, NULL, 0, 0},
};
