/* Unit tests for the sender against a real HTTP/1.1 server on 127.0.0.1
 * running on the same libevent loop: outcome classes, timeouts, refused
 * and dropped connections, excerpts, SSRF refusal, the in-flight bound,
 * connection reuse, and abandoning requests in sender_free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/util.h"
#include "sender.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a small HTTP/1.1 server on the test's event base ----
 * Paths: /status/NNN answers NNN with body "ok"; /redirect answers 302 to
 * /target; /target counts hits; /big answers 100 KiB; /hang never answers;
 * /close closes without answering; /echo answers the request head and the
 * body length; anything else 204. A TLS ClientHello gets a plain-text 400. */

typedef struct conn conn_t;

typedef struct server {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    int accepted;    /* connections accepted */
    int requests;    /* requests parsed */
    int target_hits; /* requests to /target */
    int hung;        /* requests to /hang */
    int open;        /* connections open now */
    conn_t *conns;
} server_t;

struct conn {
    server_t *srv;
    struct bufferevent *bev;
    bool hung;        /* a request was never answered: ignore the rest */
    bool close_after; /* close once the output is written */
    conn_t *prev, *next;
};

#define BIG_LEN (100 * 1024)

static void conn_free(conn_t *c)
{
    server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    bufferevent_free(c->bev);
    srv->open--;
    free(c);
}

static void respond(conn_t *c, int status, const char *extra, const char *body, size_t body_len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n", status, extra,
                        body_len);
    evbuffer_add(out, body, body_len);
}

/* Handles complete requests in the input. Returns false if 'c' was freed. */
static bool serve(conn_t *c)
{
    server_t *srv = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!c->hung) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) return true;
        unsigned char first;
        evbuffer_copyout(in, &first, 1);
        if (first == 0x16) { /* TLS handshake to a plain HTTP server */
            evbuffer_drain(in, avail);
            evbuffer_add_printf(bufferevent_get_output(c->bev),
                                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            c->close_after = true;
            return true;
        }
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0) return true;
        size_t head_len = (size_t)end.pos + 4;
        char *head = malloc(head_len + 1);
        evbuffer_copyout(in, head, head_len);
        head[head_len] = '\0';
        size_t body_len = 0;
        for (char *h = strstr(head, "\r\n"); h && h[2] != '\r'; h = strstr(h + 2, "\r\n"))
            if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                body_len = strtoul(h + 2 + 15, NULL, 10);
        if (avail < head_len + body_len) {
            free(head);
            return true;
        }
        evbuffer_drain(in, head_len + body_len);
        srv->requests++;
        char path[256] = "";
        sscanf(head, "%*s %255s", path);
        if (strncmp(path, "/status/", 8) == 0) {
            respond(c, atoi(path + 8), "", "ok", 2);
        } else if (strcmp(path, "/redirect") == 0) {
            respond(c, 302, "Location: /target\r\n", "", 0);
        } else if (strcmp(path, "/target") == 0) {
            srv->target_hits++;
            respond(c, 200, "", "", 0);
        } else if (strcmp(path, "/big") == 0) {
            char *big = malloc(BIG_LEN);
            for (size_t i = 0; i < BIG_LEN; i++)
                big[i] = (char)('a' + i % 26);
            respond(c, 200, "", big, BIG_LEN);
            free(big);
        } else if (strcmp(path, "/hang") == 0) {
            srv->hung++;
            c->hung = true;
        } else if (strcmp(path, "/close") == 0) {
            free(head);
            conn_free(c);
            return false;
        } else if (strcmp(path, "/echo") == 0) {
            char tail[64];
            int n = snprintf(tail, sizeof(tail), "body-len=%zu", body_len);
            strbuf_t b;
            strbuf_init(&b, head_len + 64);
            strbuf_append(&b, head, head_len);
            strbuf_append(&b, tail, (size_t)n);
            respond(c, 200, "", b.data, b.len);
            strbuf_free(&b);
        } else {
            respond(c, 204, "", "", 0); /* (a Content-Length: 0 on 204 is tolerated) */
        }
        free(head);
    }
    evbuffer_drain(in, evbuffer_get_length(in));
    return true;
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    serve(arg);
}

static void on_conn_write(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;
    if (c->close_after && evbuffer_get_length(bufferevent_get_output(bev)) == 0) conn_free(c);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) conn_free(arg);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    server_t *srv = arg;
    conn_t *c = calloc(1, sizeof(*c));
    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->accepted++;
    srv->open++;
}

static void server_start(server_t *srv, struct event_base *base)
{
    memset(srv, 0, sizeof(*srv));
    srv->base = base;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv->lis =
        evconnlistener_new_bind(base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                1024, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(srv->lis);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&sin, &len),
                     0);
    srv->port = ntohs(sin.sin_port);
}

static void server_stop(server_t *srv)
{
    while (srv->conns)
        conn_free(srv->conns);
    evconnlistener_free(srv->lis);
}

/* ---- a TLS server in a thread (blocking OpenSSL), with a self-signed
 * certificate for IP:127.0.0.1 made on the spot ---- */

typedef struct tls_server {
    int fd, port, conns; /* conns: connections to serve, then the thread ends */
    int handshakes;      /* completed TLS handshakes */
    SSL_CTX *ctx;
    pthread_t tid;
    char cert_path[64];
} tls_server_t;

static void *tls_server_main(void *arg)
{
    tls_server_t *t = arg;
    for (int i = 0; i < t->conns; i++) {
        int c = accept(t->fd, NULL, NULL);
        if (c < 0) break;
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
            t->handshakes++;
            char buf[4096];
            size_t got = 0;
            int n;
            while (got < sizeof(buf) - 1 &&
                   (n = SSL_read(ssl, buf + got, (int)(sizeof(buf) - 1 - got))) > 0) {
                got += (size_t)n;
                buf[got] = '\0';
                char *end = strstr(buf, "\r\n\r\n");
                char *cl = strcasestr(buf, "\r\nContent-Length:");
                if (end && (!cl || got >= (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10)))
                    break;
            }
            const char *resp =
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntls";
            SSL_write(ssl, resp, (int)strlen(resp));
            SSL_shutdown(ssl);
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(c);
    }
    return NULL;
}

static void tls_server_start(tls_server_t *t, int conns)
{
    memset(t, 0, sizeof(*t));
    t->conns = conns;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"hookd test", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, san, -1);
    X509_add_ext(x, bc, -1);
    X509_EXTENSION_free(san);
    X509_EXTENSION_free(bc);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);

    snprintf(t->cert_path, sizeof(t->cert_path), "/tmp/hookd-test-ca-XXXXXX");
    int cfd = mkstemp(t->cert_path);
    assert_true(cfd >= 0);
    FILE *f = fdopen(cfd, "w");
    PEM_write_X509(f, x);
    fclose(f);

    t->ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(t->ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(t->ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);

    t->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(t->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(t->fd, 16), 0);
    assert_int_equal(getsockname(t->fd, (struct sockaddr *)&sin, &len), 0);
    t->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&t->tid, NULL, tls_server_main, t), 0);
}

static void tls_server_stop(tls_server_t *t)
{
    pthread_join(t->tid, NULL);
    close(t->fd);
    SSL_CTX_free(t->ctx);
    unlink(t->cert_path);
}

/* ---- harness ---- */

typedef struct rec {
    int calls;
    send_class_t cls;
    int status;
    int64_t latency_us;
    size_t excerpt_len;
    char excerpt[2048];
    char error[CURL_ERROR_SIZE + 128];
} rec_t;

typedef struct fixture {
    struct event_base *base;
    server_t srv;
    sender_t *sender;
    int done_calls; /* all callbacks of this test */
} fixture_t;

static fixture_t *F;
static bool in_post; /* set while sender_post runs: done must never run then */

static void on_done(const send_result_t *r, void *ctx)
{
    rec_t *rec = ctx;
    assert_false(in_post);
    rec->calls++;
    rec->cls = r->cls;
    rec->status = r->status;
    rec->latency_us = r->latency_us;
    rec->excerpt_len = r->excerpt_len;
    assert_true(r->excerpt_len <= 1024);
    memcpy(rec->excerpt, r->excerpt, r->excerpt_len);
    rec->excerpt[r->excerpt_len] = '\0';
    snprintf(rec->error, sizeof(rec->error), "%s", r->error);
    F->done_calls++;
}

static sender_opts_t default_opts(void)
{
    sender_opts_t o = {.timeout_ms = 5000,
                       .connect_timeout_ms = 2000,
                       .max_inflight = 64,
                       .allow_private = true,
                       .ca_bundle = NULL,
                       .user_agent = "hookd/test"};
    return o;
}

static void url_of(char *out, size_t size, const char *path)
{
    snprintf(out, size, "http://127.0.0.1:%d%s", F->srv.port, path);
}

static int post_url(const char *url, const char *body, rec_t *rec)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "webhook-id: abc");
    in_post = true;
    int rc = sender_post(F->sender, url, h, body, strlen(body), on_done, rec);
    in_post = false;
    return rc;
}

static int post(const char *path, rec_t *rec)
{
    char url[256];
    url_of(url, sizeof(url), path);
    return post_url(url, "{\"a\":1}", rec);
}

typedef bool (*pred_fn)(void *arg);

typedef struct waiter {
    pred_fn pred;
    void *arg;
    int64_t deadline_ms;
} waiter_t;

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    waiter_t *w = arg;
    if (w->pred(w->arg) || hookd_mono_ms() >= w->deadline_ms) event_base_loopbreak(F->base);
}

/* Runs the loop until 'pred' holds (checked every millisecond) or
 * 'timeout_ms' passes. Returns whether 'pred' held. */
static bool run_until(pred_fn pred, void *arg, int timeout_ms)
{
    waiter_t w = {pred, arg, hookd_mono_ms() + timeout_ms};
    struct timeval tick = {0, 1000};
    struct event *check = event_new(F->base, -1, EV_PERSIST, on_check, &w);
    event_add(check, &tick);
    event_base_dispatch(F->base);
    event_free(check);
    return pred(arg);
}

static int want_calls;
static bool calls_reached(void *arg)
{
    (void)arg;
    return F->done_calls >= want_calls;
}

static void wait_calls(int n, int timeout_ms)
{
    want_calls = n;
    assert_true(run_until(calls_reached, NULL, timeout_ms));
}

static void run_for(int ms)
{
    want_calls = 1 << 30;
    run_until(calls_reached, NULL, ms);
}

static int setup_opts(void **state, sender_opts_t o)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    F = f;
    server_start(&f->srv, f->base);
    f->sender = sender_new(f->base, &o);
    assert_non_null(f->sender);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, default_opts());
}

static int setup_short_timeout(void **state)
{
    sender_opts_t o = default_opts();
    o.timeout_ms = 300;
    return setup_opts(state, o);
}

static int setup_no_private(void **state)
{
    sender_opts_t o = default_opts();
    o.allow_private = false;
    return setup_opts(state, o);
}

static int setup_small(void **state)
{
    sender_opts_t o = default_opts();
    o.max_inflight = 2;
    return setup_opts(state, o);
}

static int setup_large(void **state)
{
    sender_opts_t o = default_opts();
    o.max_inflight = 1024; /* several multi handles */
    return setup_opts(state, o);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sender_free(f->sender);
    server_stop(&f->srv);
    event_base_free(f->base);
    free(f);
    F = NULL;
    return 0;
}

/* ---- tests ---- */

static void test_success(void **state)
{
    rec_t a = {0}, b = {0};
    assert_int_equal(post("/", &a), 0);
    assert_int_equal(post("/status/200", &b), 0);
    assert_int_equal(sender_inflight(F->sender), 2);
    assert_int_equal(a.calls + b.calls, 0); /* never from inside sender_post */
    wait_calls(2, 3000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.cls, SEND_SUCCESS);
    assert_int_equal(a.status, 204);
    assert_int_equal(a.excerpt_len, 0);
    assert_string_equal(a.error, "");
    assert_true(a.latency_us > 0 && a.latency_us < 3000000);
    assert_int_equal(b.cls, SEND_SUCCESS);
    assert_int_equal(b.status, 200);
    assert_string_equal(b.excerpt, "ok");
    assert_int_equal(sender_inflight(F->sender), 0);
    assert_string_equal(send_class_name(a.cls), "success");
}

static void test_status_classes(void **state)
{
    struct {
        const char *path;
        send_class_t cls;
        int status;
    } cases[] = {
        {"/status/410", SEND_GONE, 410},     {"/status/429", SEND_HTTP_429, 429},
        {"/status/500", SEND_HTTP_5XX, 500}, {"/status/503", SEND_HTTP_5XX, 503},
        {"/status/404", SEND_HTTP_4XX, 404}, {"/status/400", SEND_HTTP_4XX, 400},
        {"/status/201", SEND_SUCCESS, 201},  {"/status/301", SEND_REDIRECT, 301},
    };
    rec_t recs[HOOKD_ARRAY_LEN(cases)];
    memset(recs, 0, sizeof(recs));
    for (size_t i = 0; i < HOOKD_ARRAY_LEN(cases); i++)
        assert_int_equal(post(cases[i].path, &recs[i]), 0);
    wait_calls((int)HOOKD_ARRAY_LEN(cases), 3000);
    for (size_t i = 0; i < HOOKD_ARRAY_LEN(cases); i++) {
        assert_int_equal(recs[i].calls, 1);
        assert_int_equal(recs[i].cls, cases[i].cls);
        assert_int_equal(recs[i].status, cases[i].status);
        assert_string_equal(recs[i].error, "");
    }
}

static void test_redirect_not_followed(void **state)
{
    rec_t a = {0};
    assert_int_equal(post("/redirect", &a), 0);
    wait_calls(1, 3000);
    assert_int_equal(a.cls, SEND_REDIRECT);
    assert_int_equal(a.status, 302);
    run_for(50);
    assert_int_equal(F->srv.target_hits, 0);
    assert_int_equal(F->srv.requests, 1);
}

static void test_timeout(void **state)
{
    rec_t a = {0};
    int64_t t0 = hookd_mono_ms();
    assert_int_equal(post("/hang", &a), 0);
    wait_calls(1, 3000);
    int64_t took = hookd_mono_ms() - t0;
    assert_int_equal(a.cls, SEND_TIMEOUT);
    assert_int_equal(a.status, 0);
    assert_true(a.error[0] != '\0');
    assert_true(took >= 290 && took < 2000);
    assert_true(a.latency_us >= 290000 && a.latency_us < 2000000);
    assert_int_equal(F->srv.hung, 1);
}

static void test_connect_refused(void **state)
{
    /* a port that was just free: bind, read the port, close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    rec_t a = {0};
    assert_int_equal(post_url(url, "{}", &a), 0);
    wait_calls(1, 3000);
    assert_int_equal(a.cls, SEND_CONNECT);
    assert_int_equal(a.status, 0);
    assert_true(a.error[0] != '\0');
}

static void test_server_closes(void **state)
{
    rec_t a = {0};
    assert_int_equal(post("/close", &a), 0);
    wait_calls(1, 3000);
    assert_int_equal(a.cls, SEND_CONNECT);
    assert_int_equal(a.status, 0);
}

static void test_tls_error(void **state)
{
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", F->srv.port);
    rec_t a = {0};
    assert_int_equal(post_url(url, "{}", &a), 0);
    wait_calls(1, 3000);
    assert_int_equal(a.cls, SEND_TLS);
    assert_string_equal(send_class_name(a.cls), "tls");
}

static void test_excerpt_truncated(void **state)
{
    rec_t a = {0};
    assert_int_equal(post("/big", &a), 0);
    wait_calls(1, 3000);
    assert_int_equal(a.cls, SEND_SUCCESS);
    assert_int_equal(a.excerpt_len, 1024);
    for (size_t i = 0; i < 1024; i++)
        assert_int_equal(a.excerpt[i], 'a' + i % 26);
    /* the connection survives the discarded rest of the body */
    rec_t b = {0};
    assert_int_equal(post("/", &b), 0);
    wait_calls(2, 3000);
    assert_int_equal(b.cls, SEND_SUCCESS);
    assert_int_equal(F->srv.accepted, 1);
}

static void test_ssrf_refused(void **state)
{
    const char *hosts[] = {"127.0.0.1", "localhost", "[::1]", "127.1.2.3"};
    rec_t recs[4];
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < 4; i++) {
        char url[128];
        snprintf(url, sizeof(url), "http://%s:%d/", hosts[i], F->srv.port);
        assert_int_equal(post_url(url, "{}", &recs[i]), 0);
    }
    wait_calls(4, 3000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(recs[i].cls, SEND_SSRF);
        assert_int_equal(recs[i].status, 0);
        assert_string_equal(send_class_name(recs[i].cls), "ssrf");
    }
    run_for(20);
    assert_int_equal(F->srv.accepted, 0);
}

static void test_max_inflight(void **state)
{
    rec_t a = {0}, b = {0}, c = {0};
    assert_int_equal(post("/hang", &a), 0);
    assert_int_equal(post("/hang", &b), 0);
    assert_int_equal(sender_inflight(F->sender), 2);
    assert_int_equal(post("/", &c), -1); /* full: headers freed, no callback */
    assert_int_equal(sender_inflight(F->sender), 2);
    run_for(30);
    assert_int_equal(a.calls + b.calls + c.calls, 0);
    assert_int_equal(F->srv.hung, 2);
    /* teardown abandons both: no callbacks, no leaks */
}

static void test_invalid_url(void **state)
{
    rec_t a = {0};
    assert_int_equal(post_url("ftp://127.0.0.1/x", "{}", &a), -1);
    assert_int_equal(post_url("file:///etc/passwd", "{}", &a), -1);
    assert_int_equal(post_url("http://user:pw@127.0.0.1/", "{}", &a), -1);
    assert_int_equal(post_url("not a url", "{}", &a), -1);
    assert_int_equal(post_url("", "{}", &a), -1);
    assert_int_equal(sender_inflight(F->sender), 0);
    in_post = true;
    assert_int_equal(sender_post(F->sender, NULL, NULL, "", 0, on_done, &a), -1);
    in_post = false;
    run_for(10);
    assert_int_equal(a.calls, 0);
}

typedef struct chain {
    int left;
    rec_t rec;
    int failures;
} chain_t;

static void on_chain_done(const send_result_t *r, void *ctx)
{
    chain_t *ch = ctx;
    assert_false(in_post);
    F->done_calls++;
    if (r->cls != SEND_SUCCESS) ch->failures++;
    if (--ch->left > 0) {
        char url[128];
        url_of(url, sizeof(url), "/");
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        in_post = true;
        assert_int_equal(sender_post(F->sender, url, h, "{}", 2, on_chain_done, ch), 0);
        in_post = false;
    }
}

static void test_connection_reuse(void **state)
{
    chain_t ch = {.left = 100};
    char url[128];
    url_of(url, sizeof(url), "/");
    in_post = true;
    assert_int_equal(sender_post(F->sender, url, NULL, "{}", 2, on_chain_done, &ch), 0);
    in_post = false;
    wait_calls(100, 5000);
    assert_int_equal(ch.failures, 0);
    assert_int_equal(F->srv.requests, 100);
    assert_int_equal(F->srv.accepted, 1);
    assert_int_equal(sender_inflight(F->sender), 0);
}

static void test_concurrent(void **state)
{
    rec_t recs[60];
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < 60; i++)
        assert_int_equal(post(i % 2 ? "/" : "/status/200", &recs[i]), 0);
    assert_int_equal(sender_inflight(F->sender), 60);
    wait_calls(60, 5000);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(recs[i].calls, 1);
        assert_int_equal(recs[i].cls, SEND_SUCCESS);
    }
    assert_true(F->srv.accepted <= 60);
    /* a second wave to the same URLs reuses the pooled connections */
    int before = F->srv.accepted;
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < 60; i++)
        assert_int_equal(post(i % 2 ? "/" : "/status/200", &recs[i]), 0);
    wait_calls(120, 5000);
    assert_int_equal(F->srv.accepted, before);
}

static void test_request_head(void **state)
{
    /* over 1 MiB, where libcurl would otherwise send Expect: 100-continue */
    size_t len = 1200 * 1000;
    char *body = malloc(len + 1);
    memset(body, 'x', len);
    body[0] = '"';
    body[len - 1] = '"';
    body[len] = '\0';
    char url[128];
    url_of(url, sizeof(url), "/echo");
    rec_t a = {0};
    assert_int_equal(post_url(url, body, &a), 0);
    int64_t t0 = hookd_mono_ms();
    wait_calls(1, 3000);
    free(body);
    assert_true(hookd_mono_ms() - t0 < 900); /* no wait for a 100 Continue */
    assert_int_equal(a.cls, SEND_SUCCESS);
    assert_non_null(strstr(a.excerpt, "POST /echo HTTP/1.1\r\n"));
    assert_non_null(strstr(a.excerpt, "\r\nUser-Agent: hookd/test\r\n"));
    assert_non_null(strstr(a.excerpt, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(a.excerpt, "\r\nwebhook-id: abc\r\n"));
    assert_non_null(strstr(a.excerpt, "\r\nContent-Length: 1200000\r\n"));
    assert_null(strcasestr(a.excerpt, "Expect:"));
    assert_non_null(strstr(a.excerpt, "body-len=1200000"));

    /* without headers: a JSON content type still */
    rec_t b = {0};
    in_post = true;
    assert_int_equal(sender_post(F->sender, url, NULL, "[]", 2, on_done, &b), 0);
    in_post = false;
    wait_calls(2, 3000);
    assert_non_null(strstr(b.excerpt, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(b.excerpt, "body-len=2"));
}

static bool hung_reached(void *arg)
{
    return F->srv.hung >= *(int *)arg;
}

static void test_free_with_inflight(void **state)
{
    rec_t recs[10];
    memset(recs, 0, sizeof(recs));
    for (int i = 0; i < 10; i++)
        assert_int_equal(post("/hang", &recs[i]), 0);
    int n = 10;
    assert_true(run_until(hung_reached, &n, 3000));
    sender_free(F->sender);
    F->sender = NULL;
    run_for(30); /* the server sees the connections close */
    assert_int_equal(F->done_calls, 0);
    assert_int_equal(F->srv.open, 0);
    /* teardown's sender_free(NULL) is a no-op */
}

/* sender_cancel gives up one hanging request: its done runs at once as a
 * timeout with the reason, its connection is closed, its slot is free for
 * the next request; the other request and unknown contexts are untouched. */
static void test_cancel(void **state)
{
    rec_t a = {0}, b = {0}, c = {0};
    assert_int_equal(post("/hang", &a), 0);
    assert_int_equal(post("/hang", &b), 0);
    int n = 2;
    assert_true(run_until(hung_reached, &n, 3000));
    assert_int_equal(post("/", &c), -1); /* both slots taken */
    assert_int_equal(sender_cancel(F->sender, &a, "slots taken"), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.cls, SEND_TIMEOUT);
    assert_int_equal(a.status, 0);
    assert_string_equal(a.error, "slots taken");
    assert_int_equal(b.calls, 0);
    assert_int_equal(sender_inflight(F->sender), 1);
    assert_int_equal(sender_cancel(F->sender, &a, "again"), -1); /* not in flight any more */
    assert_int_equal(sender_cancel(F->sender, &c, "never posted"), -1);
    assert_int_equal(post("/", &c), 0);
    wait_calls(2, 3000);
    assert_int_equal(c.cls, SEND_SUCCESS);
    assert_int_equal(a.calls + b.calls, 1);
    run_for(30); /* the server sees the given-up connection close */
    assert_int_equal(F->srv.open, 2);
}

/* The server drops idle keep-alive connections (as on its keep-alive
 * timeout): the next request must still go through, on a new connection,
 * whether or not the loop saw the close first. */
static void test_idle_connection_closed(void **state)
{
    for (int round = 0; round < 2; round++) {
        rec_t a = {0}, b = {0};
        int calls = F->done_calls;
        assert_int_equal(post("/", &a), 0);
        wait_calls(calls + 1, 3000);
        assert_int_equal(a.cls, SEND_SUCCESS);
        int accepted = F->srv.accepted;
        run_for(10);
        while (F->srv.conns)
            conn_free(F->srv.conns);
        if (round == 0) run_for(20); /* the parked socket sees the close */
        assert_int_equal(post("/", &b), 0);
        wait_calls(calls + 2, 3000);
        assert_int_equal(b.cls, SEND_SUCCESS);
        assert_int_equal(F->srv.accepted, accepted + 1);
    }
}

static void test_many_urls(void **state)
{
    enum { N = 200, URLS = 50 };
    rec_t *recs = calloc(N, sizeof(*recs));
    char paths[URLS][32];
    for (int i = 0; i < URLS; i++)
        snprintf(paths[i], sizeof(paths[i]), "/ep/%d", i);
    for (int i = 0; i < N; i++)
        assert_int_equal(post(paths[i % URLS], &recs[i]), 0);
    assert_int_equal(sender_inflight(F->sender), N);
    wait_calls(N, 5000);
    for (int i = 0; i < N; i++)
        assert_int_equal(recs[i].cls, SEND_SUCCESS);
    int before = F->srv.accepted;
    assert_true(before <= N);
    /* the same URLs again, one at a time: every one finds an idle connection */
    for (int i = 0; i < URLS; i++) {
        assert_int_equal(post(paths[i], &recs[i]), 0);
        wait_calls(N + i + 1, 3000);
        assert_int_equal(recs[i].cls, SEND_SUCCESS);
    }
    assert_int_equal(F->srv.accepted, before);
    assert_int_equal(F->srv.requests, N + URLS);
    free(recs);
}

/* https with the CA bundle override: the receiver's self-signed
 * certificate is trusted only through it. */
static void test_tls_ca_bundle(void **state)
{
    tls_server_t t;
    tls_server_start(&t, 2);
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hook", t.port);

    /* the system store does not know the certificate */
    rec_t a = {0};
    assert_int_equal(post_url(url, "{}", &a), 0);
    wait_calls(1, 3000);
    assert_int_equal(a.cls, SEND_TLS);
    assert_true(a.error[0] != '\0');

    /* a second sender trusting it through ca_bundle */
    sender_opts_t o = default_opts();
    o.ca_bundle = t.cert_path;
    sender_t *trusting = sender_new(F->base, &o);
    assert_non_null(trusting);
    rec_t b = {0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    in_post = true;
    assert_int_equal(sender_post(trusting, url, h, "{\"a\":1}", 7, on_done, &b), 0);
    in_post = false;
    wait_calls(2, 3000);
    assert_int_equal(b.cls, SEND_SUCCESS);
    assert_int_equal(b.status, 200);
    assert_string_equal(b.excerpt, "tls");
    sender_free(trusting);
    tls_server_stop(&t);
    assert_int_equal(t.handshakes, 1);
}

static void on_done_free(const send_result_t *r, void *ctx)
{
    F->done_calls++;
    sender_free(F->sender);
    F->sender = NULL;
}

static void test_free_inside_callback(void **state)
{
    rec_t hang = {0};
    char url[128];
    url_of(url, sizeof(url), "/");
    assert_int_equal(post("/hang", &hang), 0);
    in_post = true;
    assert_int_equal(sender_post(F->sender, url, NULL, "{}", 2, on_done_free, NULL), 0);
    in_post = false;
    wait_calls(1, 3000);
    run_for(20);
    assert_int_equal(F->done_calls, 1);
    assert_int_equal(hang.calls, 0);
}

static void test_classify(void **state)
{
    assert_int_equal(send_classify(CURLE_OK, 204, false), SEND_SUCCESS);
    assert_int_equal(send_classify(CURLE_OK, 299, false), SEND_SUCCESS);
    assert_int_equal(send_classify(CURLE_OK, 410, false), SEND_GONE);
    assert_int_equal(send_classify(CURLE_OK, 429, false), SEND_HTTP_429);
    assert_int_equal(send_classify(CURLE_OK, 418, false), SEND_HTTP_4XX);
    assert_int_equal(send_classify(CURLE_OK, 502, false), SEND_HTTP_5XX);
    assert_int_equal(send_classify(CURLE_OK, 307, false), SEND_REDIRECT);
    assert_int_equal(send_classify(CURLE_OK, 0, false), SEND_OTHER);
    assert_int_equal(send_classify(CURLE_OK, 101, false), SEND_OTHER);
    assert_int_equal(send_classify(CURLE_OPERATION_TIMEDOUT, 0, false), SEND_TIMEOUT);
    assert_int_equal(send_classify(CURLE_COULDNT_RESOLVE_HOST, 0, false), SEND_DNS);
    assert_int_equal(send_classify(CURLE_COULDNT_CONNECT, 0, false), SEND_CONNECT);
    assert_int_equal(send_classify(CURLE_COULDNT_CONNECT, 0, true), SEND_SSRF);
    assert_int_equal(send_classify(CURLE_OPERATION_TIMEDOUT, 0, true), SEND_TIMEOUT);
    assert_int_equal(send_classify(CURLE_SEND_ERROR, 0, false), SEND_CONNECT);
    assert_int_equal(send_classify(CURLE_RECV_ERROR, 0, false), SEND_CONNECT);
    assert_int_equal(send_classify(CURLE_GOT_NOTHING, 0, false), SEND_CONNECT);
    assert_int_equal(send_classify(CURLE_SSL_CONNECT_ERROR, 0, false), SEND_TLS);
    assert_int_equal(send_classify(CURLE_PEER_FAILED_VERIFICATION, 0, false), SEND_TLS);
    assert_int_equal(send_classify(CURLE_SSL_CACERT_BADFILE, 0, false), SEND_TLS);
    assert_int_equal(send_classify(CURLE_URL_MALFORMAT, 0, false), SEND_OTHER);
    const char *names[SEND__COUNT] = {"success",  "gone",     "http_429", "http_4xx",
                                      "http_5xx", "redirect", "timeout",  "dns",
                                      "connect",  "tls",      "ssrf",     "other"};
    for (int i = 0; i < SEND__COUNT; i++)
        assert_string_equal(send_class_name(i), names[i]);
    assert_string_equal(send_class_name(SEND__COUNT), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test_setup_teardown(test_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup_short_timeout, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_ca_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_excerpt_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ssrf_refused, setup_no_private, teardown),
        cmocka_unit_test_setup_teardown(test_max_inflight, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_urls, setup_large, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
