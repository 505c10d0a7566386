/* libFuzzer target for the event parser (shared/event.c): event_parse over
 * arbitrary bytes, as a plain Kafka value and, when the input has a header
 * block, with CloudEvents binary-binding headers taken from it; event type
 * normalisation on slices; and the job_encode -> job_decode round trip of
 * every event that parses. A broken invariant abort()s.
 *
 * Input layout: the whole input is always parsed as a value without headers.
 * If it also contains "\n\n", the lines before it are Kafka headers
 * ("name: value", or "name" alone for a header without a value) and the
 * bytes after it are the value. The first line is also fed to the type
 * functions. */
#include "hookd/event.h"
#include "hookd/json.h"
#include "hookd/log.h"
#include "hookd/sign.h"

#define FUZZ_NAME "fuzz_event"
#include "fuzz_common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 16
#define MAX_EVENT_BYTES (1024 * 1024)

static bool type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static bool part_valid(const char *p, size_t n)
{
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++)
        if (!type_char(p[i])) return false;
    return true;
}

/* A normalised type: "entity/event" (event may be "*" for a pattern), or "*". */
static void check_normalized(const char *t, bool pattern)
{
    if (pattern && strcmp(t, "*") == 0) return;
    const char *slash = strchr(t, '/');
    CHECK(slash != NULL);
    CHECK(part_valid(t, (size_t)(slash - t)));
    const char *ev = slash + 1;
    CHECK((pattern && strcmp(ev, "*") == 0) || part_valid(ev, strlen(ev)));
}

static void fuzz_type(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t len = nl ? (size_t)(nl - data) : size;
    if (len > 300) len = 300;
    char *in = dup_exact(data, len);
    for (int pattern = 0; pattern < 2; pattern++) {
        char out[EVENT_TYPE_MAX];
        if (event_type_normalize(in, len, out, sizeof(out), pattern) == 0) {
            CHECK(strlen(out) < sizeof(out));
            check_normalized(out, pattern);
            char again[EVENT_TYPE_MAX];
            CHECK(event_type_normalize(out, strlen(out), again, sizeof(again), pattern) == 0);
            CHECK(strcmp(out, again) == 0);
        }
        /* a small output buffer must fail cleanly, never overflow */
        size_t small_size = 1 + len % 9;
        char *small = malloc(small_size);
        if (!small) abort();
        if (event_type_normalize(in, len, small, small_size, pattern) == 0)
            CHECK(strlen(small) < small_size);
        free(small);
    }

    /* past tense works on NUL-terminated text */
    char *s = malloc(len + 1);
    if (!s) abort();
    memcpy(s, in, len);
    s[len] = '\0';
    char past[EVENT_TYPE_MAX + 16];
    if (event_type_past_tense(s, past, sizeof(past))) {
        const char *slash = strchr(s, '/');
        CHECK(slash != NULL);
        size_t ent = (size_t)(slash - s);
        CHECK(strncmp(past, s, ent + 1) == 0);
        const char *verb = past + ent + 1;
        CHECK(strcmp(verb, "created") == 0 || strcmp(verb, "updated") == 0 ||
              strcmp(verb, "deleted") == 0 || strcmp(verb, "cancelled") == 0 ||
              strcmp(verb, "confirmed") == 0);
    }
    char *tiny = malloc(4);
    if (!tiny) abort();
    if (event_type_past_tense(s, tiny, 4)) CHECK(strlen(tiny) < 4);
    free(tiny);
    free(s);
    free(in);
}

static bool span_within(json_span_t sp, const char *buf, size_t len)
{
    return sp.p >= buf && sp.len <= len && (size_t)(sp.p - buf) <= len - sp.len;
}

static void check_text(const char *s, size_t size, bool required)
{
    size_t n = strnlen(s, size);
    CHECK(n < size);
    if (required) CHECK(n > 0);
}

static void check_event(const event_t *ev, const char *value, size_t len)
{
    check_text(ev->id, sizeof(ev->id), true);
    check_text(ev->type, sizeof(ev->type), true);
    check_text(ev->account, sizeof(ev->account), true);
    check_text(ev->directory, sizeof(ev->directory), false);
    check_text(ev->status, sizeof(ev->status), false);
    check_text(ev->previous_status, sizeof(ev->previous_status), false);
    check_text(ev->user, sizeof(ev->user), false);
    if (ev->type_is_alias)
        CHECK(part_valid(ev->type, strlen(ev->type)));
    else
        check_normalized(ev->type, false);

    CHECK(ev->data.len > 0);
    const json_span_t spans[] = {ev->data, ev->changes, ev->extended};
    for (size_t i = 0; i < HOOKD_ARRAY_LEN(spans); i++) {
        if (spans[i].len == 0) continue;
        CHECK(span_within(spans[i], value, len));
        json_type_t t = json_scan(spans[i].p, spans[i].len, NULL, 0, NULL, NULL, 0);
        CHECK(t == JSON_OBJECT || t == JSON_ARRAY);
    }
}

/* job_encode then job_decode must give back exactly what went in. */
static void check_round_trip(const event_t *ev)
{
    static const char sub_id[] = "sub_01HFUZZ";
    static const char endpoint_id[] = "ep_01HFUZZ";
    const int64_t ingested = 1795000000123LL;
    char job_id[SIGN_JOB_ID_LEN + 1];
    sign_job_id(ev->id, strlen(ev->id), sub_id, strlen(sub_id), job_id);

    for (int mode = PAYLOAD_BASIC; mode <= PAYLOAD_EXTENDED; mode++) {
        strbuf_t msg;
        strbuf_init(&msg, 256);
        job_encode(&msg, ev, job_id, sub_id, endpoint_id, (payload_mode_t)mode, ingested);
        /* decode from an exact-size copy so reads past the message are caught */
        char *copy = dup_exact((const uint8_t *)msg.data, msg.len);
        job_t job;
        char err[256];
        if (job_decode(copy, msg.len, &job, err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_event: job_decode failed on a job_encode result: %s\n%.*s\n", err,
                    (int)msg.len, msg.data);
            abort();
        }
        json_span_t want = event_payload(ev, (payload_mode_t)mode);
        CHECK(strcmp(job.id, job_id) == 0);
        CHECK(strcmp(job.event_id, ev->id) == 0);
        CHECK(strcmp(job.subscription_id, sub_id) == 0);
        CHECK(strcmp(job.endpoint_id, endpoint_id) == 0);
        CHECK(strcmp(job.type, ev->type) == 0);
        CHECK(strcmp(job.account, ev->account) == 0);
        CHECK(strcmp(job.directory, ev->directory) == 0);
        CHECK(strcmp(job.status, ev->status) == 0);
        CHECK(strcmp(job.user, ev->user) == 0);
        CHECK(job.occurred_at_ms == ev->occurred_at_ms);
        CHECK(job.ingested_at_ms == ingested);
        CHECK(job.payload.len == want.len);
        CHECK(memcmp(job.payload.p, want.p, want.len) == 0);
        free(copy);
        strbuf_free(&msg);
    }
}

static void parse_one(const char *value, size_t len, const event_header_t *h, size_t n_h)
{
    event_t ev;
    char err[256];
    event_error_t rc = event_parse(value, len, h, n_h, MAX_EVENT_BYTES, &ev, err, sizeof(err));
    CHECK((unsigned)rc < EVENT_ERR__COUNT);
    CHECK(strnlen(err, sizeof(err)) < sizeof(err));
    if (rc != EVENT_OK) {
        CHECK(err[0] != '\0');
        return;
    }
    if (value) check_event(&ev, value, len);
    check_round_trip(&ev);

    /* the size limit is checked first */
    if (len > 0)
        CHECK(event_parse(value, len, h, n_h, len - 1, &ev, err, sizeof(err)) ==
              EVENT_ERR_TOO_LARGE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_type(data, size);

    /* 1. the whole input as a value, no headers */
    char *whole = dup_exact(data, size);
    parse_one(whole, size, NULL, 0);
    free(whole);

    /* 2. headers + value */
    const uint8_t *sep = NULL;
    for (size_t i = 0; i + 1 < size; i++) {
        if (data[i] == '\n' && data[i + 1] == '\n') {
            sep = data + i;
            break;
        }
    }
    if (!sep) return 0;
    event_header_t h[MAX_HEADERS];
    char *names[MAX_HEADERS];
    char *values[MAX_HEADERS];
    size_t n_h = 0;
    const uint8_t *p = data;
    while (p < sep && n_h < MAX_HEADERS) {
        const uint8_t *eol = memchr(p, '\n', (size_t)(sep - p + 1));
        size_t line = (size_t)(eol - p);
        const uint8_t *colon = memchr(p, ':', line);
        size_t name_len = colon ? (size_t)(colon - p) : line;
        names[n_h] = malloc(name_len + 1);
        if (!names[n_h]) abort();
        memcpy(names[n_h], p, name_len);
        names[n_h][name_len] = '\0';
        values[n_h] = NULL;
        h[n_h].name = names[n_h];
        h[n_h].value = NULL;
        h[n_h].len = 0;
        if (colon) {
            const uint8_t *v = colon + 1;
            if (v < eol && *v == ' ') v++;
            h[n_h].len = (size_t)(eol - v);
            values[n_h] = dup_exact(v, h[n_h].len);
            h[n_h].value = values[n_h];
        }
        n_h++;
        p = eol + 1;
    }
    size_t vlen = size - (size_t)(sep + 2 - data);
    char *value = dup_exact(sep + 2, vlen);
    parse_one(value, vlen, h, n_h);
    /* a tombstone (NULL value) with the same headers */
    parse_one(NULL, 0, h, n_h);
    free(value);
    for (size_t i = 0; i < n_h; i++) {
        free(names[i]);
        free(values[i]);
    }
    return 0;
}
