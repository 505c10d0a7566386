/* The subscription management API of hookd-ingest (SPEC §5): route
 * registration, token auth, and the request helpers the api_*.c handlers
 * share (body parsing, field checks, event type and target URL validation,
 * queries on the API's PostgreSQL connection, JSON error replies). */
#ifndef HOOKD_INGEST_API_H
#define HOOKD_INGEST_API_H

#include "ingest.h"

#include "hookd/event.h"
#include "hookd/httpd.h"
#include "hookd/util.h"

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdbool.h>

/* Registers every API route on ing->httpd and prepares the API connection
 * ing->api_pg (statement timeout; reconnection when it breaks). Call after
 * httpd_add_standard_routes. Returns 0 or -1. */
int api_register(ingest_t *ing);

/* Frees what api_register created (before ing->api_pg and ing->base go). */
void api_free(ingest_t *ing);

/* Tests and fuzzing only (the service never calls it): while 'scope'
 * ("account:<id>" or "directory:<id>", copied) is set, every request that
 * carries a well-formed token is authenticated as that scope without asking
 * PostgreSQL, so request handling can run with no database (ing->api_pg
 * NULL: queries then answer 503). NULL restores the token lookup. */
void api_set_test_scope(ingest_t *ing, const char *scope);

/* ------------------------------------------------------------------------
 * For the api_*.c handlers.
 * ------------------------------------------------------------------------ */

#define API_MAX_TYPES 100     /* event type patterns per subscription (schema CHECK) */
#define API_MAX_STATUSES 50   /* statuses per filter */
#define API_OWNER_MAX 129     /* owner id (schema: 1..128) + NUL */
#define API_DEFAULT_LIMIT 50  /* page size when ?limit= is absent */
#define API_MAX_LIMIT 250     /* largest page */

/* How a route reports failures: native JSON errors, or vCita's
 * {"response":"Not Subscribed"|"Not Unsubscribed","error":"..."} with 500. */
typedef enum {
    API_STYLE_NATIVE,
    API_STYLE_VCITA_SUBSCRIBE,
    API_STYLE_VCITA_UNSUBSCRIBE,
} api_style_t;

/* Whether the route reads a JSON object body. */
typedef enum {
    API_BODY_NONE,     /* body ignored */
    API_BODY_REQUIRED, /* a JSON object is required */
    API_BODY_OPTIONAL, /* empty, or a JSON object */
} api_body_t;

typedef struct api api_t;

/* One authenticated request. Lives for the duration of the handler call. */
typedef struct api_ctx {
    ingest_t *ing;
    api_t *api;
    http_req_t *req;
    api_style_t style;
    bool directory;                /* token scope is directory:<id> (else account:<id>) */
    const char *owner_kind;        /* "account" or "directory" */
    char owner_id[API_OWNER_MAX];  /* the id after the scope's colon */
    json_object *body;             /* the parsed body object, or NULL; owned by the dispatcher */
    const char *metadata_raw;      /* raw text of the top-level "metadata" member, or NULL */
    size_t metadata_len;
} api_ctx_t;

typedef void (*api_handler_fn)(api_ctx_t *c);

typedef struct api_route {
    const char *method;  /* "GET", "POST", ... ; NULL ends a table */
    const char *pattern; /* "/v1/webhooks/:id" */
    api_handler_fn fn;
    api_style_t style;
    api_body_t body;
} api_route_t;

/* Route tables, each ended by an entry with method == NULL. */
extern const api_route_t api_vcita_routes[];
extern const api_route_t api_vyte_routes[];
extern const api_route_t api_native_routes[];
extern const api_route_t api_deliveries_routes[];
extern const api_route_t api_endpoints_routes[];
extern const api_route_t api_catalog_routes[];

/* ---- replies ---- */

/* Replies an error in the route's style. Native: 'status' with
 * {"error":code,"message":...,"field":field} ("field" only when non-NULL).
 * vCita: 401 stays 401, anything else becomes 500; the body is
 * {"response":"Not Subscribed"|"Not Unsubscribed","error":message}. */
void api_error(api_ctx_t *c, int status, const char *code, const char *field, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));

/* Replies 'status' with the JSON text 'json' (NULL or "" = empty body). */
void api_reply(api_ctx_t *c, int status, const char *json);

/* ---- body fields ---- */

typedef enum {
    API_F_STRING,       /* string (no NUL), at most max_len bytes */
    API_F_BOOL,         /* true / false */
    API_F_STRINGS,      /* array of 1..max_items non-empty strings of at most max_len bytes */
    API_F_STRINGS_NULL, /* like API_F_STRINGS, or null, or [] (both meaning "none") */
    API_F_OBJECT,       /* JSON object (kept raw: see metadata_raw) */
} api_ftype_t;

typedef struct api_field {
    const char *name; /* NULL ends a table */
    api_ftype_t type;
    bool required;
    int max_len;   /* strings: bytes; 0 = no limit beyond the body limit */
    int max_items; /* arrays */
} api_field_t;

/* Checks c->body against 'fields': unknown members, missing required ones,
 * types, lengths. Replies 400 naming the field and returns -1 on the first
 * problem. A NULL body passes when nothing is required. */
int api_check_fields(api_ctx_t *c, const api_field_t *fields);

/* The string member 'name' of c->body, or NULL (absent / null). */
const char *api_body_str(api_ctx_t *c, const char *name);
/* The member 'name' of c->body, or NULL when absent. JSON null is returned
 * as NULL too; use api_body_has to tell them apart. */
json_object *api_body_get(api_ctx_t *c, const char *name);
bool api_body_has(api_ctx_t *c, const char *name);

/* ---- validation ---- */

/* Normalises the event type patterns 'in[0..n)' (verb forms, entity.event,
 * aliases) and checks each against the catalog for this token: exact types
 * must exist (unless HOOKD_ACCEPT_UNKNOWN_TYPES), entity/ * needs a known
 * entity, * and custom/<hook> are always allowed, directory-level types need
 * a directory token. Writes the normalised patterns to 'out'. Replies (400
 * invalid_event_type naming 'field') and returns -1 on failure. */
int api_check_types(api_ctx_t *c, const char *const *in, int n, const char *field,
                    char (*out)[EVENT_TYPE_MAX]);

/* Validates a target URL: syntax, https unless HOOKD_REQUIRE_HTTPS=false,
 * and the SSRF rules on every resolved address unless
 * HOOKD_ALLOW_PRIVATE_TARGETS=true. Replies 400 invalid_target_url and
 * returns -1 when refused. Blocks on DNS resolution. */
int api_check_target(api_ctx_t *c, const char *url, const char *field);

/* True when 's' is a syntactically valid subscription id. */
bool api_valid_id(const char *s);

/* Reads ?limit= (1..API_MAX_LIMIT, default API_DEFAULT_LIMIT) and ?cursor=
 * (an id; digits only when 'numeric'). Replies 400 and returns -1 when bad. */
int api_page_params(api_ctx_t *c, bool numeric, int *limit, const char **cursor);

/* ---- PostgreSQL ---- */

typedef struct api_pgerr {
    char sqlstate[6];  /* "" when the connection failed */
    char message[256]; /* server's primary message (never shown to clients as-is) */
} api_pgerr_t;

/* Runs a parameterised statement on ing->api_pg. Returns the result (caller
 * PQclear()s) or NULL with 'e' filled; never replies. */
PGresult *api_pg_exec(api_ctx_t *c, const char *sql, int n, const char *const *params,
                      api_pgerr_t *e);

/* Replies the right error for 'e': 503 when PostgreSQL is unreachable,
 * 400 for invalid data the client sent, 500 (logged, message hidden)
 * otherwise. */
void api_reply_pg_error(api_ctx_t *c, const api_pgerr_t *e);

/* api_pg_exec that replies on failure (returns NULL then). */
PGresult *api_query(api_ctx_t *c, const char *sql, int n, const char *const *params);

/* BEGIN / COMMIT / ROLLBACK on the API connection. begin and commit reply
 * on failure and return -1 (commit rolls back then). */
int api_begin(api_ctx_t *c);
int api_commit(api_ctx_t *c);
void api_rollback(api_ctx_t *c);

/* Appends a PostgreSQL array literal ({"a","b"}) of 'n' strings. */
void api_pg_array(strbuf_t *b, const char (*items)[EVENT_TYPE_MAX], int n);
void api_pg_array_ptrs(strbuf_t *b, const char *const *items, int n);

/* SQL expression of a timestamptz column as RFC 3339 UTC with milliseconds
 * ("2026-11-23T10:00:00.000Z"), for json_build_object. */
#define API_TS(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Owner parameters: every query passes c->owner_kind and c->owner_id as
 * $1 and $2. */
#define API_OWNER_PARAMS(c) (c)->owner_kind, (c)->owner_id

/* The JSON list reply {"data":[rows...],"has_more":b,"next_cursor":...}
 * from a result whose column 0 is the cursor value and column 1 the item's
 * JSON, fetched with LIMIT limit+1. */
void api_reply_page(api_ctx_t *c, PGresult *r, int limit);

#endif
