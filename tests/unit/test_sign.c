/* Unit tests for job ids, request ids, Standard Webhooks signatures,
 * secrets, tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/sign.h"
#include "hookd/util.h"

#include <string.h>

/* The example from the Standard Webhooks / Svix documentation. */
static void test_standard_webhooks_vector(void **state)
{
    (void)state;
    char sig[SIGN_SIGNATURE_MAX];
    const char *body = "{\"test\": 2432232314}";
    assert_int_equal(sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                  "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                                  sig),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static void test_job_id_deterministic(void **state)
{
    (void)state;
    char a[SIGN_JOB_ID_LEN + 1], b[SIGN_JOB_ID_LEN + 1], c[SIGN_JOB_ID_LEN + 1];
    sign_job_id("evt_1", 5, "sub_1", 5, a);
    sign_job_id("evt_1", 5, "sub_1", 5, b);
    sign_job_id("evt_1s", 6, "ub_1", 4, c); /* same concatenation, different split */
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), SIGN_JOB_ID_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), SIGN_JOB_ID_LEN);
    /* first 128 bits of SHA-256("5:evt_1sub_1") */
    assert_string_equal(a, "56b72eb4efe4bd263d11486b83e2ab7b");
}

static void test_request_id_of_one_or_more_jobs(void **state)
{
    (void)state;
    const char *a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", *b = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const char *one[] = {a}, *ab[] = {a, b}, *ba[] = {b, a};
    char out[SIGN_JOB_ID_LEN + 1];
    sign_request_id(one, 1, out);
    assert_string_equal(out, a); /* one job: its job id */
    sign_request_id(ab, 2, out);
    /* first 128 bits of SHA-256("<a>,<b>") */
    assert_string_equal(out, "aa691835b5364858cd0cbd89f10ba9f4");
    sign_request_id(ba, 2, out);
    assert_string_equal(out, "51c9d4f1d46f664aaf2ec63df34db8aa"); /* order matters */
}

static void test_secret_and_token_format(void **state)
{
    (void)state;
    char s1[SIGN_SECRET_MAX], s2[SIGN_SECRET_MAX];
    assert_int_equal(sign_generate_secret(s1), 0);
    assert_int_equal(sign_generate_secret(s2), 0);
    assert_memory_equal(s1, "whsec_", 6);
    assert_int_equal(strlen(s1), 6 + 32);
    assert_string_not_equal(s1, s2);
    unsigned char raw[64];
    assert_int_equal(hookd_base64_decode(s1 + 6, 32, raw), 24);

    char t[SIGN_TOKEN_LEN + 1];
    assert_int_equal(sign_generate_token(t), 0);
    assert_int_equal(strlen(t), SIGN_TOKEN_LEN);
    assert_memory_equal(t, "hkd_", 4);
    char h[65];
    sign_sha256_hex("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_signature_rejects_bad_secret(void **state)
{
    (void)state;
    char sig[SIGN_SIGNATURE_MAX];
    assert_int_equal(sign_webhook("whsec_***", "id", 1, "x", 1, sig), -1);
    assert_int_equal(sign_webhook("", "id", 1, "x", 1, sig), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_webhooks_vector),
        cmocka_unit_test(test_job_id_deterministic),
        cmocka_unit_test(test_request_id_of_one_or_more_jobs),
        cmocka_unit_test(test_secret_and_token_format),
        cmocka_unit_test(test_signature_rejects_bad_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
