/* The subscription API's core: route registration, token authentication,
 * request body parsing and field checks, event type and target URL
 * validation, and the API's PostgreSQL connection (503 and reconnection
 * when it breaks). The endpoints themselves live in api_<concern>.c. */
#include "api.h"

#include "hookd/json.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/sign.h"
#include "hookd/target.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define API_MAX_ROUTES 48
#define API_TOKEN_MAX 256          /* longest token accepted in a header */
#define API_BODY_MAX_MEMBERS 64    /* top-level members of a request body */
#define API_STATEMENT_TIMEOUT "5s" /* a stuck query must not stall the event loop for long */
#define API_RESET_INTERVAL_MS 1000 /* at most one reconnection attempt per second */
#define API_RESOLVE_TIMEOUT_MS 3000 /* nor a slow or silent name server */
#define API_RESET_TIMEOUT_S 5

typedef struct api_binding {
    api_t *api;
    const api_route_t *route;
} api_binding_t;

struct api {
    ingest_t *ing;
    api_binding_t bindings[API_MAX_ROUTES];
    int n_bindings;
    /* Waits on the socket of a reconnection in progress. (libevent's struct
     * event shares its tag with hookd's event_t: only ever used as a pointer.) */
    struct event *reset_ev;
    bool resetting;         /* PQresetStart done, PQresetPoll not finished */
    int64_t last_reset_ms;  /* monotonic time of the last reconnection attempt */
    metric_t *m_requests, *m_auth_failures, *m_db_unavailable;
    char *test_scope; /* api_set_test_scope: tokens skip PostgreSQL; NULL in the service */
};

static const api_route_t *const route_tables[] = {
    api_vcita_routes,    api_vyte_routes,      api_native_routes,
    api_deliveries_routes, api_endpoints_routes, api_catalog_routes,
};

/* ------------------------------------------------------------------ text */

/* Length of the valid UTF-8 sequence at p, or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n = p[0] < 0x80 ? 1 : p[0] < 0xC2 ? 0 : p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : p[0] < 0xF5 ? 4 : 0;
    if (n == 0 || (size_t)(end - p) < n) return 0;
    return json_utf8_valid((const char *)p, n) ? n : 0;
}

/* Makes 's' valid UTF-8 in place: invalid bytes become '?', a sequence cut
 * at the end is dropped. */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        size_t n = utf8_len(p, end);
        if (n) {
            p += n;
        } else if (end - p < 4 && p[0] >= 0xC2 && p[0] < 0xF5) {
            *p = '\0'; /* truncated sequence at the end */
            return;
        } else {
            *p++ = '?';
        }
    }
}

/* Copies at most 'max' bytes of 's' into 'out' for an error message,
 * adding "..." when shortened. */
static const char *shorten(const char *s, size_t max, char *out, size_t out_size)
{
    size_t len = strlen(s);
    if (max + 4 > out_size) max = out_size - 4;
    if (len <= max) {
        snprintf(out, out_size, "%s", s);
    } else {
        snprintf(out, out_size, "%.*s...", (int)max, s);
    }
    utf8_sanitize(out);
    return out;
}

/* ------------------------------------------------------------------ replies */

/* Appends valid JSON 'json' without the whitespace outside strings
 * (PostgreSQL's json_build_object writes "key" : value). */
static void append_compact(strbuf_t *b, const char *json)
{
    bool in_str = false, esc = false;
    for (const char *p = json; *p; p++) {
        char ch = *p;
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
            continue;
        }
        strbuf_putc(b, ch);
    }
}

void api_reply(api_ctx_t *c, int status, const char *json)
{
    strbuf_t b;
    strbuf_init(&b, json ? strlen(json) + 1 : 1);
    if (json) append_compact(&b, json);
    http_reply(c->req, status, "application/json", b.data, b.len);
    strbuf_free(&b);
}

void api_error(api_ctx_t *c, int status, const char *code, const char *field, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_sanitize(msg);

    strbuf_t b;
    strbuf_init(&b, 256);
    if (c->style == API_STYLE_NATIVE) {
        strbuf_puts(&b, "{\"error\":");
        json_escape(&b, code, strlen(code));
        strbuf_puts(&b, ",\"message\":");
        json_escape(&b, msg, strlen(msg));
        if (field) {
            strbuf_puts(&b, ",\"field\":");
            json_escape(&b, field, strlen(field));
        }
        strbuf_putc(&b, '}');
    } else {
        /* vCita answers every failure with 500 and this body (SPEC §5);
         * only a missing or bad token keeps its 401. */
        if (status != 401) status = 500;
        strbuf_puts(&b, c->style == API_STYLE_VCITA_SUBSCRIBE
                            ? "{\"response\":\"Not Subscribed\",\"error\":"
                            : "{\"response\":\"Not Unsubscribed\",\"error\":");
        json_escape(&b, msg, strlen(msg));
        strbuf_putc(&b, '}');
    }
    if (status == 401) http_add_header(c->req, "WWW-Authenticate", "Bearer");
    if (status == 503) http_add_header(c->req, "Retry-After", "1");
    http_reply(c->req, status, "application/json", b.data, b.len);
    strbuf_free(&b);
}

/* ------------------------------------------------------------------ PostgreSQL */

static void reset_step(api_t *a, PostgresPollingStatusType st);

static void set_session(api_t *a)
{
    char err[256];
    if (pg_exec(a->ing->api_pg, "SET statement_timeout = '" API_STATEMENT_TIMEOUT "'", 0, NULL,
                err, sizeof(err)) < 0)
        log_warn("api_pg_setup_failed error=\"%s\"", err);
}

static void reset_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    api_t *a = ud;
    if (what & EV_TIMEOUT) {
        a->resetting = false;
        log_warn("api_pg_reconnect_failed error=\"timed out\"");
        return;
    }
    reset_step(a, PQresetPoll(a->ing->api_pg));
}

static void reset_step(api_t *a, PostgresPollingStatusType st)
{
    PGconn *pg = a->ing->api_pg;
    if (st == PGRES_POLLING_OK) {
        a->resetting = false;
        log_info("api_pg_reconnected");
        set_session(a);
        return;
    }
    int fd = PQsocket(pg);
    if (st == PGRES_POLLING_FAILED || fd < 0) {
        char err[256];
        snprintf(err, sizeof(err), "%s", PQerrorMessage(pg));
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '"') *p = ' ';
        a->resetting = false;
        log_warn("api_pg_reconnect_failed error=\"%s\"", err);
        return;
    }
    short what = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
    struct timeval tv = {API_RESET_TIMEOUT_S, 0};
    if (a->reset_ev) event_free(a->reset_ev);
    a->reset_ev = event_new(a->ing->base, fd, what, reset_cb, a);
    if (!a->reset_ev || event_add(a->reset_ev, &tv) < 0) {
        a->resetting = false;
        log_warn("api_pg_reconnect_failed error=\"cannot watch socket\"");
    }
}

/* Starts a non-blocking reconnection of the API connection unless one is
 * running or one was tried less than a second ago. */
static void reset_begin(api_t *a)
{
    PGconn *pg = a->ing->api_pg;
    if (!pg || a->resetting) return;
    int64_t now = hookd_mono_ms();
    if (a->last_reset_ms && now - a->last_reset_ms < API_RESET_INTERVAL_MS) return;
    a->last_reset_ms = now;
    if (!PQresetStart(pg)) {
        log_warn("api_pg_reconnect_failed error=\"reset could not start\"");
        return;
    }
    log_info("api_pg_reconnecting");
    a->resetting = true;
    reset_step(a, PGRES_POLLING_WRITING);
}

/* True when the API connection can take a query now; otherwise starts a
 * reconnection. */
static bool pg_ready(api_t *a)
{
    if (a->resetting) return false;
    if (pg_alive(a->ing->api_pg)) return true;
    reset_begin(a);
    return false;
}

PGresult *api_pg_exec(api_ctx_t *c, const char *sql, int n, const char *const *params,
                      api_pgerr_t *e)
{
    memset(e, 0, sizeof(*e));
    if (!pg_ready(c->api)) {
        snprintf(e->message, sizeof(e->message), "connection down");
        return NULL;
    }
    PGconn *pg = c->ing->api_pg;
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg) msg = PQerrorMessage(pg);
    snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", state ? state : "");
    snprintf(e->message, sizeof(e->message), "%s", msg ? msg : "");
    for (char *p = e->message; *p; p++)
        if (*p == '\n' || *p == '"') *p = ' ';
    PQclear(r);
    if (!pg_alive(pg)) {
        e->sqlstate[0] = '\0';
        reset_begin(c->api);
    }
    return NULL;
}

void api_reply_pg_error(api_ctx_t *c, const api_pgerr_t *e)
{
    const char *s = e->sqlstate;
    if (s[0] == '\0' || strncmp(s, "08", 2) == 0 || strncmp(s, "57P", 3) == 0 ||
        strncmp(s, "53", 2) == 0 || strcmp(s, "57014") == 0 || strcmp(s, "40001") == 0 ||
        strcmp(s, "40P01") == 0 || strcmp(s, "55P03") == 0 || strcmp(s, "25P02") == 0) {
        metric_inc(c->api->m_db_unavailable);
        log_warn("api_db_unavailable sqlstate=%s error=\"%s\"", s[0] ? s : "none", e->message);
        api_error(c, 503, "database_unavailable", NULL,
                  "the database is unavailable; retry in a moment");
        return;
    }
    if (strcmp(s, "22023") == 0 || strcmp(s, "P0001") == 0) {
        /* raised by hookd's own triggers and functions with a message meant for users */
        api_error(c, 400, "invalid_request", NULL, "%s", e->message);
        return;
    }
    if (strcmp(s, "22P05") == 0 || strcmp(s, "22021") == 0) {
        api_error(c, 400, "invalid_request", NULL,
                  "a string contains \\u0000 or an invalid character sequence");
        return;
    }
    if (strcmp(s, "22003") == 0) {
        api_error(c, 400, "invalid_request", NULL, "a number is out of range");
        return;
    }
    if (strncmp(s, "22", 2) == 0 || strcmp(s, "23514") == 0 || strcmp(s, "54000") == 0) {
        api_error(c, 400, "invalid_request", NULL, "a value is invalid or out of range");
        return;
    }
    if (strcmp(s, "23505") == 0) {
        api_error(c, 409, "conflict", NULL, "the resource already exists");
        return;
    }
    log_error("api_db_error sqlstate=%s error=\"%s\"", s, e->message);
    api_error(c, 500, "internal", NULL, "internal error");
}

PGresult *api_query(api_ctx_t *c, const char *sql, int n, const char *const *params)
{
    api_pgerr_t e;
    PGresult *r = api_pg_exec(c, sql, n, params, &e);
    if (!r) api_reply_pg_error(c, &e);
    return r;
}

int api_begin(api_ctx_t *c)
{
    PGresult *r = api_query(c, "BEGIN", 0, NULL);
    if (!r) return -1;
    PQclear(r);
    return 0;
}

int api_commit(api_ctx_t *c)
{
    PGresult *r = api_query(c, "COMMIT", 0, NULL);
    if (!r) {
        api_rollback(c);
        return -1;
    }
    PQclear(r);
    return 0;
}

void api_rollback(api_ctx_t *c)
{
    PGconn *pg = c->ing->api_pg;
    if (!pg_alive(pg) || PQtransactionStatus(pg) == PQTRANS_IDLE) return;
    PQclear(PQexec(pg, "ROLLBACK"));
}

static void pg_array_item(strbuf_t *b, const char *s)
{
    strbuf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') strbuf_putc(b, '\\');
        strbuf_putc(b, *s);
    }
    strbuf_putc(b, '"');
}

void api_pg_array(strbuf_t *b, const char (*items)[EVENT_TYPE_MAX], int n)
{
    strbuf_putc(b, '{');
    for (int i = 0; i < n; i++) {
        if (i) strbuf_putc(b, ',');
        pg_array_item(b, items[i]);
    }
    strbuf_putc(b, '}');
}

void api_pg_array_ptrs(strbuf_t *b, const char *const *items, int n)
{
    strbuf_putc(b, '{');
    for (int i = 0; i < n; i++) {
        if (i) strbuf_putc(b, ',');
        pg_array_item(b, items[i]);
    }
    strbuf_putc(b, '}');
}

void api_reply_page(api_ctx_t *c, PGresult *r, int limit)
{
    int rows = PQntuples(r);
    bool more = rows > limit;
    if (more) rows = limit;
    strbuf_t b;
    strbuf_init(&b, 4096);
    strbuf_puts(&b, "{\"data\":[");
    for (int i = 0; i < rows; i++) {
        if (i) strbuf_putc(&b, ',');
        append_compact(&b, PQgetvalue(r, i, 1));
    }
    strbuf_printf(&b, "],\"has_more\":%s,\"next_cursor\":", more ? "true" : "false");
    if (more) {
        const char *cur = PQgetvalue(r, rows - 1, 0);
        json_escape(&b, cur, strlen(cur));
    } else {
        strbuf_puts(&b, "null");
    }
    strbuf_putc(&b, '}');
    http_reply(c->req, 200, "application/json", b.data, b.len);
    strbuf_free(&b);
}

/* ------------------------------------------------------------------ validation */

bool api_valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-')) return false;
    return true;
}

static bool all_digits(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

int api_page_params(api_ctx_t *c, bool numeric, int *limit, const char **cursor)
{
    const char *l = http_query(c->req, "limit");
    const char *cur = http_query(c->req, "cursor");
    *limit = API_DEFAULT_LIMIT;
    *cursor = NULL;
    if (l) {
        if (!all_digits(l, 4) || atoi(l) < 1 || atoi(l) > API_MAX_LIMIT) {
            api_error(c, 400, "invalid_query", "limit", "limit must be an integer from 1 to %d",
                      API_MAX_LIMIT);
            return -1;
        }
        *limit = atoi(l);
    }
    if (cur && cur[0]) {
        if (numeric ? !all_digits(cur, 18) : !api_valid_id(cur)) {
            api_error(c, 400, "invalid_query", "cursor",
                      "cursor must be the next_cursor value of a previous page");
            return -1;
        }
        *cursor = cur;
    }
    return 0;
}

int api_check_target(api_ctx_t *c, const char *url, const char *field)
{
    char err[512];
    target_url_t t;
    const hookd_config_t *cfg = &c->ing->cfg;
    if (target_parse(url, cfg->require_https, &t, err, sizeof(err)) < 0 ||
        target_resolve(t.host, t.port, cfg->allow_private_targets, API_RESOLVE_TIMEOUT_MS, NULL, 0,
                       err, sizeof(err)) < 0) {
        api_error(c, 400, "invalid_target_url", field, "%s", err);
        return -1;
    }
    return 0;
}

static bool type_part_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-')) return false;
    return true;
}

/* One query classifies every candidate: resolves bare alias names and verb
 * forms (hookd_normalize_type: a catalog name stays as written, "pivot/update";
 * otherwise "client/create" -> "client/created", as the pipeline does), then
 * 'ok', 'unknown', 'unknown_alias' or 'directory' (directory-level type for
 * an account token). */
static const char CHECK_TYPES_SQL[] =
    "SELECT r.name, CASE"
    " WHEN r.name IS NULL THEN 'unknown_alias'"
    " WHEN r.name = '*' OR r.name LIKE 'custom/%' THEN 'ok'"
    " WHEN r.name LIKE '%/*' THEN (SELECT CASE WHEN count(*) = 0 THEN 'unknown'"
    "   WHEN bool_and(t.directory_level) AND NOT $2::boolean THEN 'directory' ELSE 'ok' END"
    "   FROM event_types t WHERE t.entity = split_part(r.name, '/', 1))"
    " ELSE coalesce((SELECT CASE WHEN bool_or(NOT t.directory_level) OR $2::boolean THEN 'ok'"
    "   ELSE 'directory' END FROM event_types t"
    "   WHERE t.name = r.name HAVING count(*) > 0),"
    "   'unknown')"
    " END"
    " FROM unnest($1::text[]) WITH ORDINALITY AS u(p, i)"
    " CROSS JOIN LATERAL (SELECT CASE WHEN u.p ~ '^[A-Za-z0-9_-]+$'"
    "   THEN (SELECT a.name FROM event_type_aliases a WHERE a.alias = u.p)"
    "   ELSE hookd_normalize_type(u.p) END AS name) r"
    " ORDER BY u.i";

int api_check_types(api_ctx_t *c, const char *const *in, int n, const char *field,
                    char (*out)[EVENT_TYPE_MAX])
{
    char shown[96];
    if (n < 1 || n > API_MAX_TYPES) {
        api_error(c, 400, "invalid_field", field, "field '%s' needs 1 to %d event types", field,
                  API_MAX_TYPES);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *t = in[i];
        size_t len = strlen(t);
        int rc = 0;
        if (len == 1 && t[0] == '*') {
            memcpy(out[i], "*", 2);
        } else if (strpbrk(t, "/.")) {
            rc = len >= EVENT_TYPE_MAX
                     ? -1
                     : event_type_normalize(t, len, out[i], EVENT_TYPE_MAX, true);
        } else if (type_part_ok(t)) {
            memcpy(out[i], t, len + 1); /* an alias name, resolved below */
        } else {
            rc = -1;
        }
        if (rc < 0) {
            api_error(c, 400, "invalid_event_type", field,
                      "invalid event type '%s': expected entity/event, entity/*, * or a known "
                      "alias (letters, digits, _ and -)",
                      shorten(t, 64, shown, sizeof(shown)));
            return -1;
        }
    }
    strbuf_t arr;
    strbuf_init(&arr, 256);
    api_pg_array(&arr, (const char(*)[EVENT_TYPE_MAX])out, n);
    const char *params[] = {arr.data, c->directory ? "true" : "false"};
    PGresult *r = api_query(c, CHECK_TYPES_SQL, 2, params);
    strbuf_free(&arr);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; i < n && i < PQntuples(r); i++) {
        const char *verdict = PQgetvalue(r, i, 1);
        const char *shown_type = shorten(in[i], 64, shown, sizeof(shown));
        if (strcmp(verdict, "ok") == 0) {
            snprintf(out[i], EVENT_TYPE_MAX, "%s", PQgetvalue(r, i, 0));
        } else if (strcmp(verdict, "unknown") == 0 && c->ing->cfg.accept_unknown_types) {
            /* HOOKD_ACCEPT_UNKNOWN_TYPES: such events are ingested, so allow subscribing */
        } else if (strcmp(verdict, "directory") == 0) {
            api_error(c, 400, "invalid_event_type", field,
                      "event type '%s' is directory-level: only a directory token may subscribe "
                      "to it",
                      shown_type);
            rc = -1;
            break;
        } else if (strcmp(verdict, "unknown_alias") == 0) {
            api_error(c, 400, "invalid_event_type", field,
                      "unknown event type '%s': expected entity/event, entity/*, * or a known "
                      "alias (see GET /v1/event-types)",
                      shown_type);
            rc = -1;
            break;
        } else {
            api_error(c, 400, "invalid_event_type", field,
                      "unknown event type '%s' (see GET /v1/event-types)", shown_type);
            rc = -1;
            break;
        }
    }
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ body */

json_object *api_body_get(api_ctx_t *c, const char *name)
{
    json_object *v = NULL;
    if (!c->body || !json_object_object_get_ex(c->body, name, &v)) return NULL;
    return v;
}

bool api_body_has(api_ctx_t *c, const char *name)
{
    return c->body && json_object_object_get_ex(c->body, name, NULL);
}

const char *api_body_str(api_ctx_t *c, const char *name)
{
    json_object *v = api_body_get(c, name);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int check_string(api_ctx_t *c, json_object *v, const char *name, int max_len,
                        const char *what)
{
    if (!json_object_is_type(v, json_type_string)) {
        api_error(c, 400, "invalid_field", name, "field '%s' must be %s", name, what);
        return -1;
    }
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len) {
        api_error(c, 400, "invalid_field", name, "field '%s' must not contain \\u0000", name);
        return -1;
    }
    if (!json_utf8_valid(s, len)) {
        api_error(c, 400, "invalid_field", name,
                  "field '%s' is not valid UTF-8 (unpaired surrogate escape?)", name);
        return -1;
    }
    if (max_len > 0 && len > (size_t)max_len) {
        api_error(c, 400, "invalid_field", name, "field '%s' is longer than %d bytes", name,
                  max_len);
        return -1;
    }
    return 0;
}

static int check_field(api_ctx_t *c, const api_field_t *f, json_object *v)
{
    const char *name = f->name;
    switch (f->type) {
    case API_F_STRING: return check_string(c, v, name, f->max_len, "a string");
    case API_F_BOOL:
        if (!json_object_is_type(v, json_type_boolean)) {
            api_error(c, 400, "invalid_field", name, "field '%s' must be true or false", name);
            return -1;
        }
        return 0;
    case API_F_OBJECT:
        if (!json_object_is_type(v, json_type_object)) {
            api_error(c, 400, "invalid_field", name, "field '%s' must be a JSON object", name);
            return -1;
        }
        return 0;
    case API_F_STRINGS_NULL:
        if (v == NULL || json_object_is_type(v, json_type_null)) return 0;
        /* fall through */
    case API_F_STRINGS: {
        bool may_be_empty = f->type == API_F_STRINGS_NULL;
        if (!json_object_is_type(v, json_type_array)) {
            api_error(c, 400, "invalid_field", name, "field '%s' must be an array of strings%s",
                      name, may_be_empty ? " or null" : "");
            return -1;
        }
        size_t n = json_object_array_length(v);
        if ((n == 0 && !may_be_empty) || n > (size_t)f->max_items) {
            api_error(c, 400, "invalid_field", name, "field '%s' needs %d to %d items", name,
                      may_be_empty ? 0 : 1, f->max_items);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *item = json_object_array_get_idx(v, i);
            if (!item) {
                api_error(c, 400, "invalid_field", name, "field '%s' must not contain null", name);
                return -1;
            }
            if (check_string(c, item, name, f->max_len, "an array of strings") < 0) return -1;
            if (json_object_get_string_len(item) == 0) {
                api_error(c, 400, "invalid_field", name,
                          "field '%s' must not contain empty strings", name);
                return -1;
            }
        }
        return 0;
    }
    }
    return 0;
}

int api_check_fields(api_ctx_t *c, const api_field_t *fields)
{
    char shown[96];
    if (c->body) {
        json_object_object_foreach(c->body, key, val)
        {
            const api_field_t *f = fields;
            while (f->name && strcmp(f->name, key) != 0) f++;
            if (!f->name) {
                shorten(key, 64, shown, sizeof(shown));
                api_error(c, 400, "unknown_field", shown, "unknown field '%s'", shown);
                return -1;
            }
            if (val == NULL && f->type != API_F_STRINGS_NULL) {
                api_error(c, 400, "invalid_field", f->name, "field '%s' must not be null",
                          f->name);
                return -1;
            }
            if (check_field(c, f, val) < 0) return -1;
        }
    }
    for (const api_field_t *f = fields; f->name; f++) {
        if (f->required && !api_body_has(c, f->name)) {
            api_error(c, 400, "missing_field", f->name, "field '%s' is required", f->name);
            return -1;
        }
    }
    return 0;
}

static bool json_content_type(const char *ct)
{
    while (*ct == ' ') ct++;
    size_t n = strcspn(ct, "; ");
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return true;
    /* application/<anything>+json */
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/* Parses the request body into c->body per the route's api_body_t.
 * Replies and returns -1 on any problem. */
static int parse_body(api_ctx_t *c, api_body_t mode)
{
    http_req_t *r = c->req;
    char err[160];
    if (mode == API_BODY_NONE) return 0;
    bool blank = true;
    for (size_t i = 0; i < r->body_len && blank; i++)
        blank = r->body[i] == ' ' || r->body[i] == '\n' || r->body[i] == '\r' || r->body[i] == '\t';
    if (blank) {
        if (mode == API_BODY_OPTIONAL) return 0;
        api_error(c, 400, "invalid_body", NULL, "the request body must be a JSON object");
        return -1;
    }
    const char *ct = http_header(r, "Content-Type");
    if (ct && !json_content_type(ct)) {
        api_error(c, 415, "unsupported_media_type", NULL,
                  "Content-Type must be application/json");
        return -1;
    }
    json_member_t members[API_BODY_MAX_MEMBERS];
    int n_members = 0;
    json_type_t t = json_scan(r->body, r->body_len, members, API_BODY_MAX_MEMBERS, &n_members,
                              err, sizeof(err));
    if (t == JSON_NONE) {
        api_error(c, 400, "invalid_json", NULL, "%s", err);
        return -1;
    }
    if (t != JSON_OBJECT) {
        api_error(c, 400, "invalid_body", NULL, "the request body must be a JSON object");
        return -1;
    }
    if (n_members > API_BODY_MAX_MEMBERS) {
        api_error(c, 400, "invalid_body", NULL, "the request body has too many fields");
        return -1;
    }
    /* Decoded keys: refuse duplicates (which one would win is ambiguous) and
     * remember the raw text of "metadata" so it reaches jsonb unchanged. */
    char keys[API_BODY_MAX_MEMBERS][72];
    for (int i = 0; i < n_members; i++) {
        json_span_t q = {members[i].key.p - 1, members[i].key.len + 2};
        long kl = json_string_decode(q, keys[i], sizeof(keys[i]));
        if (kl < 0) snprintf(keys[i], sizeof(keys[i]), "\x01%d", i); /* long or odd: unique */
        for (int j = 0; j < i; j++) {
            if (strcmp(keys[i], keys[j]) == 0) {
                char shown[96];
                api_error(c, 400, "invalid_body", shorten(keys[i], 64, shown, sizeof(shown)),
                          "field '%s' appears more than once", shown);
                return -1;
            }
        }
        if (strcmp(keys[i], "metadata") == 0) {
            c->metadata_raw = members[i].value.p;
            c->metadata_len = members[i].value.len;
        }
    }
    json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH + 1);
    if (!tok) abort();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    c->body = json_tokener_parse_ex(tok, r->body, (int)r->body_len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (!c->body || jerr != json_tokener_success || !json_object_is_type(c->body, json_type_object)) {
        json_object_put(c->body);
        c->body = NULL;
        api_error(c, 400, "invalid_json", NULL, "invalid JSON: %s",
                  json_tokener_error_desc(jerr));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ auth */

static const char TOKEN_SQL[] =
    "WITH t AS (SELECT id, scope, last_used_at FROM api_tokens"
    "           WHERE token_hash = $1 AND revoked_at IS NULL),"
    " u AS (UPDATE api_tokens a SET last_used_at = now() FROM t"
    "       WHERE a.id = t.id AND (t.last_used_at IS NULL"
    "                              OR t.last_used_at < now() - interval '60 seconds'))"
    " SELECT scope FROM t";

/* The token from Authorization: Bearer or X-Api-Token, or NULL. */
static const char *find_token(http_req_t *r, size_t *len)
{
    const char *h = http_header(r, "Authorization");
    if (h) {
        while (*h == ' ') h++;
        if (strncasecmp(h, "Bearer ", 7) == 0) {
            h += 7;
            while (*h == ' ') h++;
            size_t n = strlen(h);
            while (n > 0 && h[n - 1] == ' ') n--;
            if (n > 0) {
                *len = n;
                return h;
            }
        }
    }
    h = http_header(r, "X-Api-Token");
    if (h) {
        while (*h == ' ') h++;
        size_t n = strlen(h);
        while (n > 0 && h[n - 1] == ' ') n--;
        if (n > 0) {
            *len = n;
            return h;
        }
    }
    return NULL;
}

/* Resolves the token to an owner. Replies 401/503 and returns -1 when it
 * cannot. */
static int authenticate(api_ctx_t *c)
{
    size_t len = 0;
    const char *tok = find_token(c->req, &len);
    if (!tok) {
        metric_inc(c->api->m_auth_failures);
        api_error(c, 401, "unauthorized", NULL,
                  "missing API token: send Authorization: Bearer <token> or X-Api-Token: <token>");
        return -1;
    }
    bool printable = len <= API_TOKEN_MAX;
    for (size_t i = 0; i < len && printable; i++)
        printable = tok[i] > 0x20 && tok[i] < 0x7f;
    if (!printable) {
        metric_inc(c->api->m_auth_failures);
        api_error(c, 401, "unauthorized", NULL, "invalid or revoked API token");
        return -1;
    }
    char hash[65];
    sign_sha256_hex(tok, len, hash);
    const char *params[] = {hash};
    PGresult *r = NULL;
    int rc = -1;
    const char *scope = c->api->test_scope;
    if (!scope) {
        r = api_query(c, TOKEN_SQL, 1, params);
        if (!r) return -1;
        if (PQntuples(r) != 1) {
            metric_inc(c->api->m_auth_failures);
            api_error(c, 401, "unauthorized", NULL, "invalid or revoked API token");
            goto done;
        }
        scope = PQgetvalue(r, 0, 0);
    }
    const char *colon = strchr(scope, ':');
    if (!colon || strlen(colon + 1) >= sizeof(c->owner_id) || colon[1] == '\0') {
        log_error("api_token_bad_scope hash_prefix=%.8s", hash);
        api_error(c, 401, "unauthorized", NULL, "invalid or revoked API token");
        goto done;
    }
    if ((size_t)(colon - scope) == 9 && strncmp(scope, "directory", 9) == 0) {
        c->directory = true;
        c->owner_kind = "directory";
    } else if ((size_t)(colon - scope) == 7 && strncmp(scope, "account", 7) == 0) {
        c->directory = false;
        c->owner_kind = "account";
    } else {
        log_error("api_token_bad_scope hash_prefix=%.8s", hash);
        api_error(c, 401, "unauthorized", NULL, "invalid or revoked API token");
        goto done;
    }
    snprintf(c->owner_id, sizeof(c->owner_id), "%s", colon + 1);
    rc = 0;
done:
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ dispatch */

static void on_request(http_req_t *req, void *ud)
{
    api_binding_t *b = ud;
    api_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.ing = b->api->ing;
    c.api = b->api;
    c.req = req;
    c.style = b->route->style;
    metric_inc(b->api->m_requests);
    if (authenticate(&c) < 0) return;
    if (parse_body(&c, b->route->body) == 0) b->route->fn(&c);
    json_object_put(c.body);
    /* a handler that failed half-way must not leave a transaction open */
    api_rollback(&c);
}

int api_register(ingest_t *ing)
{
    api_t *a = calloc(1, sizeof(*a));
    if (!a) abort();
    a->ing = ing;
    a->m_requests = metrics_counter("hookd_api_requests_total",
                                    "Requests to the subscription API", NULL);
    a->m_auth_failures = metrics_counter("hookd_api_auth_failures_total",
                                         "API requests refused for a missing or bad token", NULL);
    a->m_db_unavailable = metrics_counter(
        "hookd_api_db_unavailable_total", "API requests answered 503 because PostgreSQL was down",
        NULL);
    for (size_t t = 0; t < HOOKD_ARRAY_LEN(route_tables); t++) {
        for (const api_route_t *r = route_tables[t]; r->method; r++) {
            if (a->n_bindings >= API_MAX_ROUTES) goto fail;
            api_binding_t *b = &a->bindings[a->n_bindings++];
            b->api = a;
            b->route = r;
            if (httpd_route(ing->httpd, r->method, r->pattern, on_request, b) < 0) goto fail;
        }
    }
    ing->api = a;
    if (pg_alive(ing->api_pg)) set_session(a);
    return 0;
fail:
    log_error("api_register_failed error=\"too many routes\"");
    free(a);
    return -1;
}

void api_set_test_scope(ingest_t *ing, const char *scope)
{
    free(ing->api->test_scope);
    ing->api->test_scope = scope ? strdup(scope) : NULL;
    if (scope && !ing->api->test_scope) abort();
}

void api_free(ingest_t *ing)
{
    api_t *a = ing->api;
    if (!a) return;
    if (a->reset_ev) event_free(a->reset_ev);
    free(a->test_scope);
    free(a);
    ing->api = NULL;
}
