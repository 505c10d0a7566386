/* HTTP delivery over libcurl multi driven by the worker's libevent loop:
 * connection reuse, HTTP/2 where offered, timeouts, a global in-flight
 * bound, redirects never followed, and the SSRF rules applied to the
 * address actually connected to. Knows nothing about jobs or batches. */
#ifndef HOOKD_WORKER_SENDER_H
#define HOOKD_WORKER_SENDER_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Outcome class of one request (also the error_class column and a metric
 * label via send_class_name). */
typedef enum {
    SEND_SUCCESS,   /* 2xx */
    SEND_GONE,      /* 410: the receiver asks us to stop */
    SEND_HTTP_429,  /* too many requests */
    SEND_HTTP_4XX,  /* other 4xx */
    SEND_HTTP_5XX,  /* 5xx */
    SEND_REDIRECT,  /* 3xx: never followed */
    SEND_TIMEOUT,   /* HOOKD_HTTP_TIMEOUT_MS / HOOKD_CONNECT_TIMEOUT_MS elapsed */
    SEND_DNS,       /* name did not resolve */
    SEND_CONNECT,   /* refused, unreachable, reset before a response */
    SEND_TLS,       /* handshake or certificate failure */
    SEND_SSRF,      /* resolved to a refused address (private, loopback, metadata...) */
    SEND_OTHER,
    SEND__COUNT
} send_class_t;

/* "success", "gone", "http_429", "http_4xx", "http_5xx", "redirect",
 * "timeout", "dns", "connect", "tls", "ssrf", "other". */
const char *send_class_name(send_class_t c);

/* The class of a finished request from libcurl's result code 'curl_code'
 * (a CURLcode), the HTTP 'status' (0 when none) and whether an address was
 * refused by the SSRF rules ('refused'). Used by the sender; exposed for
 * tests and for callers that classify errors of their own. */
send_class_t send_classify(int curl_code, int status, bool refused);

typedef struct send_result {
    send_class_t cls;
    int status;              /* HTTP status, 0 when none */
    int64_t latency_us;      /* from start to completion */
    const char *excerpt;     /* first <= 1 KiB of the response body (not NUL-terminated) */
    size_t excerpt_len;
    const char *error;       /* libcurl's message for transport errors, "" otherwise */
} send_result_t;

/* Called exactly once per accepted request, on the event loop thread.
 * 'r' and its strings are valid only during the call. */
typedef void (*sender_done_fn)(const send_result_t *r, void *ctx);

typedef struct sender_opts {
    int64_t timeout_ms;         /* whole request */
    int64_t connect_timeout_ms; /* TCP + TLS */
    int max_inflight;           /* requests at once, all endpoints */
    bool allow_private;         /* HOOKD_ALLOW_PRIVATE_TARGETS */
    bool require_https;         /* HOOKD_REQUIRE_HTTPS: plain http:// URLs are refused */
    const char *ca_bundle;      /* NULL or "" = system store */
    const char *user_agent;     /* "hookd/<version>" */
} sender_opts_t;

typedef struct sender sender_t;

/* Creates a sender on 'base'. Returns NULL on failure. */
sender_t *sender_new(struct event_base *base, const sender_opts_t *opts);

/* Starts a POST of 'body' to 'url'. 'headers' (may be NULL) is owned by the
 * sender from now on, whatever the result. 'body' is NOT copied: it must
 * stay valid until 'done' runs. Returns 0 when accepted (done will be called
 * later, never from inside this call), or -1 when the sender is at
 * max_inflight or the URL is unusable or refused by require_https (done is
 * not called). */
int sender_post(sender_t *s, const char *url, struct curl_slist *headers, const char *body,
                size_t body_len, sender_done_fn done, void *ctx);

/* Gives up the request in flight that was posted with 'ctx': its
 * connection is closed and its 'done' runs now, before this returns, as a
 * SEND_TIMEOUT with 'why' as the error. Not to be called from inside a
 * 'done' callback. Returns -1 when no request of 'ctx' is in flight. */
int sender_cancel(sender_t *s, void *ctx, const char *why);

/* Requests currently in flight. */
int sender_inflight(const sender_t *s);

/* Frees the sender. Requests still in flight are abandoned: their callbacks
 * are NOT called (the caller persists/replays them). */
void sender_free(sender_t *s);

#endif
