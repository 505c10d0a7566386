/* Dead-letter replay (`hookd-ingest --replay-dlq`): once the cause of a
 * rejection is fixed (an event type added to the catalog, a producer bug
 * fixed), republishes the dead letters of HOOKD_DLQ_TOPIC to the topic they
 * came from, with their original key, value and headers. */
#ifndef HOOKD_INGEST_REPLAY_H
#define HOOKD_INGEST_REPLAY_H

#include "hookd/config.h"

#include <stddef.h>
#include <stdint.h>

/* Header added to every replayed message: the hookd-source of its dead
 * letter ("<topic>/<partition>/<offset>" of the original message), or the
 * dead letter's own position when it had none. */
#define REPLAY_HEADER "hookd-replayed"

typedef struct replay_opts {
    const char *reason;   /* only dead letters whose hookd-error has this reason; NULL: all */
    int64_t from_offset;  /* first offset read in every partition; -1: the beginning */
    const char *to_topic; /* republish here instead of each hookd-source topic; NULL */
} replay_opts_t;

/* Fills 'out' from the --reason, --from-offset and --to-topic arguments
 * (each may be NULL). Returns 0, or -1 with one line in 'err' naming the
 * option (the caller exits 2). */
int replay_opts_parse(const hookd_config_t *cfg, const char *reason, const char *from_offset,
                      const char *to_topic, replay_opts_t *out, char *err, size_t err_size);

/* Splits a hookd-source value "<topic>/<partition>/<offset>" (not
 * NUL-terminated, 'len' bytes). Returns 0, or -1 when it is malformed. */
int replay_parse_source(const char *src, size_t len, char *topic, size_t topic_size,
                        int32_t *partition, int64_t *offset);

/* Reads HOOKD_DLQ_TOPIC from the beginning (or opts->from_offset) up to the
 * end it had when the replay started, and republishes every dead letter
 * that passes opts->reason: same key, value and headers minus the hookd-*
 * ones, plus REPLAY_HEADER, to opts->to_topic or its hookd-source topic
 * (into the original partition there). Skips dead letters of another
 * reason, truncated ones (hookd-truncated: their value is incomplete) and
 * those without a destination. Waits until the broker has acknowledged
 * every message, prints "replayed=N skipped=M" on stdout and returns the
 * exit status: 0, or 1 when Kafka failed (nothing is retried by itself;
 * running it again re-sends, and the event ids make the worker deliver
 * each job once). Commits nothing: the dead letters stay where they are. */
int replay_dlq(const hookd_config_t *cfg, const replay_opts_t *opts);

#endif
