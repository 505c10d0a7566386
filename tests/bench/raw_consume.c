/* Raw baseline: a plain librdkafka consumer reading a topic from the
 * beginning until N messages; prints messages/s. */
#include "hookd/util.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL;
    long count = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--brokers")) brokers = argv[i + 1];
        else if (!strcmp(argv[i], "--topic")) topic = argv[i + 1];
        else if (!strcmp(argv[i], "--count")) count = atol(argv[i + 1]);
    }
    if (!brokers || !topic || count <= 0) {
        fprintf(stderr, "usage: raw_consume --brokers B --topic T --count N\n");
        return 2;
    }
    char err[512], group[64];
    snprintf(group, sizeof(group), "raw-consume-%lld", (long long)hookd_now_ms());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err))) {
        fprintf(stderr, "raw_consume: %s\n", err);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "raw_consume: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, t);
    rd_kafka_topic_partition_list_destroy(t);
    /* Stops at 'count' messages or when every assigned partition reached its
     * end (the mock prunes old data, so fewer than produced may remain). */
    long got = 0, bytes = 0;
    int64_t t0 = 0, t_last = 0;
    int64_t deadline = hookd_mono_ms() + 300000;
    char *eof = calloc(4096, 1);
    int n_eof = 0;
    while (got < count && hookd_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (!m->err) {
            if (got == 0) t0 = hookd_mono_us(); /* from the first message: excludes the group join */
            got++;
            bytes += (long)m->len;
            t_last = hookd_mono_us();
            if (m->partition < 4096 && eof[m->partition]) {
                eof[m->partition] = 0;
                n_eof--;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition < 4096) {
            if (!eof[m->partition]) {
                eof[m->partition] = 1;
                n_eof++;
            }
            rd_kafka_topic_partition_list_t *a = NULL;
            if (got > 0 && !rd_kafka_assignment(rk, &a) && a && n_eof >= a->cnt) {
                rd_kafka_topic_partition_list_destroy(a);
                rd_kafka_message_destroy(m);
                break;
            }
            if (a) rd_kafka_topic_partition_list_destroy(a);
        }
        rd_kafka_message_destroy(m);
    }
    free(eof);
    double secs = (double)(t_last - t0) / 1e6;
    printf("raw_consume messages=%ld seconds=%.3f rate=%.0f bytes=%ld\n", got, secs,
           (double)got / secs, bytes);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return got > 0 ? 0 : 1;
}
