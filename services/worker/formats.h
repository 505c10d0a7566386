/* Request bodies and headers of a delivery (SPEC §7): the standard, vyte,
 * vcita and vik body formats, batching rules per format, and the Standard
 * Webhooks signature headers. Pure functions, no I/O. */
#ifndef HOOKD_WORKER_FORMATS_H
#define HOOKD_WORKER_FORMATS_H

#include "hookd/event.h"
#include "hookd/util.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

/* Whether 'next' may join a request whose first job is 'first', for a
 * subscription with 'format' and 'batch'. Without batch nothing joins (one
 * job per request). vik joins only deletes ("<entity>/deleted") of the same
 * entity, which are merged into {"id":[...]}; every other vik job is alone. */
bool format_can_join(body_format_t format, bool batch, const job_t *first, const job_t *next);

/* Appends the request body for 'n' (>= 1) jobs of one subscription, in order:
 *   standard  {"type","id","timestamp","account","data"} (+"directory" when set)
 *   vyte      {"action":"event.cancelled","resource":{..},"organization":"..","user":".."}
 *   vcita     {"event":"client/created","account":"..","data":{..}} (+"directory")
 *   vik       the bare payload; n > 1 only for merged deletes: {"id":[10,11,12]}
 * standard, vcita: batch -> JSON array of items (also for n == 1), no batch -> the
 * object. vyte: always an array. "id" is the event id, "timestamp" occurred_at
 * (RFC 3339 UTC with milliseconds), "data"/"resource" the job payload verbatim. */
void format_body(body_format_t format, bool batch, const job_t *const *jobs, int n, strbuf_t *out);

/* The headers of one request: Content-Type: application/json, webhook-id,
 * webhook-timestamp, webhook-signature ("v1,<sig>" with 'secret', plus a
 * second space-separated "v1,<sig>" with 'previous_secret' when not NULL,
 * during a rotation), plus User-Agent is set by the sender. Returns a new
 * list (caller owns), or NULL if a secret is unusable. */
struct curl_slist *format_headers(const char *webhook_id, int64_t timestamp_s, const char *secret,
                                  const char *previous_secret, const char *body, size_t body_len);

#endif
