/* Unit tests for the grey-list state, verdicts and period arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "greylist.h"

#include <string.h>

static void test_period_doubles_up_to_the_cap(void **state)
{
    (void)state;
    /* SPEC defaults: 60 s doubling to one day */
    int64_t want[] = {60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 30720, 61440, 86400, 86400};
    for (int level = 1; level <= 13; level++)
        assert_int_equal(greylist_period_s(level, 60, 86400), want[level - 1]);
    assert_int_equal(greylist_period_s(0, 60, 86400), 60);
    assert_int_equal(greylist_period_s(1000, 60, 86400), 86400); /* no overflow */
    assert_int_equal(greylist_period_s(1, 10, 5), 5);
    assert_int_equal(greylist_period_s(3, 1, 8), 4);
    assert_int_equal(greylist_period_s(5, 1, 8), 8);
}

static void test_verdicts(void **state)
{
    (void)state;
    greylist_state_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(greylist_verdict(&s, 3, false), GL_SEND);
    assert_true(greylist_idle(&s));
    /* failures on their way to PostgreSQL: below the threshold keep sending */
    s.pending_failures = 2;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_SEND);
    /* the one that reaches it: hold until PostgreSQL answers */
    s.pending_failures = 3;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_HOLD);
    s.pending_failures = 1;
    s.failures = 2;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_HOLD);
    /* the database said the count is high but did not grey-list (another
     * replica's threshold): nothing pending, so send */
    s.pending_failures = 0;
    s.failures = 5;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_SEND);
    s.failures = 0;
    s.until_ms = 1;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_PARK);
    assert_int_equal(greylist_verdict(&s, 3, true), GL_PARK);
    s.until_ms = 0;
    s.probing = true;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_PARK);
    s.probing = false;
    /* draining: new jobs go behind the parked ones, released ones go out */
    s.draining = true;
    assert_int_equal(greylist_verdict(&s, 3, false), GL_PARK);
    assert_int_equal(greylist_verdict(&s, 3, true), GL_SEND);
    assert_false(greylist_idle(&s));
}

static void test_apply_rows(void **state)
{
    (void)state;
    greylist_state_t s;
    memset(&s, 0, sizeof(s));
    greylist_row_t failing = {true, 2, 0, 0, false};
    assert_false(greylist_apply_row(&s, &failing));
    assert_int_equal(s.failures, 2);
    greylist_row_t grey = {true, 3, 1, 1795435200000, true};
    assert_true(greylist_apply_row(&s, &grey)); /* became grey-listed */
    assert_false(greylist_apply_row(&s, &grey)); /* already was */
    assert_false(s.draining);
    /* released with grey-list parked jobs left: draining */
    greylist_row_t released = {true, 0, 0, 0, true};
    assert_false(greylist_apply_row(&s, &released));
    assert_true(s.draining);
    assert_int_equal(s.until_ms, 0);
    /* a row without parked jobs while a park write is in flight keeps draining */
    s.park_ops = 1;
    greylist_row_t empty = {true, 0, 0, 0, false};
    greylist_apply_row(&s, &empty);
    assert_true(s.draining);
    s.park_ops = 0;
    greylist_apply_row(&s, &empty);
    assert_false(s.draining);
    assert_true(greylist_idle(&s));
    /* the row is gone: healthy */
    greylist_apply_row(&s, &grey);
    greylist_row_t missing = {false, 0, 0, 0, false};
    greylist_apply_row(&s, &missing);
    assert_int_equal(s.until_ms, 0);
    assert_int_equal(s.failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_period_doubles_up_to_the_cap),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_apply_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
