/* Unit tests for the configuration table: defaults, environment, flags,
 * bounds, errors, schedules, passthrough and the README table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/config.h"

#include <stdlib.h>
#include <string.h>

static int load(hookd_config_t *cfg, char **env, int argc, char **argv, char *err)
{
    bool help, version;
    char *default_argv[] = {"prog", NULL};
    if (!argv) {
        argv = default_argv;
        argc = 1;
    }
    return hookd_config_load(cfg, HOOKD_SVC_ALL, argc, argv, env, NULL, &help, &version, err, 512);
}

static void test_defaults(void **state)
{
    (void)state;
    hookd_config_t cfg;
    char err[512];
    char *env[] = {NULL};
    assert_int_equal(load(&cfg, env, 0, NULL, err), 0);
    assert_string_equal(cfg.jobs_topic, "hookd.deliveries");
    assert_string_equal(cfg.http_addr, "0.0.0.0:8080");
    assert_string_equal(cfg.worker_http_addr, "0.0.0.0:8090");
    assert_int_equal(cfg.batch_window_ms, 5000);
    assert_int_equal(cfg.batch_max, 100);
    assert_int_equal(cfg.batch_max_bytes, 262144);
    assert_int_equal(cfg.greylist_threshold, 3);
    assert_int_equal(cfg.greylist_base_s, 60);
    assert_int_equal(cfg.greylist_max_s, 86400);
    assert_int_equal(cfg.park_retention_h, 72);
    assert_int_equal(cfg.http_timeout_ms, 10000);
    assert_true(cfg.require_https);
    assert_false(cfg.allow_private_targets);
    assert_true(cfg.auto_migrate);
    assert_int_equal(cfg.retry_schedule_len, 5);
    assert_int_equal(cfg.retry_schedule_ms[0], 5000);
    assert_int_equal(cfg.retry_schedule_ms[2], 120000);
    assert_int_equal(cfg.retry_schedule_ms[4], 3600000);
    assert_int_equal(cfg.delivery_log, DELIVERY_LOG_ALL);
    hookd_config_free(&cfg);
}

static void test_env_and_flags(void **state)
{
    (void)state;
    hookd_config_t cfg;
    char err[512];
    char *env[] = {"HOOKD_BATCH_MAX=7", "HOOKD_REQUIRE_HTTPS=no", "HOOKD_LOG_FORMAT=JSON",
                   "HOOKD_DELIVERY_LOG=failures", "OTHER=1", NULL};
    char *argv[] = {"prog", "--batch-max=9", "--greylist-base-s", "2", NULL};
    assert_int_equal(load(&cfg, env, 4, argv, err), 0);
    assert_int_equal(cfg.batch_max, 9); /* the flag wins over the environment */
    assert_int_equal(cfg.greylist_base_s, 2);
    assert_false(cfg.require_https);
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_int_equal(cfg.delivery_log, DELIVERY_LOG_FAILURES);
    hookd_config_free(&cfg);
}

static void expect_error(char **env, int argc, char **argv, const char *needle)
{
    hookd_config_t cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, env, argc, argv, err), -1);
    if (!strstr(err, needle)) fail_msg("error '%s' does not contain '%s'", err, needle);
    assert_null(strchr(err, '\n')); /* one line */
    hookd_config_free(&cfg);
}

static void test_errors_name_the_variable(void **state)
{
    (void)state;
    char *e1[] = {"HOOKD_BATCH_MAX=abc", NULL};
    expect_error(e1, 0, NULL, "HOOKD_BATCH_MAX=abc");
    char *e2[] = {"HOOKD_BATCH_MAX=0", NULL};
    expect_error(e2, 0, NULL, "between 1 and 10000");
    char *e3[] = {"HOOKD_BATCH_MAX=10001", NULL};
    expect_error(e3, 0, NULL, "HOOKD_BATCH_MAX");
    char *e4[] = {"HOOKD_REQUIRE_HTTPS=maybe", NULL};
    expect_error(e4, 0, NULL, "HOOKD_REQUIRE_HTTPS=maybe");
    char *e5[] = {"HOOKD_LOG_LEVEL=loud", NULL};
    expect_error(e5, 0, NULL, "debug|info|warn|error");
    char *e6[] = {"HOOKD_RETRY_SCHEDULE=5s,,1m", NULL};
    expect_error(e6, 0, NULL, "HOOKD_RETRY_SCHEDULE");
    char *e7[] = {"HOOKD_HTTP_ADDR=nohostport", NULL};
    expect_error(e7, 0, NULL, "HOOKD_HTTP_ADDR");
    char *e8[] = {"HOOKD_GREYLIST_BASE_S=100", "HOOKD_GREYLIST_MAX_S=50", NULL};
    expect_error(e8, 0, NULL, "HOOKD_GREYLIST_BASE_S");
    char *e9[] = {"HOOKD_KAFKA_BROKERS=", NULL};
    expect_error(e9, 0, NULL, "HOOKD_KAFKA_BROKERS");
    char *e10[] = {"HOOKD_DEDUP_RETENTION_H=12", NULL};
    expect_error(e10, 0, NULL, "HOOKD_DEDUP_RETENTION_H");
    char *none[] = {NULL};
    char *a1[] = {"prog", "--no-such-flag", NULL};
    expect_error(none, 2, a1, "--no-such-flag");
    char *a2[] = {"prog", "--batch-max", NULL};
    expect_error(none, 2, a2, "needs a value");
    char *a3[] = {"prog", "--batch-max=x", NULL};
    expect_error(none, 2, a3, "--batch-max=x (HOOKD_BATCH_MAX)");
    char *a4[] = {"prog", "positional", NULL};
    expect_error(none, 2, a4, "positional");
}

static void test_bounds_inclusive(void **state)
{
    (void)state;
    hookd_config_t cfg;
    char err[512];
    char *env[] = {"HOOKD_BATCH_MAX=1", "HOOKD_BATCH_WINDOW_MS=0", "HOOKD_MAX_INFLIGHT=65536", NULL};
    assert_int_equal(load(&cfg, env, 0, NULL, err), 0);
    assert_int_equal(cfg.batch_max, 1);
    assert_int_equal(cfg.batch_window_ms, 0);
    assert_int_equal(cfg.max_inflight, 65536);
    hookd_config_free(&cfg);
}

static void test_schedule(void **state)
{
    (void)state;
    int64_t ms[8];
    assert_int_equal(hookd_config_parse_schedule("500ms,5s,2m,1h,1d", ms, 8), 5);
    assert_int_equal(ms[0], 500);
    assert_int_equal(ms[1], 5000);
    assert_int_equal(ms[2], 120000);
    assert_int_equal(ms[3], 3600000);
    assert_int_equal(ms[4], 86400000);
    assert_int_equal(hookd_config_parse_schedule("5", ms, 8), -1);
    assert_int_equal(hookd_config_parse_schedule("5s,", ms, 8), -1);
    assert_int_equal(hookd_config_parse_schedule("-5s", ms, 8), -1);
    assert_int_equal(hookd_config_parse_schedule("1s,1s,1s", ms, 2), -1);
    assert_int_equal(hookd_config_parse_schedule("5x", ms, 8), -1);
}

static void test_addr(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(hookd_config_parse_addr("127.0.0.1:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 80);
    assert_int_equal(hookd_config_parse_addr(":9", host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(hookd_config_parse_addr("[::1]:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    assert_int_equal(hookd_config_parse_addr("host:70000", host, sizeof(host), &port), -1);
    assert_int_equal(hookd_config_parse_addr("host:", host, sizeof(host), &port), -1);
    assert_int_equal(hookd_config_parse_addr("[::1]8080", host, sizeof(host), &port), -1);
}

static void test_kafka_passthrough(void **state)
{
    (void)state;
    hookd_config_t cfg;
    char err[512];
    char *env[] = {"HOOKD_KAFKA_SECURITY_PROTOCOL=SASL_SSL", "HOOKD_KAFKA_SASL_PASSWORD=hunter22",
                   "HOOKD_KAFKA_BROKERS=k1:9092", NULL};
    assert_int_equal(load(&cfg, env, 0, NULL, err), 0);
    assert_string_equal(cfg.kafka_brokers, "k1:9092");
    assert_int_equal(cfg.kafka_props_len, 2);
    assert_string_equal(cfg.kafka_props[0].name, "security.protocol");
    assert_string_equal(cfg.kafka_props[0].value, "SASL_SSL");
    assert_false(cfg.kafka_props[0].secret);
    assert_string_equal(cfg.kafka_props[1].name, "sasl.password");
    assert_true(cfg.kafka_props[1].secret);
    hookd_config_free(&cfg);
}

static void test_unknown_and_service_links(void **state)
{
    (void)state;
    hookd_config_t cfg;
    char err[512];
    char *env[] = {"HOOKD_BATCH_MAXX=1", "HOOKD_INGEST_SERVICE_HOST=10.0.0.1",
                   "HOOKD_INGEST_PORT_8080_TCP=tcp://10.0.0.1:8080", "HOOKD_INGEST_PORT=tcp://x",
                   NULL};
    assert_int_equal(load(&cfg, env, 0, NULL, err), 0);
    assert_int_equal(cfg.unknown_vars_len, 1);
    assert_string_equal(cfg.unknown_vars[0], "HOOKD_BATCH_MAXX");
    hookd_config_free(&cfg);
}

static void test_redact_url(void **state)
{
    (void)state;
    char out[256];
    hookd_config_redact_url("postgresql://u:s3cret@db:5432/x", out, sizeof(out));
    assert_string_equal(out, "postgresql://u:***@db:5432/x");
    hookd_config_redact_url("host=db password=s3cret user=u", out, sizeof(out));
    assert_string_equal(out, "host=db password=*** user=u");
    hookd_config_redact_url("postgresql://u@db/x", out, sizeof(out));
    assert_string_equal(out, "postgresql://u@db/x");
}

static void test_markdown_lists_every_variable(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    hookd_config_print_markdown(f);
    fclose(f);
    int rows = 0;
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++) {
        char needle[80];
        snprintf(needle, sizeof(needle), "| `%s` |", v->name);
        if (!strstr(buf, needle)) fail_msg("markdown table misses %s", v->name);
        rows++;
    }
    assert_true(rows >= 30);
    assert_non_null(strstr(buf, "debug\\|info\\|warn\\|error")); /* pipes escaped */
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_and_flags),
        cmocka_unit_test(test_errors_name_the_variable),
        cmocka_unit_test(test_bounds_inclusive),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_kafka_passthrough),
        cmocka_unit_test(test_unknown_and_service_links),
        cmocka_unit_test(test_redact_url),
        cmocka_unit_test(test_markdown_lists_every_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
