/* Event parsing (native, CloudEvents structured and binary), type
 * normalisation, and the job message encoder/decoder. */
#include "hookd/event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENT_MAX_MEMBERS 64

static const char *error_names[EVENT_ERR__COUNT] = {
    "ok", "too_large", "invalid_json", "not_object", "missing_field", "invalid_field",
    "unknown_type",
};

const char *event_error_name(event_error_t e)
{
    return e < EVENT_ERR__COUNT ? error_names[e] : "unknown";
}

static const char *payload_names[] = {"basic", "full", "extended"};
static const char *format_names[] = {"standard", "vyte", "vcita", "vik"};

const char *payload_mode_name(payload_mode_t m)
{
    return (unsigned)m < 3 ? payload_names[m] : "full";
}

int payload_mode_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, payload_names[i]) == 0) return i;
    return -1;
}

const char *body_format_name(body_format_t f)
{
    return (unsigned)f < 4 ? format_names[f] : "standard";
}

int body_format_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, format_names[i]) == 0) return i;
    return -1;
}

/* ---- type normalisation ---- */

static bool part_ok(const char *p, size_t n)
{
    if (n == 0 || n > 63) return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const struct {
    const char *verb, *past;
} verb_aliases[] = {
    {"create", "created"}, {"update", "updated"},     {"delete", "deleted"},
    {"cancel", "cancelled"}, {"confirm", "confirmed"},
};

int event_type_normalize(const char *in, size_t len, char *out, size_t out_size, bool pattern)
{
    if (pattern && len == 1 && in[0] == '*') {
        if (out_size < 2) return -1;
        memcpy(out, "*", 2);
        return 0;
    }
    const char *slash = memchr(in, '/', len);
    const char *ent, *ev;
    size_t ent_len, ev_len;
    if (slash) {
        ent = in;
        ent_len = (size_t)(slash - in);
        ev = slash + 1;
        ev_len = len - ent_len - 1;
        if (memchr(ev, '/', ev_len)) return -1;
    } else {
        /* entity.event, or reverse-DNS a.b.entity.event: keep the last two */
        const char *last = NULL, *prev = NULL;
        for (const char *p = in; p < in + len; p++) {
            if (*p == '.') {
                prev = last;
                last = p;
            }
        }
        if (!last) return -1;
        ent = prev ? prev + 1 : in;
        ent_len = (size_t)(last - ent);
        ev = last + 1;
        ev_len = len - (size_t)(ev - in);
    }
    if (!part_ok(ent, ent_len)) return -1;
    bool star = pattern && ev_len == 1 && ev[0] == '*';
    if (!star && !part_ok(ev, ev_len)) return -1;
    int n = snprintf(out, out_size, "%.*s/%.*s", (int)ent_len, ent, (int)ev_len, ev);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

bool event_type_past_tense(const char *type, char *out, size_t out_size)
{
    const char *slash = strchr(type, '/');
    if (!slash || strncmp(type, "custom/", 7) == 0) return false;
    for (size_t i = 0; i < HOOKD_ARRAY_LEN(verb_aliases); i++) {
        if (strcmp(slash + 1, verb_aliases[i].verb) == 0) {
            int n = snprintf(out, out_size, "%.*s/%s", (int)(slash - type), type,
                             verb_aliases[i].past);
            return n > 0 && (size_t)n < out_size;
        }
    }
    return false;
}

/* ---- event parsing ---- */

typedef struct {
    char *err;
    size_t err_size;
} perr_t;

__attribute__((format(printf, 3, 4))) static event_error_t fail(perr_t *pe, event_error_t code,
                                                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pe->err, pe->err_size, fmt, ap);
    va_end(ap);
    return code;
}

/* Copies a string (or number) member into 'out'. Returns 0 when copied, 1 when
 * absent or null, -1 when of the wrong type, too long or empty. */
static int get_text(const json_member_t *m, char *out, size_t out_size, bool allow_number)
{
    out[0] = '\0';
    if (!m || m->type == JSON_NULL) return 1;
    if (m->type == JSON_STRING) {
        long n = json_string_decode(m->value, out, out_size);
        return n <= 0 ? -1 : 0;
    }
    if (allow_number && m->type == JSON_NUMBER && m->value.len < out_size) {
        memcpy(out, m->value.p, m->value.len);
        out[m->value.len] = '\0';
        return 0;
    }
    return -1;
}

static event_error_t text_field(perr_t *pe, const json_member_t *members, int n, const char *key,
                                char *out, size_t out_size, bool required, bool allow_number)
{
    int r = get_text(json_find(members, n, key), out, out_size, allow_number);
    if (r < 0)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "field '%s' must be a non-empty string", key);
    if (r == 1 && required) return fail(pe, EVENT_ERR_MISSING_FIELD, "missing field '%s'", key);
    return EVENT_OK;
}

/* Raw span of an object/array member; absent/null -> empty span. */
static event_error_t json_field(perr_t *pe, const json_member_t *members, int n, const char *key,
                                json_span_t *out, bool required)
{
    const json_member_t *m = json_find(members, n, key);
    out->p = NULL;
    out->len = 0;
    if (!m || m->type == JSON_NULL) {
        if (required) return fail(pe, EVENT_ERR_MISSING_FIELD, "missing field '%s'", key);
        return EVENT_OK;
    }
    if (m->type != JSON_OBJECT && m->type != JSON_ARRAY)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "field '%s' must be an object or an array", key);
    *out = m->value;
    return EVENT_OK;
}

static event_error_t set_type(perr_t *pe, event_t *ev, const char *raw)
{
    size_t len = strlen(raw);
    if (!memchr(raw, '/', len) && !memchr(raw, '.', len) && part_ok(raw, len)) {
        /* a Communico-style hook name such as "eventAdded": an alias */
        memcpy(ev->type, raw, len + 1);
        ev->type_is_alias = true;
        return EVENT_OK;
    }
    if (event_type_normalize(raw, len, ev->type, sizeof(ev->type), false) < 0)
        return fail(pe, EVENT_ERR_INVALID_FIELD,
                    "field '%s' must look like entity/event (letters, digits, _ or -)", "type");
    return EVENT_OK;
}

static event_error_t set_time(perr_t *pe, event_t *ev, const char *text, const char *field)
{
    if (text[0] && hookd_parse_time(text, strlen(text), &ev->occurred_at_ms) < 0)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "field '%s' must be an RFC 3339 timestamp",
                    field);
    return EVENT_OK;
}

/* Finds "<seg>/<value>" in a CloudEvents source and copies <value>. */
static void source_segment(const char *source, const char *seg, char *out, size_t out_size)
{
    size_t sl = strlen(seg);
    for (const char *p = source; (p = strstr(p, seg)) != NULL; p += sl) {
        if ((p == source || p[-1] == '/' || p[-1] == ':') && p[sl] == '/') {
            const char *v = p + sl + 1;
            size_t n = strcspn(v, "/?#");
            if (n > 0 && n < out_size) {
                memcpy(out, v, n);
                out[n] = '\0';
                return;
            }
        }
    }
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        event_error_t e_ = (x);                                                                    \
        if (e_ != EVENT_OK) return e_;                                                             \
    } while (0)

static event_error_t parse_native(perr_t *pe, const json_member_t *m, int n, event_t *ev)
{
    char type[EVENT_TYPE_MAX], when[64];
    ev->format = EVENT_NATIVE;
    TRY(text_field(pe, m, n, "id", ev->id, sizeof(ev->id), true, true));
    TRY(text_field(pe, m, n, "type", type, sizeof(type), true, false));
    TRY(set_type(pe, ev, type));
    TRY(text_field(pe, m, n, "account", ev->account, sizeof(ev->account), true, true));
    TRY(text_field(pe, m, n, "directory", ev->directory, sizeof(ev->directory), false, true));
    TRY(text_field(pe, m, n, "status", ev->status, sizeof(ev->status), false, false));
    TRY(text_field(pe, m, n, "previous_status", ev->previous_status, sizeof(ev->previous_status),
                   false, false));
    TRY(text_field(pe, m, n, "user", ev->user, sizeof(ev->user), false, true));
    TRY(text_field(pe, m, n, "occurred_at", when, sizeof(when), false, false));
    TRY(set_time(pe, ev, when, "occurred_at"));
    TRY(json_field(pe, m, n, "data", &ev->data, true));
    TRY(json_field(pe, m, n, "changes", &ev->changes, false));
    TRY(json_field(pe, m, n, "extended", &ev->extended, false));
    return EVENT_OK;
}

/* Maps CloudEvents attributes to the model (README "CloudEvents"). */
static event_error_t cloudevent_owner(perr_t *pe, event_t *ev, const char *source,
                                      const char *subject)
{
    if (!ev->account[0]) source_segment(source, "accounts", ev->account, sizeof(ev->account));
    if (!ev->account[0] && subject[0]) snprintf(ev->account, sizeof(ev->account), "%s", subject);
    if (!ev->directory[0])
        source_segment(source, "directories", ev->directory, sizeof(ev->directory));
    if (!ev->account[0])
        return fail(pe, EVENT_ERR_MISSING_FIELD,
                    "missing '%s' (CloudEvents: account extension, source .../accounts/<id> "
                    "or subject)",
                    "account");
    return EVENT_OK;
}

static event_error_t parse_structured(perr_t *pe, const json_member_t *m, int n, event_t *ev)
{
    char spec[16], type[EVENT_TYPE_MAX], source[512], subject[EVENT_OWNER_MAX], when[64];
    ev->format = EVENT_CLOUDEVENT_STRUCTURED;
    TRY(text_field(pe, m, n, "specversion", spec, sizeof(spec), true, false));
    if (strcmp(spec, "1.0") != 0)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "field '%s' must be \"1.0\"", "specversion");
    TRY(text_field(pe, m, n, "id", ev->id, sizeof(ev->id), true, false));
    TRY(text_field(pe, m, n, "type", type, sizeof(type), true, false));
    TRY(set_type(pe, ev, type));
    TRY(text_field(pe, m, n, "source", source, sizeof(source), true, false));
    TRY(text_field(pe, m, n, "subject", subject, sizeof(subject), false, false));
    TRY(text_field(pe, m, n, "account", ev->account, sizeof(ev->account), false, true));
    TRY(text_field(pe, m, n, "directory", ev->directory, sizeof(ev->directory), false, true));
    TRY(text_field(pe, m, n, "status", ev->status, sizeof(ev->status), false, false));
    TRY(text_field(pe, m, n, "previousstatus", ev->previous_status, sizeof(ev->previous_status),
                   false, false));
    TRY(text_field(pe, m, n, "user", ev->user, sizeof(ev->user), false, true));
    TRY(text_field(pe, m, n, "time", when, sizeof(when), false, false));
    TRY(set_time(pe, ev, when, "time"));
    if (json_find(m, n, "data_base64"))
        return fail(pe, EVENT_ERR_INVALID_FIELD, "field '%s' is not supported, use data",
                    "data_base64");
    TRY(json_field(pe, m, n, "data", &ev->data, true));
    TRY(json_field(pe, m, n, "changes", &ev->changes, false));
    TRY(json_field(pe, m, n, "extended", &ev->extended, false));
    return cloudevent_owner(pe, ev, source, subject);
}

static const event_header_t *find_header(const event_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name && strcmp(h[i].name, name) == 0) return &h[i];
    return NULL;
}

/* Copies header 'name' into 'out'. 0 copied, 1 absent, -1 invalid. */
static int header_text(const event_header_t *h, size_t n, const char *name, char *out,
                       size_t out_size)
{
    const event_header_t *x = find_header(h, n, name);
    out[0] = '\0';
    if (!x || !x->value) return 1;
    if (x->len == 0 || x->len >= out_size || memchr(x->value, 0, x->len) ||
        !json_utf8_valid(x->value, x->len))
        return -1;
    memcpy(out, x->value, x->len);
    out[x->len] = '\0';
    return 0;
}

static event_error_t header_field(perr_t *pe, const event_header_t *h, size_t n, const char *name,
                                  char *out, size_t out_size, bool required)
{
    int r = header_text(h, n, name, out, out_size);
    if (r < 0)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "header '%s' must be a non-empty UTF-8 string",
                    name);
    if (r == 1 && required) return fail(pe, EVENT_ERR_MISSING_FIELD, "missing header '%s'", name);
    return EVENT_OK;
}

static event_error_t parse_binary(perr_t *pe, const char *value, size_t len,
                                  const event_header_t *h, size_t n, event_t *ev)
{
    char spec[16], type[EVENT_TYPE_MAX], source[512], subject[EVENT_OWNER_MAX], when[64];
    char why[160];
    ev->format = EVENT_CLOUDEVENT_BINARY;
    TRY(header_field(pe, h, n, "ce_specversion", spec, sizeof(spec), true));
    if (strcmp(spec, "1.0") != 0)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "header '%s' must be 1.0", "ce_specversion");
    TRY(header_field(pe, h, n, "ce_id", ev->id, sizeof(ev->id), true));
    TRY(header_field(pe, h, n, "ce_type", type, sizeof(type), true));
    TRY(set_type(pe, ev, type));
    TRY(header_field(pe, h, n, "ce_source", source, sizeof(source), true));
    TRY(header_field(pe, h, n, "ce_subject", subject, sizeof(subject), false));
    TRY(header_field(pe, h, n, "ce_account", ev->account, sizeof(ev->account), false));
    TRY(header_field(pe, h, n, "ce_directory", ev->directory, sizeof(ev->directory), false));
    TRY(header_field(pe, h, n, "ce_status", ev->status, sizeof(ev->status), false));
    TRY(header_field(pe, h, n, "ce_previousstatus", ev->previous_status,
                     sizeof(ev->previous_status), false));
    TRY(header_field(pe, h, n, "ce_user", ev->user, sizeof(ev->user), false));
    TRY(header_field(pe, h, n, "ce_time", when, sizeof(when), false));
    TRY(set_time(pe, ev, when, "ce_time"));
    json_type_t t = json_scan(value, len, NULL, 0, NULL, why, sizeof(why));
    if (t == JSON_NONE) {
        snprintf(pe->err, pe->err_size, "data: %s", why);
        return EVENT_ERR_INVALID_JSON;
    }
    if (t != JSON_OBJECT && t != JSON_ARRAY)
        return fail(pe, EVENT_ERR_INVALID_FIELD, "%s must be a JSON object or array", "data");
    /* the value without the whitespace around it, like the spans of the
     * other formats (job_decode would drop it, so payloads stay byte-exact) */
    while (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
           value[len - 1] == '\n')
        len--;
    while (value[0] == ' ' || value[0] == '\t' || value[0] == '\r' || value[0] == '\n') {
        value++;
        len--;
    }
    ev->data.p = value;
    ev->data.len = len;
    return cloudevent_owner(pe, ev, source, subject);
}

event_error_t event_parse(const char *value, size_t len, const event_header_t *headers,
                          size_t n_headers, size_t max_bytes, event_t *ev, char *err,
                          size_t err_size)
{
    perr_t pe = {err, err_size};
    json_member_t members[EVENT_MAX_MEMBERS];
    int n = 0;
    memset(ev, 0, sizeof(*ev));
    err[0] = '\0';
    if (len > max_bytes) {
        snprintf(err, err_size, "event of %zu bytes exceeds the limit of %zu", len, max_bytes);
        return EVENT_ERR_TOO_LARGE;
    }
    if (!value) {
        snprintf(err, err_size, "empty message (tombstone)");
        return EVENT_ERR_INVALID_JSON;
    }
    if (find_header(headers, n_headers, "ce_specversion"))
        return parse_binary(&pe, value, len, headers, n_headers, ev);
    json_type_t t = json_scan(value, len, members, EVENT_MAX_MEMBERS, &n, err, err_size);
    if (t == JSON_NONE) return EVENT_ERR_INVALID_JSON;
    if (t != JSON_OBJECT) {
        snprintf(err, err_size, "event must be a JSON object");
        return EVENT_ERR_NOT_OBJECT;
    }
    if (n > EVENT_MAX_MEMBERS) {
        snprintf(err, err_size, "event has %d top-level fields, at most %d are allowed", n,
                 EVENT_MAX_MEMBERS);
        return EVENT_ERR_INVALID_FIELD;
    }
    if (json_find(members, n, "specversion")) return parse_structured(&pe, members, n, ev);
    return parse_native(&pe, members, n, ev);
}

json_span_t event_payload(const event_t *ev, payload_mode_t mode)
{
    if (mode == PAYLOAD_BASIC && ev->changes.len) return ev->changes;
    if (mode == PAYLOAD_EXTENDED && ev->extended.len) return ev->extended;
    return ev->data;
}

/* ---- jobs ---- */

static void put_field(strbuf_t *out, const char *key, const char *value)
{
    strbuf_putc(out, ',');
    strbuf_putc(out, '"');
    strbuf_puts(out, key);
    strbuf_append(out, "\":", 2);
    json_escape(out, value, strlen(value));
}

void job_encode(strbuf_t *out, const event_t *ev, const char *job_id, const char *subscription_id,
                const char *endpoint_id, payload_mode_t mode, int64_t ingested_at_ms)
{
    char when[40];
    json_span_t payload = event_payload(ev, mode);
    strbuf_reserve(out, 512 + payload.len);
    strbuf_append(out, "{\"v\":1", 6);
    put_field(out, "id", job_id);
    put_field(out, "event_id", ev->id);
    put_field(out, "subscription_id", subscription_id);
    put_field(out, "endpoint_id", endpoint_id);
    put_field(out, "type", ev->type);
    put_field(out, "account", ev->account);
    if (ev->directory[0]) put_field(out, "directory", ev->directory);
    if (ev->status[0]) put_field(out, "status", ev->status);
    if (ev->user[0]) put_field(out, "user", ev->user);
    hookd_format_time(ev->occurred_at_ms, when, sizeof(when));
    put_field(out, "occurred_at", when);
    strbuf_printf(out, ",\"ingested_at_ms\":%lld,\"payload\":", (long long)ingested_at_ms);
    strbuf_append(out, payload.p, payload.len);
    strbuf_putc(out, '}');
}

static int job_text(const json_member_t *m, int n, const char *key, char *out, size_t out_size,
                    bool required, char *err, size_t err_size)
{
    int r = get_text(json_find(m, n, key), out, out_size, false);
    if (r < 0 || (r == 1 && required)) {
        snprintf(err, err_size, "job field '%s' missing or invalid", key);
        return -1;
    }
    return 0;
}

int job_decode(const char *buf, size_t len, job_t *job, char *err, size_t err_size)
{
    json_member_t m[32];
    int n = 0;
    char when[64];
    memset(job, 0, sizeof(*job));
    json_type_t t = json_scan_depth(buf, len, JSON_JOB_MAX_DEPTH, m, 32, &n, err, err_size);
    if (t != JSON_OBJECT) {
        if (t != JSON_NONE) snprintf(err, err_size, "job must be a JSON object");
        return -1;
    }
    if (n > 32) n = 32;
    if (job_text(m, n, "id", job->id, sizeof(job->id), true, err, err_size) ||
        job_text(m, n, "event_id", job->event_id, sizeof(job->event_id), true, err, err_size) ||
        job_text(m, n, "subscription_id", job->subscription_id, sizeof(job->subscription_id), true,
                 err, err_size) ||
        job_text(m, n, "endpoint_id", job->endpoint_id, sizeof(job->endpoint_id), true, err,
                 err_size) ||
        job_text(m, n, "type", job->type, sizeof(job->type), true, err, err_size) ||
        job_text(m, n, "account", job->account, sizeof(job->account), true, err, err_size) ||
        job_text(m, n, "directory", job->directory, sizeof(job->directory), false, err,
                 err_size) ||
        job_text(m, n, "status", job->status, sizeof(job->status), false, err, err_size) ||
        job_text(m, n, "user", job->user, sizeof(job->user), false, err, err_size) ||
        job_text(m, n, "occurred_at", when, sizeof(when), true, err, err_size))
        return -1;
    if (strlen(job->id) != SIGN_JOB_ID_LEN || strspn(job->id, "0123456789abcdef") != SIGN_JOB_ID_LEN) {
        snprintf(err, err_size, "job field 'id' must be %d lower-case hex characters",
                 SIGN_JOB_ID_LEN);
        return -1;
    }
    if (hookd_parse_time(when, strlen(when), &job->occurred_at_ms) < 0) {
        snprintf(err, err_size, "job field 'occurred_at' is not an RFC 3339 timestamp");
        return -1;
    }
    const json_member_t *ia = json_find(m, n, "ingested_at_ms");
    if (ia && ia->type == JSON_NUMBER) {
        char num[32];
        size_t l = ia->value.len < sizeof(num) - 1 ? ia->value.len : sizeof(num) - 1;
        memcpy(num, ia->value.p, l);
        num[l] = '\0';
        job->ingested_at_ms = strtoll(num, NULL, 10);
    }
    const json_member_t *p = json_find(m, n, "payload");
    if (!p || (p->type != JSON_OBJECT && p->type != JSON_ARRAY)) {
        snprintf(err, err_size, "job field 'payload' missing or not an object/array");
        return -1;
    }
    job->payload = p->value;
    return 0;
}
