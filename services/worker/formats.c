/* Request bodies (standard, vyte, vcita, vik) and Standard Webhooks headers
 * of a delivery (SPEC §7). Byte-exact: no insignificant whitespace is added. */
#include "formats.h"

#include "hookd/json.h"
#include "hookd/sign.h"

#include <stdio.h>
#include <string.h>

#define VIK_MAX_MEMBERS 64

/* The "id" member of a vik payload object, or NULL when the payload is not
 * an object or has no usable id (number, string or array of them). */
static bool vik_payload_id(const job_t *job, json_span_t *id)
{
    json_member_t m[VIK_MAX_MEMBERS];
    int n = 0;
    char err[8];
    if (!job->payload.p || job->payload.len == 0) return false;
    if (json_scan(job->payload.p, job->payload.len, m, VIK_MAX_MEMBERS, &n, err, sizeof(err)) !=
        JSON_OBJECT)
        return false;
    if (n > VIK_MAX_MEMBERS) n = VIK_MAX_MEMBERS;
    const json_member_t *v = json_find(m, n, "id");
    if (!v || (v->type != JSON_NUMBER && v->type != JSON_STRING && v->type != JSON_ARRAY))
        return false;
    *id = v->value;
    return true;
}

/* True for "<entity>/deleted". */
static bool is_delete(const char *type)
{
    const char *slash = strchr(type, '/');
    return slash && slash != type && strcmp(slash + 1, "deleted") == 0;
}

bool format_can_join(body_format_t format, bool batch, const job_t *first, const job_t *next)
{
    json_span_t id;
    if (!batch) return false;
    /* one request carries one subscription's signature */
    if (strcmp(first->subscription_id, next->subscription_id) != 0) return false;
    if (format != FORMAT_VIK) return true;
    return is_delete(first->type) && strcmp(first->type, next->type) == 0 &&
           vik_payload_id(first, &id) && vik_payload_id(next, &id);
}

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Appends the elements of the (valid) JSON array 'arr' to 'out', each
 * followed by a comma, without the whitespace between them. Returns the
 * number of elements appended. */
static int append_array_elements(strbuf_t *out, json_span_t arr)
{
    const char *p = arr.p + 1, *end = arr.p + arr.len - 1; /* inside the brackets */
    int count = 0;
    while (p < end) {
        while (p < end && (is_ws(*p) || *p == ','))
            p++;
        if (p >= end) break;
        const char *start = p;
        int depth = 0;
        bool in_str = false;
        for (; p < end; p++) {
            char c = *p;
            if (in_str) {
                if (c == '\\')
                    p++;
                else if (c == '"')
                    in_str = false;
            } else if (c == '"') {
                in_str = true;
            } else if (c == '[' || c == '{') {
                depth++;
            } else if (c == ']' || c == '}') {
                depth--;
            } else if (depth == 0 && (c == ',' || is_ws(c))) {
                break;
            }
        }
        strbuf_append(out, start, (size_t)(p - start));
        strbuf_putc(out, ',');
        count++;
    }
    return count;
}

/* {"id":[a,b,c]} from the ids of deletes; array ids are flattened in. */
static void vik_merged_deletes(const job_t *const *jobs, int n, strbuf_t *out)
{
    size_t mark;
    int count = 0;
    strbuf_append(out, "{\"id\":[", 7);
    mark = out->len;
    for (int i = 0; i < n; i++) {
        json_span_t id;
        if (!vik_payload_id(jobs[i], &id)) continue; /* format_can_join never joins these */
        if (id.p[0] == '[') {
            count += append_array_elements(out, id);
        } else {
            strbuf_append(out, id.p, id.len);
            strbuf_putc(out, ',');
            count++;
        }
    }
    if (count > 0 && out->len > mark) out->len--; /* trailing comma */
    strbuf_append(out, "]}", 2);
}

static void put_key(strbuf_t *out, const char *key_colon, size_t len)
{
    strbuf_append(out, key_colon, len);
}
#define PUT_KEY(out, lit) put_key((out), (lit), sizeof(lit) - 1)

static void put_string(strbuf_t *out, const char *s)
{
    json_escape(out, s, strlen(s));
}

static void put_payload(strbuf_t *out, const job_t *job)
{
    if (job->payload.p && job->payload.len)
        strbuf_append(out, job->payload.p, job->payload.len);
    else
        strbuf_append(out, "null", 4);
}

/* ,"account":...[,"directory":...],"data":<payload>} ending an item */
static void put_owner_data(strbuf_t *out, const job_t *job)
{
    PUT_KEY(out, ",\"account\":");
    put_string(out, job->account);
    if (job->directory[0]) {
        PUT_KEY(out, ",\"directory\":");
        put_string(out, job->directory);
    }
    PUT_KEY(out, ",\"data\":");
    put_payload(out, job);
    strbuf_putc(out, '}');
}

static void item_standard(strbuf_t *out, const job_t *job)
{
    char when[40];
    hookd_format_time(job->occurred_at_ms, when, sizeof(when));
    PUT_KEY(out, "{\"type\":");
    put_string(out, job->type);
    PUT_KEY(out, ",\"id\":");
    put_string(out, job->event_id);
    PUT_KEY(out, ",\"timestamp\":\"");
    strbuf_puts(out, when);
    strbuf_putc(out, '"');
    put_owner_data(out, job);
}

static void item_vcita(strbuf_t *out, const job_t *job)
{
    PUT_KEY(out, "{\"event\":");
    put_string(out, job->type);
    put_owner_data(out, job);
}

static void item_vyte(strbuf_t *out, const job_t *job)
{
    char action[EVENT_TYPE_MAX];
    size_t i;
    /* "event/cancelled" -> "event.cancelled" */
    for (i = 0; job->type[i] && i < sizeof(action) - 1; i++)
        action[i] = job->type[i] == '/' ? '.' : job->type[i];
    action[i] = '\0';
    PUT_KEY(out, "{\"action\":");
    put_string(out, action);
    PUT_KEY(out, ",\"resource\":");
    put_payload(out, job);
    PUT_KEY(out, ",\"organization\":");
    put_string(out, job->account);
    if (job->user[0]) {
        PUT_KEY(out, ",\"user\":");
        put_string(out, job->user);
    }
    strbuf_putc(out, '}');
}

void format_body(body_format_t format, bool batch, const job_t *const *jobs, int n, strbuf_t *out)
{
    void (*item)(strbuf_t *, const job_t *);
    if (n < 1) return;
    switch (format) {
    case FORMAT_VIK:
        if (n == 1)
            put_payload(out, jobs[0]);
        else
            vik_merged_deletes(jobs, n, out);
        return;
    case FORMAT_VYTE:
        item = item_vyte;
        batch = true; /* always an array, as Vyte documents */
        break;
    case FORMAT_VCITA:
        item = item_vcita;
        break;
    case FORMAT_STANDARD:
    default:
        item = item_standard;
        break;
    }
    size_t hint = 0;
    for (int i = 0; i < n; i++)
        hint += jobs[i]->payload.len + 160;
    strbuf_reserve(out, hint);
    if (!batch && n == 1) {
        item(out, jobs[0]);
        return;
    }
    /* (n > 1 without batch is a caller error: still send every job, as an array) */
    strbuf_putc(out, '[');
    for (int i = 0; i < n; i++) {
        if (i) strbuf_putc(out, ',');
        item(out, jobs[i]);
    }
    strbuf_putc(out, ']');
}

/* True when 's' can go into a header value unchanged. */
static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
    return true;
}

struct curl_slist *format_headers(const char *webhook_id, int64_t timestamp_s, const char *secret,
                                  const char *previous_secret, const char *body, size_t body_len)
{
    char sig[SIGN_SIGNATURE_MAX], prev[SIGN_SIGNATURE_MAX];
    char line[64 + 2 * SIGN_SIGNATURE_MAX + 320];
    struct curl_slist *list = NULL, *next;
    bool rotating = previous_secret && previous_secret[0];

    if (!webhook_id || !secret || !header_safe(webhook_id) || strlen(webhook_id) > 256) return NULL;
    if (sign_webhook(secret, webhook_id, (long long)timestamp_s, body, body_len, sig) < 0)
        return NULL;
    if (rotating &&
        sign_webhook(previous_secret, webhook_id, (long long)timestamp_s, body, body_len, prev) < 0)
        return NULL;

    if (!(next = curl_slist_append(list, "Content-Type: application/json"))) goto fail;
    list = next;
    snprintf(line, sizeof(line), "webhook-id: %s", webhook_id);
    if (!(next = curl_slist_append(list, line))) goto fail;
    list = next;
    snprintf(line, sizeof(line), "webhook-timestamp: %lld", (long long)timestamp_s);
    if (!(next = curl_slist_append(list, line))) goto fail;
    list = next;
    if (rotating)
        snprintf(line, sizeof(line), "webhook-signature: %s %s", sig, prev);
    else
        snprintf(line, sizeof(line), "webhook-signature: %s", sig);
    if (!(next = curl_slist_append(list, line))) goto fail;
    return next;

fail:
    curl_slist_free_all(list);
    return NULL;
}
