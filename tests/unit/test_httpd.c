/* Unit tests for the router (pattern matching and parameter capture) and
 * the probe listener (a thread of its own, and the loop it watches). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/httpd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void release(http_req_t *r)
{
    for (int i = 0; i < r->n_params; i++) free(r->param_values[i]);
    memset(r, 0, sizeof(*r));
}

static void test_literal_routes(void **state)
{
    (void)state;
    http_req_t r;
    memset(&r, 0, sizeof(r));
    assert_true(httpd_match("/hooks", "/hooks", &r));
    assert_true(httpd_match("/hooks", "/hooks/", &r));
    assert_false(httpd_match("/hooks", "/hook", &r));
    assert_false(httpd_match("/hooks", "/hooks/x", &r));
    assert_false(httpd_match("/hooks", "/hooksx", &r));
    assert_false(httpd_match("/v1/webhooks", "/v1", &r));
    assert_true(httpd_match("/", "/", &r));
    release(&r);
}

static void test_params(void **state)
{
    (void)state;
    http_req_t r;
    memset(&r, 0, sizeof(r));
    assert_true(httpd_match("/v1/webhooks/:id/rotate-secret", "/v1/webhooks/abc123/rotate-secret", &r));
    assert_int_equal(r.n_params, 1);
    assert_string_equal(http_param(&r, "id"), "abc123");
    assert_null(http_param(&r, "i"));
    release(&r);

    assert_true(httpd_match("/a/:x/b/:y", "/a/1/b/2", &r));
    assert_string_equal(http_param(&r, "x"), "1");
    assert_string_equal(http_param(&r, "y"), "2");
    release(&r);

    assert_false(httpd_match("/hooks/:id", "/hooks/", &r)); /* empty segment */
    assert_int_equal(r.n_params, 0);
    assert_false(httpd_match("/hooks/:id", "/hooks/a/b", &r));
    assert_false(httpd_match("/a/:x/c", "/a/1/d", &r));
    assert_null(r.param_values[0]); /* freed on mismatch */
    release(&r);
}

/* GET 'path' on 127.0.0.1:port (HTTP/1.0); returns the status, the body in 'body'. */
static int get(int port, const char *path, char *body, size_t body_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    char buf[4096];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    int status = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &status), 1);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, body_size, "%s", b ? b + 4 : "");
    return status;
}

static bool not_ready(strbuf_t *checks, void *ud)
{
    (void)ud;
    strbuf_puts(checks, "{\"postgres\":\"down\"}");
    return false;
}

/* The probe listener answers on its own thread whether or not the service's
 * loop runs, and /healthz turns 503 once that loop has not turned for
 * 'silent_ms'; it serves /healthz and /readyz only. */
static void test_probe_listener(void **state)
{
    (void)state;
    char err[256], body[512];
    struct event_base *service = event_base_new();
    httpd_probe_t *p =
        httpd_probe_start(service, "127.0.0.1:0", 300, not_ready, NULL, err, sizeof(err));
    assert_non_null(p);
    int port = httpd_probe_port(p);
    assert_int_equal(get(port, "/healthz", body, sizeof(body)), 200);
    assert_int_equal(get(port, "/readyz", body, sizeof(body)), 503);
    assert_string_equal(body, "{\"status\":\"not_ready\",\"checks\":{\"postgres\":\"down\"}}");
    assert_int_equal(get(port, "/metrics", body, sizeof(body)), 404);

    /* the service's loop runs for 600 ms: still healthy right after */
    struct timeval run = {0, 600 * 1000};
    event_base_loopexit(service, &run);
    event_base_dispatch(service);
    assert_int_equal(get(port, "/healthz", body, sizeof(body)), 200);
    /* then does not turn for longer than 300 ms */
    usleep(500 * 1000);
    assert_int_equal(get(port, "/healthz", body, sizeof(body)), 503);
    assert_non_null(strstr(body, "\"status\":\"stalled\""));
    /* and turns again */
    event_base_loop(service, EVLOOP_NONBLOCK);
    assert_int_equal(get(port, "/healthz", body, sizeof(body)), 200);

    httpd_probe_stop(p);
    event_base_free(service);
    assert_null(httpd_probe_start(service = event_base_new(), "nowhere", 300, not_ready, NULL, err,
                                  sizeof(err)));
    event_base_free(service);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_routes),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_probe_listener),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
