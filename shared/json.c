/* Validating JSON scanner (no allocation, no DOM), string decoding and
 * escaping. Used on every event and every job, so it is kept tight. */
#include "hookd/json.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *p, *end, *start;
    const char *why;
    int max_depth;
} scanner_t;

static inline void skip_ws(scanner_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Length of the UTF-8 sequence at p (valid, strict), or 0. */
static inline size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p < 2 || (p[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] > 0x9F) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && p[1] > 0x8F) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

bool json_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = utf8_seq(p, end);
        if (!n) return false;
        p += n;
    }
    return true;
}

static inline int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int scan_string(scanner_t *s)
{
    s->p++; /* opening quote */
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c == '\\') {
            if (s->p + 1 >= s->end) break;
            char e = s->p[1];
            if (e == 'u') {
                if (s->end - s->p < 6 || hexval(s->p[2]) < 0 || hexval(s->p[3]) < 0 ||
                    hexval(s->p[4]) < 0 || hexval(s->p[5]) < 0) {
                    s->why = "bad \\u escape";
                    return -1;
                }
                s->p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                s->p += 2;
            } else {
                s->why = "bad escape";
                return -1;
            }
            continue;
        }
        if (c < 0x20) {
            s->why = "control character in string";
            return -1;
        }
        if (c < 0x80) {
            s->p++;
            continue;
        }
        size_t n = utf8_seq((const unsigned char *)s->p, (const unsigned char *)s->end);
        if (!n) {
            s->why = "invalid UTF-8";
            return -1;
        }
        s->p += n;
    }
    s->why = "unterminated string";
    return -1;
}

static int scan_number(scanner_t *s)
{
    const char *p = s->p;
    if (p < s->end && *p == '-') p++;
    if (p >= s->end) goto bad;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    } else {
        goto bad;
    }
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9') goto bad;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        if (p >= s->end || *p < '0' || *p > '9') goto bad;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    s->p = p;
    return 0;
bad:
    s->why = "bad number";
    return -1;
}

static int scan_literal(scanner_t *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) {
        s->why = "unexpected character";
        return -1;
    }
    s->p += n;
    return 0;
}

static json_type_t scan_value(scanner_t *s, int depth, json_member_t *members, int max, int *count);

static json_type_t scan_object(scanner_t *s, int depth, json_member_t *members, int max,
                               int *count)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return JSON_OBJECT;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') {
            s->why = "expected a key";
            return JSON_NONE;
        }
        const char *k = s->p;
        if (scan_string(s) < 0) return JSON_NONE;
        json_span_t key = {k + 1, (size_t)(s->p - k - 2)};
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') {
            s->why = "expected ':'";
            return JSON_NONE;
        }
        s->p++;
        skip_ws(s);
        const char *v = s->p;
        json_type_t t = scan_value(s, depth + 1, NULL, 0, NULL);
        if (t == JSON_NONE) return JSON_NONE;
        if (members && count) {
            if (*count < max) {
                members[*count].key = key;
                members[*count].type = t;
                members[*count].value.p = v;
                members[*count].value.len = (size_t)(s->p - v);
            }
            (*count)++;
        }
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return JSON_OBJECT;
        }
        s->why = "expected ',' or '}'";
        return JSON_NONE;
    }
}

static json_type_t scan_array(scanner_t *s, int depth)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return JSON_ARRAY;
    }
    for (;;) {
        skip_ws(s);
        if (scan_value(s, depth + 1, NULL, 0, NULL) == JSON_NONE) return JSON_NONE;
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return JSON_ARRAY;
        }
        s->why = "expected ',' or ']'";
        return JSON_NONE;
    }
}

static json_type_t scan_value(scanner_t *s, int depth, json_member_t *members, int max, int *count)
{
    if (depth > s->max_depth) {
        s->why = "nested too deeply";
        return JSON_NONE;
    }
    if (s->p >= s->end) {
        s->why = "unexpected end";
        return JSON_NONE;
    }
    switch (*s->p) {
    case '{': return scan_object(s, depth, members, max, count);
    case '[': return scan_array(s, depth);
    case '"': return scan_string(s) < 0 ? JSON_NONE : JSON_STRING;
    case 't': return scan_literal(s, "true", 4) < 0 ? JSON_NONE : JSON_TRUE;
    case 'f': return scan_literal(s, "false", 5) < 0 ? JSON_NONE : JSON_FALSE;
    case 'n': return scan_literal(s, "null", 4) < 0 ? JSON_NONE : JSON_NULL;
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s) < 0 ? JSON_NONE : JSON_NUMBER;
        s->why = "unexpected character";
        return JSON_NONE;
    }
}

json_type_t json_scan(const char *buf, size_t len, json_member_t *members, int max, int *n_members,
                      char *err, size_t err_size)
{
    return json_scan_depth(buf, len, JSON_MAX_DEPTH, members, max, n_members, err, err_size);
}

json_type_t json_scan_depth(const char *buf, size_t len, int max_depth, json_member_t *members,
                            int max, int *n_members, char *err, size_t err_size)
{
    scanner_t s = {buf, buf + len, buf, NULL, max_depth};
    int count = 0;
    if (n_members) *n_members = 0;
    skip_ws(&s);
    json_type_t t = scan_value(&s, 1, members, max, &count);
    if (t != JSON_NONE) {
        skip_ws(&s);
        if (s.p != s.end) {
            s.why = "trailing data";
            t = JSON_NONE;
        }
    }
    if (t == JSON_NONE) {
        if (err) snprintf(err, err_size, "invalid JSON at byte %zu: %s", (size_t)(s.p - buf), s.why);
        return JSON_NONE;
    }
    if (n_members) *n_members = count;
    return t;
}

const json_member_t *json_find(const json_member_t *members, int n, const char *key)
{
    size_t klen = strlen(key);
    for (int i = 0; i < n; i++)
        if (members[i].key.len == klen && memcmp(members[i].key.p, key, klen) == 0)
            return &members[i];
    return NULL;
}

static size_t put_utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static unsigned hex4(const char *p)
{
    return (unsigned)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* Decodes into 'emit' chunks. Returns 0 or -1 (\u0000). */
static int decode_into(json_span_t q, strbuf_t *sb, char *out, size_t out_size, size_t *out_len)
{
    const char *p = q.p + 1, *end = q.p + q.len - 1;
    size_t n = 0;
    while (p < end) {
        char tmp[4];
        size_t tl;
        const char *chunk;
        if (*p != '\\') {
            const char *run = p;
            while (p < end && *p != '\\') p++;
            chunk = run;
            tl = (size_t)(p - run);
        } else {
            char e = p[1];
            chunk = tmp;
            switch (e) {
            case 'b': tmp[0] = '\b'; tl = 1; break;
            case 'f': tmp[0] = '\f'; tl = 1; break;
            case 'n': tmp[0] = '\n'; tl = 1; break;
            case 'r': tmp[0] = '\r'; tl = 1; break;
            case 't': tmp[0] = '\t'; tl = 1; break;
            case 'u': {
                unsigned cp = hex4(p + 2);
                p += 6;
                if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    unsigned lo = hex4(p + 2);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p += 6;
                    }
                }
                if (cp == 0) return -1;
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* lone surrogate */
                tl = put_utf8(cp, tmp);
                goto emit;
            }
            default: tmp[0] = e; tl = 1; break;
            }
            p += 2;
        }
    emit:
        if (sb) {
            strbuf_append(sb, chunk, tl);
        } else {
            if (n + tl + 1 > out_size) return -1;
            memcpy(out + n, chunk, tl);
        }
        n += tl;
    }
    if (!sb) out[n] = '\0';
    if (out_len) *out_len = n;
    return 0;
}

long json_string_decode(json_span_t quoted, char *out, size_t out_size)
{
    size_t n;
    if (out_size == 0 || decode_into(quoted, NULL, out, out_size, &n) < 0) return -1;
    return (long)n;
}

int json_string_decode_buf(json_span_t quoted, strbuf_t *out)
{
    return decode_into(quoted, out, NULL, 0, NULL);
}

void json_escape(strbuf_t *out, const char *s, size_t len)
{
    static const char hx[] = "0123456789abcdef";
    strbuf_reserve(out, len + 2);
    strbuf_putc(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        strbuf_append(out, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': strbuf_append(out, "\\\"", 2); break;
        case '\\': strbuf_append(out, "\\\\", 2); break;
        case '\n': strbuf_append(out, "\\n", 2); break;
        case '\r': strbuf_append(out, "\\r", 2); break;
        case '\t': strbuf_append(out, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hx[c >> 4], hx[c & 15]};
            strbuf_append(out, u, 6);
        }
        }
    }
    strbuf_append(out, s + run, len - run);
    strbuf_putc(out, '"');
}
