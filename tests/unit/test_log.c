/* Unit tests for logging: JSON fields, text format, secret masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/log.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_json_fields(void **state)
{
    (void)state;
    char line[1024];
    hookd_log_init("hookd-test", HOOKD_LOG_DEBUG, 1);
    hookd_log_format_line(line, sizeof(line), HOOKD_LOG_WARN,
                          "endpoint_greylisted url=https://x/y until=\"2026 later\" n=3");
    struct json_object *o = json_tokener_parse(line);
    assert_non_null(o);
    struct json_object *v;
    assert_true(json_object_object_get_ex(o, "msg", &v));
    assert_string_equal(json_object_get_string(v), "endpoint_greylisted");
    assert_true(json_object_object_get_ex(o, "level", &v));
    assert_string_equal(json_object_get_string(v), "warn");
    assert_true(json_object_object_get_ex(o, "service", &v));
    assert_string_equal(json_object_get_string(v), "hookd-test");
    assert_true(json_object_object_get_ex(o, "url", &v));
    assert_string_equal(json_object_get_string(v), "https://x/y");
    assert_true(json_object_object_get_ex(o, "until", &v));
    assert_string_equal(json_object_get_string(v), "2026 later");
    assert_true(json_object_object_get_ex(o, "n", &v));
    assert_string_equal(json_object_get_string(v), "3");
    assert_true(json_object_object_get_ex(o, "ts", &v));
    json_object_put(o);
}

static void test_json_free_text_and_escapes(void **state)
{
    (void)state;
    char line[1024];
    hookd_log_init("hookd-test", HOOKD_LOG_DEBUG, 1);
    hookd_log_format_line(line, sizeof(line), HOOKD_LOG_INFO,
                          "kafka detail=\"quote \\\" and\nnewline\" then free text");
    struct json_object *o = json_tokener_parse(line);
    assert_non_null(o);
    struct json_object *v;
    assert_true(json_object_object_get_ex(o, "detail", &v));
    json_object_put(o);
    assert_null(strchr(line, '\n'));
}

static void test_text_format(void **state)
{
    (void)state;
    char line[512];
    hookd_log_init("svc", HOOKD_LOG_INFO, 0);
    hookd_log_format_line(line, sizeof(line), HOOKD_LOG_ERROR, "boom a=1\nb=2");
    assert_non_null(strstr(line, "error svc boom a=1 b=2"));
    assert_null(strchr(line, '\n'));
}

/* Captures what hookd_log_write prints to stderr. */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/hookd-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    char *buf = calloc(1, 8192);
    ssize_t n = read(fd, buf, 8191);
    assert_true(n >= 0);
    close(fd);
    unlink(path);
    return buf;
}

static void write_secret_lines(void)
{
    log_info("db_connect url=postgresql://u:TopSecretPw@db/x");
    log_info("token_seen token=hkd_0123456789abcdef");
    log_debug("hidden line");
}

static void test_secrets_masked(void **state)
{
    (void)state;
    hookd_log_init("svc", HOOKD_LOG_INFO, 0);
    hookd_log_add_secret("TopSecretPw");
    hookd_log_add_secret("hkd_0123456789abcdef");
    hookd_log_add_secret("ab"); /* too short: ignored, must not mask everything */
    char *out = capture(write_secret_lines);
    assert_null(strstr(out, "TopSecretPw"));
    assert_null(strstr(out, "hkd_0123456789abcdef"));
    assert_non_null(strstr(out, "postgresql://u:***@db/x"));
    assert_non_null(strstr(out, "token=***"));
    assert_null(strstr(out, "hidden line")); /* below level */
    free(out);
    hookd_log_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_free_text_and_escapes),
        cmocka_unit_test(test_text_format),
        cmocka_unit_test(test_secrets_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
