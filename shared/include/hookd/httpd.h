/* A small HTTP server on libevent's evhttp: a router matching method and
 * path patterns with :params, JSON replies, body size limit, and the
 * standard /healthz, /readyz and /metrics routes both services serve. */
#ifndef HOOKD_HTTPD_H
#define HOOKD_HTTPD_H

#include "hookd/util.h"

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPD_MAX_PARAMS 4

typedef struct httpd httpd_t;

typedef struct http_req {
    struct evhttp_request *ev;
    const char *method; /* "GET", "POST", ... */
    char *path;         /* percent-decoded path without the query */
    const char *param_names[HTTPD_MAX_PARAMS];
    char *param_values[HTTPD_MAX_PARAMS]; /* decoded :params, owned by the request */
    int n_params;
    char *body; /* NUL-terminated copy of the body, "" when none; owned */
    size_t body_len;
    struct evkeyvalq *query; /* parsed query string */
    bool replied;
} http_req_t;

typedef void (*http_handler_fn)(http_req_t *req, void *ud);

/* Binds 'addr' ("host:port") on 'base'. Bodies over 'max_body' bytes get a
 * JSON 413. Returns NULL with 'err' on failure. */
httpd_t *httpd_new(struct event_base *base, const char *addr, size_t max_body, char *err,
                   size_t err_size);
void httpd_free(httpd_t *h);

/* The port actually bound (useful with port 0). */
int httpd_port(const httpd_t *h);

/* Adds a route: 'method' "GET"/"POST"/... , 'pattern' like "/hooks/:id".
 * Routes are matched in the order added. Returns 0 or -1 (too many). */
int httpd_route(httpd_t *h, const char *method, const char *pattern, http_handler_fn fn, void *ud);

/* Fills 'checks' (a JSON object body such as {"kafka":"ok","postgres":"down"})
 * and returns true when the service is ready. */
typedef bool (*httpd_ready_fn)(strbuf_t *checks, void *ud);

/* Adds GET /healthz, GET /readyz (200 or 503 with the checks) and
 * GET /metrics (Prometheus text). */
void httpd_add_standard_routes(httpd_t *h, httpd_ready_fn ready, void *ud);

/* GET /healthz and /readyz on 'addr' with an event loop and a thread of
 * their own, so that probes never wait behind the work of the service's
 * own loop 'service_base' (HOOKD_PROBE_ADDR). /readyz is as above ('ready'
 * is called on the probe thread: it must be thread-safe); /healthz also
 * fails (503) once 'service_base' has not turned for 'silent_ms', so a
 * wedged loop is still caught. Call from the thread of 'service_base'.
 * Returns NULL with 'err' on failure. */
typedef struct httpd_probe httpd_probe_t;
httpd_probe_t *httpd_probe_start(struct event_base *service_base, const char *addr,
                                 int64_t silent_ms, httpd_ready_fn ready, void *ud, char *err,
                                 size_t err_size);
int httpd_probe_port(const httpd_probe_t *p);
/* Stops the thread and frees everything (NULL is fine). */
void httpd_probe_stop(httpd_probe_t *p);

/* Replies; each request gets exactly one reply. 'body' is copied. */
void http_reply(http_req_t *r, int status, const char *content_type, const char *body,
                size_t len);
void http_reply_json(http_req_t *r, int status, const char *json);
/* {"error":"<code>","message":"<message>"} */
void http_reply_error(http_req_t *r, int status, const char *code, const char *message);
/* Adds a response header before replying. */
void http_add_header(http_req_t *r, const char *name, const char *value);

/* Matches 'path' against 'pattern' ("/hooks/:id"); on success stores the
 * :params in r (values owned by r, freed by the dispatcher) and returns true.
 * Segments compare literally except ":name", which matches one non-empty
 * segment; one trailing slash on the path is ignored. */
bool httpd_match(const char *pattern, const char *path, http_req_t *r);

const char *http_header(const http_req_t *r, const char *name);
const char *http_query(const http_req_t *r, const char *name);
const char *http_param(const http_req_t *r, const char *name);

#endif
