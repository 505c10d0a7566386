/* libFuzzer target for the HTTP API's request handling: the real httpd
 * (shared/httpd.c, libevent's evhttp) with the real API routes of
 * hookd-ingest (services/ingest/api*.c) runs in-process on 127.0.0.1:0 with
 * no PostgreSQL connection. Each input is the raw bytes a client sends on
 * one fresh connection (one request, several pipelined ones, or garbage);
 * the client half-closes after sending and the loop runs until the server
 * closes. The process must survive, and what comes back must be a sequence
 * of well-formed HTTP/1.x responses whose JSON bodies are valid JSON.
 *
 * Requests that carry a token are authenticated as a fixed owner without
 * the database (api_set_test_scope; account or directory by input length
 * parity), so body parsing, field and URL checks and the event type syntax
 * checks run for real; anything that needs a query answers 503. Host names
 * in target URLs are not resolved (see getaddrinfo below): a fuzzer must
 * not send DNS queries. HOOKD_FUZZ_DUMP=1 prints every reply (to check
 * what seeds reach: fuzz_api -runs=0 tests/fuzz/corpus/api). */
#include "api.h"
#include "ingest.h"

#include "hookd/httpd.h"
#include "hookd/json.h"
#include "hookd/log.h"

#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODY 4096         /* small, so the 413 path is within reach */
#define REPLY_TIMEOUT_MS 3000 /* the server must close well before this */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_api: check failed at line %d: %s: ", __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* IP literals resolve as usual; host names fail as unknown, without DNS. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real) abort();
    struct addrinfo h;
    memset(&h, 0, sizeof(h));
    if (hints) h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    return real(node, service, &h, res);
}

static ingest_t ing;
static struct sockaddr_in server_addr;
static bool dump; /* HOOKD_FUZZ_DUMP=1: print every reply (for debugging seeds) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    bool help = false, version = false;
    char *no_env[] = {NULL};
    char *args[] = {"fuzz_api", NULL};
    signal(SIGPIPE, SIG_IGN);
    dump = getenv("HOOKD_FUZZ_DUMP") != NULL;
    if (hookd_config_load(&ing.cfg, HOOKD_SVC_INGEST, 1, args, no_env, NULL, &help, &version, err,
                          sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_api: config: %s\n", err);
        abort();
    }
    hookd_log_init("fuzz_api", HOOKD_LOG_ERROR + 1, 0);
    ing.base = event_base_new();
    if (!ing.base) abort();
    ing.httpd = httpd_new(ing.base, "127.0.0.1:0", MAX_BODY, err, sizeof(err));
    if (!ing.httpd) {
        fprintf(stderr, "fuzz_api: httpd: %s\n", err);
        abort();
    }
    httpd_add_standard_routes(ing.httpd, NULL, NULL);
    ing.api_pg = NULL; /* no database: every query answers 503 */
    if (api_register(&ing) < 0) abort();
    memset(&server_addr, 0, sizeof(server_addr));
    server_addr.sin_family = AF_INET;
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server_addr.sin_port = htons((uint16_t)httpd_port(ing.httpd));
    return 0;
}

/* ------------------------------------------------------------------ client */

typedef struct client {
    int fd;
    const uint8_t *req;
    size_t req_len, sent;
    bool shut; /* everything sent (or the server stopped reading): SHUT_WR done */
    bool done; /* the server closed the connection */
    bool timed_out;
    struct event *rev, *wev, *timer;
    strbuf_t resp;
} client_t;

static void finish_sending(client_t *c)
{
    c->shut = true;
    shutdown(c->fd, SHUT_WR);
    event_del(c->wev);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    client_t *c = arg;
    while (c->sent < c->req_len) {
        ssize_t w = send(fd, c->req + c->sent, c->req_len - c->sent, MSG_NOSIGNAL);
        if (w > 0) {
            c->sent += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        break; /* EPIPE / ECONNRESET: the server gave up on the request early */
    }
    finish_sending(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    client_t *c = arg;
    for (;;) {
        char buf[16384];
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r > 0) {
            strbuf_append(&c->resp, buf, (size_t)r);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        c->done = true; /* EOF, or a reset after the server closed with unread input */
        event_del(c->rev);
        return;
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_t *c = arg;
    c->timed_out = true;
}

/* ------------------------------------------------------------------ responses */

static bool token_char(char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* The line at p (without CRLF) and its length, or -1 when no CRLF follows. */
static long line_len(const char *p, const char *end)
{
    for (const char *q = p; q + 1 < end; q++)
        if (q[0] == '\r' && q[1] == '\n') return (long)(q - p);
    return -1;
}

/* Checks that resp[0..len) is a sequence of complete HTTP/1.x responses. */
static void check_responses(const char *resp, size_t len)
{
    const char *p = resp, *end = resp + len;
    int n = 0;
    while (p < end) {
        long ll = line_len(p, end);
        CHECK(ll >= 0, "response %d: no status line end in %.200s", n, p);
        /* evhttp echoes the version numbers of the request line as it read
         * them with %d, so "HTTP/0.1" and even "HTTP/-1.1" come back */
        const char *q = p + 5, *le = p + ll;
        CHECK(ll > 5 && strncmp(p, "HTTP/", 5) == 0, "response %d: bad status line %.*s", n,
              (int)ll, p);
        if (*q == '-') q++;
        size_t digits = strspn(q, "0123456789");
        CHECK(digits > 0 && q[digits] == '.', "bad version %.*s", (int)ll, p);
        q += digits + 1;
        if (*q == '-') q++;
        digits = strspn(q, "0123456789");
        CHECK(digits > 0 && q[digits] == ' ', "bad version %.*s", (int)ll, p);
        q += digits + 1;
        CHECK(le - q >= 4, "bad status line %.*s", (int)ll, p);
        int status = 0;
        for (int i = 0; i < 3; i++) {
            CHECK(q[i] >= '0' && q[i] <= '9', "bad status code %.*s", (int)ll, p);
            status = status * 10 + (q[i] - '0');
        }
        CHECK(status >= 100 && status <= 599 && q[3] == ' ', "bad status %.*s", (int)ll, p);
        for (q += 4; q < le; q++)
            CHECK(*q >= 0x20 && *q < 0x7f, "bad reason phrase %.*s", (int)ll, p);
        p += ll + 2;

        long content_length = -1;
        bool json = false, chunked = false, internal_error = false;
        for (;;) {
            ll = line_len(p, end);
            CHECK(ll >= 0, "response %d (%d): headers not terminated", n, status);
            if (ll == 0) {
                p += 2;
                break;
            }
            const char *colon = memchr(p, ':', (size_t)ll);
            CHECK(colon && colon > p, "bad header line %.*s", (int)ll, p);
            for (const char *h = p; h < colon; h++)
                CHECK(token_char(*h), "bad header name %.*s", (int)ll, p);
            for (const char *h = colon + 1; h < p + ll; h++)
                CHECK(*h != '\r' && *h != '\n' && *h != '\0', "bad header value %.*s", (int)ll, p);
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < p + ll && *v == ' ')
                v++;
            size_t vl = (size_t)(p + ll - v);
            if (nl == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
                CHECK(content_length < 0, "two Content-Length headers");
                CHECK(vl > 0 && vl < 10, "bad Content-Length %.*s", (int)ll, p);
                content_length = 0;
                for (size_t i = 0; i < vl; i++) {
                    CHECK(v[i] >= '0' && v[i] <= '9', "bad Content-Length %.*s", (int)ll, p);
                    content_length = content_length * 10 + (v[i] - '0');
                }
            } else if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
                json = vl >= 16 && strncasecmp(v, "application/json", 16) == 0;
            } else if (nl == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
                chunked = true;
            }
            p += ll + 2;
        }
        CHECK(!chunked, "evhttp replies are never chunked here");
        n++;
        if (status < 200) continue; /* 100 Continue: the final response follows */
        size_t rest = (size_t)(end - p);
        size_t body_len = 0;
        if (status != 204 && status != 304 && content_length < 0) {
            body_len = rest; /* HTTP/1.0 without keep-alive: the body runs to the close */
        } else if (status != 204 && status != 304 && content_length > 0) {
            /* A reply to HEAD has Content-Length but no body: then what
             * follows is the next response, or nothing. */
            bool head_reply = rest == 0 || (rest >= 7 && strncmp(p, "HTTP/1.", 7) == 0);
            if (!head_reply) {
                CHECK(rest >= (size_t)content_length,
                      "response %d (%d): body truncated (%zu of %ld)", n, status, rest,
                      content_length);
                body_len = (size_t)content_length;
            }
        }
        if (json && body_len > 0) {
            char err[128];
            char *copy = malloc(body_len);
            if (!copy) abort();
            memcpy(copy, p, body_len);
            json_type_t t = json_scan(copy, body_len, NULL, 0, NULL, err, sizeof(err));
            CHECK(t == JSON_OBJECT || t == JSON_ARRAY, "reply %d is not JSON (%s): %.*s", status,
                  err, (int)body_len, p);
            internal_error = memmem(copy, body_len, "\"error\":\"internal\"", 18) != NULL;
            free(copy);
        }
        /* With no database nothing may fail as an internal error (a handler
         * that forgot to reply gets {"error":"internal","message":"no reply"}). */
        CHECK(!internal_error, "internal error reply: %.*s", (int)body_len, p);
        p += body_len;
    }
}

/* ------------------------------------------------------------------ one input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client_t c;
    memset(&c, 0, sizeof(c));
    c.req = data;
    c.req_len = size;
    strbuf_init(&c.resp, 1024);
    api_set_test_scope(&ing, size % 2 ? "directory:dir_7" : "account:acct_42");

    /* Every input leaves a TIME_WAIT behind (the client closes first); on
     * loopback Linux reuses them after a second (tcp_tw_reuse=2), so running
     * out of ports is only a brief wait. */
    for (int attempt = 0;; attempt++) {
        c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(c.fd >= 0, "socket: %s", strerror(errno));
        if (connect(c.fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) == 0 ||
            errno == EINPROGRESS)
            break;
        CHECK(errno == EADDRNOTAVAIL && attempt < 50, "connect: %s", strerror(errno));
        close(c.fd);
        usleep(100 * 1000);
    }
    c.rev = event_new(ing.base, c.fd, EV_READ | EV_PERSIST, on_readable, &c);
    c.wev = event_new(ing.base, c.fd, EV_WRITE | EV_PERSIST, on_writable, &c);
    c.timer = evtimer_new(ing.base, on_timeout, &c);
    if (!c.rev || !c.wev || !c.timer) abort();
    struct timeval tv = {REPLY_TIMEOUT_MS / 1000, (REPLY_TIMEOUT_MS % 1000) * 1000};
    if (event_add(c.rev, NULL) < 0 || event_add(c.wev, NULL) < 0 || event_add(c.timer, &tv) < 0)
        abort();

    while (!c.done && !c.timed_out)
        if (event_base_loop(ing.base, EVLOOP_ONCE) < 0) abort();
    CHECK(!c.timed_out, "the server did not close the connection within %d ms (sent %zu of %zu)",
          REPLY_TIMEOUT_MS, c.sent, c.req_len);

    event_free(c.rev);
    event_free(c.wev);
    event_free(c.timer);
    close(c.fd);
    /* let the server finish with its side of the connection */
    event_base_loop(ing.base, EVLOOP_NONBLOCK);

    if (dump)
        fprintf(stderr, "---- %zu bytes back:\n%.*s\n", c.resp.len, (int)c.resp.len, c.resp.data);
    check_responses(c.resp.data, c.resp.len);
    strbuf_free(&c.resp);
    return 0;
}
