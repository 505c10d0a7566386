/* evhttp-based router with JSON errors for every failure we control. */
#include "hookd/httpd.h"
#include "hookd/config.h"
#include "hookd/json.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/util.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_MAX_ROUTES 64

typedef struct route {
    char method[8];
    char *pattern;
    http_handler_fn fn;
    void *ud;
} route_t;

struct httpd {
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    size_t max_body;
    route_t routes[HTTPD_MAX_ROUTES];
    int n_routes;
    httpd_ready_fn ready;
    void *ready_ud;
};

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "?";
}

bool httpd_match(const char *pattern, const char *path, http_req_t *r)
{
    const char *p = pattern, *s = path;
    int n = 0;
    while (*p && *s) {
        if (*p == ':') {
            const char *pe = strchr(p, '/');
            size_t seg = strcspn(s, "/");
            if (seg == 0 || n >= HTTPD_MAX_PARAMS) goto no;
            r->param_names[n] = p + 1; /* up to '/' or end; compared by http_param */
            r->param_values[n] = hookd_strndup(s, seg);
            n++;
            s += seg;
            p = pe ? pe : p + strlen(p);
            continue;
        }
        if (*p != *s) goto no;
        p++;
        s++;
    }
    /* allow one trailing slash on the request */
    if (*p == '\0' && (*s == '\0' || (s[0] == '/' && s[1] == '\0'))) {
        r->n_params = n;
        return true;
    }
no:
    for (int i = 0; i < n; i++) {
        free(r->param_values[i]);
        r->param_values[i] = NULL;
    }
    return false;
}

const char *http_param(const http_req_t *r, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < r->n_params; i++) {
        const char *pn = r->param_names[i];
        if (strncmp(pn, name, len) == 0 && (pn[len] == '\0' || pn[len] == '/'))
            return r->param_values[i];
    }
    return NULL;
}

const char *http_header(const http_req_t *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *http_query(const http_req_t *r, const char *name)
{
    return r->query ? evhttp_find_header(r->query, name) : NULL;
}

void http_add_header(http_req_t *r, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Status";
}

void http_reply(http_req_t *r, int status, const char *content_type, const char *body, size_t len)
{
    if (r->replied) return;
    r->replied = true;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    if (status != 204 && content_type) evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_reply(r->ev, 500, "Internal Server Error", NULL);
        return;
    }
    if (status != 204 && len > 0) evbuffer_add(b, body, len);
    evhttp_send_reply(r->ev, status, reason(status), b);
    evbuffer_free(b);
}

void http_reply_json(http_req_t *r, int status, const char *json)
{
    http_reply(r, status, "application/json", json, strlen(json));
}

void http_reply_error(http_req_t *r, int status, const char *code, const char *message)
{
    strbuf_t b;
    strbuf_init(&b, 128);
    strbuf_puts(&b, "{\"error\":");
    json_escape(&b, code, strlen(code));
    strbuf_puts(&b, ",\"message\":");
    json_escape(&b, message, strlen(message));
    strbuf_putc(&b, '}');
    http_reply(r, status, "application/json", b.data, b.len);
    strbuf_free(&b);
}

static void dispatch(struct evhttp_request *ev, void *arg)
{
    httpd_t *h = arg;
    http_req_t r;
    memset(&r, 0, sizeof(r));
    r.ev = ev;
    r.method = method_name(evhttp_request_get_command(ev));
    struct evkeyvalq query;
    query.tqh_first = NULL;
    query.tqh_last = &query.tqh_first;

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!raw_path || raw_path[0] != '/') {
        http_reply_error(&r, 400, "bad_request", "malformed request path");
        goto done;
    }
    size_t plen = 0;
    r.path = evhttp_uridecode(raw_path, 0, &plen);
    if (!r.path || strlen(r.path) != plen) {
        http_reply_error(&r, 400, "bad_request", "malformed request path");
        goto done;
    }
    const char *q = evhttp_uri_get_query(uri);
    if (q && evhttp_parse_query_str(q, &query) == 0) r.query = &query;

    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    r.body_len = evbuffer_get_length(in);
    if (r.body_len > h->max_body) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body larger than %zu bytes", h->max_body);
        http_reply_error(&r, 413, "payload_too_large", msg);
        goto done;
    }
    r.body = malloc(r.body_len + 1);
    if (!r.body) abort();
    evbuffer_copyout(in, r.body, r.body_len);
    r.body[r.body_len] = '\0';

    bool path_matched = false;
    char allow[64] = "";
    for (int i = 0; i < h->n_routes; i++) {
        route_t *rt = &h->routes[i];
        if (!httpd_match(rt->pattern, r.path, &r)) continue;
        bool same = strcmp(rt->method, r.method) == 0 ||
                    (strcmp(r.method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
        if (same) {
            rt->fn(&r, rt->ud);
            if (!r.replied) http_reply_error(&r, 500, "internal", "no reply");
            goto done;
        }
        path_matched = true;
        if (!strstr(allow, rt->method)) {
            if (allow[0]) strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
            strncat(allow, rt->method, sizeof(allow) - strlen(allow) - 1);
        }
        for (int k = 0; k < r.n_params; k++) {
            free(r.param_values[k]);
            r.param_values[k] = NULL;
        }
        r.n_params = 0;
    }
    if (path_matched) {
        http_add_header(&r, "Allow", allow);
        http_reply_error(&r, 405, "method_not_allowed", "method not allowed on this path");
    } else {
        http_reply_error(&r, 404, "not_found", "no such endpoint");
    }
done:
    for (int k = 0; k < r.n_params; k++) free(r.param_values[k]);
    evhttp_clear_headers(&query);
    free(r.body);
    free(r.path);
}

httpd_t *httpd_new(struct event_base *base, const char *addr, size_t max_body, char *err,
                   size_t err_size)
{
    char host[256];
    int port;
    if (hookd_config_parse_addr(addr, host, sizeof(host), &port) < 0) {
        snprintf(err, err_size, "bad listen address '%s'", addr);
        return NULL;
    }
    httpd_t *h = calloc(1, sizeof(*h));
    if (!h) abort();
    h->max_body = max_body;
    h->http = evhttp_new(base);
    if (!h->http) {
        snprintf(err, err_size, "evhttp_new failed");
        goto fail;
    }
    /* Bodies between max_body and 4x are answered with our JSON 413; beyond
     * that evhttp stops reading and answers 413 itself. */
    evhttp_set_max_body_size(h->http, (ev_ssize_t)(max_body * 4 < 1048576 ? 1048576 : max_body * 4));
    evhttp_set_max_headers_size(h->http, 32768);
    evhttp_set_timeout(h->http, 30);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(h->http, dispatch, h);
    h->sock = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (!h->sock) {
        snprintf(err, err_size, "cannot listen on %s", addr);
        goto fail;
    }
    return h;
fail:
    httpd_free(h);
    return NULL;
}

int httpd_port(const httpd_t *h)
{
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h->sock);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void httpd_free(httpd_t *h)
{
    if (!h) return;
    if (h->http) evhttp_free(h->http);
    for (int i = 0; i < h->n_routes; i++) free(h->routes[i].pattern);
    free(h);
}

int httpd_route(httpd_t *h, const char *method, const char *pattern, http_handler_fn fn, void *ud)
{
    if (h->n_routes >= HTTPD_MAX_ROUTES) return -1;
    route_t *r = &h->routes[h->n_routes++];
    snprintf(r->method, sizeof(r->method), "%s", method);
    r->pattern = strdup(pattern);
    r->fn = fn;
    r->ud = ud;
    return 0;
}

static void on_healthz(http_req_t *r, void *ud)
{
    (void)ud;
    http_reply_json(r, 200, "{\"status\":\"ok\",\"version\":\"" HOOKD_VERSION "\"}");
}

static void on_readyz(http_req_t *r, void *ud)
{
    httpd_t *h = ud;
    strbuf_t checks, body;
    strbuf_init(&checks, 128);
    strbuf_init(&body, 192);
    bool ok = h->ready ? h->ready(&checks, h->ready_ud) : true;
    strbuf_printf(&body, "{\"status\":\"%s\",\"checks\":%s}", ok ? "ready" : "not_ready",
                  checks.len ? checks.data : "{}");
    http_reply(r, ok ? 200 : 503, "application/json", body.data, body.len);
    strbuf_free(&checks);
    strbuf_free(&body);
}

static void on_metrics(http_req_t *r, void *ud)
{
    (void)ud;
    strbuf_t b;
    strbuf_init(&b, 16384);
    metrics_render(&b);
    http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    strbuf_free(&b);
}

void httpd_add_standard_routes(httpd_t *h, httpd_ready_fn ready, void *ud)
{
    h->ready = ready;
    h->ready_ud = ud;
    httpd_route(h, "GET", "/healthz", on_healthz, h);
    httpd_route(h, "GET", "/readyz", on_readyz, h);
    httpd_route(h, "GET", "/metrics", on_metrics, h);
}

/* ---------------------------------------------------------------- probes */

#define PROBE_BEAT_MS 1000 /* the service's loop stamps the time this often */

struct httpd_probe {
    struct event_base *base;
    httpd_t *h;
    int stop_fd[2];
    struct event *stop_ev;
    struct event *beat_ev; /* on the service's loop */
    _Atomic int64_t beat_ms;
    int64_t silent_ms;
    pthread_t thread;
};

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    httpd_probe_t *p = arg;
    atomic_store(&p->beat_ms, hookd_mono_ms());
}

/* The probe address's /healthz: the process answers, and the service's own
 * loop has turned within silent_ms, so a wedged loop still fails the
 * liveness probe. */
static void on_probe_healthz(http_req_t *r, void *ud)
{
    httpd_probe_t *p = ud;
    int64_t silent = hookd_mono_ms() - atomic_load(&p->beat_ms);
    if (silent > p->silent_ms) {
        char body[128];
        snprintf(body, sizeof(body), "{\"status\":\"stalled\",\"loop_silent_ms\":%lld}",
                 (long long)silent);
        http_reply_json(r, 503, body);
        return;
    }
    on_healthz(r, NULL);
}

static void on_probe_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void *probe_run(void *arg)
{
    httpd_probe_t *p = arg;
    event_base_dispatch(p->base);
    return NULL;
}

static void probe_free(httpd_probe_t *p)
{
    if (p->beat_ev) event_free(p->beat_ev);
    if (p->stop_ev) event_free(p->stop_ev);
    httpd_free(p->h);
    if (p->base) event_base_free(p->base);
    for (int i = 0; i < 2; i++)
        if (p->stop_fd[i] >= 0) close(p->stop_fd[i]);
    free(p);
}

httpd_probe_t *httpd_probe_start(struct event_base *service_base, const char *addr,
                                 int64_t silent_ms, httpd_ready_fn ready, void *ud, char *err,
                                 size_t err_size)
{
    httpd_probe_t *p = calloc(1, sizeof(*p));
    if (!p) abort();
    p->silent_ms = silent_ms;
    p->stop_fd[0] = p->stop_fd[1] = -1;
    atomic_store(&p->beat_ms, hookd_mono_ms());
    int64_t beat_ms = silent_ms / 4 < PROBE_BEAT_MS ? silent_ms / 4 : PROBE_BEAT_MS;
    struct timeval beat = {(time_t)(beat_ms / 1000), (suseconds_t)(beat_ms % 1000) * 1000};
    if (!(p->base = event_base_new())) {
        snprintf(err, err_size, "event_base_new failed");
        goto fail;
    }
    if (!(p->h = httpd_new(p->base, addr, 1024, err, err_size))) goto fail;
    p->h->ready = ready;
    p->h->ready_ud = ud;
    httpd_route(p->h, "GET", "/healthz", on_probe_healthz, p);
    httpd_route(p->h, "GET", "/readyz", on_readyz, p->h);
    if (!(p->beat_ev = event_new(service_base, -1, EV_PERSIST, on_beat, p)) ||
        event_add(p->beat_ev, &beat) < 0 || pipe(p->stop_fd) < 0 ||
        !(p->stop_ev = event_new(p->base, p->stop_fd[0], EV_READ, on_probe_stop, p->base)) ||
        event_add(p->stop_ev, NULL) < 0 || pthread_create(&p->thread, NULL, probe_run, p) != 0) {
        snprintf(err, err_size, "cannot start the probe thread");
        goto fail;
    }
    return p;
fail:
    probe_free(p);
    return NULL;
}

int httpd_probe_port(const httpd_probe_t *p)
{
    return httpd_port(p->h);
}

void httpd_probe_stop(httpd_probe_t *p)
{
    if (!p) return;
    char c = 1;
    if (write(p->stop_fd[1], &c, 1) != 1) abort(); /* a fresh pipe takes one byte */
    pthread_join(p->thread, NULL);
    probe_free(p);
}
