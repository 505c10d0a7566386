/* Dead letters: the headers that travel with a rejected message to the
 * dead-letter topic (HOOKD_DLQ_TOPIC): its original headers plus
 *   hookd-error:  "<reason>: <human message>"   (reason = metric label)
 *   hookd-source: "<topic>/<partition>/<offset>" of the original message
 *   hookd-truncated: "<original bytes>"         (only when the value had to be cut) */
#ifndef HOOKD_INGEST_DLQ_H
#define HOOKD_INGEST_DLQ_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#define DLQ_HEADER_ERROR "hookd-error"
#define DLQ_HEADER_SOURCE "hookd-source"
#define DLQ_HEADER_TRUNCATED "hookd-truncated"

/* Value size a dead letter is cut to when the broker (or the producer's
 * message.max.bytes) refuses it whole. */
#define DLQ_TRUNCATED_BYTES 65536

/* New header list (caller owns it; rd_kafka_producev takes it over on
 * success) with a copy of 'orig' (may be NULL) and the hookd-error and
 * hookd-source headers. */
rd_kafka_headers_t *dlq_headers(const rd_kafka_headers_t *orig, const char *reason,
                                const char *message, const char *topic, int32_t partition,
                                int64_t offset);

/* True when 'hdrs' already carry hookd-truncated. */
int dlq_is_truncated(const rd_kafka_headers_t *hdrs);

/* Adds hookd-truncated with the original size. */
void dlq_mark_truncated(rd_kafka_headers_t *hdrs, size_t original_bytes);

#endif
