/* Unit tests for the worker's per-partition offset tracker: the commit
 * position never passes a job that is not done, in whatever order jobs
 * finish. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offtrack.h"

#include <stdbool.h>
#include <stdlib.h>

static void test_empty_and_in_order(void **state)
{
    (void)state;
    offtrack_t *t = offtrack_new(3, 7);
    assert_int_equal(offtrack_partition(t), 3);
    assert_int_equal(offtrack_gen(t), 7);
    assert_int_equal(offtrack_position(t), -1);
    assert_int_equal(offtrack_committed(t), -1);
    uint64_t a = offtrack_add(t, 10);
    uint64_t b = offtrack_add(t, 11);
    assert_int_equal(offtrack_position(t), 10);
    assert_int_equal(offtrack_outstanding(t), 2);
    offtrack_done(t, a);
    assert_int_equal(offtrack_position(t), 11);
    offtrack_done(t, b);
    assert_int_equal(offtrack_position(t), 12);
    assert_int_equal(offtrack_outstanding(t), 0);
    offtrack_done(t, b); /* idempotent */
    assert_int_equal(offtrack_position(t), 12);
    offtrack_set_committed(t, 12);
    assert_int_equal(offtrack_committed(t), 12);
    offtrack_free(t);
}

static void test_out_of_order_holds_the_lowest(void **state)
{
    (void)state;
    offtrack_t *t = offtrack_new(0, 1);
    uint64_t s[5];
    int64_t offs[5] = {100, 101, 105, 106, 110}; /* gaps: transaction markers */
    for (int i = 0; i < 5; i++)
        s[i] = offtrack_add(t, offs[i]);
    offtrack_done(t, s[4]);
    offtrack_done(t, s[2]);
    assert_int_equal(offtrack_position(t), 100);
    offtrack_done(t, s[0]);
    assert_int_equal(offtrack_position(t), 101);
    offtrack_done(t, s[1]);
    assert_int_equal(offtrack_position(t), 106);
    assert_int_equal(offtrack_outstanding(t), 1);
    offtrack_done(t, s[3]);
    assert_int_equal(offtrack_position(t), 111);
    offtrack_free(t);
}

static void test_never_goes_backwards(void **state)
{
    (void)state;
    offtrack_t *t = offtrack_new(0, 1);
    offtrack_done(t, offtrack_add(t, 50));
    offtrack_done(t, offtrack_add(t, 20)); /* a re-delivered older message */
    assert_int_equal(offtrack_position(t), 51);
    offtrack_free(t);
}

static void test_grows_past_its_ring(void **state)
{
    (void)state;
    offtrack_t *t = offtrack_new(0, 1);
    enum { N = 5000 };
    uint64_t *seq = malloc(sizeof(*seq) * N);
    for (int i = 0; i < N; i++)
        seq[i] = offtrack_add(t, i);
    /* finish all but the very first, from the back */
    for (int i = N - 1; i >= 1; i--)
        offtrack_done(t, seq[i]);
    assert_int_equal(offtrack_position(t), 0);
    assert_int_equal(offtrack_outstanding(t), 1);
    offtrack_done(t, seq[0]);
    assert_int_equal(offtrack_position(t), N);
    /* keeps working after the head moved around the ring */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            seq[i] = offtrack_add(t, (round + 1) * N + i);
        for (int i = 0; i < N; i += 2)
            offtrack_done(t, seq[i]);
        assert_int_equal(offtrack_position(t), (round + 1) * N + 1);
        for (int i = 1; i < N; i += 2)
            offtrack_done(t, seq[i]);
        assert_int_equal(offtrack_position(t), (round + 2) * N);
    }
    free(seq);
    offtrack_free(t);
}

static void test_random_completion_order(void **state)
{
    (void)state;
    enum { N = 2000 };
    offtrack_t *t = offtrack_new(0, 1);
    uint64_t seq[N];
    int order[N];
    bool done[N];
    for (int i = 0; i < N; i++) {
        seq[i] = offtrack_add(t, 1000 + 2 * i);
        order[i] = i;
        done[i] = false;
    }
    srand(42);
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        int x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    for (int k = 0; k < N; k++) {
        offtrack_done(t, seq[order[k]]);
        done[order[k]] = true;
        int first = 0;
        while (first < N && done[first])
            first++;
        int64_t want = first < N ? 1000 + 2 * first : 1000 + 2 * (N - 1) + 1;
        assert_int_equal(offtrack_position(t), want);
    }
    offtrack_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_in_order),
        cmocka_unit_test(test_out_of_order_holds_the_lowest),
        cmocka_unit_test(test_never_goes_backwards),
        cmocka_unit_test(test_grows_past_its_ring),
        cmocka_unit_test(test_random_completion_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
