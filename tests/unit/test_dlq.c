/* Unit tests for the dead-letter headers: the original headers are kept and
 * hookd-error / hookd-source / hookd-truncated are added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dlq.h"

#include <string.h>

static void expect_header(const rd_kafka_headers_t *h, const char *name, const char *value)
{
    const void *v;
    size_t len;
    assert_int_equal(rd_kafka_header_get_last(h, name, &v, &len), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(len, strlen(value));
    assert_memory_equal(v, value, len);
}

static void test_headers_without_originals(void **state)
{
    (void)state;
    rd_kafka_headers_t *h =
        dlq_headers(NULL, "invalid_json", "invalid JSON at byte 0", "hookd.events", 3, 12345);
    assert_int_equal(rd_kafka_header_cnt(h), 2);
    expect_header(h, DLQ_HEADER_ERROR, "invalid_json: invalid JSON at byte 0");
    expect_header(h, DLQ_HEADER_SOURCE, "hookd.events/3/12345");
    assert_false(dlq_is_truncated(h));
    dlq_mark_truncated(h, 2097152);
    assert_true(dlq_is_truncated(h));
    expect_header(h, DLQ_HEADER_TRUNCATED, "2097152");
    rd_kafka_headers_destroy(h);
    assert_false(dlq_is_truncated(NULL));
}

static void test_original_headers_are_kept(void **state)
{
    (void)state;
    rd_kafka_headers_t *orig = rd_kafka_headers_new(4);
    assert_int_equal(rd_kafka_header_add(orig, "ce_id", -1, "ce-3", 4), 0);
    assert_int_equal(rd_kafka_header_add(orig, "bin", -1, "\0\1\2", 3), 0);
    assert_int_equal(rd_kafka_header_add(orig, "null", -1, NULL, 0), 0);
    rd_kafka_headers_t *h =
        dlq_headers(orig, "missing_field", "missing header 'ce_type'", "t", 0, 0);
    assert_int_equal(rd_kafka_header_cnt(h), 5);
    expect_header(h, "ce_id", "ce-3");
    const void *v;
    size_t len;
    assert_int_equal(rd_kafka_header_get_last(h, "bin", &v, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "\0\1\2", 3);
    expect_header(h, DLQ_HEADER_ERROR, "missing_field: missing header 'ce_type'");
    expect_header(h, DLQ_HEADER_SOURCE, "t/0/0");
    assert_int_equal(rd_kafka_header_cnt(orig), 3); /* the original is not touched */
    rd_kafka_headers_destroy(h);
    rd_kafka_headers_destroy(orig);
}

static void test_long_message_is_cut(void **state)
{
    (void)state;
    char msg[4000];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    rd_kafka_headers_t *h = dlq_headers(NULL, "invalid_field", msg, "t", 1, 2);
    const void *v;
    size_t len;
    assert_int_equal(rd_kafka_header_get_last(h, DLQ_HEADER_ERROR, &v, &len), 0);
    assert_true(len < 1024 && len > 900);
    assert_memory_equal(v, "invalid_field: xxx", 18);
    rd_kafka_headers_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_without_originals),
        cmocka_unit_test(test_original_headers_are_kept),
        cmocka_unit_test(test_long_message_is_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
