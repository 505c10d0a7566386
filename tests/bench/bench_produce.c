/* Benchmark load generator: produces native events or delivery jobs to a
 * topic as fast as possible or at a fixed rate, optionally stamping each
 * event with its send time (data.t_us) for latency measurements. */
#include "hookd/event.h"
#include "hookd/sign.h"
#include "hookd/util.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char sub[64], ep[64];
} target_t;

static void usage(void)
{
    fprintf(stderr, "usage: bench_produce --brokers B --topic T --count N [--mode events|jobs]\n"
                    "  [--accounts A] [--account-prefix P] [--body-bytes S] [--rate R] [--stamp]\n"
                    "  [--targets FILE] [--id-base N]\n"
                    "  targets file (jobs mode): lines '<subscription_id> <endpoint_id>'\n");
    exit(2);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    long *failed = opaque;
    if (m->err) (*failed)++;
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL, *mode = "events", *targets_path = NULL;
    const char *prefix = "acct_";
    long id_base = 0; /* event ids are evt_<id_base + i> */
    long count = 0, accounts = 1000, body = 200, rate = 0;
    int stamp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--stamp")) { stamp = 1; continue; }
        if (!v) usage();
        if (!strcmp(a, "--brokers")) brokers = v;
        else if (!strcmp(a, "--topic")) topic = v;
        else if (!strcmp(a, "--count")) count = atol(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--accounts")) accounts = atol(v);
        else if (!strcmp(a, "--body-bytes")) body = atol(v);
        else if (!strcmp(a, "--rate")) rate = atol(v);
        else if (!strcmp(a, "--targets")) targets_path = v;
        else if (!strcmp(a, "--account-prefix")) prefix = v;
        else if (!strcmp(a, "--id-base")) id_base = atol(v);
        else usage();
        i++;
    }
    if (!brokers || !topic || count <= 0 || accounts <= 0) usage();
    int jobs = strcmp(mode, "jobs") == 0;
    target_t *targets = NULL;
    long n_targets = 0;
    if (jobs) {
        FILE *f = targets_path ? fopen(targets_path, "r") : NULL;
        if (!f) usage();
        long cap = 1024;
        targets = malloc(sizeof(*targets) * (size_t)cap);
        char s[64], e[64];
        while (fscanf(f, "%63s %63s", s, e) == 2) {
            if (n_targets == cap) targets = realloc(targets, sizeof(*targets) * (size_t)(cap *= 2));
            snprintf(targets[n_targets].sub, sizeof(targets[0].sub), "%s", s);
            snprintf(targets[n_targets].ep, sizeof(targets[0].ep), "%s", e);
            n_targets++;
        }
        fclose(f);
        if (n_targets == 0) usage();
    }

    char err[512];
    long failed = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        /* a paced producer keeps librdkafka's default linger (5 ms, part of the
         * measured latency): the embedded broker walks a partition's batches
         * from the start on every fetch, and 1 ms made a batch of each event */
        rd_kafka_conf_set(conf, "linger.ms", rate > 0 ? "5" : "20", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "batch.num.messages", "10000", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.kbytes", "1048576", err, sizeof(err)) ||
        /* jobs backlogs are preloaded: lz4 keeps 500,000 of them within the
         * embedded broker's 5 MiB per partition (it stores batches as sent) */
        rd_kafka_conf_set(conf, "compression.type", jobs ? "lz4" : "none", err, sizeof(err))) {
        fprintf(stderr, "bench_produce: %s\n", err);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &failed);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "bench_produce: %s\n", err);
        return 1;
    }
    char *pad = malloc((size_t)body + 1);
    memset(pad, 'x', (size_t)body);
    pad[body] = '\0';
    strbuf_t b;
    strbuf_init(&b, 1024 + (size_t)body);
    int64_t t0 = hookd_mono_us();
    for (long i = 0; i < count; i++) {
        if (rate > 0) { /* pace: event i is due at t0 + i/rate */
            int64_t due = t0 + (int64_t)((double)i * 1e6 / (double)rate);
            int64_t now = hookd_mono_us();
            if (due > now + 200) {
                struct timespec ts = {0, (long)(due - now) * 1000};
                nanosleep(&ts, NULL);
            }
        }
        strbuf_reset(&b);
        char key[80];
        if (!jobs) {
            struct timespec rt;
            clock_gettime(CLOCK_REALTIME, &rt);
            long long t_us = (long long)rt.tv_sec * 1000000 + rt.tv_nsec / 1000;
            strbuf_printf(&b, "{\"id\":\"evt_%ld\",\"type\":\"client/created\",\"account\":\"%s%ld\","
                              "\"data\":{\"id\":%ld,",
                          id_base + i, prefix, i % accounts, i);
            if (stamp) strbuf_printf(&b, "\"t_us\":%lld,", t_us);
            strbuf_printf(&b, "\"pad\":\"%s\"}}", pad);
            snprintf(key, sizeof(key), "%s%ld", prefix, i % accounts);
        } else {
            const target_t *t = &targets[i % n_targets];
            char ev_id[32], job_id[SIGN_JOB_ID_LEN + 1], when[40];
            int n = snprintf(ev_id, sizeof(ev_id), "evt_%ld", id_base + i);
            sign_job_id(ev_id, (size_t)n, t->sub, strlen(t->sub), job_id);
            hookd_format_time(hookd_now_ms(), when, sizeof(when));
            strbuf_printf(&b, "{\"v\":1,\"id\":\"%s\",\"event_id\":\"%s\",\"subscription_id\":\"%s\","
                              "\"endpoint_id\":\"%s\",\"type\":\"client/created\",\"account\":\"acct_%ld\","
                              "\"occurred_at\":\"%s\",\"ingested_at_ms\":%lld,"
                              "\"payload\":{\"id\":%ld,\"pad\":\"%s\"}}",
                          job_id, ev_id, t->sub, t->ep, i % n_targets, when,
                          (long long)hookd_now_ms(), i, pad);
            snprintf(key, sizeof(key), "%s", t->ep);
        }
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(b.data, b.len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "bench_produce: %s\n", rd_kafka_err2str(e));
                return 1;
            }
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    double secs = (double)(hookd_mono_us() - t0) / 1e6;
    printf("bench_produce count=%ld seconds=%.3f rate=%.0f failed=%ld\n", count, secs,
           (double)count / secs, failed);
    rd_kafka_destroy(rk);
    strbuf_free(&b);
    free(pad);
    free(targets);
    return failed ? 1 : 0;
}
