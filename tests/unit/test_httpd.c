/* Unit tests for the router: pattern matching and parameter capture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/httpd.h"

#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_routes),
        cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
