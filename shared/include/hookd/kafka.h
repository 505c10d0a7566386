/* Kafka client configuration from hookd config (brokers, client id, the
 * HOOKD_KAFKA_* passthrough) and small helpers shared by both services. */
#ifndef HOOKD_KAFKA_H
#define HOOKD_KAFKA_H

#include "hookd/config.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

/* Creates a configuration with bootstrap.servers, client.id
 * ("<service>-<hostname>" unless HOOKD_KAFKA_CLIENT_ID is set), librdkafka
 * logs routed to the hookd log, then every HOOKD_KAFKA_* property (these win).
 * Returns NULL with one line in 'err' naming the variable when librdkafka
 * rejects a property. Caller owns the conf. */
rd_kafka_conf_t *hookd_kafka_conf(const hookd_config_t *cfg, const char *service, char *err,
                                  size_t err_size);

/* rd_kafka_conf_set with a hookd-style error. Returns 0 or -1. */
int hookd_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                    size_t err_size);

/* Validates the passthrough properties without creating a client (used at
 * start so bad HOOKD_KAFKA_* exits 2). Returns 0 or -1 with 'err'. */
int hookd_kafka_check_config(const hookd_config_t *cfg, char *err, size_t err_size);

/* Asks the cluster for its broker list within 'timeout_ms'. Returns true when
 * at least one broker answered (used by /readyz). */
bool hookd_kafka_ping(rd_kafka_t *rk, int timeout_ms);

/* Splits a comma-separated topic list into a new topic partition list for
 * rd_kafka_subscribe (a single entry starting with ^ is a regex). */
rd_kafka_topic_partition_list_t *hookd_kafka_topic_list(const char *topics);

/* Destroys a consumer handle after rd_kafka_consumer_close. librdkafka 2.0
 * (fixed in 2.3, issue #4312) aborts in rd_kafka_destroy when a
 * cooperative-sticky consumer's JoinGroup was answered but its first
 * assignment never arrived (a restart while the group still waits for a
 * killed member). Such a consumer holds no partitions and has nothing to
 * commit, so with 'ever_assigned' false the handle is left to process exit
 * (kept reachable, so it is not reported as a leak) instead. */
void hookd_kafka_consumer_destroy(rd_kafka_t *rk, bool ever_assigned);

#endif
