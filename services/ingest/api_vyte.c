/* Vyte-compatible REST hooks (SPEC §5): /hooks CRUD with Vyte's field names
 * (_id, action, organization, scope, createdAt, updatedAt, __v). Hooks
 * made here deliver in the vyte body format, batched. */
#include "api.h"

#include "hookd/log.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *action;
    const char *type;
} actions[] = {
    {"event.created", "event/created"},     {"event.confirmed", "event/confirmed"},
    {"event.updated", "event/updated"},     {"event.cancelled", "event/cancelled"},
    {"user.joined", "user/joined"},
};

static const api_field_t create_fields[] = {
    {"action", API_F_STRING, true, 64, 0},
    {"target_url", API_F_STRING, true, 4096, 0},
    {NULL, 0, false, 0, 0},
};

static const api_field_t update_fields[] = {
    {"action", API_F_STRING, false, 64, 0},
    {"target_url", API_F_STRING, false, 4096, 0},
    {NULL, 0, false, 0, 0},
};

/* The hook as Vyte returns it, key order as in Vyte's documentation. */
#define HOOK_JSON                                                                                  \
    "json_build_object('__v', s.version, 'createdAt', " API_TS("s.created_at")                     \
    ", 'updatedAt', " API_TS("s.updated_at") ", 'organization', s.owner_id,"                       \
    " 'scope', CASE s.owner_kind WHEN 'account' THEN 'organization' ELSE s.owner_kind END,"        \
    " 'action', replace(s.event_types[1], '/', '.'), 'target_url', s.target_url, '_id', s.id)"

#define OWN_HOOK "s.owner_kind = $1 AND s.owner_id = $2 AND s.source = 'vyte'"

/* The event type of a Vyte action, or NULL (then replies 400). */
static const char *action_type(api_ctx_t *c, const char *action)
{
    for (size_t i = 0; i < HOOKD_ARRAY_LEN(actions); i++)
        if (strcmp(actions[i].action, action) == 0) return actions[i].type;
    api_error(c, 400, "invalid_action", "action",
              "invalid action: expected one of event.created, event.confirmed, event.updated, "
              "event.cancelled, user.joined");
    return NULL;
}

static void on_create(api_ctx_t *c)
{
    char type[1][EVENT_TYPE_MAX];
    if (api_check_fields(c, create_fields) < 0) return;
    const char *action = api_body_str(c, "action");
    const char *url = api_body_str(c, "target_url");
    const char *t = action_type(c, action);
    if (!t) return;
    if (api_check_types(c, &t, 1, "action", type) < 0) return;
    if (api_check_target(c, url, "target_url") < 0) return;
    strbuf_t arr;
    strbuf_init(&arr, 64);
    api_pg_array(&arr, (const char(*)[EVENT_TYPE_MAX])type, 1);
    const char *params[] = {API_OWNER_PARAMS(c), arr.data, action, url};
    PGresult *r = api_query(c,
                            "INSERT INTO subscriptions AS s (owner_kind, owner_id, event_types,"
                            " name, target_url, body_format, batch, payload_mode, source)"
                            " VALUES ($1, $2, $3::text[], $4, $5, 'vyte', true, 'full', 'vyte')"
                            " RETURNING s.id, " HOOK_JSON,
                            5, params);
    strbuf_free(&arr);
    if (!r) return;
    log_info("subscription_created id=%s owner=%s:%s source=vyte type=%s", PQgetvalue(r, 0, 0),
             c->owner_kind, c->owner_id, type[0]);
    api_reply(c, 201, PQgetvalue(r, 0, 1));
    PQclear(r);
}

static void on_list(api_ctx_t *c)
{
    const char *params[] = {API_OWNER_PARAMS(c)};
    PGresult *r = api_query(c,
                            "SELECT coalesce(json_agg(" HOOK_JSON " ORDER BY s.id), '[]'::json)"
                            " FROM subscriptions s WHERE " OWN_HOOK,
                            2, params);
    if (!r) return;
    strbuf_t b;
    strbuf_init(&b, 256);
    strbuf_printf(&b, "{\"hooks\":%s}", PQgetvalue(r, 0, 0));
    api_reply(c, 200, b.data);
    strbuf_free(&b);
    PQclear(r);
}

/* The :id of the path if it can name a hook; replies 404 otherwise. */
static const char *hook_id(api_ctx_t *c)
{
    const char *id = http_param(c->req, "id");
    if (!id || !api_valid_id(id)) {
        api_error(c, 404, "not_found", NULL, "no such hook");
        return NULL;
    }
    return id;
}

static void on_get(api_ctx_t *c)
{
    const char *id = hook_id(c);
    if (!id) return;
    const char *params[] = {API_OWNER_PARAMS(c), id};
    PGresult *r = api_query(c, "SELECT " HOOK_JSON " FROM subscriptions s WHERE " OWN_HOOK
                               " AND s.id = $3",
                            3, params);
    if (!r) return;
    if (PQntuples(r) == 0)
        api_error(c, 404, "not_found", NULL, "no such hook");
    else
        api_reply(c, 200, PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* PUT /hooks/:id changes action and/or target_url; __v goes up by one. */
static void on_update(api_ctx_t *c)
{
    char type[1][EVENT_TYPE_MAX];
    const char *id = hook_id(c);
    if (!id) return;
    if (api_check_fields(c, update_fields) < 0) return;
    const char *action = api_body_str(c, "action");
    const char *url = api_body_str(c, "target_url");
    strbuf_t arr;
    strbuf_init(&arr, 64);
    if (action) {
        const char *t = action_type(c, action);
        if (!t || api_check_types(c, &t, 1, "action", type) < 0) goto done;
        api_pg_array(&arr, (const char(*)[EVENT_TYPE_MAX])type, 1);
    }
    if (url && api_check_target(c, url, "target_url") < 0) goto done;
    const char *params[] = {API_OWNER_PARAMS(c), id, action ? arr.data : NULL, action, url};
    PGresult *r;
    if (!action && !url) {
        r = api_query(c, "SELECT " HOOK_JSON " FROM subscriptions s WHERE " OWN_HOOK
                         " AND s.id = $3",
                      3, params);
    } else {
        r = api_query(c,
                      "UPDATE subscriptions s SET"
                      " event_types = coalesce($4::text[], s.event_types),"
                      " name = coalesce($5, s.name), target_url = coalesce($6, s.target_url)"
                      " WHERE " OWN_HOOK " AND s.id = $3 RETURNING " HOOK_JSON,
                      6, params);
    }
    if (!r) goto done;
    if (PQntuples(r) == 0) {
        api_error(c, 404, "not_found", NULL, "no such hook");
    } else {
        if (action || url)
            log_info("subscription_updated id=%s owner=%s:%s source=vyte", id, c->owner_kind,
                     c->owner_id);
        api_reply(c, 200, PQgetvalue(r, 0, 0));
    }
    PQclear(r);
done:
    strbuf_free(&arr);
}

static void on_delete(api_ctx_t *c)
{
    const char *id = hook_id(c);
    if (!id) return;
    const char *params[] = {API_OWNER_PARAMS(c), id};
    PGresult *r = api_query(c, "DELETE FROM subscriptions s WHERE " OWN_HOOK
                               " AND s.id = $3 RETURNING s.id",
                            3, params);
    if (!r) return;
    if (PQntuples(r) == 0) {
        api_error(c, 404, "not_found", NULL, "no such hook");
    } else {
        log_info("subscription_deleted id=%s owner=%s:%s source=vyte", id, c->owner_kind,
                 c->owner_id);
        api_reply(c, 204, NULL);
    }
    PQclear(r);
}

const api_route_t api_vyte_routes[] = {
    {"POST", "/hooks", on_create, API_STYLE_NATIVE, API_BODY_REQUIRED},
    {"GET", "/hooks", on_list, API_STYLE_NATIVE, API_BODY_NONE},
    {"GET", "/hooks/:id", on_get, API_STYLE_NATIVE, API_BODY_NONE},
    {"PUT", "/hooks/:id", on_update, API_STYLE_NATIVE, API_BODY_REQUIRED},
    {"DELETE", "/hooks/:id", on_delete, API_STYLE_NATIVE, API_BODY_NONE},
    {NULL, NULL, NULL, 0, 0},
};
