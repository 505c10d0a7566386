/* Unit tests for delivery bodies (standard, vyte, vcita, vik), batching
 * rules per format and the Standard Webhooks headers, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "formats.h"
#include "hookd/json.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1795428000123LL /* 2026-11-23T10:00:00.123Z */

static job_t make_job(const char *event_id, const char *type, const char *payload)
{
    job_t j;
    memset(&j, 0, sizeof(j));
    snprintf(j.id, sizeof(j.id), "%032x", 7);
    snprintf(j.event_id, sizeof(j.event_id), "%s", event_id);
    snprintf(j.subscription_id, sizeof(j.subscription_id), "sub_1");
    snprintf(j.endpoint_id, sizeof(j.endpoint_id), "ep_1");
    snprintf(j.type, sizeof(j.type), "%s", type);
    snprintf(j.account, sizeof(j.account), "acct_42");
    j.occurred_at_ms = T0;
    j.payload.p = payload;
    j.payload.len = strlen(payload);
    return j;
}

/* Formats 'n' jobs and checks the exact bytes, and that the body is one JSON value. */
static void expect_body(body_format_t f, bool batch, const job_t *jobs, int n, const char *want)
{
    const job_t *ptrs[16];
    strbuf_t b;
    char err[128];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++)
        ptrs[i] = &jobs[i];
    strbuf_init(&b, 16);
    format_body(f, batch, ptrs, n, &b);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    assert_int_not_equal(json_scan(b.data, b.len, NULL, 0, NULL, err, sizeof(err)), JSON_NONE);
    strbuf_free(&b);
}

static void test_standard(void **state)
{
    (void)state;
    job_t j[3] = {make_job("evt_1", "client/created", "{\"id\":1,\"name\":\"A\"}"),
                  make_job("evt_2", "client/updated", "{\"id\":1}"),
                  make_job("evt_3", "client/deleted", "[1,2]")};
    expect_body(FORMAT_STANDARD, false, j, 1,
                "{\"type\":\"client/created\",\"id\":\"evt_1\","
                "\"timestamp\":\"2026-11-23T10:00:00.123Z\",\"account\":\"acct_42\","
                "\"data\":{\"id\":1,\"name\":\"A\"}}");
    /* batch: an array, also for one item */
    expect_body(FORMAT_STANDARD, true, j, 1,
                "[{\"type\":\"client/created\",\"id\":\"evt_1\","
                "\"timestamp\":\"2026-11-23T10:00:00.123Z\",\"account\":\"acct_42\","
                "\"data\":{\"id\":1,\"name\":\"A\"}}]");
    j[1].occurred_at_ms = 0;
    expect_body(FORMAT_STANDARD, true, j, 3,
                "[{\"type\":\"client/created\",\"id\":\"evt_1\","
                "\"timestamp\":\"2026-11-23T10:00:00.123Z\",\"account\":\"acct_42\","
                "\"data\":{\"id\":1,\"name\":\"A\"}},"
                "{\"type\":\"client/updated\",\"id\":\"evt_2\","
                "\"timestamp\":\"1970-01-01T00:00:00.000Z\",\"account\":\"acct_42\","
                "\"data\":{\"id\":1}},"
                "{\"type\":\"client/deleted\",\"id\":\"evt_3\","
                "\"timestamp\":\"2026-11-23T10:00:00.123Z\",\"account\":\"acct_42\","
                "\"data\":[1,2]}]");
}

static void test_standard_directory(void **state)
{
    (void)state;
    job_t j = make_job("evt_1", "payment/paid", "{\"amount\":10}");
    snprintf(j.directory, sizeof(j.directory), "dir_7");
    snprintf(j.user, sizeof(j.user), "u_1"); /* not part of the standard format */
    snprintf(j.status, sizeof(j.status), "paid");
    expect_body(FORMAT_STANDARD, false, &j, 1,
                "{\"type\":\"payment/paid\",\"id\":\"evt_1\","
                "\"timestamp\":\"2026-11-23T10:00:00.123Z\",\"account\":\"acct_42\","
                "\"directory\":\"dir_7\",\"data\":{\"amount\":10}}");
}

static void test_vcita(void **state)
{
    (void)state;
    job_t j[2] = {make_job("evt_1", "client/created", "{\"id\":\"c1\"}"),
                  make_job("evt_2", "client/updated", "{\"id\":\"c1\",\"name\":\"B\"}")};
    expect_body(FORMAT_VCITA, false, j, 1,
                "{\"event\":\"client/created\",\"account\":\"acct_42\",\"data\":{\"id\":\"c1\"}}");
    expect_body(
        FORMAT_VCITA, true, j, 1,
        "[{\"event\":\"client/created\",\"account\":\"acct_42\",\"data\":{\"id\":\"c1\"}}]");
    snprintf(j[1].directory, sizeof(j[1].directory), "dir_7");
    expect_body(FORMAT_VCITA, true, j, 2,
                "[{\"event\":\"client/created\",\"account\":\"acct_42\",\"data\":{\"id\":\"c1\"}},"
                "{\"event\":\"client/updated\",\"account\":\"acct_42\",\"directory\":\"dir_7\","
                "\"data\":{\"id\":\"c1\",\"name\":\"B\"}}]");
}

static void test_vyte_always_array(void **state)
{
    (void)state;
    job_t j[2] = {make_job("evt_1", "event/cancelled", "{\"_id\":\"e1\",\"title\":\"Lunch\"}"),
                  make_job("evt_2", "user/joined", "{\"_id\":\"u9\"}")};
    snprintf(j[0].user, sizeof(j[0].user), "user_5");
    /* no batch: still an array of one */
    expect_body(
        FORMAT_VYTE, false, j, 1,
        "[{\"action\":\"event.cancelled\",\"resource\":{\"_id\":\"e1\",\"title\":\"Lunch\"},"
        "\"organization\":\"acct_42\",\"user\":\"user_5\"}]");
    expect_body(
        FORMAT_VYTE, true, j, 1,
        "[{\"action\":\"event.cancelled\",\"resource\":{\"_id\":\"e1\",\"title\":\"Lunch\"},"
        "\"organization\":\"acct_42\",\"user\":\"user_5\"}]");
    /* batched, second item without a user */
    expect_body(
        FORMAT_VYTE, true, j, 2,
        "[{\"action\":\"event.cancelled\",\"resource\":{\"_id\":\"e1\",\"title\":\"Lunch\"},"
        "\"organization\":\"acct_42\",\"user\":\"user_5\"},"
        "{\"action\":\"user.joined\",\"resource\":{\"_id\":\"u9\"},"
        "\"organization\":\"acct_42\"}]");
}

static void test_vik_single_and_merge(void **state)
{
    (void)state;
    job_t up = make_job("evt_1", "appointment/updated", "{\"id\":10,\"status\":\"C\"}");
    expect_body(FORMAT_VIK, false, &up, 1, "{\"id\":10,\"status\":\"C\"}");
    expect_body(FORMAT_VIK, true, &up, 1, "{\"id\":10,\"status\":\"C\"}");

    job_t del[3] = {make_job("evt_1", "appointment/deleted", "{\"id\":10}"),
                    make_job("evt_2", "appointment/deleted", "{\"id\":11}"),
                    make_job("evt_3", "appointment/deleted", "{\"id\":12}")};
    /* a single delete stays the bare payload */
    expect_body(FORMAT_VIK, true, del, 1, "{\"id\":10}");
    expect_body(FORMAT_VIK, true, del, 2, "{\"id\":[10,11]}");
    expect_body(FORMAT_VIK, true, del, 3, "{\"id\":[10,11,12]}");

    /* verbatim custom hook payload */
    job_t custom = make_job("evt_9", "custom/vikappointments_add_item_cart",
                            "{\"arg1\":{\"a\":1},\"arg2\":null,\"arg3\":[1]}");
    expect_body(FORMAT_VIK, false, &custom, 1, "{\"arg1\":{\"a\":1},\"arg2\":null,\"arg3\":[1]}");
}

static void test_vik_flatten(void **state)
{
    (void)state;
    job_t del[4] = {make_job("evt_1", "appointment/deleted", "{\"id\":10,\"note\":\"x\"}"),
                    make_job("evt_2", "appointment/deleted", "{ \"id\" : [ 11 , 12 ] }"),
                    make_job("evt_3", "appointment/deleted", "{\"id\":[]}"),
                    make_job("evt_4", "appointment/deleted", "{\"id\":\"a,\\\"b]\"}")};
    expect_body(FORMAT_VIK, true, del, 4, "{\"id\":[10,11,12,\"a,\\\"b]\"]}");
    expect_body(FORMAT_VIK, true, del + 2, 1, "{\"id\":[]}"); /* single: verbatim */
    expect_body(FORMAT_VIK, true, del + 2, 2, "{\"id\":[\"a,\\\"b]\"]}");
    job_t strs[2] = {make_job("evt_1", "service/deleted", "{\"id\":[\"s1\",\"s 2\"]}"),
                     make_job("evt_2", "service/deleted", "{\"id\":\"s3\"}")};
    expect_body(FORMAT_VIK, true, strs, 2, "{\"id\":[\"s1\",\"s 2\",\"s3\"]}");
}

static void test_can_join(void **state)
{
    (void)state;
    job_t a = make_job("evt_1", "client/created", "{\"id\":1}");
    job_t b = make_job("evt_2", "client/deleted", "{\"id\":2}");
    for (int f = FORMAT_STANDARD; f <= FORMAT_VCITA; f++) {
        assert_true(format_can_join((body_format_t)f, true, &a, &b));
        assert_false(format_can_join((body_format_t)f, false, &a, &b));
    }
    job_t other_sub = b;
    snprintf(other_sub.subscription_id, sizeof(other_sub.subscription_id), "sub_2");
    assert_false(format_can_join(FORMAT_STANDARD, true, &a, &other_sub));

    job_t d1 = make_job("evt_1", "appointment/deleted", "{\"id\":10}");
    job_t d2 = make_job("evt_2", "appointment/deleted", "{\"id\":[11]}");
    job_t d3 = make_job("evt_3", "appointment/deleted", "{\"id\":\"12\"}");
    job_t other_entity = make_job("evt_4", "service/deleted", "{\"id\":3}");
    job_t update = make_job("evt_5", "appointment/updated", "{\"id\":10}");
    job_t no_id = make_job("evt_6", "appointment/deleted", "{\"ids\":10}");
    job_t obj_id = make_job("evt_7", "appointment/deleted", "{\"id\":{\"x\":1}}");
    job_t arr_payload = make_job("evt_8", "appointment/deleted", "[10]");
    job_t bare_deleted = make_job("evt_9", "deleted", "{\"id\":1}");
    assert_true(format_can_join(FORMAT_VIK, true, &d1, &d2));
    assert_true(format_can_join(FORMAT_VIK, true, &d1, &d3));
    assert_false(format_can_join(FORMAT_VIK, false, &d1, &d2));
    assert_false(format_can_join(FORMAT_VIK, true, &d1, &other_entity));
    assert_false(format_can_join(FORMAT_VIK, true, &d1, &update));
    assert_false(format_can_join(FORMAT_VIK, true, &update, &update));
    assert_false(format_can_join(FORMAT_VIK, true, &d1, &no_id));
    assert_false(format_can_join(FORMAT_VIK, true, &no_id, &d1));
    assert_false(format_can_join(FORMAT_VIK, true, &d1, &obj_id));
    assert_false(format_can_join(FORMAT_VIK, true, &d1, &arr_payload));
    assert_false(format_can_join(FORMAT_VIK, true, &bare_deleted, &bare_deleted));
    job_t d_other_sub = d2;
    snprintf(d_other_sub.subscription_id, sizeof(d_other_sub.subscription_id), "sub_2");
    assert_false(format_can_join(FORMAT_VIK, true, &d1, &d_other_sub));
}

static void test_escaping(void **state)
{
    (void)state;
    job_t j = make_job("evt_\"q\"\\b\n\x01/\xc3\xa9", "client/created", "{}");
    snprintf(j.account, sizeof(j.account), "acct \"x\"");
    snprintf(j.directory, sizeof(j.directory), "dir\t7");
    expect_body(FORMAT_STANDARD, false, &j, 1,
                "{\"type\":\"client/created\",\"id\":\"evt_\\\"q\\\"\\\\b\\n\\u0001/\xc3\xa9\","
                "\"timestamp\":\"2026-11-23T10:00:00.123Z\",\"account\":\"acct \\\"x\\\"\","
                "\"directory\":\"dir\\t7\",\"data\":{}}");
    expect_body(FORMAT_VCITA, false, &j, 1,
                "{\"event\":\"client/created\",\"account\":\"acct \\\"x\\\"\","
                "\"directory\":\"dir\\t7\",\"data\":{}}");
    snprintf(j.user, sizeof(j.user), "u\"1");
    expect_body(FORMAT_VYTE, false, &j, 1,
                "[{\"action\":\"client.created\",\"resource\":{},"
                "\"organization\":\"acct \\\"x\\\"\",\"user\":\"u\\\"1\"}]");
}

/* From a job message as ingest writes it, decoded as the worker does. */
static void test_from_job_message(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    const char *evs = "{\"id\":\"evt_\\u00e9\\\"1\",\"type\":\"appointment.deleted\","
                      "\"occurred_at\":\"2026-11-23T10:00:00.5Z\",\"account\":\"acct_42\","
                      "\"directory\":\"dir_7\",\"data\":{\"id\":10}}";
    assert_int_equal(event_parse(evs, strlen(evs), NULL, 0, 1 << 20, &ev, err, sizeof(err)),
                     EVENT_OK);
    strbuf_t msg;
    strbuf_init(&msg, 256);
    job_encode(&msg, &ev, "0123456789abcdef0123456789abcdef", "sub_1", "ep_1", PAYLOAD_FULL, 1);
    job_t job;
    assert_int_equal(job_decode(msg.data, msg.len, &job, err, sizeof(err)), 0);
    expect_body(FORMAT_STANDARD, false, &job, 1,
                "{\"type\":\"appointment/deleted\",\"id\":\"evt_\xc3\xa9\\\"1\","
                "\"timestamp\":\"2026-11-23T10:00:00.500Z\",\"account\":\"acct_42\","
                "\"directory\":\"dir_7\",\"data\":{\"id\":10}}");
    expect_body(FORMAT_VIK, true, &job, 1, "{\"id\":10}");
    job_t two[2] = {job, job};
    expect_body(FORMAT_VIK, true, two, 2, "{\"id\":[10,10]}");
    strbuf_free(&msg);
}

static void test_appends(void **state)
{
    (void)state;
    job_t j = make_job("e", "a/b", "{}");
    const job_t *p = &j;
    strbuf_t b;
    strbuf_init(&b, 4);
    strbuf_puts(&b, "X");
    format_body(FORMAT_VCITA, false, &p, 1, &b);
    assert_string_equal(b.data, "X{\"event\":\"a/b\",\"account\":\"acct_42\",\"data\":{}}");
    strbuf_free(&b);
}

/* ---- headers ---- */

/* The Standard Webhooks signature computed independently with OpenSSL. */
static void reference_signature(const char *secret, const char *id, long long ts, const char *body,
                                char *out)
{
    unsigned char key[128], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    const char *b64 = secret + 6; /* "whsec_" */
    size_t b64_len = strlen(b64);
    int key_len = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)b64_len);
    assert_true(key_len > 0);
    if (b64_len >= 1 && b64[b64_len - 1] == '=') key_len--;
    if (b64_len >= 2 && b64[b64_len - 2] == '=') key_len--;
    char *msg = NULL;
    size_t msg_len = 0;
    FILE *f = open_memstream(&msg, &msg_len);
    fprintf(f, "%s.%lld.%s", id, ts, body);
    fclose(f);
    assert_non_null(
        HMAC(EVP_sha256(), key, key_len, (const unsigned char *)msg, msg_len, mac, &mac_len));
    free(msg);
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
}

static const char *header_value(const struct curl_slist *h, const char *name)
{
    size_t n = strlen(name);
    for (; h; h = h->next)
        if (strncmp(h->data, name, n) == 0 && h->data[n] == ':') return h->data + n + 2;
    return NULL;
}

static int header_count(const struct curl_slist *h)
{
    int n = 0;
    for (; h; h = h->next)
        n++;
    return n;
}

static void test_headers(void **state)
{
    (void)state;
    const char *secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const char *id = "56b72eb4efe4bd263d11486b83e2ab7b";
    const char *body = "[{\"type\":\"client/created\",\"id\":\"evt_1\"}]";
    struct curl_slist *h = format_headers(id, 1795428000, secret, NULL, body, strlen(body));
    assert_non_null(h);
    assert_int_equal(header_count(h), 4);
    assert_string_equal(h->data, "Content-Type: application/json");
    assert_string_equal(header_value(h, "webhook-id"), id);
    assert_string_equal(header_value(h, "webhook-timestamp"), "1795428000");
    char want[SIGN_SIGNATURE_MAX];
    reference_signature(secret, id, 1795428000, body, want);
    assert_string_equal(header_value(h, "webhook-signature"), want);
    curl_slist_free_all(h);

    /* the documented Standard Webhooks / Svix example */
    const char *vb = "{\"test\": 2432232314}";
    h = format_headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                       "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", NULL, vb, strlen(vb));
    assert_non_null(h);
    assert_string_equal(header_value(h, "webhook-signature"),
                        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    curl_slist_free_all(h);
}

static void test_headers_rotation(void **state)
{
    (void)state;
    const char *cur = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const char *old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *id = "0123456789abcdef0123456789abcdef";
    const char *body = "{\"id\":[10,11,12]}";
    struct curl_slist *h = format_headers(id, 1700000000, cur, old, body, strlen(body));
    assert_non_null(h);
    assert_int_equal(header_count(h), 4);
    char s1[SIGN_SIGNATURE_MAX], s2[SIGN_SIGNATURE_MAX], want[3 * SIGN_SIGNATURE_MAX];
    reference_signature(cur, id, 1700000000, body, s1);
    reference_signature(old, id, 1700000000, body, s2);
    snprintf(want, sizeof(want), "%s %s", s1, s2);
    assert_string_equal(header_value(h, "webhook-signature"), want);
    curl_slist_free_all(h);

    /* an empty previous secret means no rotation */
    h = format_headers(id, 1700000000, cur, "", body, strlen(body));
    assert_non_null(h);
    assert_string_equal(header_value(h, "webhook-signature"), s1);
    curl_slist_free_all(h);

    /* the signature covers id, timestamp and body */
    h = format_headers(id, 1700000001, cur, NULL, body, strlen(body));
    assert_string_not_equal(header_value(h, "webhook-signature"), s1);
    curl_slist_free_all(h);
    h = format_headers(id, 1700000000, cur, NULL, body, strlen(body) - 1);
    assert_string_not_equal(header_value(h, "webhook-signature"), s1);
    curl_slist_free_all(h);
}

static void test_headers_unusable(void **state)
{
    (void)state;
    const char *ok = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    assert_null(format_headers("id", 1, "whsec_***", NULL, "{}", 2));
    assert_null(format_headers("id", 1, "whsec_", NULL, "{}", 2));
    assert_null(format_headers("id", 1, "", NULL, "{}", 2));
    assert_null(format_headers("id", 1, NULL, NULL, "{}", 2));
    assert_null(format_headers("id", 1, ok, "whsec_***", "{}", 2));
    assert_null(format_headers("id\r\nX-Evil: 1", 1, ok, NULL, "{}", 2));
    /* a raw (non-whsec_) secret is used as the key bytes */
    struct curl_slist *h = format_headers("id", 1, "plain-secret", NULL, "{}", 2);
    assert_non_null(h);
    curl_slist_free_all(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard),
        cmocka_unit_test(test_standard_directory),
        cmocka_unit_test(test_vcita),
        cmocka_unit_test(test_vyte_always_array),
        cmocka_unit_test(test_vik_single_and_merge),
        cmocka_unit_test(test_vik_flatten),
        cmocka_unit_test(test_can_join),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_from_job_message),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_headers_rotation),
        cmocka_unit_test(test_headers_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
