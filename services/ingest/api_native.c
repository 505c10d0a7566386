/* The native subscription API, /v1/webhooks: create, list (cursor
 * pagination), get, partial update, delete and secret rotation, with every
 * field of SPEC §4. Secrets are shown on create and rotate only. */
#include "api.h"

#include "hookd/log.h"

#include <stdio.h>
#include <string.h>

#define METADATA_MAX 16384  /* bytes of the metadata object's JSON text */
#define SECRET_OVERLAP "24 hours" /* how long the previous secret still signs after a rotation */

/* Fields of a webhook as the API shows it (inside json_build_object). */
#define WEBHOOK_FIELDS                                                                             \
    "'id', s.id, 'name', s.name, 'event_types', to_json(s.event_types),"                          \
    " 'target_url', s.target_url, 'endpoint_id', s.endpoint_id,"                                   \
    " 'statuses', to_json(s.statuses), 'payload_mode', s.payload_mode,"                            \
    " 'body_format', s.body_format, 'batch', s.batch, 'active', s.active,"                         \
    " 'deactivated_reason', s.deactivated_reason, 'description', s.description,"                   \
    " 'metadata', s.metadata, 'source', s.source, 'owner', s.owner_kind || ':' || s.owner_id,"     \
    " 'version', s.version, 'previous_secret_expires_at', CASE WHEN"                               \
    " s.previous_secret_expires_at > now() THEN " API_TS("s.previous_secret_expires_at") " END,"   \
    " 'created_at', " API_TS("s.created_at") ", 'updated_at', " API_TS("s.updated_at")

#define WEBHOOK_JSON "json_build_object(" WEBHOOK_FIELDS ")"
#define WEBHOOK_JSON_SECRET "json_build_object(" WEBHOOK_FIELDS ", 'secret', s.secret)"
#define OWN "s.owner_kind = $1 AND s.owner_id = $2"

/* The fields of a webhook; 'req': whether event_types and target_url are
 * required. */
/* clang-format off */
#define WEBHOOK_BODY_FIELDS(req)                                                                   \
    {"event_types", API_F_STRINGS, req, EVENT_TYPE_MAX - 1, API_MAX_TYPES},                        \
    {"target_url", API_F_STRING, req, 4096, 0},                                                    \
    {"name", API_F_STRING, false, 256, 0},                                                         \
    {"description", API_F_STRING, false, 4096, 0},                                                 \
    {"statuses", API_F_STRINGS_NULL, false, 64, API_MAX_STATUSES},                                 \
    {"payload_mode", API_F_STRING, false, 16, 0},                                                  \
    {"body_format", API_F_STRING, false, 16, 0},                                                   \
    {"batch", API_F_BOOL, false, 0, 0},                                                            \
    {"active", API_F_BOOL, false, 0, 0},                                                           \
    {"metadata", API_F_OBJECT, false, 0, 0},                                                       \
    {NULL, 0, false, 0, 0}
/* clang-format on */

static const api_field_t create_fields[] = {WEBHOOK_BODY_FIELDS(true)};

/* PATCH: the same fields, none required. */
static const api_field_t patch_fields[] = {WEBHOOK_BODY_FIELDS(false)};

static const api_field_t no_fields[] = {{NULL, 0, false, 0, 0}};

/* Everything a create or update may set, validated and in query form. */
typedef struct webhook_input {
    strbuf_t types;    /* PG array literal of normalised patterns, or empty */
    strbuf_t statuses; /* PG array literal, or empty (with statuses_null: clear the filter) */
    bool statuses_null;
    strbuf_t metadata; /* JSON text, or empty */
    const char *payload_mode, *body_format;
} webhook_input_t;

static void input_free(webhook_input_t *in)
{
    strbuf_free(&in->types);
    strbuf_free(&in->statuses);
    strbuf_free(&in->metadata);
}

/* Validates the body's fields beyond their JSON types. Replies and returns
 * -1 on the first problem. */
static int read_input(api_ctx_t *c, webhook_input_t *in)
{
    memset(in, 0, sizeof(*in));
    strbuf_init(&in->types, 128);
    strbuf_init(&in->statuses, 64);
    strbuf_init(&in->metadata, 64);

    json_object *types = api_body_get(c, "event_types");
    if (types) {
        const char *list[API_MAX_TYPES];
        char norm[API_MAX_TYPES][EVENT_TYPE_MAX];
        int n = (int)json_object_array_length(types);
        for (int i = 0; i < n; i++)
            list[i] = json_object_get_string(json_object_array_get_idx(types, i));
        if (api_check_types(c, list, n, "event_types", norm) < 0) return -1;
        api_pg_array(&in->types, (const char(*)[EVENT_TYPE_MAX])norm, n);
    }
    const char *url = api_body_str(c, "target_url");
    if (url && api_check_target(c, url, "target_url") < 0) return -1;

    if (api_body_has(c, "statuses")) {
        json_object *st = api_body_get(c, "statuses");
        int n = st ? (int)json_object_array_length(st) : 0;
        if (n == 0) {
            in->statuses_null = true;
        } else {
            const char *list[API_MAX_STATUSES];
            for (int i = 0; i < n; i++)
                list[i] = json_object_get_string(json_object_array_get_idx(st, i));
            api_pg_array_ptrs(&in->statuses, list, n);
        }
    }
    in->payload_mode = api_body_str(c, "payload_mode");
    if (in->payload_mode && payload_mode_parse(in->payload_mode) < 0) {
        api_error(c, 400, "invalid_field", "payload_mode",
                  "field 'payload_mode' must be basic, full or extended");
        return -1;
    }
    in->body_format = api_body_str(c, "body_format");
    if (in->body_format && body_format_parse(in->body_format) < 0) {
        api_error(c, 400, "invalid_field", "body_format",
                  "field 'body_format' must be standard, vyte, vcita or vik");
        return -1;
    }
    if (c->metadata_raw) {
        if (c->metadata_len > METADATA_MAX) {
            api_error(c, 400, "invalid_field", "metadata",
                      "field 'metadata' is larger than %d bytes", METADATA_MAX);
            return -1;
        }
        strbuf_append(&in->metadata, c->metadata_raw, c->metadata_len);
    }
    return 0;
}

static const char *opt(const strbuf_t *b)
{
    return b->len ? b->data : NULL;
}

static const char *opt_bool(api_ctx_t *c, const char *name)
{
    json_object *v = api_body_get(c, name);
    if (!v) return NULL;
    return json_object_get_boolean(v) ? "true" : "false";
}

/* :id of the path when it can name a subscription; replies 404 otherwise. */
static const char *webhook_id(api_ctx_t *c)
{
    const char *id = http_param(c->req, "id");
    if (!id || !api_valid_id(id)) {
        api_error(c, 404, "not_found", NULL, "no such webhook");
        return NULL;
    }
    return id;
}

/* Replies the single row of 'r' (column 0), or 404. Frees r. */
static void reply_one(api_ctx_t *c, PGresult *r, int status)
{
    if (!r) return;
    if (PQntuples(r) == 0)
        api_error(c, 404, "not_found", NULL, "no such webhook");
    else
        api_reply(c, status, PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void on_create(api_ctx_t *c)
{
    webhook_input_t in;
    if (api_check_fields(c, create_fields) < 0) return;
    if (read_input(c, &in) < 0) goto done;
    const char *params[] = {API_OWNER_PARAMS(c),
                            opt(&in.types),
                            api_body_str(c, "name"),
                            api_body_str(c, "target_url"),
                            opt(&in.statuses),
                            in.payload_mode,
                            in.body_format,
                            opt_bool(c, "batch"),
                            opt_bool(c, "active"),
                            api_body_str(c, "description"),
                            opt(&in.metadata)};
    PGresult *r = api_query(
        c,
        "INSERT INTO subscriptions AS s (owner_kind, owner_id, event_types, name, target_url,"
        " statuses, payload_mode, body_format, batch, active, deactivated_reason, description,"
        " metadata, source)"
        " VALUES ($1, $2, $3::text[], coalesce($4, ''), $5, $6::text[], coalesce($7, 'full'),"
        " coalesce($8, 'standard'), coalesce($9::boolean, true), coalesce($10::boolean, true),"
        " CASE WHEN $10::boolean = false THEN 'paused' END, coalesce($11, ''),"
        " coalesce($12::jsonb, '{}'::jsonb), 'native')"
        " RETURNING s.id, " WEBHOOK_JSON_SECRET,
        12, params);
    if (r) {
        log_info("subscription_created id=%s owner=%s:%s source=native", PQgetvalue(r, 0, 0),
                 c->owner_kind, c->owner_id);
        char loc[96];
        snprintf(loc, sizeof(loc), "/v1/webhooks/%s", PQgetvalue(r, 0, 0));
        http_add_header(c->req, "Location", loc);
        api_reply(c, 201, PQgetvalue(r, 0, 1));
        PQclear(r);
    }
done:
    input_free(&in);
}

static void on_list(api_ctx_t *c)
{
    int limit;
    const char *cursor;
    char lim[16];
    if (api_page_params(c, false, &limit, &cursor) < 0) return;
    const char *active = http_query(c->req, "active");
    const char *source = http_query(c->req, "source");
    if (active && strcmp(active, "true") != 0 && strcmp(active, "false") != 0) {
        api_error(c, 400, "invalid_query", "active", "active must be true or false");
        return;
    }
    if (source && strcmp(source, "native") != 0 && strcmp(source, "vcita") != 0 &&
        strcmp(source, "vyte") != 0 && strcmp(source, "sql") != 0) {
        api_error(c, 400, "invalid_query", "source", "source must be native, vcita, vyte or sql");
        return;
    }
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *params[] = {API_OWNER_PARAMS(c), cursor, lim, active, source};
    PGresult *r = api_query(c,
                            "SELECT s.id, " WEBHOOK_JSON " FROM subscriptions s WHERE " OWN
                            " AND ($3::text IS NULL OR s.id > $3)"
                            " AND ($5::boolean IS NULL OR s.active = $5::boolean)"
                            " AND ($6::text IS NULL OR s.source = $6)"
                            " ORDER BY s.id LIMIT $4::integer",
                            6, params);
    if (!r) return;
    api_reply_page(c, r, limit);
    PQclear(r);
}

static void on_get(api_ctx_t *c)
{
    const char *id = webhook_id(c);
    if (!id) return;
    const char *params[] = {API_OWNER_PARAMS(c), id};
    reply_one(c,
              api_query(c, "SELECT " WEBHOOK_JSON " FROM subscriptions s WHERE " OWN
                           " AND s.id = $3",
                        3, params),
              200);
}

/* PATCH: only the fields given change. "statuses": null or [] removes the
 * filter; "metadata" replaces the whole object; "active": false pauses
 * (deactivated_reason "paused"), true resumes. */
static void on_patch(api_ctx_t *c)
{
    /* '?' stands for the parameter's $n */
    static const char *const cols[] = {
        "event_types = ?::text[]", "target_url = ?",       "name = ?",
        "description = ?",         "statuses = ?::text[]", "payload_mode = ?",
        "body_format = ?",         "batch = ?::boolean",   "metadata = ?::jsonb",
        ("active = ?::boolean, deactivated_reason = CASE WHEN ?::boolean THEN"
         " s.deactivated_reason WHEN s.active THEN 'paused' ELSE s.deactivated_reason END"),
    };
    static const char *const names[] = {"event_types", "target_url",   "name",
                                        "description", "statuses",     "payload_mode",
                                        "body_format", "batch",        "metadata",
                                        "active"};
    webhook_input_t in;
    const char *id = webhook_id(c);
    if (!id) return;
    if (api_check_fields(c, patch_fields) < 0) return;
    if (read_input(c, &in) < 0) goto done;
    const char *values[] = {opt(&in.types),
                            api_body_str(c, "target_url"),
                            api_body_str(c, "name"),
                            api_body_str(c, "description"),
                            opt(&in.statuses),
                            in.payload_mode,
                            in.body_format,
                            opt_bool(c, "batch"),
                            opt(&in.metadata),
                            opt_bool(c, "active")};
    const char *params[3 + HOOKD_ARRAY_LEN(cols)] = {API_OWNER_PARAMS(c), id};
    int n = 3;
    strbuf_t sql;
    strbuf_init(&sql, 512);
    strbuf_puts(&sql, "UPDATE subscriptions s SET ");
    for (size_t i = 0; i < HOOKD_ARRAY_LEN(cols); i++) {
        if (!api_body_has(c, names[i])) continue;
        if (n > 3) strbuf_puts(&sql, ", ");
        params[n] = values[i];
        n++;
        for (const char *p = cols[i]; *p; p++) {
            if (*p == '?')
                strbuf_printf(&sql, "$%d", n);
            else
                strbuf_putc(&sql, *p);
        }
    }
    PGresult *r;
    if (n == 3) {
        r = api_query(c, "SELECT " WEBHOOK_JSON " FROM subscriptions s WHERE " OWN " AND s.id = $3",
                      3, params);
    } else {
        strbuf_puts(&sql, " WHERE " OWN " AND s.id = $3 RETURNING " WEBHOOK_JSON);
        r = api_query(c, sql.data, n, params);
        if (r && PQntuples(r) > 0)
            log_info("subscription_updated id=%s owner=%s:%s", id, c->owner_kind, c->owner_id);
    }
    strbuf_free(&sql);
    reply_one(c, r, 200);
done:
    input_free(&in);
}

static void on_delete(api_ctx_t *c)
{
    const char *id = webhook_id(c);
    if (!id) return;
    const char *params[] = {API_OWNER_PARAMS(c), id};
    PGresult *r = api_query(c, "DELETE FROM subscriptions s WHERE " OWN " AND s.id = $3 RETURNING s.id",
                            3, params);
    if (!r) return;
    if (PQntuples(r) == 0) {
        api_error(c, 404, "not_found", NULL, "no such webhook");
    } else {
        log_info("subscription_deleted id=%s owner=%s:%s", id, c->owner_kind, c->owner_id);
        api_reply(c, 204, NULL);
    }
    PQclear(r);
}

/* New secret now; the previous one keeps being used for a second signature
 * for SECRET_OVERLAP so receivers can switch without losing deliveries. */
static void on_rotate(api_ctx_t *c)
{
    const char *id = webhook_id(c);
    if (!id) return;
    if (api_check_fields(c, no_fields) < 0) return;
    const char *params[] = {API_OWNER_PARAMS(c), id};
    PGresult *r = api_query(c,
                            "UPDATE subscriptions s SET previous_secret = s.secret,"
                            " previous_secret_expires_at = now() + interval '" SECRET_OVERLAP "',"
                            " secret = hookd_new_secret()"
                            " WHERE " OWN " AND s.id = $3 RETURNING " WEBHOOK_JSON_SECRET,
                            3, params);
    if (r && PQntuples(r) > 0)
        log_info("subscription_secret_rotated id=%s owner=%s:%s", id, c->owner_kind, c->owner_id);
    reply_one(c, r, 200);
}

const api_route_t api_native_routes[] = {
    {"POST", "/v1/webhooks", on_create, API_STYLE_NATIVE, API_BODY_REQUIRED},
    {"GET", "/v1/webhooks", on_list, API_STYLE_NATIVE, API_BODY_NONE},
    {"GET", "/v1/webhooks/:id", on_get, API_STYLE_NATIVE, API_BODY_NONE},
    {"PATCH", "/v1/webhooks/:id", on_patch, API_STYLE_NATIVE, API_BODY_REQUIRED},
    {"DELETE", "/v1/webhooks/:id", on_delete, API_STYLE_NATIVE, API_BODY_NONE},
    {"POST", "/v1/webhooks/:id/rotate-secret", on_rotate, API_STYLE_NATIVE, API_BODY_OPTIONAL},
    {NULL, NULL, NULL, 0, 0},
};
