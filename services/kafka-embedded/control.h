/* Fault-injection commands of hookd-kafka-embedded: parse one text line and
 * apply it to the librdkafka mock cluster. */
#ifndef HOOKD_KAFKA_EMBEDDED_CONTROL_H
#define HOOKD_KAFKA_EMBEDDED_CONTROL_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Longest accepted command line in bytes, without the newline. */
#define CONTROL_LINE_MAX 4096

/* Longest reply line, without the newline. */
#define CONTROL_REPLY_MAX 512

/* What a command needs to know about the running cluster. Not owned: the
 * caller keeps mcluster and bootstraps alive while commands run. */
typedef struct control_cluster {
    rd_kafka_mock_cluster_t *mcluster;
    int broker_cnt;         /* brokers have ids 1..broker_cnt */
    const char *bootstraps; /* "127.0.0.1:port,..." */
} control_cluster_t;

/* Parses and executes one command 'line' (no trailing newline; a trailing
 * '\r' is ignored) against 'cc'. Always writes exactly one NUL-terminated
 * reply line without newline into 'reply': "ok", "ok <info>" or
 * "error <message>". Returns 0 when the reply is ok, -1 when it is an error.
 * Never aborts on bad input. Keeps no state of its own, so it may run in
 * several threads at once; the mock applies commands on its own thread and
 * this call blocks only until that is done. */
int control_exec(control_cluster_t *cc, const char *line, char *reply, size_t reply_size);

/* Returns 1 if 'name' is a legal Kafka topic name ([A-Za-z0-9._-], 1..249
 * bytes, not "." or ".."), else 0. */
int control_valid_topic_name(const char *name);

/* Maps a Kafka ApiKey name (case-insensitive, e.g. "Produce", "fetch") or a
 * decimal number to its key. Returns the key (>= 0) or -1 if unknown. */
int control_parse_apikey(const char *s);

/* Maps an error name (librdkafka's, with or without "RD_KAFKA_RESP_ERR_",
 * case-insensitive, e.g. "NOT_LEADER_FOR_PARTITION", "_TRANSPORT") or a
 * decimal code to the error. Returns 0 and sets *errp, or -1 if unknown. */
int control_parse_error(const char *s, rd_kafka_resp_err_t *errp);

#endif
