/* Raw reference for ingest: a plain librdkafka loop that consumes a topic and
 * produces one message of the same size per input (idempotent producer,
 * waiting for every acknowledgement), with no parsing or matching: the Kafka
 * I/O floor of consume→publish on this broker. Prints messages/s. */
#include "hookd/util.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long acked;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (!m->err) acked++;
}

static rd_kafka_t *client(rd_kafka_type_t type, rd_kafka_conf_t *conf, const char **kv, size_t n)
{
    char err[512];
    for (size_t i = 0; i + 1 < n; i += 2) {
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err))) {
            fprintf(stderr, "raw_pipe: %s\n", err);
            exit(1);
        }
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "raw_pipe: %s\n", err);
        exit(1);
    }
    return rk;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL, *out = NULL;
    long count = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--brokers")) brokers = argv[i + 1];
        else if (!strcmp(argv[i], "--topic")) topic = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
    }
    if (!brokers || !topic || !out || count <= 0) {
        fprintf(stderr, "usage: raw_pipe --brokers B --topic IN --out OUT --count N\n");
        return 2;
    }
    char group[64];
    snprintf(group, sizeof(group), "raw-pipe-%lld", (long long)hookd_now_ms());
    const char *ckv[] = {"bootstrap.servers", brokers, "group.id", group,
                         "auto.offset.reset", "earliest", "enable.auto.commit", "false",
                         "fetch.wait.max.ms", "50"};
    rd_kafka_t *c = client(RD_KAFKA_CONSUMER, rd_kafka_conf_new(), ckv, HOOKD_ARRAY_LEN(ckv));
    rd_kafka_poll_set_consumer(c);
    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    rd_kafka_conf_set_dr_msg_cb(pconf, dr_cb);
    const char *pkv[] = {"bootstrap.servers", brokers, "enable.idempotence", "true", "linger.ms", "10"};
    rd_kafka_t *p = client(RD_KAFKA_PRODUCER, pconf, pkv, HOOKD_ARRAY_LEN(pkv));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    long got = 0;
    int64_t t0 = 0, deadline = hookd_mono_ms() + 300000;
    while (acked < count && hookd_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, got < count ? 5 : 0);
        if (m && !m->err) {
            if (!got) t0 = hookd_mono_us();
            got++;
            while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(out), RD_KAFKA_V_KEY(m->key, m->key_len),
                                     RD_KAFKA_V_VALUE(m->payload, m->len),
                                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(p, 10);
        }
        if (m) rd_kafka_message_destroy(m);
        rd_kafka_poll(p, 0);
    }
    double secs = (double)(hookd_mono_us() - t0) / 1e6;
    printf("raw_pipe messages=%ld acked=%ld seconds=%.3f rate=%.0f\n", got, acked, secs,
           (double)acked / secs);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_flush(p, 10000);
    rd_kafka_destroy(p);
    return acked >= count ? 0 : 1;
}
