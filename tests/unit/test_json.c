/* Unit tests for the validating JSON scanner, decoding and escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/json.h"

#include <stdlib.h>
#include <string.h>

static json_type_t scan(const char *s)
{
    char err[128];
    return json_scan(s, strlen(s), NULL, 0, NULL, err, sizeof(err));
}

static void test_valid_documents(void **state)
{
    (void)state;
    const char *ok[] = {"{}", "[]", "0", "-0.5e+10", "\"x\"", "true", "false", "null",
                        " { \"a\" : [1, 2, {\"b\": null}] } ", "\"\\u00e9\\ud83d\\ude00\"",
                        "\"caf\xc3\xa9\"", "123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (scan(ok[i]) == JSON_NONE) fail_msg("rejected valid: %s", ok[i]);
    assert_int_equal(scan("{}"), JSON_OBJECT);
    assert_int_equal(scan("[1]"), JSON_ARRAY);
}

static void test_invalid_documents(void **state)
{
    (void)state;
    const char *bad[] = {"", " ", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "01",
                         "1.", ".5", "-", "1e", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12g4\"",
                         "{} {}", "{\"a\":1}x", "'a'", "\"\x01\"", "\"\xc3\"", "\"\xc0\x80\"",
                         "\"\xed\xa0\x80\"", "\"\xf5\x80\x80\x80\"", "{a:1}", "[1 2]", "NaN",
                         "Infinity"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (scan(bad[i]) != JSON_NONE) fail_msg("accepted invalid #%zu: %s", i, bad[i]);
}

static void test_depth_limit(void **state)
{
    (void)state;
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    char err[128];
    assert_int_equal(json_scan(deep, 200, NULL, 0, NULL, err, sizeof(err)), JSON_NONE);
    assert_non_null(strstr(err, "nested too deeply"));
    memset(deep, '[', 60);
    memset(deep + 60, ']', 60);
    assert_int_equal(json_scan(deep, 120, NULL, 0, NULL, err, sizeof(err)), JSON_ARRAY);
}

static void test_members(void **state)
{
    (void)state;
    const char *doc = "{\"id\":\"e1\",\"n\":42,\"data\":{\"x\":[1,2]},\"k\\\"q\":true}";
    json_member_t m[8];
    int n;
    char err[64];
    assert_int_equal(json_scan(doc, strlen(doc), m, 8, &n, err, sizeof(err)), JSON_OBJECT);
    assert_int_equal(n, 4);
    const json_member_t *d = json_find(m, n, "data");
    assert_non_null(d);
    assert_int_equal(d->type, JSON_OBJECT);
    assert_int_equal(d->value.len, strlen("{\"x\":[1,2]}"));
    assert_memory_equal(d->value.p, "{\"x\":[1,2]}", d->value.len);
    assert_int_equal(json_find(m, n, "n")->type, JSON_NUMBER);
    assert_null(json_find(m, n, "missing"));
    /* more members than slots: count still reported */
    assert_int_equal(json_scan(doc, strlen(doc), m, 2, &n, err, sizeof(err)), JSON_OBJECT);
    assert_int_equal(n, 4);
}

static void test_decode(void **state)
{
    (void)state;
    char out[64];
    json_span_t s = {"\"a\\n\\u00e9\\ud83d\\ude00\\\"\"", 0};
    s.len = strlen(s.p);
    long n = json_string_decode(s, out, sizeof(out));
    assert_int_equal(n, 1 + 1 + 2 + 4 + 1);
    assert_string_equal(out, "a\n\xc3\xa9\xf0\x9f\x98\x80\"");
    json_span_t z = {"\"a\\u0000b\"", 10};
    assert_int_equal(json_string_decode(z, out, sizeof(out)), -1);
    json_span_t big = {"\"0123456789\"", 12};
    assert_int_equal(json_string_decode(big, out, 5), -1);
}

static void test_escape_roundtrip(void **state)
{
    (void)state;
    strbuf_t b = {0};
    strbuf_init(&b, 16);
    const char *raw = "q\"b\\n\n\x01\xc3\xa9";
    json_escape(&b, raw, strlen(raw));
    assert_string_equal(b.data, "\"q\\\"b\\\\n\\n\\u0001\xc3\xa9\"");
    char out[64];
    json_span_t s = {b.data, b.len};
    assert_int_equal(scan(b.data), JSON_STRING);
    json_string_decode(s, out, sizeof(out));
    assert_string_equal(out, raw);
    strbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents), cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_depth_limit),     cmocka_unit_test(test_members),
        cmocka_unit_test(test_decode),          cmocka_unit_test(test_escape_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
