/* vCita-compatible subscribe/unsubscribe (SPEC §5): answers exactly what
 * vCita clients expect, {"response":"Subscribed"} and friends. */
#include "api.h"

#include "hookd/log.h"

#include <stdio.h>
#include <string.h>

static const api_field_t subscribe_fields[] = {
    {"event", API_F_STRING, true, EVENT_TYPE_MAX - 1, 0},
    {"target_url", API_F_STRING, true, 4096, 0},
    {NULL, 0, false, 0, 0},
};

static const api_field_t unsubscribe_fields[] = {
    {"event", API_F_STRING, false, EVENT_TYPE_MAX - 1, 0},
    {"target_url", API_F_STRING, true, 4096, 0},
    {NULL, 0, false, 0, 0},
};

/* Subscribing the same (event, url) twice keeps one subscription: the
 * check-then-insert runs under a transaction-level advisory lock on
 * (owner, url) so concurrent requests, even on several replicas, agree. An
 * existing but paused subscription is resumed. */
static void on_subscribe(api_ctx_t *c)
{
    char type[1][EVENT_TYPE_MAX];
    if (api_check_fields(c, subscribe_fields) < 0) return;
    const char *event = api_body_str(c, "event");
    const char *url = api_body_str(c, "target_url");
    if (api_check_types(c, &event, 1, "event", type) < 0) return;
    if (api_check_target(c, url, "target_url") < 0) return;

    strbuf_t arr;
    strbuf_init(&arr, 64);
    api_pg_array(&arr, (const char(*)[EVENT_TYPE_MAX])type, 1);
    const char *params[] = {API_OWNER_PARAMS(c), url, arr.data, type[0]};
    PGresult *r = NULL;
    if (api_begin(c) < 0) goto done;
    r = api_query(c, "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2 || ' ' || $3, 7))",
                  3, params);
    if (!r) goto done;
    PQclear(r);
    r = api_query(c,
                  "WITH old AS (SELECT id, active FROM subscriptions"
                  "   WHERE owner_kind = $1 AND owner_id = $2 AND source = 'vcita'"
                  "     AND target_url = $3 AND event_types = $4::text[] ORDER BY id LIMIT 1),"
                  " resumed AS (UPDATE subscriptions s SET active = true FROM old"
                  "   WHERE s.id = old.id AND NOT old.active RETURNING s.id),"
                  " created AS (INSERT INTO subscriptions (owner_kind, owner_id, event_types, name,"
                  "     target_url, body_format, batch, payload_mode, source)"
                  "   SELECT $1, $2, $4::text[], $5, $3, 'vcita', false, 'full', 'vcita'"
                  "   WHERE NOT EXISTS (SELECT 1 FROM old) RETURNING id)"
                  " SELECT (SELECT id FROM created), (SELECT id FROM resumed)",
                  5, params);
    if (!r) goto done;
    if (api_commit(c) < 0) goto done;
    if (!PQgetisnull(r, 0, 0))
        log_info("subscription_created id=%s owner=%s:%s source=vcita type=%s",
                 PQgetvalue(r, 0, 0), c->owner_kind, c->owner_id, type[0]);
    else if (!PQgetisnull(r, 0, 1))
        log_info("subscription_resumed id=%s owner=%s:%s source=vcita", PQgetvalue(r, 0, 1),
                 c->owner_kind, c->owner_id);
    api_reply(c, 200, "{\"response\":\"Subscribed\"}");
done:
    PQclear(r);
    strbuf_free(&arr);
}

/* Deletes the owner's vCita subscriptions of target_url (only those for
 * 'event' when given). Idempotent: nothing to delete still answers
 * Unsubscribed. Subscriptions made through the native or Vyte API are
 * never touched here. */
static void on_unsubscribe(api_ctx_t *c)
{
    char type[1][EVENT_TYPE_MAX];
    if (api_check_fields(c, unsubscribe_fields) < 0) return;
    const char *event = api_body_str(c, "event");
    const char *url = api_body_str(c, "target_url");
    PGresult *r;
    if (event) {
        if (api_check_types(c, &event, 1, "event", type) < 0) return;
        strbuf_t arr;
        strbuf_init(&arr, 64);
        api_pg_array(&arr, (const char(*)[EVENT_TYPE_MAX])type, 1);
        const char *params[] = {API_OWNER_PARAMS(c), url, arr.data};
        r = api_query(c,
                      "DELETE FROM subscriptions WHERE owner_kind = $1 AND owner_id = $2"
                      " AND source = 'vcita' AND target_url = $3 AND event_types = $4::text[]"
                      " RETURNING id",
                      4, params);
        strbuf_free(&arr);
    } else {
        const char *params[] = {API_OWNER_PARAMS(c), url};
        r = api_query(c,
                      "DELETE FROM subscriptions WHERE owner_kind = $1 AND owner_id = $2"
                      " AND source = 'vcita' AND target_url = $3 RETURNING id",
                      3, params);
    }
    if (!r) return;
    for (int i = 0; i < PQntuples(r); i++)
        log_info("subscription_deleted id=%s owner=%s:%s source=vcita", PQgetvalue(r, i, 0),
                 c->owner_kind, c->owner_id);
    PQclear(r);
    api_reply(c, 200, "{\"response\":\"Unsubscribed\"}");
}

const api_route_t api_vcita_routes[] = {
    {"POST", "/v1/subscriptions/standard/subscribe", on_subscribe, API_STYLE_VCITA_SUBSCRIBE,
     API_BODY_REQUIRED},
    {"POST", "/v1/subscriptions/standard/unsubscribe", on_unsubscribe,
     API_STYLE_VCITA_UNSUBSCRIBE, API_BODY_REQUIRED},
    {NULL, NULL, NULL, 0, 0},
};
