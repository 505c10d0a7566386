/* Unit tests for the in-flight offset tracker: the committable offset never
 * passes a message whose output is not acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offsets.h"

#include <stdlib.h>
#include <string.h>

static void test_empty(void **state)
{
    (void)state;
    offsets_t *o = offsets_new();
    assert_int_equal(offsets_committable(o), -1);
    assert_int_equal(offsets_in_flight(o), 0);
    assert_false(offsets_release(o, 0));
    assert_int_equal(offsets_offset_of(o, 0), -1);
    offsets_free(o);
}

static void test_message_without_output(void **state)
{
    (void)state;
    offsets_t *o = offsets_new();
    uint64_t s = offsets_begin(o, 10);
    assert_int_equal(s, 0);
    assert_int_equal(offsets_committable(o), -1);
    assert_true(offsets_release(o, s)); /* the guard */
    assert_int_equal(offsets_committable(o), 11);
    assert_int_equal(offsets_in_flight(o), 0);
    assert_false(offsets_release(o, s)); /* already done */
    offsets_free(o);
}

static void test_waits_for_every_hold(void **state)
{
    (void)state;
    offsets_t *o = offsets_new();
    uint64_t a = offsets_begin(o, 0);
    offsets_hold(o, a);
    offsets_hold(o, a);
    offsets_release(o, a); /* guard */
    uint64_t b = offsets_begin(o, 1);
    offsets_release(o, b); /* b has no output but waits behind a */
    assert_int_equal(offsets_committable(o), -1);
    assert_int_equal(offsets_in_flight(o), 2);
    offsets_release(o, a);
    assert_int_equal(offsets_committable(o), -1);
    offsets_release(o, a);
    assert_int_equal(offsets_committable(o), 2); /* a and b done together */
    assert_int_equal(offsets_in_flight(o), 0);
    offsets_free(o);
}

static void test_out_of_order_acks(void **state)
{
    (void)state;
    offsets_t *o = offsets_new();
    uint64_t s[5];
    for (int i = 0; i < 5; i++) {
        s[i] = offsets_begin(o, 100 + i);
        offsets_hold(o, s[i]);
        offsets_release(o, s[i]);
    }
    assert_int_equal(offsets_offset_of(o, s[3]), 103);
    offsets_release(o, s[2]);
    offsets_release(o, s[4]);
    assert_int_equal(offsets_committable(o), -1);
    offsets_release(o, s[0]);
    assert_int_equal(offsets_committable(o), 101);
    offsets_release(o, s[1]);
    assert_int_equal(offsets_committable(o), 103); /* 103 still waits */
    offsets_release(o, s[3]);
    assert_int_equal(offsets_committable(o), 105);
    offsets_free(o);
}

static void test_offset_gaps(void **state)
{
    (void)state;
    /* compacted topics and transaction markers leave gaps */
    offsets_t *o = offsets_new();
    offsets_release(o, offsets_begin(o, 5));
    offsets_release(o, offsets_begin(o, 9));
    assert_int_equal(offsets_committable(o), 10);
    offsets_free(o);
}

static void test_ring_growth_and_seq_expand(void **state)
{
    (void)state;
    offsets_t *o = offsets_new();
    enum { N = 5000 };
    uint64_t *s = malloc(sizeof(uint64_t) * N);
    for (int i = 0; i < N; i++) {
        s[i] = offsets_begin(o, i);
        offsets_hold(o, s[i]);
        offsets_release(o, s[i]);
    }
    assert_int_equal(offsets_in_flight(o), N);
    /* sequence numbers travel truncated: expand them back */
    for (int i = 0; i < N; i++)
        assert_int_equal(offsets_seq_expand(o, s[i] & 0x1fff, 13), s[i]);
    assert_int_equal(offsets_seq_expand(o, s[200] & ((1ULL << 40) - 1), 40), s[200]);
    for (int i = N - 1; i >= 0; i--)
        offsets_release(o, s[i]);
    assert_int_equal(offsets_committable(o), N);
    free(s);
    offsets_free(o);
}

static void test_seq_expand_wraps(void **state)
{
    (void)state;
    offsets_t *o = offsets_new();
    /* move the head past a multiple of 2^8 and check 8-bit expansion */
    for (int i = 0; i < 300; i++)
        offsets_release(o, offsets_begin(o, i));
    uint64_t a = offsets_begin(o, 300); /* seq 300 */
    uint64_t b = offsets_begin(o, 301);
    assert_int_equal(offsets_seq_expand(o, a & 0xff, 8), a);
    assert_int_equal(offsets_seq_expand(o, b & 0xff, 8), b);
    offsets_free(o);
}

/* Random holds/acks against a model: the committable offset is always one
 * past the longest fully acknowledged prefix. */
static void test_randomised(void **state)
{
    (void)state;
    enum { N = 20000 };
    offsets_t *o = offsets_new();
    int *holds = calloc(N, sizeof(int));
    int64_t *offs = calloc(N, sizeof(int64_t));
    int *pending = malloc(sizeof(int) * N * 4);
    int n_pending = 0, consumed = 0, prefix = 0;
    int64_t off = 0;
    srand(7);
    while (consumed < N || n_pending > 0) {
        if (consumed < N && (rand() % 3 != 0 || n_pending == 0)) {
            off += 1 + (rand() % 5 == 0);
            uint64_t s = offsets_begin(o, off);
            assert_int_equal(s, consumed);
            offs[consumed] = off;
            int k = rand() % 4;
            for (int j = 0; j < k; j++) {
                offsets_hold(o, s);
                pending[n_pending++] = consumed;
            }
            holds[consumed] = k;
            offsets_release(o, s);
            consumed++;
        } else {
            int j = rand() % n_pending;
            int s = pending[j];
            pending[j] = pending[--n_pending];
            assert_true(offsets_release(o, (uint64_t)s));
            holds[s]--;
        }
        while (prefix < consumed && holds[prefix] == 0)
            prefix++;
        int64_t expect = prefix == 0 ? -1 : offs[prefix - 1] + 1;
        assert_int_equal(offsets_committable(o), expect);
    }
    assert_int_equal(offsets_in_flight(o), 0);
    free(holds);
    free(offs);
    free(pending);
    offsets_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_message_without_output),
        cmocka_unit_test(test_waits_for_every_hold),
        cmocka_unit_test(test_out_of_order_acks),
        cmocka_unit_test(test_offset_gaps),
        cmocka_unit_test(test_ring_growth_and_seq_expand),
        cmocka_unit_test(test_seq_expand_wraps),
        cmocka_unit_test(test_randomised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
