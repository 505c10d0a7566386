/* libFuzzer target for the job decoder (shared/event.c job_decode) and the
 * worker's body formats (services/worker/formats.c): every job that decodes
 * is rendered in each body format, batched and not, with 1..3 copies, and
 * each body must be valid JSON of the documented shape. Also json_scan on
 * the raw input and json_string_decode / json_escape round trips on its
 * top-level keys and string members. A broken invariant abort()s. */
#include "formats.h"

#include "hookd/event.h"
#include "hookd/json.h"
#include "hookd/log.h"

#define FUZZ_NAME "fuzz_job"
#include "fuzz_common.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MEMBERS 32

/* Decodes the JSON string 'quoted' both ways; the results must agree, be
 * valid UTF-8, and survive json_escape -> json_scan -> decode unchanged. */
static void check_string(json_span_t quoted)
{
    size_t cap = quoted.len + 1; /* decoding never grows the text */
    char *out = malloc(cap);
    if (!out) abort();
    long n = json_string_decode(quoted, out, cap);
    strbuf_t sb;
    strbuf_init(&sb, 16);
    int rc = json_string_decode_buf(quoted, &sb);
    CHECK((n < 0) == (rc < 0));
    if (n >= 0) {
        CHECK((size_t)n == sb.len && memcmp(out, sb.data, sb.len) == 0);
        CHECK(strlen(out) == (size_t)n); /* \u0000 is refused, so no NUL inside */
        CHECK(json_utf8_valid(out, (size_t)n));
        /* a buffer one byte short must fail, not overflow */
        char *shortbuf = malloc((size_t)n + 1);
        if (!shortbuf) abort();
        CHECK(json_string_decode(quoted, shortbuf, (size_t)n) < 0);
        CHECK(json_string_decode(quoted, shortbuf, (size_t)n + 1) == n);
        free(shortbuf);

        strbuf_t esc;
        strbuf_init(&esc, 16);
        json_escape(&esc, out, (size_t)n);
        char *copy = dup_exact(esc.data, esc.len);
        CHECK(json_scan(copy, esc.len, NULL, 0, NULL, NULL, 0) == JSON_STRING);
        json_span_t again = {copy, esc.len};
        char *back = malloc((size_t)n + 1);
        if (!back) abort();
        CHECK(json_string_decode(again, back, (size_t)n + 1) == n);
        CHECK(memcmp(back, out, (size_t)n) == 0);
        free(back);
        free(copy);
        strbuf_free(&esc);
    }
    strbuf_free(&sb);
    free(out);
}

static void fuzz_scan(const char *buf, size_t len)
{
    json_member_t m[MAX_MEMBERS];
    int n = -1;
    char err[128];
    json_type_t t = json_scan(buf, len, m, MAX_MEMBERS, &n, err, sizeof(err));
    if (t == JSON_NONE) {
        CHECK(n == 0);
        CHECK(strncmp(err, "invalid JSON at byte ", 21) == 0);
        return;
    }
    CHECK(json_utf8_valid(buf, len));
    /* without a member array the verdict is the same */
    CHECK(json_scan(buf, len, NULL, 0, NULL, NULL, 0) == t);
    if (t != JSON_OBJECT) {
        CHECK(n == 0);
        return;
    }
    int stored = n < MAX_MEMBERS ? n : MAX_MEMBERS;
    for (int i = 0; i < stored; i++) {
        const json_member_t *mb = &m[i];
        CHECK(mb->key.p > buf && mb->key.p + mb->key.len < buf + len);
        CHECK(mb->key.p[-1] == '"' && mb->key.p[mb->key.len] == '"');
        CHECK(mb->value.p >= buf && mb->value.len > 0 && mb->value.p + mb->value.len <= buf + len);
        /* each member value is itself one valid JSON value of that type */
        CHECK(json_scan(mb->value.p, mb->value.len, NULL, 0, NULL, NULL, 0) == mb->type);
        json_span_t key = {mb->key.p - 1, mb->key.len + 2};
        check_string(key);
        if (mb->type == JSON_STRING) check_string(mb->value);
    }
}

/* Parses a body with json-c (strict, UTF-8 checked, deeper than hookd's own
 * scanner: a payload at the depth limit is still nested one or two levels
 * deeper in a batch). Returns the document (caller puts it) or NULL. */
static json_object *parse_body(const strbuf_t *body)
{
    json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH + 8);
    if (!tok) abort();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *doc = json_tokener_parse_ex(tok, body->data, (int)body->len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    if (e != json_tokener_success || json_tokener_get_parse_end(tok) != body->len) {
        fprintf(stderr, "fuzz_job: invalid body (%s at %d): %.*s\n", json_tokener_error_desc(e),
                (int)json_tokener_get_parse_end(tok), (int)body->len, body->data);
        json_object_put(doc);
        doc = NULL;
    }
    json_tokener_free(tok);
    return doc;
}

static void check_member(json_object *item, const char *key, const char *want)
{
    json_object *v = NULL;
    CHECK(json_object_object_get_ex(item, key, &v));
    CHECK(json_object_is_type(v, json_type_string));
    CHECK(strcmp(json_object_get_string(v), want) == 0);
}

/* One item of a standard / vcita / vyte body. */
static void check_item(body_format_t f, json_object *item, const job_t *job)
{
    CHECK(json_object_is_type(item, json_type_object));
    char action[EVENT_TYPE_MAX];
    switch (f) {
    case FORMAT_STANDARD:
        check_member(item, "type", job->type);
        check_member(item, "id", job->event_id);
        check_member(item, "account", job->account);
        CHECK(json_object_object_get_ex(item, "timestamp", NULL));
        CHECK(json_object_object_get_ex(item, "data", NULL));
        break;
    case FORMAT_VCITA:
        check_member(item, "event", job->type);
        check_member(item, "account", job->account);
        CHECK(json_object_object_get_ex(item, "data", NULL));
        break;
    case FORMAT_VYTE:
        snprintf(action, sizeof(action), "%s", job->type);
        for (char *p = action; *p; p++)
            if (*p == '/') *p = '.';
        check_member(item, "action", action);
        check_member(item, "organization", job->account);
        CHECK(json_object_object_get_ex(item, "resource", NULL));
        break;
    default:
        break;
    }
}

static void fuzz_formats(const job_t *job)
{
    const job_t *jobs[3] = {job, job, job};
    for (int f = FORMAT_STANDARD; f <= FORMAT_VIK; f++) {
        for (int batch = 0; batch < 2; batch++) {
            bool joins = format_can_join((body_format_t)f, batch, job, job);
            if (!batch) CHECK(!joins);
            for (int n = 1; n <= 3; n++) {
                bool legal = n == 1 || joins;
                strbuf_t body;
                strbuf_init(&body, 64);
                format_body((body_format_t)f, batch, jobs, n, &body);
                /* every body is JSON, even for a combination callers never ask for */
                json_object *doc = parse_body(&body);
                CHECK(doc != NULL);
                if (legal && f == FORMAT_VIK) {
                    if (n == 1) {
                        CHECK(body.len == job->payload.len &&
                              memcmp(body.data, job->payload.p, body.len) == 0);
                    } else {
                        json_object *ids = NULL;
                        CHECK(json_object_is_type(doc, json_type_object));
                        CHECK(json_object_object_length(doc) == 1);
                        CHECK(json_object_object_get_ex(doc, "id", &ids));
                        CHECK(json_object_is_type(ids, json_type_array));
                    }
                } else if (legal) {
                    if (f == FORMAT_VYTE || batch) {
                        CHECK(json_object_is_type(doc, json_type_array));
                        CHECK(json_object_array_length(doc) == (size_t)n);
                        for (int i = 0; i < n; i++)
                            check_item((body_format_t)f, json_object_array_get_idx(doc, (size_t)i),
                                       job);
                    } else {
                        check_item((body_format_t)f, doc, job);
                    }
                }
                json_object_put(doc);
                if (n == 1 && batch == 0 && f == FORMAT_STANDARD) {
                    struct curl_slist *h = format_headers(job->id, 1795000000,
                                                          "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                                          NULL, body.data, body.len);
                    CHECK(h != NULL);
                    curl_slist_free_all(h);
                }
                strbuf_free(&body);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = dup_exact(data, size);
    fuzz_scan(buf, size);

    job_t job;
    char err[256];
    if (job_decode(buf, size, &job, err, sizeof(err)) == 0) {
        CHECK(strlen(job.id) == SIGN_JOB_ID_LEN);
        CHECK(job.event_id[0] && job.subscription_id[0] && job.endpoint_id[0] && job.type[0] &&
              job.account[0]);
        CHECK(job.payload.p >= buf && job.payload.p + job.payload.len <= buf + size);
        json_type_t pt = json_scan(job.payload.p, job.payload.len, NULL, 0, NULL, NULL, 0);
        CHECK(pt == JSON_OBJECT || pt == JSON_ARRAY);
        fuzz_formats(&job);
    } else {
        CHECK(strnlen(err, sizeof(err)) < sizeof(err) && err[0]);
    }
    free(buf);
    return 0;
}
