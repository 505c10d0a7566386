/* Unit tests for event parsing (native, CloudEvents), type normalisation
 * and the job message round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/event.h"
#include "hookd/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static event_error_t parse(const char *s, event_t *ev, char *err)
{
    return event_parse(s, strlen(s), NULL, 0, 1 << 20, ev, err, 256);
}

static void test_native(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    const char *s = "{\"id\":\"evt_1\",\"type\":\"client.created\",\"occurred_at\":\"2026-11-23T10:00:00Z\","
                    "\"account\":\"acct_42\",\"directory\":\"dir_7\",\"data\":{\"id\":1,\"name\":\"A\"},"
                    "\"changes\":{\"name\":\"A\"},\"status\":\"confirmed\",\"previous_status\":\"pending\"}";
    assert_int_equal(parse(s, &ev, err), EVENT_OK);
    assert_string_equal(ev.id, "evt_1");
    assert_string_equal(ev.type, "client/created");
    assert_string_equal(ev.account, "acct_42");
    assert_string_equal(ev.directory, "dir_7");
    assert_string_equal(ev.status, "confirmed");
    assert_string_equal(ev.previous_status, "pending");
    assert_int_equal(ev.occurred_at_ms, 1795428000000LL);
    json_span_t p = event_payload(&ev, PAYLOAD_BASIC);
    assert_memory_equal(p.p, "{\"name\":\"A\"}", p.len);
    p = event_payload(&ev, PAYLOAD_EXTENDED); /* falls back to data */
    assert_memory_equal(p.p, "{\"id\":1,\"name\":\"A\"}", p.len);
}

static void test_rejections(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    assert_int_equal(parse("not json", &ev, err), EVENT_ERR_INVALID_JSON);
    assert_int_equal(parse("[1,2]", &ev, err), EVENT_ERR_NOT_OBJECT);
    assert_int_equal(parse("{\"type\":\"a/b\",\"account\":\"x\",\"data\":{}}", &ev, err),
                     EVENT_ERR_MISSING_FIELD);
    assert_non_null(strstr(err, "'id'"));
    assert_int_equal(parse("{\"id\":\"1\",\"type\":\"a/b\",\"data\":{}}", &ev, err),
                     EVENT_ERR_MISSING_FIELD);
    assert_int_equal(parse("{\"id\":\"1\",\"type\":\"a/b\",\"account\":\"x\"}", &ev, err),
                     EVENT_ERR_MISSING_FIELD);
    assert_int_equal(parse("{\"id\":\"\",\"type\":\"a/b\",\"account\":\"x\",\"data\":{}}", &ev, err),
                     EVENT_ERR_INVALID_FIELD);
    assert_int_equal(parse("{\"id\":\"1\",\"type\":\"a/b/c\",\"account\":\"x\",\"data\":{}}", &ev, err),
                     EVENT_ERR_INVALID_FIELD);
    assert_int_equal(parse("{\"id\":\"1\",\"type\":7,\"account\":\"x\",\"data\":{}}", &ev, err),
                     EVENT_ERR_INVALID_FIELD);
    assert_int_equal(parse("{\"id\":\"1\",\"type\":\"a/b\",\"account\":\"x\",\"data\":5}", &ev, err),
                     EVENT_ERR_INVALID_FIELD);
    assert_int_equal(parse("{\"id\":\"1\",\"type\":\"a/b\",\"account\":\"x\",\"data\":{},"
                           "\"occurred_at\":\"yesterday\"}", &ev, err),
                     EVENT_ERR_INVALID_FIELD);
    assert_int_equal(parse("{\"id\":\"1\",\"type\":\"a/b\",\"account\":\"x\",\"data\":{\"s\":\"\xff\"}}",
                           &ev, err),
                     EVENT_ERR_INVALID_JSON);
    char big[2048];
    memset(big, ' ', sizeof(big));
    assert_int_equal(event_parse(big, sizeof(big), NULL, 0, 1024, &ev, err, 256), EVENT_ERR_TOO_LARGE);
    assert_int_equal(event_parse(NULL, 0, NULL, 0, 1024, &ev, err, 256), EVENT_ERR_INVALID_JSON);
}

static void test_numbers_and_alias(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    assert_int_equal(parse("{\"id\":123,\"type\":\"eventAdded\",\"account\":42,\"data\":[]}", &ev, err),
                     EVENT_OK);
    assert_string_equal(ev.id, "123");
    assert_string_equal(ev.account, "42");
    assert_string_equal(ev.type, "eventAdded");
    assert_true(ev.type_is_alias);
}

static void test_type_normalize(void **state)
{
    (void)state;
    char out[128];
    struct {
        const char *in, *out;
        bool pattern;
    } cases[] = {
        {"client/created", "client/created", false},
        {"client.created", "client/created", false},
        {"client/create", "client/create", false},
        {"payment.update", "payment/update", false},
        {"pivot/update", "pivot/update", false},
        {"com.vcita.client.created", "client/created", false},
        {"custom/vikappointments_add_item_cart", "custom/vikappointments_add_item_cart", false},
        {"custom/create", "custom/create", false},
        {"roomBooking/created", "roomBooking/created", false},
        {"appointment/*", "appointment/*", true},
        {"*", "*", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(event_type_normalize(cases[i].in, strlen(cases[i].in), out, sizeof(out),
                                              cases[i].pattern),
                         0);
        assert_string_equal(out, cases[i].out);
    }
    const char *bad[] = {"", "/", "a/", "/b", "a/b/c", "a b/c", "*", "a/*", "x/y\xc3\xa9", "noslash"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (event_type_normalize(bad[i], strlen(bad[i]), out, sizeof(out), false) == 0)
            fail_msg("accepted %s", bad[i]);
    assert_int_equal(event_type_normalize("a/**", 4, out, sizeof(out), true), -1);
}

static void test_past_tense(void **state)
{
    (void)state;
    char out[128];
    assert_true(event_type_past_tense("client/create", out, sizeof(out)));
    assert_string_equal(out, "client/created");
    assert_true(event_type_past_tense("payment/update", out, sizeof(out)));
    assert_string_equal(out, "payment/updated");
    assert_true(event_type_past_tense("client/delete", out, sizeof(out)));
    assert_string_equal(out, "client/deleted");
    assert_true(event_type_past_tense("meeting/cancel", out, sizeof(out)));
    assert_string_equal(out, "meeting/cancelled");
    assert_true(event_type_past_tense("event/confirm", out, sizeof(out)));
    assert_string_equal(out, "event/confirmed");
    assert_false(event_type_past_tense("client/created", out, sizeof(out)));
    assert_false(event_type_past_tense("custom/create", out, sizeof(out)));
    assert_false(event_type_past_tense("*", out, sizeof(out)));
    assert_false(event_type_past_tense("client/create", out, 8)); /* does not fit */
}

static void test_cloudevents_structured(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    const char *s = "{\"specversion\":\"1.0\",\"id\":\"ce-1\",\"type\":\"com.vcita.payment.paid\","
                    "\"source\":\"/directories/d9/accounts/a7\",\"time\":\"2026-11-23T10:00:00.5+01:00\","
                    "\"data\":{\"amount\":10}}";
    assert_int_equal(parse(s, &ev, err), EVENT_OK);
    assert_int_equal(ev.format, EVENT_CLOUDEVENT_STRUCTURED);
    assert_string_equal(ev.type, "payment/paid");
    assert_string_equal(ev.account, "a7");
    assert_string_equal(ev.directory, "d9");
    assert_int_equal(ev.occurred_at_ms, 1795424400500LL);
    const char *s2 = "{\"specversion\":\"1.0\",\"id\":\"ce-2\",\"type\":\"client.created\","
                     "\"source\":\"urn:x\",\"subject\":\"acct_5\",\"account\":\"acct_6\",\"data\":{}}";
    assert_int_equal(parse(s2, &ev, err), EVENT_OK);
    assert_string_equal(ev.account, "acct_6"); /* extension wins over subject */
    const char *s3 = "{\"specversion\":\"0.3\",\"id\":\"x\",\"type\":\"a.b\",\"source\":\"s\",\"data\":{}}";
    assert_int_equal(parse(s3, &ev, err), EVENT_ERR_INVALID_FIELD);
    const char *s4 = "{\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"a.b\",\"source\":\"s\",\"data\":{}}";
    assert_int_equal(parse(s4, &ev, err), EVENT_ERR_MISSING_FIELD);
}

static void test_cloudevents_binary(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    event_header_t h[] = {
        {"ce_specversion", "1.0", 3}, {"ce_id", "b-1", 3},       {"ce_type", "client.updated", 14},
        {"ce_source", "/accounts/a1", 12}, {"ce_status", "active", 6},
    };
    const char *data = "{\"id\":9}";
    assert_int_equal(event_parse(data, strlen(data), h, 5, 1 << 20, &ev, err, sizeof(err)), EVENT_OK);
    assert_int_equal(ev.format, EVENT_CLOUDEVENT_BINARY);
    assert_string_equal(ev.type, "client/updated");
    assert_string_equal(ev.account, "a1");
    assert_string_equal(ev.status, "active");
    assert_memory_equal(ev.data.p, data, ev.data.len);
    assert_int_equal(event_parse("nope", 4, h, 5, 1 << 20, &ev, err, sizeof(err)),
                     EVENT_ERR_INVALID_JSON);
    event_header_t h2[] = {{"ce_specversion", "1.0", 3}, {"ce_type", "a.b", 3}};
    assert_int_equal(event_parse(data, strlen(data), h2, 2, 1 << 20, &ev, err, sizeof(err)),
                     EVENT_ERR_MISSING_FIELD);
}

/* The job of 'ev' for subscription "sub1" at endpoint "ep_1", ingested at
 * 1234 ms, into 'b' (initialised here); its id into 'job_id'. */
static void encode_job(const event_t *ev, payload_mode_t mode, char job_id[SIGN_JOB_ID_LEN + 1],
                       strbuf_t *b)
{
    sign_job_id(ev->id, strlen(ev->id), "sub1", 4, job_id);
    strbuf_init(b, 64);
    job_encode(b, ev, job_id, "sub1", "ep_1", mode, 1234);
}

static void test_job_roundtrip(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    const char *s = "{\"id\":\"evt \\\"q\\\"\",\"type\":\"appointment/updated\",\"account\":\"a1\","
                    "\"status\":\"paid\",\"user\":\"u1\",\"data\":{\"id\":5},\"changes\":{\"status\":\"paid\"}}";
    assert_int_equal(parse(s, &ev, err), EVENT_OK);
    ev.occurred_at_ms = 1000;
    char job_id[SIGN_JOB_ID_LEN + 1];
    strbuf_t b = {0};
    encode_job(&ev, PAYLOAD_BASIC, job_id, &b);
    job_t job;
    assert_int_equal(job_decode(b.data, b.len, &job, err, sizeof(err)), 0);
    assert_string_equal(job.id, job_id);
    assert_string_equal(job.event_id, "evt \"q\"");
    assert_string_equal(job.subscription_id, "sub1");
    assert_string_equal(job.endpoint_id, "ep_1");
    assert_string_equal(job.type, "appointment/updated");
    assert_string_equal(job.status, "paid");
    assert_string_equal(job.user, "u1");
    assert_string_equal(job.directory, "");
    assert_int_equal(job.occurred_at_ms, 1000);
    assert_int_equal(job.ingested_at_ms, 1234);
    assert_memory_equal(job.payload.p, "{\"status\":\"paid\"}", job.payload.len);
    strbuf_free(&b);
    assert_int_equal(job_decode("{\"id\":\"zz\"}", 11, &job, err, sizeof(err)), -1);
    assert_int_equal(job_decode("[]", 2, &job, err, sizeof(err)), -1);
}

/* Every event ingest accepts makes a job the worker can decode: the data of
 * a binary-mode event is the whole Kafka value and may nest JSON_MAX_DEPTH
 * deep, one level more than a job's payload member had room for (found by
 * fuzz_event; such a job was skipped as invalid, losing the event). */
static void test_job_of_deepest_binary_event(void **state)
{
    (void)state;
    event_t ev;
    char err[256];
    event_header_t h[] = {{"ce_specversion", "1.0", 3}, {"ce_id", "deep", 4},
                          {"ce_type", "a.b", 3},        {"ce_source", "/accounts/x", 11}};
    char data[2 * JSON_MAX_DEPTH + 1];
    for (int i = 0; i < JSON_MAX_DEPTH; i++) {
        data[i] = '[';
        data[2 * JSON_MAX_DEPTH - 1 - i] = ']';
    }
    data[2 * JSON_MAX_DEPTH] = '\0';
    assert_int_equal(event_parse(data, strlen(data), h, 4, 1 << 20, &ev, err, sizeof(err)), EVENT_OK);
    char job_id[SIGN_JOB_ID_LEN + 1];
    strbuf_t b = {0};
    encode_job(&ev, PAYLOAD_FULL, job_id, &b);
    job_t job;
    assert_int_equal(job_decode(b.data, b.len, &job, err, sizeof(err)), 0);
    assert_int_equal(job.payload.len, strlen(data));
    assert_memory_equal(job.payload.p, data, job.payload.len);
    strbuf_free(&b);
    /* one level deeper is still refused by the event parser */
    char deeper[2 * JSON_MAX_DEPTH + 3];
    snprintf(deeper, sizeof(deeper), "[%s]", data);
    assert_int_not_equal(event_parse(deeper, strlen(deeper), h, 4, 1 << 20, &ev, err, sizeof(err)),
                         EVENT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native),           cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_numbers_and_alias), cmocka_unit_test(test_type_normalize),
        cmocka_unit_test(test_past_tense),
        cmocka_unit_test(test_cloudevents_structured), cmocka_unit_test(test_cloudevents_binary),
        cmocka_unit_test(test_job_roundtrip),
        cmocka_unit_test(test_job_of_deepest_binary_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
