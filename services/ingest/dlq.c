/* Dead-letter headers for rejected events (SPEC §3): the original headers
 * plus why (hookd-error) and where from (hookd-source). */
#include "dlq.h"

#include <stdio.h>
#include <string.h>

rd_kafka_headers_t *dlq_headers(const rd_kafka_headers_t *orig, const char *reason,
                                const char *message, const char *topic, int32_t partition,
                                int64_t offset)
{
    char buf[1024];
    rd_kafka_headers_t *h = orig ? rd_kafka_headers_copy(orig) : rd_kafka_headers_new(2);
    int n = snprintf(buf, sizeof(buf), "%s: %s", reason, message);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(buf)) n = (int)sizeof(buf) - 1;
    /* rd_kafka_header_add only fails on a read-only list; a new list is not */
    (void)rd_kafka_header_add(h, DLQ_HEADER_ERROR, -1, buf, n);
    n = snprintf(buf, sizeof(buf), "%s/%d/%lld", topic, (int)partition, (long long)offset);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(buf)) n = (int)sizeof(buf) - 1;
    (void)rd_kafka_header_add(h, DLQ_HEADER_SOURCE, -1, buf, n);
    return h;
}

int dlq_is_truncated(const rd_kafka_headers_t *hdrs)
{
    const void *v;
    size_t len;
    return hdrs && rd_kafka_header_get_last(hdrs, DLQ_HEADER_TRUNCATED, &v, &len) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
}

void dlq_mark_truncated(rd_kafka_headers_t *hdrs, size_t original_bytes)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%zu", original_bytes);
    (void)rd_kafka_header_add(hdrs, DLQ_HEADER_TRUNCATED, -1, buf, n);
}
