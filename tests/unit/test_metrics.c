/* Unit tests for the metrics registry and Prometheus exposition format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/metrics.h"

#include <stdlib.h>
#include <string.h>

static int hook_calls;
static metric_t *hooked;

static void refresh(void *ud)
{
    (void)ud;
    hook_calls++;
    metric_set(hooked, 42);
}

static void test_exposition(void **state)
{
    (void)state;
    metric_t *a = metrics_counter("hookd_events_total", "Events consumed", NULL);
    metric_t *r1 = metrics_counter("hookd_rejected_total", "Rejected events", "reason=\"invalid_json\"");
    metrics_gauge("hookd_other", "Other", NULL);
    metric_t *r2 = metrics_counter("hookd_rejected_total", "Rejected events", "reason=\"too_large\"");
    assert_ptr_equal(r1, metrics_counter("hookd_rejected_total", "x", "reason=\"invalid_json\""));
    metric_inc(a);
    metric_add(a, 2);
    metric_inc(r1);
    metric_add(r2, 5);
    double b[] = {0.1, 1};
    metric_t *h = metrics_histogram("hookd_latency_seconds", "Latency", "outcome=\"success\"", b, 2);
    metric_observe(h, 0.05);
    metric_observe(h, 0.5);
    metric_observe(h, 3);
    hooked = metrics_gauge("hookd_lag", "Lag", "partition=\"0\"");
    metrics_on_render(refresh, NULL);

    strbuf_t out = {0};
    strbuf_init(&out, 256);
    metrics_render(&out);
    const char *t = out.data;
    assert_non_null(strstr(t, "# HELP hookd_events_total Events consumed\n# TYPE hookd_events_total counter\n"
                              "hookd_events_total 3\n"));
    /* one family header, series grouped even though registered apart */
    assert_non_null(strstr(t, "# TYPE hookd_rejected_total counter\n"
                              "hookd_rejected_total{reason=\"invalid_json\"} 1\n"
                              "hookd_rejected_total{reason=\"too_large\"} 5\n"));
    const char *first = strstr(t, "# TYPE hookd_rejected_total");
    assert_null(strstr(first + 1, "# TYPE hookd_rejected_total"));
    assert_non_null(strstr(t, "hookd_latency_seconds_bucket{outcome=\"success\",le=\"0.1\"} 1\n"
                              "hookd_latency_seconds_bucket{outcome=\"success\",le=\"1\"} 2\n"
                              "hookd_latency_seconds_bucket{outcome=\"success\",le=\"+Inf\"} 3\n"
                              "hookd_latency_seconds_sum{outcome=\"success\"} 3.55\n"
                              "hookd_latency_seconds_count{outcome=\"success\"} 3\n"));
    assert_non_null(strstr(t, "hookd_lag{partition=\"0\"} 42\n"));
    assert_int_equal(hook_calls, 1);
    assert_true(metric_value(r2) == 5);
    assert_true(metric_value(h) == 3);
    strbuf_free(&out);
    metrics_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_exposition)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
