/* The event model: parsing of incoming events (native envelope, CloudEvents
 * structured JSON and the Kafka binary binding), event type normalisation,
 * and the job message passed from ingest to worker (SPEC §3, §6). */
#ifndef HOOKD_EVENT_H
#define HOOKD_EVENT_H

#include "hookd/json.h"
#include "hookd/sign.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENT_ID_MAX 256
#define EVENT_TYPE_MAX 128
#define EVENT_OWNER_MAX 128
#define EVENT_STATUS_MAX 64

typedef enum {
    EVENT_NATIVE,
    EVENT_CLOUDEVENT_STRUCTURED,
    EVENT_CLOUDEVENT_BINARY,
} event_format_t;

/* Why an event was rejected; also the label of the rejection metric and the
 * prefix of the hookd-error DLQ header. */
typedef enum {
    EVENT_OK = 0,
    EVENT_ERR_TOO_LARGE,
    EVENT_ERR_INVALID_JSON, /* not JSON, or invalid UTF-8 */
    EVENT_ERR_NOT_OBJECT,
    EVENT_ERR_MISSING_FIELD,
    EVENT_ERR_INVALID_FIELD,
    EVENT_ERR_UNKNOWN_TYPE,
    EVENT_ERR__COUNT
} event_error_t;

const char *event_error_name(event_error_t e);

/* A header of the Kafka message, for the binary CloudEvents binding. */
typedef struct event_header {
    const char *name;
    const void *value;
    size_t len;
} event_header_t;

/* A parsed event. Strings are decoded copies; data/changes/extended are raw
 * JSON spans pointing into the message buffer (valid while it lives), or
 * empty (len 0) when absent. */
typedef struct event {
    event_format_t format;
    char id[EVENT_ID_MAX];
    char type[EVENT_TYPE_MAX]; /* normalised "entity/event", or a bare alias name */
    bool type_is_alias;        /* type had no '/' or '.' ("eventAdded"): resolve it in the
                                  catalog's aliases before use */
    char account[EVENT_OWNER_MAX];
    char directory[EVENT_OWNER_MAX]; /* "" when absent */
    char status[EVENT_STATUS_MAX];   /* "" when absent */
    char previous_status[EVENT_STATUS_MAX];
    char user[EVENT_OWNER_MAX]; /* acting user, "" when absent (used by the vyte format) */
    int64_t occurred_at_ms;     /* 0 when absent: the caller uses the Kafka timestamp */
    json_span_t data, changes, extended;
} event_t;

/* Parses one Kafka message value (+ headers, may be NULL/0) into 'ev'.
 * Returns EVENT_OK or an error code with a human reason in 'err'.
 * The type is normalised but not checked against the catalog. */
event_error_t event_parse(const char *value, size_t len, const event_header_t *headers,
                          size_t n_headers, size_t max_bytes, event_t *ev, char *err,
                          size_t err_size);

/* Normalises the spelling of an event type: "entity.event" -> "entity/event";
 * reverse-DNS CloudEvents types ("com.vcita.client.created") keep their last
 * two segments. Each part is 1..63 chars of [A-Za-z0-9_-]. With 'pattern'
 * true, "entity/ *" (no space) and "*" are accepted too. Verb forms are NOT
 * rewritten here: see event_type_past_tense. Returns 0 or -1. */
int event_type_normalize(const char *in, size_t len, char *out, size_t out_size, bool pattern);

/* If 'type' ends in a verb form (create, update, delete, cancel, confirm;
 * not for custom/<hook>), writes the past tense ("client/create" ->
 * "client/created") to 'out' and returns true. The rule used everywhere
 * (ingest, API, the SQL function hookd_normalize_type): a type that is in
 * the catalog as written stays as it is (vCita's "pivot/update"); otherwise
 * its past tense is used. */
bool event_type_past_tense(const char *type, char *out, size_t out_size);

/* ---- jobs (ingest -> worker) ---- */

typedef enum { PAYLOAD_BASIC, PAYLOAD_FULL, PAYLOAD_EXTENDED } payload_mode_t;
typedef enum { FORMAT_STANDARD, FORMAT_VYTE, FORMAT_VCITA, FORMAT_VIK } body_format_t;

const char *payload_mode_name(payload_mode_t m);
int payload_mode_parse(const char *s); /* -1 if unknown */
const char *body_format_name(body_format_t f);
int body_format_parse(const char *s); /* -1 if unknown */

/* The payload part selected by 'mode': basic = changes (data when absent),
 * full = data, extended = extended (data when absent). */
json_span_t event_payload(const event_t *ev, payload_mode_t mode);

/* A decoded job message. String spans point into the message buffer and are
 * NOT NUL-terminated unless noted; they are JSON-unescaped when the job was
 * encoded by job_encode (which never needs escapes in ids) - otherwise use
 * json_string_decode on the raw member. */
typedef struct job {
    char id[SIGN_JOB_ID_LEN + 1];
    char event_id[EVENT_ID_MAX];
    char subscription_id[64];
    char endpoint_id[64];
    char type[EVENT_TYPE_MAX];
    char account[EVENT_OWNER_MAX];
    char directory[EVENT_OWNER_MAX];
    char status[EVENT_STATUS_MAX];
    char user[EVENT_OWNER_MAX];
    int64_t occurred_at_ms;
    int64_t ingested_at_ms;
    json_span_t payload; /* raw JSON */
} job_t;

/* Appends the job message for (event, subscription) to 'out'. 'job_id' is
 * sign_job_id(event id, subscription id). */
void job_encode(strbuf_t *out, const event_t *ev, const char *job_id, const char *subscription_id,
                const char *endpoint_id, payload_mode_t mode, int64_t ingested_at_ms);

/* Decodes a job message. Returns 0, or -1 with a reason in 'err'. */
int job_decode(const char *buf, size_t len, job_t *job, char *err, size_t err_size);

#endif
