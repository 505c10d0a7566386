/* Unit tests for the retry arithmetic of the scheduler: schedule steps,
 * jitter bounds, and the end of the schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "scheduler.h"

#include <string.h>

static void test_schedule_without_jitter(void **state)
{
    (void)state;
    int64_t s[] = {5000, 30000, 120000, 600000, 3600000};
    for (int a = 1; a <= 5; a++)
        assert_int_equal(scheduler_retry_delay_ms(s, 5, a, 0, 12345), s[a - 1]);
    assert_int_equal(scheduler_retry_delay_ms(s, 5, 6, 0, 1), -1); /* failed */
    assert_int_equal(scheduler_retry_delay_ms(s, 5, 0, 0, 1), -1);
    assert_int_equal(scheduler_retry_delay_ms(s, 0, 1, 20, 1), -1);
}

static void test_jitter_stays_within_bounds_and_varies(void **state)
{
    (void)state;
    int64_t s[] = {10000};
    int64_t lo = INT64_MAX, hi = 0;
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t d = scheduler_retry_delay_ms(s, 1, 1, 20, x);
        assert_true(d >= 8000 && d <= 12000);
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    assert_true(lo < 8200 && hi > 11800); /* spread over the whole range */
    assert_int_equal(scheduler_retry_delay_ms(s, 1, 1, 100, 0), 0); /* -100 %: never negative */
}

static void test_lease_covers_window_and_timeout(void **state)
{
    (void)state;
    hookd_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.batch_window_ms = 5000;
    cfg.http_timeout_ms = 10000;
    assert_true(scheduler_lease_ms(&cfg) > cfg.batch_window_ms + cfg.http_timeout_ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_without_jitter),
        cmocka_unit_test(test_jitter_stays_within_bounds_and_varies),
        cmocka_unit_test(test_lease_covers_window_and_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
