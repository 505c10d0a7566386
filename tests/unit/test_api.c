/* Unit tests for the subscription API's pure helpers: id syntax and the
 * PostgreSQL array literals that carry user text as one parameter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api.h"

#include <string.h>

static void test_valid_id(void **state)
{
    (void)state;
    assert_true(api_valid_id("6b0487a21b47e6c98b53db62"));
    assert_true(api_valid_id("sub_1-A"));
    assert_true(api_valid_id("a"));
    char max[65];
    memset(max, 'a', 64);
    max[64] = '\0';
    assert_true(api_valid_id(max));
    const char *bad[] = {"", "a b", "../x", "a/b", "x%00", "é", "a;b", "'", "a\"b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (api_valid_id(bad[i])) fail_msg("accepted '%s'", bad[i]);
    char long_id[66];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    assert_false(api_valid_id(long_id));
}

static void test_pg_array_quotes_everything(void **state)
{
    (void)state;
    strbuf_t b;
    strbuf_init(&b, 64);
    char items[3][EVENT_TYPE_MAX] = {"client/created", "*", "custom/x"};
    api_pg_array(&b, (const char(*)[EVENT_TYPE_MAX])items, 3);
    assert_string_equal(b.data, "{\"client/created\",\"*\",\"custom/x\"}");

    strbuf_reset(&b);
    const char *tricky[] = {"a\"b", "c\\d", "{e,f}", "NULL", "", " g "};
    api_pg_array_ptrs(&b, tricky, 6);
    assert_string_equal(b.data, "{\"a\\\"b\",\"c\\\\d\",\"{e,f}\",\"NULL\",\"\",\" g \"}");

    strbuf_reset(&b);
    api_pg_array_ptrs(&b, tricky, 0);
    assert_string_equal(b.data, "{}");
    strbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_id),
        cmocka_unit_test(test_pg_array_quotes_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
