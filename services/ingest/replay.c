/* hookd-ingest --replay-dlq: reads the dead-letter topic up to the end it
 * has at the start and republishes the dead letters where they came from. */
#include "replay.h"

#include "dlq.h"

#include "hookd/event.h"
#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/service.h"
#include "hookd/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define REPLAY_TIMEOUT_MS 10000 /* metadata and watermark requests */
#define REPLAY_IDLE_MS 30000    /* no message for this long before the end: give up */
#define REPLAY_FLUSH_MS 60000   /* for the acknowledgements of what was produced */

/* One partition of the dead-letter topic. */
typedef struct {
    int32_t partition;
    int64_t end; /* high watermark when the replay started: read up to here */
    bool done;
} rpart_t;

/* Delivery reports of the replay producer. */
typedef struct {
    long acked, failed;
    char first_error[256];
} rstats_t;

typedef enum { ONE_PRODUCED, ONE_SKIPPED, ONE_FAILED } one_result_t;

int replay_opts_parse(const hookd_config_t *cfg, const char *reason, const char *from_offset,
                      const char *to_topic, replay_opts_t *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    out->from_offset = -1;
    if (reason) {
        char names[256] = "";
        for (int e = 1; e < EVENT_ERR__COUNT; e++) {
            const char *name = event_error_name((event_error_t)e);
            if (strcmp(reason, name) == 0) out->reason = reason;
            size_t used = strlen(names);
            snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "", name);
        }
        if (!out->reason) {
            snprintf(err, err_size, "invalid --reason=%s: expected one of %s", reason, names);
            return -1;
        }
    }
    if (from_offset) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(from_offset, &end, 10);
        if (errno || end == from_offset || *end || v < 0) {
            snprintf(err, err_size, "invalid --from-offset=%s: expected an offset >= 0",
                     from_offset);
            return -1;
        }
        out->from_offset = v;
    }
    if (to_topic) {
        if (!*to_topic || strcmp(to_topic, cfg->dlq_topic) == 0 ||
            strcmp(to_topic, cfg->jobs_topic) == 0) {
            snprintf(err, err_size,
                     "invalid --to-topic=%s: expected an event topic (not HOOKD_DLQ_TOPIC or "
                     "HOOKD_JOBS_TOPIC)",
                     to_topic);
            return -1;
        }
        out->to_topic = to_topic;
    }
    return 0;
}

static bool parse_i64(const char *s, size_t len, int64_t max, int64_t *out)
{
    int64_t v = 0;
    if (len == 0 || len > 19) return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
        if (v > max) return false;
    }
    *out = v;
    return true;
}

int replay_parse_source(const char *src, size_t len, char *topic, size_t topic_size,
                        int32_t *partition, int64_t *offset)
{
    /* topic names cannot contain '/': the last two slashes split it */
    const char *last = NULL, *second = NULL;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != '/') continue;
        second = last;
        last = src + i;
    }
    if (!second || second == src) return -1;
    size_t tlen = (size_t)(second - src);
    int64_t p, o;
    if (tlen >= topic_size || !parse_i64(second + 1, (size_t)(last - second - 1), INT32_MAX, &p) ||
        !parse_i64(last + 1, (size_t)(src + len - last - 1), INT64_MAX / 10, &o))
        return -1;
    memcpy(topic, src, tlen);
    topic[tlen] = '\0';
    *partition = (int32_t)p;
    *offset = o;
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    rstats_t *st = opaque;
    (void)rk;
    if (!m->err) {
        st->acked++;
        return;
    }
    if (st->failed++ == 0)
        snprintf(st->first_error, sizeof(st->first_error), "%s: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
}

/* A consumer that reads by assignment (no group membership, no commits) or
 * an idempotent producer reporting to 'st'. */
static rd_kafka_t *new_client(const hookd_config_t *cfg, rd_kafka_type_t type, rstats_t *st,
                              char *err, size_t err_size)
{
    rd_kafka_conf_t *conf = hookd_kafka_conf(cfg, "hookd-ingest", err, err_size);
    if (!conf) return NULL;
    bool bad;
    if (type == RD_KAFKA_CONSUMER) {
        bad = hookd_kafka_set(conf, "group.id", "hookd-replay-dlq", err, err_size) < 0 ||
              hookd_kafka_set(conf, "enable.auto.commit", "false", err, err_size) < 0 ||
              hookd_kafka_set(conf, "enable.auto.offset.store", "false", err, err_size) < 0 ||
              hookd_kafka_set(conf, "enable.partition.eof", "true", err, err_size) < 0 ||
              hookd_kafka_set(conf, "auto.offset.reset", "earliest", err, err_size) < 0;
    } else {
        char max_msg[32];
        int64_t mm = cfg->max_event_bytes * 2 + 65536; /* as the pipeline's producer */
        snprintf(max_msg, sizeof(max_msg), "%lld", (long long)(mm < 1000000 ? 1000000 : mm));
        bad = hookd_kafka_set(conf, "enable.idempotence", "true", err, err_size) < 0 ||
              hookd_kafka_set(conf, "message.max.bytes", max_msg, err, err_size) < 0;
        rd_kafka_conf_set_opaque(conf, st);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    }
    if (bad) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, err_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (type == RD_KAFKA_CONSUMER) (void)rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* The partitions of 'topic' with the high watermark each has now, and the
 * assignment that reads them from 'from' (-1: the beginning). Returns the
 * number of partitions, or -1 with 'err'. */
static int plan(rd_kafka_t *rk, const char *topic, int64_t from, rpart_t **parts,
                rd_kafka_topic_partition_list_t **assign, int64_t *total, char *err,
                size_t err_size)
{
    /* all topics: asking for one by name may create it (auto.create.topics.enable) */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, REPLAY_TIMEOUT_MS);
    if (e) {
        snprintf(err, err_size, "metadata: %s", rd_kafka_err2str(e));
        return -1;
    }
    const struct rd_kafka_metadata_topic *t = NULL;
    for (int i = 0; i < md->topic_cnt && !t; i++)
        if (strcmp(md->topics[i].topic, topic) == 0) t = &md->topics[i];
    if (!t || t->err) {
        snprintf(err, err_size, "dead-letter topic %s: %s", topic,
                 t ? rd_kafka_err2str(t->err) : "no such topic (HOOKD_DLQ_TOPIC)");
        rd_kafka_metadata_destroy(md);
        return -1;
    }
    int n = t->partition_cnt;
    *parts = calloc((size_t)(n ? n : 1), sizeof(**parts));
    if (!*parts) abort();
    *assign = rd_kafka_topic_partition_list_new(n ? n : 1);
    *total = 0;
    for (int i = 0; i < n; i++) {
        int32_t p = t->partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, REPLAY_TIMEOUT_MS);
        if (e) {
            snprintf(err, err_size, "offsets of %s/%d: %s", topic, (int)p, rd_kafka_err2str(e));
            rd_kafka_metadata_destroy(md);
            return -1;
        }
        int64_t start = from > lo ? from : lo;
        (*parts)[i] = (rpart_t){p, hi, start >= hi};
        if (start < hi) {
            rd_kafka_topic_partition_list_add(*assign, topic, p)->offset = start;
            *total += hi - start;
        }
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Copies 'len' bytes of a header value into 'out' as a C string. */
static bool header_str(rd_kafka_headers_t *h, const char *name, char *out, size_t out_size)
{
    const void *v = NULL;
    size_t len = 0;
    if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    if (len >= out_size) len = out_size - 1;
    if (len) memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

/* Republishes one dead letter (or says why not). */
static one_result_t replay_one(rd_kafka_t *prod, const hookd_config_t *cfg,
                               const replay_opts_t *opts, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *in = NULL;
    if (rd_kafka_message_headers(m, &in) != RD_KAFKA_RESP_ERR_NO_ERROR) in = NULL;
    char error[512] = "", source[600] = "", topic[256] = "";
    char here[300];
    snprintf(here, sizeof(here), "%s/%d/%lld", cfg->dlq_topic, (int)m->partition,
             (long long)m->offset);
    header_str(in, DLQ_HEADER_ERROR, error, sizeof(error));
    error[strcspn(error, ":")] = '\0'; /* the reason */
    if (opts->reason && strcmp(error, opts->reason) != 0) return ONE_SKIPPED;
    if (in && header_str(in, DLQ_HEADER_TRUNCATED, source, sizeof(source))) {
        log_warn("dlq_replay_skipped dead_letter=%s reason=\"truncated: its value is incomplete\"",
                 here);
        return ONE_SKIPPED;
    }
    int32_t partition = RD_KAFKA_PARTITION_UA;
    int64_t orig_offset;
    bool has_source = header_str(in, DLQ_HEADER_SOURCE, source, sizeof(source)) &&
                      replay_parse_source(source, strlen(source), topic, sizeof(topic), &partition,
                                          &orig_offset) == 0;
    if (!has_source) {
        snprintf(source, sizeof(source), "%s", here);
        partition = RD_KAFKA_PARTITION_UA;
    }
    const char *dest = opts->to_topic ? opts->to_topic : has_source ? topic : NULL;
    if (opts->to_topic) partition = RD_KAFKA_PARTITION_UA; /* another topic: by key */
    if (!dest || strcmp(dest, cfg->dlq_topic) == 0 || strcmp(dest, cfg->jobs_topic) == 0) {
        log_warn("dlq_replay_skipped dead_letter=%s reason=\"no event topic to send it to (%s); "
                 "use --to-topic\"",
                 here, dest ? dest : "no hookd-source header");
        return ONE_SKIPPED;
    }

    size_t cnt = in ? rd_kafka_header_cnt(in) : 0;
    rd_kafka_headers_t *out = rd_kafka_headers_new(cnt + 1);
    for (size_t i = 0; i < cnt; i++) {
        const char *name;
        const void *val;
        size_t size;
        if (rd_kafka_header_get_all(in, i, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (strncmp(name, "hookd-", 6) == 0) continue; /* ours: error, source, an older replay */
        (void)rd_kafka_header_add(out, name, -1, val, (ssize_t)size);
    }
    (void)rd_kafka_header_add(out, REPLAY_HEADER, -1, source, (ssize_t)strlen(source));
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            prod, RD_KAFKA_V_TOPIC(dest), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_HEADERS(out), RD_KAFKA_V_END);
        if (!e) return ONE_PRODUCED; /* 'out' now owned by librdkafka */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(prod, 100);
            continue;
        }
        if (e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION && partition != RD_KAFKA_PARTITION_UA) {
            partition = RD_KAFKA_PARTITION_UA;
            continue;
        }
        rd_kafka_headers_destroy(out);
        if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            log_warn("dlq_replay_skipped dead_letter=%s reason=\"%zu bytes: too large to produce\"",
                     here, m->len);
            return ONE_SKIPPED;
        }
        log_error("dlq_replay_failed dead_letter=%s topic=%s error=\"%s\"", here, dest,
                  rd_kafka_err2str(e));
        return ONE_FAILED;
    }
}

int replay_dlq(const hookd_config_t *cfg, const replay_opts_t *opts)
{
    char err[512];
    rstats_t st = {0};
    rpart_t *parts = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    long skipped = 0, failed = 0;
    int64_t total = 0;
    int n_parts = 0;
    bool ok = false;
    rd_kafka_t *prod = NULL, *cons = new_client(cfg, RD_KAFKA_CONSUMER, NULL, err, sizeof(err));
    if (cons) prod = new_client(cfg, RD_KAFKA_PRODUCER, &st, err, sizeof(err));
    if (!cons || !prod) {
        log_error("dlq_replay_failed error=\"%s\"", err);
        goto done;
    }
    int n =
        plan(cons, cfg->dlq_topic, opts->from_offset, &parts, &assign, &total, err, sizeof(err));
    n_parts = n > 0 ? n : 0;
    if (n < 0) {
        log_error("dlq_replay_failed error=\"%s\"", err);
        goto done;
    }
    log_info("dlq_replay_start topic=%s partitions=%d messages=%lld reason=%s to_topic=%s",
             cfg->dlq_topic, n, (long long)total, opts->reason ? opts->reason : "any",
             opts->to_topic ? opts->to_topic : "hookd-source");
    int active = 0;
    for (int i = 0; i < n; i++)
        if (!parts[i].done) active++;
    rd_kafka_resp_err_t e = active ? rd_kafka_assign(cons, assign) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e) {
        log_error("dlq_replay_failed error=\"assign: %s\"", rd_kafka_err2str(e));
        goto done;
    }
    int64_t last_progress = hookd_mono_ms();
    while (active > 0) {
        if (hookd_shutdown_requested()) {
            log_warn("dlq_replay_interrupted");
            goto done;
        }
        rd_kafka_poll(prod, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 100);
        if (!m) {
            if (hookd_mono_ms() - last_progress > REPLAY_IDLE_MS) {
                log_error("dlq_replay_failed error=\"no message from %s for %d s\"", cfg->dlq_topic,
                          REPLAY_IDLE_MS / 1000);
                goto done;
            }
            continue;
        }
        rpart_t *pt = NULL;
        for (int i = 0; i < n && !pt; i++)
            if (parts[i].partition == m->partition) pt = &parts[i];
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            log_warn("dlq_replay_consume_error partition=%d error=\"%s\"", (int)m->partition,
                     rd_kafka_message_errstr(m));
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                rd_kafka_message_destroy(m);
                goto done;
            }
        } else if (pt && !pt->done) {
            last_progress = hookd_mono_ms();
            if (!m->err && m->offset < pt->end) {
                one_result_t r = replay_one(prod, cfg, opts, m);
                if (r == ONE_SKIPPED) skipped++;
                if (r == ONE_FAILED) failed++;
            }
            /* the end: its last message, or EOF there (offsets may have gaps) */
            if (m->offset + (m->err ? 0 : 1) >= pt->end) {
                pt->done = true;
                active--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    ok = true;
done:
    if (prod) {
        rd_kafka_resp_err_t fe = rd_kafka_flush(prod, REPLAY_FLUSH_MS);
        if (fe) {
            log_error("dlq_replay_failed error=\"%d messages unacknowledged after %d s\"",
                      rd_kafka_outq_len(prod), REPLAY_FLUSH_MS / 1000);
            ok = false;
        }
    }
    if (st.failed) {
        log_error("dlq_replay_failed count=%ld first_error=\"%s\"", st.failed, st.first_error);
        ok = false;
    }
    if (failed) ok = false;
    printf("replayed=%ld skipped=%ld", st.acked, skipped);
    if (!ok) printf(" failed=%ld", failed + st.failed);
    printf("\n");
    fflush(stdout);
    char ends[512] = ""; /* where a replay of only newer dead letters starts (--from-offset) */
    for (int i = 0; i < n_parts; i++) {
        size_t used = strlen(ends);
        snprintf(ends + used, sizeof(ends) - used, "%s%d:%lld", used ? "," : "",
                 (int)parts[i].partition, (long long)parts[i].end);
    }
    log_info("dlq_replay_done topic=%s replayed=%ld skipped=%ld failed=%ld complete=%s ends=%s",
             cfg->dlq_topic, st.acked, skipped, failed + st.failed, ok ? "true" : "false", ends);
    if (assign) rd_kafka_topic_partition_list_destroy(assign);
    free(parts);
    if (cons) {
        (void)rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
    }
    if (prod) rd_kafka_destroy(prod);
    return ok ? 0 : 1;
}
