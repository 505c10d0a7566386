/* JSON without a DOM for the hot paths: a validating single-pass scanner that
 * reports the top-level members of an object as byte spans, string decoding
 * and escaping. The API side uses json-c directly. */
#ifndef HOOKD_JSON_H
#define HOOKD_JSON_H

#include "hookd/util.h"

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 64
/* A job message carries an event's payload one level down, and a payload
 * may nest JSON_MAX_DEPTH deep itself (the data of a binary-mode event is
 * the whole Kafka value): job messages are scanned with this limit. */
#define JSON_JOB_MAX_DEPTH (JSON_MAX_DEPTH + 1)

typedef enum {
    JSON_NONE = 0,
    JSON_OBJECT,
    JSON_ARRAY,
    JSON_STRING,
    JSON_NUMBER,
    JSON_TRUE,
    JSON_FALSE,
    JSON_NULL,
} json_type_t;

typedef struct json_span {
    const char *p;
    size_t len;
} json_span_t;

typedef struct json_member {
    json_span_t key;   /* raw key between the quotes (escapes not decoded) */
    json_type_t type;  /* type of the value */
    json_span_t value; /* raw value text; for strings including the quotes */
} json_member_t;

/* Validates that buf[0..len) is exactly one JSON value (RFC 8259, strict
 * UTF-8, nesting at most JSON_MAX_DEPTH) surrounded only by whitespace.
 * If 'members' is given and the value is an object, its first 'max' top-level
 * members are stored and *n_members set to how many there are in total.
 * Returns the type of the top-level value, or JSON_NONE with a short reason
 * in 'err' ("invalid JSON at byte 17: unterminated string"). */
json_type_t json_scan(const char *buf, size_t len, json_member_t *members, int max, int *n_members,
                      char *err, size_t err_size);
/* Same with another nesting limit. */
json_type_t json_scan_depth(const char *buf, size_t len, int max_depth, json_member_t *members,
                            int max, int *n_members, char *err, size_t err_size);

/* Finds the member whose key equals 'key' (a plain ASCII key). */
const json_member_t *json_find(const json_member_t *members, int n, const char *key);

/* Decodes a JSON string value (span including quotes, already validated)
 * into 'out' as UTF-8, NUL-terminated. Returns the decoded length, or -1 if
 * it does not fit or contains \u0000. */
long json_string_decode(json_span_t quoted, char *out, size_t out_size);

/* Same, into a strbuf (appended). Returns 0 or -1 (\u0000). */
int json_string_decode_buf(json_span_t quoted, strbuf_t *out);

/* Appends 's' as a JSON string literal (quoted, escaped). 's' must be valid
 * UTF-8; control characters are escaped as \u00XX. */
void json_escape(strbuf_t *out, const char *s, size_t len);

/* True when 's' is valid UTF-8 (no overlongs, no surrogates). */
bool json_utf8_valid(const char *s, size_t len);

#endif
