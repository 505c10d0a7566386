/* Ingest pipeline: consume -> parse -> match -> produce -> await delivery
 * reports -> commit, on one thread woken by librdkafka queue IO events.
 *
 * Everything that touches the Kafka clients runs on the pipeline thread:
 * consuming, the rebalance and commit callbacks (served by the consumer
 * poll), the delivery reports (served by rd_kafka_poll on the producer),
 * retries and commits. Per consumed message an offsets_t entry holds one
 * hold per produced message plus a guard; the offset is committable once the
 * entry and all before it have no holds left. */
#include "pipeline.h"

#include "catalog.h"
#include "dlq.h"
#include "matcher.h"
#include "offsets.h"

#include "hookd/event.h"
#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/sign.h"
#include "hookd/subsync.h"
#include "hookd/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIPE_BATCH 2048          /* messages consumed per loop turn at most */
#define PIPE_MAX_HEADERS 64      /* Kafka headers passed to event_parse */
#define HOUSEKEEPING_MS 250      /* health, gauges, back-pressure */
#define LAG_EVERY_MS 1000        /* consumer lag gauges */
#define RETRY_DELAY_MS 500       /* before re-producing a message the broker refused */
#define REVOKE_DRAIN_MS 5000     /* wait for acks of revoked partitions at most this long */
#define LOG_EVERY_MS 1000        /* rate limit of repetitive warnings */
#define REVOKE_COMMIT_MS 5000    /* retry the commit of revoked partitions this long */
#define COMMIT_RETRY_MS 50       /* between those retries */
#define COMMIT_HOLD_MAX_MS 30000 /* periodic commits wait at most this long for a rebalance */

/* A produced message's opaque: slot (16 bits) | slot generation (8) |
 * low 40 bits of the source message's sequence number in its partition. */
#define TAG_SEQ_BITS 40
#define TAG_GEN_BITS 8
#define TAG_SEQ_MASK ((1ULL << TAG_SEQ_BITS) - 1)
#define MAX_SLOTS (1 << 16)

/* One assigned partition. Slots are reused; 'gen' changes on every reuse
 * so delivery reports for a revoked partition are recognised as stale. */
typedef struct part {
    bool used;
    bool own_output; /* the jobs or dead-letter topic (a ^regex matched it): skipped */
    uint8_t gen;
    int slot;
    char topic[256];
    int32_t partition;
    rd_kafka_topic_t *rkt; /* consumer's handle of 'topic' (learnt from a message) */
    offsets_t *offsets;
    int64_t commit_sent; /* last offset committed or in a commit request; -1: none */
    int64_t next_offset; /* one past the last consumed offset; -1: none yet */
    long n_consumed;     /* not yet added to m_consumed (see flush_counters) */
    metric_t *m_consumed, *m_lag;
} part_t;

/* A message to produce again later (refused by the broker, or the local
 * queue was full at shutdown). Allocated only on these error paths. */
typedef struct retry {
    struct retry *next;
    rd_kafka_topic_t *rkt; /* p->jobs_rkt or p->dlq_rkt */
    char *key, *value;
    size_t key_len, len;
    rd_kafka_headers_t *hdrs; /* owned, may be NULL */
    uint64_t tag;
    int64_t due_ms; /* monotonic */
} retry_t;

struct pipeline {
    ingest_t *ing;
    const hookd_config_t *cfg;
    pthread_t thread;
    bool thread_started;
    atomic_int stop;
    atomic_bool failed;
    atomic_bool finished; /* the thread has drained, committed and closed the consumer */
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *cq, *pq; /* consumer queue; producer main queue (delivery reports) */
    int wake[2];               /* pipe librdkafka writes to when either queue gets work */
    rd_kafka_topic_t *jobs_rkt, *dlq_rkt;
    matcher_t *matcher;
    subsync_t *subsync;
    catalog_t *catalog;

    part_t **slots;
    int n_slots;
    part_t *last; /* lookup cache for consecutive messages of one partition */

    int64_t pending; /* produced (or queued for retry) and not acknowledged yet */
    bool paused;     /* consumption paused by back-pressure */
    retry_t *retries;
    int64_t drain_deadline_ms; /* set at shutdown: stop waiting for the broker after this */
    /* Periodic commits are held from the first REBALANCE_IN_PROGRESS answer
     * until the rebalance callback: a commit still in flight when the group
     * generation changes fails with ILLEGAL_GENERATION, and librdkafka then
     * declares the whole assignment lost (its partitions replay elsewhere). */
    int64_t commits_held_since; /* monotonic ms, 0: not held */
    bool ever_assigned;         /* a first assignment arrived (see shutdown_pipeline) */
    int64_t commit_retry_ms;    /* how long a synchronous commit is retried (commit_done_sync) */
    bool assign_before_rejoin;  /* the next assign callback still belongs to the old generation */

    /* reused per event: no allocation on the hot path */
    event_t ev;
    event_header_t hdrs[PIPE_MAX_HEADERS];
    matcher_result_t hits;
    strbuf_t job;
    char err[512];

    int health_subs, health_catalog; /* last reported state, -1 unknown */
    int64_t log_reject_ms, log_produce_ms, log_kafka_ms, log_commit_ms, log_consume_ms;
    long suppressed_rejects;
    long st_sleeps, st_timeouts, st_loops;
    /* hot-path counts, added to their metrics once per loop turn */
    long n_matched, n_unmatched, n_jobs, n_dead_letters;
    int64_t st_slept_us;

    metric_t *m_rejected[EVENT_ERR__COUNT];
    metric_t *m_matched, *m_unmatched, *m_jobs, *m_dead_letters, *m_pending, *m_paused;
    metric_t *m_commits_ok, *m_commits_err, *m_retries, *m_subs, *m_dropped;
};

static void fatal(pipeline_t *p, const char *what);

static bool log_gate(int64_t *last_ms)
{
    int64_t now = hookd_mono_ms();
    if (now - *last_ms < LOG_EVERY_MS) return false;
    *last_ms = now;
    return true;
}

static void flush_part_counters(part_t *pt)
{
    if (pt->n_consumed) metric_add(pt->m_consumed, (double)pt->n_consumed);
    pt->n_consumed = 0;
}

/* Adds the hot-path counts to their metrics (cheaper than an atomic
 * update per event). */
static void flush_counters(pipeline_t *p)
{
    for (int i = 0; i < p->n_slots; i++)
        flush_part_counters(p->slots[i]);
#define FLUSH(n, m)                                                                                \
    do {                                                                                           \
        if (n) metric_add(m, (double)(n));                                                         \
        (n) = 0;                                                                                   \
    } while (0)
    FLUSH(p->n_matched, p->m_matched);
    FLUSH(p->n_unmatched, p->m_unmatched);
    FLUSH(p->n_jobs, p->m_jobs);
    FLUSH(p->n_dead_letters, p->m_dead_letters);
#undef FLUSH
}

/* ---------------------------------------------------------------- partitions */

static inline uint64_t make_tag(const part_t *pt, uint64_t seq)
{
    return ((uint64_t)pt->slot << (TAG_SEQ_BITS + TAG_GEN_BITS)) |
           ((uint64_t)pt->gen << TAG_SEQ_BITS) | (seq & TAG_SEQ_MASK);
}

/* The live partition a tag belongs to (and the full sequence number), or
 * NULL when the partition has been revoked since. */
static part_t *tag_part(pipeline_t *p, uint64_t tag, uint64_t *seq)
{
    int slot = (int)(tag >> (TAG_SEQ_BITS + TAG_GEN_BITS));
    uint8_t gen = (uint8_t)(tag >> TAG_SEQ_BITS);
    if (slot >= p->n_slots) return NULL;
    part_t *pt = p->slots[slot];
    if (!pt->used || pt->gen != gen) return NULL;
    *seq = offsets_seq_expand(pt->offsets, tag & TAG_SEQ_MASK, TAG_SEQ_BITS);
    return pt;
}

static part_t *part_find(pipeline_t *p, const char *topic, int32_t partition)
{
    for (int i = 0; i < p->n_slots; i++) {
        part_t *pt = p->slots[i];
        if (pt->used && pt->partition == partition && strcmp(pt->topic, topic) == 0) return pt;
    }
    return NULL;
}

static part_t *part_add(pipeline_t *p, const char *topic, int32_t partition)
{
    part_t *pt = part_find(p, topic, partition);
    if (pt) return pt;
    for (int i = 0; i < p->n_slots && !pt; i++)
        if (!p->slots[i]->used) pt = p->slots[i];
    if (!pt) {
        if (p->n_slots == MAX_SLOTS) return NULL;
        p->slots = realloc(p->slots, sizeof(*p->slots) * (size_t)(p->n_slots + 1));
        if (!p->slots) abort();
        pt = calloc(1, sizeof(*pt));
        if (!pt) abort();
        pt->slot = p->n_slots;
        p->slots[p->n_slots++] = pt;
    }
    pt->used = true;
    pt->own_output =
        strcmp(topic, p->cfg->jobs_topic) == 0 || strcmp(topic, p->cfg->dlq_topic) == 0;
    if (pt->own_output)
        log_warn("own_topic_skipped topic=%s partition=%d reason=\"HOOKD_INGEST_TOPICS matches the "
                 "jobs or dead-letter topic; its messages are not events\"",
                 topic, (int)partition);
    snprintf(pt->topic, sizeof(pt->topic), "%s", topic);
    pt->partition = partition;
    pt->rkt = NULL;
    pt->offsets = offsets_new();
    pt->commit_sent = -1;
    pt->next_offset = -1;
    char labels[400];
    snprintf(labels, sizeof(labels), "topic=\"%s\"", topic);
    pt->m_consumed = metrics_counter("hookd_events_consumed_total",
                                     "Messages consumed from the event topics", labels);
    snprintf(labels, sizeof(labels), "topic=\"%s\",partition=\"%d\"", topic, (int)partition);
    pt->m_lag = metrics_gauge("hookd_consumer_lag_messages",
                              "Messages in the partition after the last one consumed", labels);
    return pt;
}

static void part_remove(pipeline_t *p, part_t *pt)
{
    flush_part_counters(pt);
    offsets_free(pt->offsets);
    pt->offsets = NULL;
    pt->used = false;
    pt->gen++; /* outstanding tags of this slot become stale */
    pt->rkt = NULL;
    metric_set(pt->m_lag, 0);
    if (p->last == pt) p->last = NULL;
}

/* The assigned partition of a consumed message, or NULL. */
static part_t *part_of(pipeline_t *p, const rd_kafka_message_t *m)
{
    part_t *pt = p->last;
    if (pt && pt->rkt == m->rkt && pt->partition == m->partition) return pt;
    const char *topic = rd_kafka_topic_name(m->rkt);
    for (int i = 0; i < p->n_slots; i++) {
        pt = p->slots[i];
        if (!pt->used || pt->partition != m->partition) continue;
        if (pt->rkt == m->rkt || strcmp(pt->topic, topic) == 0) {
            pt->rkt = m->rkt;
            p->last = pt;
            return pt;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- producing */

static void retry_push(pipeline_t *p, rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                       const void *value, size_t len, rd_kafka_headers_t *hdrs, uint64_t tag,
                       int64_t delay_ms)
{
    retry_t *r = calloc(1, sizeof(*r));
    if (!r) abort();
    r->rkt = rkt;
    r->key = key ? hookd_strndup(key, key_len) : NULL;
    r->key_len = key ? key_len : 0;
    r->value = value ? hookd_strndup(value, len) : NULL;
    r->len = value ? len : 0;
    r->hdrs = hdrs;
    r->tag = tag;
    r->due_ms = hookd_mono_ms() + delay_ms;
    r->next = p->retries;
    p->retries = r;
    metric_inc(p->m_retries);
}

/* Acknowledges one produced message of source message 'seq' of 'pt' (NULL:
 * its partition is gone). */
static void ack(pipeline_t *p, part_t *pt, uint64_t seq)
{
    p->pending--;
    if (pt) offsets_release(pt->offsets, seq);
}

/* A message too large for the producer or the broker. A dead letter is sent
 * again with its value cut to DLQ_TRUNCATED_BYTES (then empty); a job is
 * dead-lettered itself (reason too_large). Takes 'hdrs'. */
static void handle_too_large(pipeline_t *p, rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                             const void *value, size_t len, rd_kafka_headers_t *hdrs, uint64_t tag,
                             const char *why)
{
    uint64_t seq = 0;
    part_t *pt = tag_part(p, tag, &seq);
    if (rkt == p->dlq_rkt) {
        if (!hdrs) hdrs = rd_kafka_headers_new(2);
        if (dlq_is_truncated(hdrs)) {
            if (len == 0) {
                log_error("dead_letter_dropped reason=\"too large even without its value: %s\"",
                          why);
                metric_inc(p->m_dropped);
                rd_kafka_headers_destroy(hdrs);
                ack(p, pt, seq);
                return;
            }
            len = 0;
        } else {
            dlq_mark_truncated(hdrs, len);
            if (len > DLQ_TRUNCATED_BYTES) len = DLQ_TRUNCATED_BYTES;
        }
        log_warn("dead_letter_truncated bytes=%zu reason=\"%s\"", len, why);
        retry_push(p, rkt, key, key_len, len ? value : NULL, len, hdrs, tag, 0);
        return;
    }
    if (hdrs) rd_kafka_headers_destroy(hdrs);
    if (!pt) { /* revoked: the next owner of the partition produces it again */
        ack(p, NULL, 0);
        return;
    }
    char msg[400];
    snprintf(msg, sizeof(msg), "job of %zu bytes refused: %s", len, why);
    log_error("job_dead_lettered source=%s/%d/%lld error=\"%s\"", pt->topic, (int)pt->partition,
              (long long)offsets_offset_of(pt->offsets, seq), msg);
    metric_inc(p->m_rejected[EVENT_ERR_TOO_LARGE]);
    rd_kafka_headers_t *h = dlq_headers(NULL, event_error_name(EVENT_ERR_TOO_LARGE), msg, pt->topic,
                                        pt->partition, offsets_offset_of(pt->offsets, seq));
    retry_push(p, p->dlq_rkt, key, key_len, value, len, h, tag, 0);
}

/* Hands one message to librdkafka; on a refusal it goes to the retry list.
 * Takes 'hdrs'. Never drops: the message's hold stays until acknowledged. */
static void send_msg(pipeline_t *p, rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                     const void *value, size_t len, rd_kafka_headers_t *hdrs, uint64_t tag)
{
    for (;;) {
        rd_kafka_resp_err_t err;
        if (hdrs)
            err = rd_kafka_producev(p->producer, RD_KAFKA_V_RKT(rkt),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_KEY(key, key_len),
                                    RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(hdrs),
                                    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
        else
            err = rd_kafka_producev(
                p->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
        if (!err) return; /* hdrs now owned by librdkafka */
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !atomic_load(&p->failed) &&
            !(p->drain_deadline_ms && hookd_mono_ms() > p->drain_deadline_ms)) {
            /* serve delivery reports to make room; DR callbacks only queue retries */
            rd_kafka_poll(p->producer, 10);
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            handle_too_large(p, rkt, key, key_len, value, len, hdrs, tag, rd_kafka_err2str(err));
            return;
        }
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            char why[512];
            rd_kafka_fatal_error(p->producer, why, sizeof(why));
            fatal(p, why);
            if (hdrs) rd_kafka_headers_destroy(hdrs);
            return; /* the hold stays: the source offset is never committed */
        }
        if (log_gate(&p->log_produce_ms))
            log_warn("produce_failed topic=%s error=\"%s\" action=retry", rd_kafka_topic_name(rkt),
                     rd_kafka_err2str(err));
        retry_push(p, rkt, key, key_len, value, len, hdrs, tag, RETRY_DELAY_MS);
        return;
    }
}

/* Produces one message for source message 'seq' of 'pt', adding a hold
 * that the delivery report releases. Takes 'hdrs'. */
static void produce(pipeline_t *p, rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                    const void *value, size_t len, rd_kafka_headers_t *hdrs, part_t *pt,
                    uint64_t seq)
{
    offsets_hold(pt->offsets, seq);
    p->pending++;
    send_msg(p, rkt, key, key_len, value, len, hdrs, make_tag(pt, seq));
}

/* Re-produces the retries that are due (all with 'force'). */
static void run_retries(pipeline_t *p, bool force)
{
    if (!p->retries) return;
    int64_t now = hookd_mono_ms();
    retry_t *list = p->retries, *keep = NULL;
    p->retries = NULL; /* send_msg() may queue new ones meanwhile */
    while (list) {
        retry_t *r = list;
        list = r->next;
        if (!force && r->due_ms > now) {
            r->next = keep;
            keep = r;
            continue;
        }
        send_msg(p, r->rkt, r->key, r->key_len, r->value, r->len, r->hdrs, r->tag);
        free(r->key);
        free(r->value);
        free(r);
    }
    while (keep) {
        retry_t *r = keep;
        keep = r->next;
        r->next = p->retries;
        p->retries = r;
    }
}

static void free_retries(pipeline_t *p)
{
    while (p->retries) {
        retry_t *r = p->retries;
        p->retries = r->next;
        if (r->hdrs) rd_kafka_headers_destroy(r->hdrs);
        free(r->key);
        free(r->value);
        free(r);
    }
}

/* Delivery report (pipeline thread, from rd_kafka_poll on the producer). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    pipeline_t *p = opaque;
    uint64_t tag = (uint64_t)(uintptr_t)m->_private, seq = 0;
    part_t *pt = tag_part(p, tag, &seq);
    (void)rk;
    if (!m->err) {
        if (m->rkt == p->dlq_rkt)
            p->n_dead_letters++;
        else
            p->n_jobs++;
        ack(p, pt, seq);
        return;
    }
    if (!pt) { /* revoked meanwhile: its next owner consumes the source again */
        ack(p, NULL, 0);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(p->producer, why, sizeof(why));
        fatal(p, why);
        return;
    }
    rd_kafka_headers_t *hdrs = NULL, *orig = NULL;
    if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        hdrs = rd_kafka_headers_copy(orig);
    rd_kafka_topic_t *rkt = m->rkt == p->dlq_rkt ? p->dlq_rkt : p->jobs_rkt;
    if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
        m->err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE) {
        handle_too_large(p, rkt, m->key, m->key_len, m->payload, m->len, hdrs, tag,
                         rd_kafka_err2str(m->err));
        return;
    }
    if (log_gate(&p->log_produce_ms))
        log_warn("delivery_failed topic=%s error=\"%s\" action=retry", rd_kafka_topic_name(rkt),
                 rd_kafka_err2str(m->err));
    retry_push(p, rkt, m->key, m->key_len, m->payload, m->len, hdrs, tag, RETRY_DELAY_MS);
}

/* ---------------------------------------------------------------- events */

/* Resolves aliases and verb forms and checks the type against the catalog.
 * A type in the catalog as written stays (vCita's "pivot/update"); otherwise
 * a verb form becomes its past tense ("client/create" -> "client/created"),
 * the same rule as hookd_normalize_type() applies to subscriptions. */
static event_error_t check_type(pipeline_t *p, event_t *ev, char *err, size_t err_size)
{
    if (ev->type_is_alias) {
        char canon[EVENT_TYPE_MAX];
        if (!catalog_resolve_alias(p->catalog, ev->type, canon, sizeof(canon))) {
            snprintf(err, err_size, "unknown event type '%s' (not in event_type_aliases)",
                     ev->type);
            return EVENT_ERR_UNKNOWN_TYPE;
        }
        memcpy(ev->type, canon, strlen(canon) + 1);
        ev->type_is_alias = false;
        return EVENT_OK;
    }
    if (strncmp(ev->type, "custom/", 7) == 0) return EVENT_OK;
    if (catalog_has_type(p->catalog, ev->type)) return EVENT_OK;
    char past[EVENT_TYPE_MAX];
    if (event_type_past_tense(ev->type, past, sizeof(past)))
        memcpy(ev->type, past, strlen(past) + 1);
    if (p->cfg->accept_unknown_types || catalog_has_type(p->catalog, ev->type)) return EVENT_OK;
    snprintf(err, err_size, "unknown event type '%s' (not in event_types)", ev->type);
    return EVENT_ERR_UNKNOWN_TYPE;
}

static void reject(pipeline_t *p, part_t *pt, uint64_t seq, const rd_kafka_message_t *m,
                   event_error_t e, const char *why)
{
    rd_kafka_headers_t *orig = NULL;
    if (rd_kafka_message_headers(m, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR) orig = NULL;
    metric_inc(p->m_rejected[e]);
    if (log_gate(&p->log_reject_ms)) {
        log_warn("event_rejected reason=%s source=%s/%d/%lld error=\"%s\" suppressed=%ld",
                 event_error_name(e), pt->topic, (int)pt->partition, (long long)m->offset, why,
                 p->suppressed_rejects);
        p->suppressed_rejects = 0;
    } else {
        p->suppressed_rejects++;
    }
    rd_kafka_headers_t *h =
        dlq_headers(orig, event_error_name(e), why, pt->topic, pt->partition, m->offset);
    produce(p, p->dlq_rkt, m->key, m->key_len, m->payload, m->len, h, pt, seq);
}

static void publish_jobs(pipeline_t *p, part_t *pt, uint64_t seq, const event_t *ev)
{
    int64_t now = hookd_now_ms();
    size_t id_len = strlen(ev->id);
    for (size_t i = 0; i < p->hits.n; i++) {
        const matcher_hit_t *h = &p->hits.hits[i];
        char job_id[SIGN_JOB_ID_LEN + 1];
        sign_job_id(ev->id, id_len, h->sub_id, strlen(h->sub_id), job_id);
        strbuf_reset(&p->job);
        job_encode(&p->job, ev, job_id, h->sub_id, h->endpoint_id, h->payload_mode, now);
        produce(p, p->jobs_rkt, h->endpoint_id, strlen(h->endpoint_id), p->job.data, p->job.len,
                NULL, pt, seq);
    }
}

static void handle_message(pipeline_t *p, const rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
            char why[512];
            rd_kafka_fatal_error(p->consumer, why, sizeof(why));
            fatal(p, why);
            return;
        }
        if (log_gate(&p->log_consume_ms))
            log_warn("consume_error topic=%s partition=%d error=\"%s\"",
                     m->rkt ? rd_kafka_topic_name(m->rkt) : "-", (int)m->partition,
                     rd_kafka_message_errstr(m));
        return;
    }
    part_t *pt = part_of(p, m);
    if (!pt) return; /* not (or no longer) ours: its owner consumes it */
    pt->n_consumed++;
    if (m->offset < pt->next_offset) { /* delivered again by the client: already handled */
        log_debug("duplicate_message_skipped source=%s/%d/%lld", pt->topic, (int)pt->partition,
                  (long long)m->offset);
        return;
    }
    pt->next_offset = m->offset + 1;
    uint64_t seq = offsets_begin(pt->offsets, m->offset);
    if (pt->own_output) { /* never re-ingest our own jobs or dead letters */
        offsets_release(pt->offsets, seq);
        return;
    }

    size_t nh = 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        for (size_t i = 0; i < cnt && nh < PIPE_MAX_HEADERS; i++) {
            const char *name;
            const void *val;
            size_t size;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            p->hdrs[nh++] = (event_header_t){name, val, size};
        }
    }
    event_t *ev = &p->ev;
    event_error_t e = event_parse(m->payload, m->len, nh ? p->hdrs : NULL, nh,
                                  (size_t)p->cfg->max_event_bytes, ev, p->err, sizeof(p->err));
    if (e == EVENT_OK) e = check_type(p, ev, p->err, sizeof(p->err));
    if (e != EVENT_OK) {
        reject(p, pt, seq, m, e, p->err);
    } else {
        if (ev->occurred_at_ms == 0) {
            int64_t ts = rd_kafka_message_timestamp(m, NULL);
            ev->occurred_at_ms = ts > 0 ? ts : hookd_now_ms();
        }
        if (matcher_match(p->matcher, ev, &p->hits) > 0) {
            p->n_matched++;
            publish_jobs(p, pt, seq, ev);
        } else {
            p->n_unmatched++;
        }
    }
    offsets_release(pt->offsets, seq); /* the guard: everything for it is produced */
}

/* ---------------------------------------------------------------- commits */

/* Commits the committable offset of every assigned partition (those in
 * 'only' when given) that advanced since the last commit. Returns the error
 * of a synchronous commit (failed partitions are sent again next time). */
static rd_kafka_resp_err_t commit_done(pipeline_t *p, const rd_kafka_topic_partition_list_t *only,
                                       bool sync)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (!sync && p->commits_held_since &&
        hookd_mono_ms() - p->commits_held_since < COMMIT_HOLD_MAX_MS)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < p->n_slots; i++) {
        part_t *pt = p->slots[i];
        if (!pt->used) continue;
        if (only && !rd_kafka_topic_partition_list_find(only, pt->topic, pt->partition)) continue;
        int64_t off = offsets_committable(pt->offsets);
        if (off < 0 || off <= pt->commit_sent) continue;
        if (!l) l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, pt->topic, pt->partition)->offset = off;
        pt->commit_sent = off;
    }
    if (!l) return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = rd_kafka_commit(p->consumer, l, sync ? 0 : 1);
    for (int i = 0; sync && !err && i < l->cnt; i++)
        if (l->elems[i].err) err = l->elems[i].err;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        if (log_gate(&p->log_commit_ms))
            log_warn("commit_failed error=\"%s\" action=retry", rd_kafka_err2str(err));
        for (int i = 0; i < l->cnt; i++) {
            part_t *pt = part_find(p, l->elems[i].topic, l->elems[i].partition);
            if (pt) pt->commit_sent = -1;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return err == RD_KAFKA_RESP_ERR__NO_OFFSET ? RD_KAFKA_RESP_ERR_NO_ERROR : err;
}

/* A synchronous commit that outlasts the end of a rebalance: the
 * coordinator answers REBALANCE_IN_PROGRESS while the other members have
 * not synced the new generation yet (CompletingRebalance), typically for a
 * few heartbeats. Committing before partitions move or the consumer closes
 * is what keeps the next owner from replaying them, so retry until then
 * (bounded by 'deadline', monotonic ms). */
static void commit_done_sync(pipeline_t *p, const rd_kafka_topic_partition_list_t *only,
                             int64_t deadline)
{
    while (commit_done(p, only, true) == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS &&
           hookd_mono_ms() + COMMIT_RETRY_MS < deadline && !atomic_load(&p->failed)) {
        rd_kafka_poll(p->producer, COMMIT_RETRY_MS); /* serves delivery reports meanwhile */
        run_retries(p, false);
    }
}

/* Offset commit result (pipeline thread, from the consumer poll). */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    pipeline_t *p = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    bool failed = err != RD_KAFKA_RESP_ERR_NO_ERROR;
    bool rebalancing = err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        if (!err && !tp->err) continue;
        failed = true;
        if (tp->err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS) rebalancing = true;
        part_t *pt = part_find(p, tp->topic, tp->partition);
        if (pt && pt->commit_sent == tp->offset) pt->commit_sent = -1; /* send again */
    }
    metric_inc(failed ? p->m_commits_err : p->m_commits_ok);
    if (hookd_log_level <= HOOKD_LOG_DEBUG)
        for (int i = 0; offsets && i < offsets->cnt; i++)
            log_debug("offset_commit partition=%s/%d offset=%lld error=\"%s\"", offsets->elems[i].topic,
                      (int)offsets->elems[i].partition, (long long)offsets->elems[i].offset,
                      rd_kafka_err2str(err ? err : offsets->elems[i].err));
    if (rebalancing) {
        if (!p->commits_held_since) log_info("commits_held reason=rebalance_in_progress");
        p->commits_held_since = hookd_mono_ms();
        return;
    }
    if (failed && log_gate(&p->log_commit_ms))
        log_warn("commit_failed error=\"%s\" action=retry",
                 rd_kafka_err2str(err ? err : RD_KAFKA_RESP_ERR__FAIL));
}

/* ---------------------------------------------------------------- rebalances */

static void set_paused(pipeline_t *p, bool pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(p->consumer, &a) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(p->consumer, a)
                                    : rd_kafka_resume_partitions(p->consumer, a);
    if (err) log_warn("%s_failed error=\"%s\"", pause ? "pause" : "resume", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(a);
    p->paused = pause;
    metric_set(p->m_paused, pause);
    log_info("consumption_%s pending_jobs=%lld max_pending_jobs=%lld", pause ? "paused" : "resumed",
             (long long)p->pending, (long long)p->cfg->max_pending_jobs);
}

static void backpressure(pipeline_t *p)
{
    if (!p->paused && p->pending >= p->cfg->max_pending_jobs)
        set_paused(p, true);
    else if (p->paused && p->pending <= p->cfg->max_pending_jobs / 2)
        set_paused(p, false);
}

/* Waits (serving delivery reports) until no message of the partitions in
 * 'l' is waiting for an acknowledgement, or until 'deadline' (monotonic). */
static void drain_parts(pipeline_t *p, const rd_kafka_topic_partition_list_t *l, int64_t deadline)
{
    for (;;) {
        bool busy = false;
        for (int i = 0; i < l->cnt && !busy; i++) {
            part_t *pt = part_find(p, l->elems[i].topic, l->elems[i].partition);
            busy = pt && offsets_in_flight(pt->offsets) > 0;
        }
        if (!busy || hookd_mono_ms() >= deadline || atomic_load(&p->failed)) return;
        rd_kafka_poll(p->producer, 10);
        run_retries(p, false);
    }
}

static void log_parts(const char *what, const rd_kafka_topic_partition_list_t *l)
{
    char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < l->cnt && off < sizeof(buf) - 64; i++) {
        int n = snprintf(buf + off, sizeof(buf) - off, "%s%s/%d", i ? "," : "", l->elems[i].topic,
                         (int)l->elems[i].partition);
        if (n > 0) off += (size_t)n;
    }
    log_info("%s count=%d partitions=%s", what, l->cnt, buf);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    pipeline_t *p = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            if (!part_add(p, parts->elems[i].topic, parts->elems[i].partition))
                log_error("too_many_partitions topic=%s partition=%d", parts->elems[i].topic,
                          (int)parts->elems[i].partition);
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            ret = rd_kafka_assign(rk, parts);
        if (p->paused && parts->cnt) {
            rd_kafka_resp_err_t e2 = rd_kafka_pause_partitions(rk, parts);
            if (e2) log_warn("pause_failed error=\"%s\"", rd_kafka_err2str(e2));
        }
        log_parts("partitions_assigned", parts);
        p->ever_assigned = true;
        if (p->assign_before_rejoin) /* same generation as the revoke: the rejoin follows */
            p->assign_before_rejoin = false;
        else
            p->commits_held_since = 0; /* a new generation: commits may go again */
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool lost = rd_kafka_assignment_lost(rk);
        if (!lost) {
            /* finish what is in flight for them (bounded), commit what is done */
            int64_t deadline = hookd_mono_ms() + REVOKE_DRAIN_MS;
            if (p->drain_deadline_ms && p->drain_deadline_ms < deadline)
                deadline = p->drain_deadline_ms;
            drain_parts(p, parts, deadline);
            commit_done_sync(p, parts, hookd_mono_ms() + p->commit_retry_ms);
        }
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            ret = rd_kafka_assign(rk, NULL);
        for (int i = 0; i < parts->cnt; i++) {
            part_t *pt = part_find(p, parts->elems[i].topic, parts->elems[i].partition);
            if (pt) part_remove(p, pt);
        }
        log_parts(lost ? "partitions_lost" : "partitions_revoked", parts);
        /* a rejoin follows: hold periodic commits until the assignment of
         * the next generation. A cooperative revoke is followed at once by
         * the (often empty) assignment of the same generation. */
        p->commits_held_since = hookd_mono_ms();
        p->assign_before_rejoin = cooperative && !lost;
    } else {
        log_error("rebalance_failed error=\"%s\"", rd_kafka_err2str(err));
        ret = rd_kafka_assign(rk, NULL);
        for (int i = 0; i < p->n_slots; i++)
            if (p->slots[i]->used) part_remove(p, p->slots[i]);
    }
    if (error) {
        log_error("assignment_failed error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    if (ret) log_error("assignment_failed error=\"%s\"", rd_kafka_err2str(ret));
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    pipeline_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        fatal(p, why);
        return;
    }
    if (log_gate(&p->log_kafka_ms))
        log_warn("kafka_error client=%s error=%s reason=\"%s\"", rd_kafka_name(rk),
                 rd_kafka_err2name(err), reason);
}

/* ---------------------------------------------------------------- housekeeping */

static void report_health(pipeline_t *p)
{
    int subs = !subsync_loaded(p->subsync) ? 0 : subsync_connected(p->subsync) ? 2 : 1;
    int cat = !catalog_loaded(p->catalog) ? 0 : catalog_connected(p->catalog) ? 2 : 1;
    static const char *const detail[] = {
        "loading", "stale: PostgreSQL unreachable, matching on the cached copy", "ok"};
    if (subs != p->health_subs) {
        health_set(p->ing->health, "subscriptions", subs == 2, detail[subs]);
        if (subs == 1)
            log_warn("subscriptions_stale action=match_on_cache");
        else if (subs == 2 && p->health_subs == 1)
            log_info("subscriptions_live");
        p->health_subs = subs;
    }
    if (cat != p->health_catalog) {
        health_set(p->ing->health, "catalog", cat == 2, detail[cat]);
        p->health_catalog = cat;
    }
    metric_set(p->m_subs, (double)matcher_count(p->matcher));
}

static void update_lag(pipeline_t *p)
{
    for (int i = 0; i < p->n_slots; i++) {
        part_t *pt = p->slots[i];
        int64_t lo, hi;
        if (!pt->used) continue;
        if (rd_kafka_get_watermark_offsets(p->consumer, pt->topic, pt->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue;
        int64_t pos = pt->next_offset >= 0 ? pt->next_offset : pt->commit_sent;
        if (pos < 0) pos = lo >= 0 ? lo : 0;
        metric_set(pt->m_lag, (double)(hi > pos ? hi - pos : 0));
    }
}

static void fatal(pipeline_t *p, const char *what)
{
    if (atomic_exchange(&p->failed, true)) return;
    log_error("pipeline_fatal error=\"%s\" action=exit", what);
    atomic_store(&p->stop, 1);
    kill(getpid(), SIGTERM); /* ends the main loop; main exits non-zero */
}

static void drain_wake(pipeline_t *p)
{
    char buf[64];
    while (read(p->wake[0], buf, sizeof(buf)) > 0) {
    }
}

/* ---------------------------------------------------------------- thread */

static bool wait_loaded(pipeline_t *p)
{
    int64_t next_log = hookd_mono_ms() + 5000;
    while (!atomic_load(&p->stop)) {
        report_health(p);
        if (subsync_loaded(p->subsync) && catalog_loaded(p->catalog)) return true;
        if (hookd_mono_ms() >= next_log) {
            log_info("waiting_for_subscriptions subscriptions=%s catalog=%s",
                     subsync_loaded(p->subsync) ? "loaded" : "loading",
                     catalog_loaded(p->catalog) ? "loaded" : "loading");
            next_log = hookd_mono_ms() + 5000;
        }
        poll(NULL, 0, 50);
    }
    return false;
}

static void shutdown_pipeline(pipeline_t *p)
{
    int64_t budget = p->cfg->shutdown_timeout_s * 1000;
    int64_t deadline = hookd_mono_ms() + budget * 3 / 4;
    p->drain_deadline_ms = deadline;
    log_info("pipeline_stopping pending_jobs=%lld loops=%ld sleeps=%ld timeouts=%ld slept_ms=%lld",
             (long long)p->pending, p->st_loops, p->st_sleeps, p->st_timeouts,
             (long long)(p->st_slept_us / 1000));
    while ((p->pending > 0 || p->retries) && hookd_mono_ms() < deadline &&
           !atomic_load(&p->failed)) {
        rd_kafka_poll(p->producer, 20);
        run_retries(p, false);
    }
    flush_counters(p);
    metric_set(p->m_pending, (double)p->pending);
    if (p->pending > 0)
        log_warn("shutdown_unacknowledged jobs=%lld action=republish_after_restart",
                 (long long)p->pending);
    p->commit_retry_ms = budget / 8 < REVOKE_COMMIT_MS ? budget / 8 : REVOKE_COMMIT_MS;
    commit_done_sync(p, NULL, hookd_mono_ms() + p->commit_retry_ms);
    /* librdkafka 2.0 (fixed in 2.3, issue #4312) aborts when a cooperative-
     * sticky consumer is destroyed before its first assignment: wait for it
     * (bounded), else the handle is left to exit (see destroy). Messages
     * polled meanwhile are dropped unprocessed and uncommitted, so they are
     * consumed again after the restart. */
    int64_t join_deadline = hookd_mono_ms() + budget / 4;
    while (!p->ever_assigned && hookd_mono_ms() < join_deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, 100);
        if (m) rd_kafka_message_destroy(m);
    }
    /* leaves the group; the revoke callback commits again (nothing new) */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(p->consumer);
    if (err) log_warn("consumer_close_failed error=\"%s\"", rd_kafka_err2str(err));
}

static void *run(void *arg)
{
    pipeline_t *p = arg;
    if (!wait_loaded(p)) goto out;
    log_info("subscriptions_ready count=%zu event_types=%zu", matcher_count(p->matcher),
             catalog_size(p->catalog));

    rd_kafka_topic_partition_list_t *topics = hookd_kafka_topic_list(p->cfg->ingest_topics);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(p->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        char why[300];
        snprintf(why, sizeof(why), "subscribe to %s failed: %s", p->cfg->ingest_topics,
                 rd_kafka_err2str(err));
        fatal(p, why);
        goto out;
    }
    log_info("consuming topics=%s group=%s", p->cfg->ingest_topics, p->cfg->ingest_group);

    int64_t now = hookd_mono_ms();
    int64_t next_commit = now + p->cfg->commit_interval_ms, next_house = now,
            next_lag = now + LAG_EVERY_MS;
    while (!atomic_load(&p->stop)) {
        p->st_loops++;
        drain_wake(p);
        /* consume what is there, one message at a time (librdkafka 2.0's
         * batch API can skip offsets around pause/resume) */
        int n = 0;
        bool drained = false; /* the consumer queue was seen empty */
        while (n < PIPE_BATCH && !atomic_load(&p->stop) && p->pending < p->cfg->max_pending_jobs) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, 0);
            if (!m) {
                drained = true;
                break;
            }
            handle_message(p, m);
            rd_kafka_message_destroy(m);
            n++;
        }
        rd_kafka_poll(p->producer, 0); /* delivery reports */
        run_retries(p, false);
        backpressure(p);
        metric_set(p->m_pending, (double)p->pending);
        flush_counters(p);

        now = hookd_mono_ms();
        if (now >= next_commit) {
            commit_done(p, NULL, false);
            next_commit = now + p->cfg->commit_interval_ms;
        }
        if (now >= next_house) {
            report_health(p);
            next_house = now + HOUSEKEEPING_MS;
        }
        if (now >= next_lag) {
            update_lag(p);
            next_lag = now + LAG_EVERY_MS;
        }
        /* a queue IO event only fires when the queue turns non-empty: while
         * messages are left in it, go round again instead of sleeping */
        if (!drained && p->pending < p->cfg->max_pending_jobs) continue;
        int64_t wait = next_commit < next_house ? next_commit - now : next_house - now;
        if (p->retries && wait > RETRY_DELAY_MS / 5) wait = RETRY_DELAY_MS / 5;
        if (wait < 0) wait = 0;
        struct pollfd pfd = {.fd = p->wake[0], .events = POLLIN};
        int64_t s0 = hookd_mono_us();
        int pr = poll(&pfd, 1, (int)wait);
        p->st_sleeps++;
        p->st_slept_us += hookd_mono_us() - s0;
        if (pr == 0) p->st_timeouts++;
    }
    shutdown_pipeline(p);
out:
    atomic_store(&p->finished, true);
    return NULL;
}

/* ---------------------------------------------------------------- setup */

static bool user_set(const hookd_config_t *cfg, const char *prop)
{
    for (int i = 0; i < cfg->kafka_props_len; i++)
        if (strcmp(cfg->kafka_props[i].name, prop) == 0) return true;
    return false;
}

/* Sets 'name' unless an operator set it through HOOKD_KAFKA_*. */
static int set_default(rd_kafka_conf_t *conf, const hookd_config_t *cfg, const char *name,
                       const char *value, char *err, size_t err_size)
{
    if (user_set(cfg, name)) return 0;
    return hookd_kafka_set(conf, name, value, err, err_size);
}

static rd_kafka_t *new_consumer(pipeline_t *p, char *err, size_t err_size)
{
    const hookd_config_t *cfg = p->cfg;
    rd_kafka_conf_t *conf = hookd_kafka_conf(cfg, "hookd-ingest", err, err_size);
    if (!conf) return NULL;
    if (hookd_kafka_set(conf, "group.id", cfg->ingest_group, err, err_size) < 0 ||
        hookd_kafka_set(conf, "enable.auto.commit", "false", err, err_size) < 0 ||
        hookd_kafka_set(conf, "enable.auto.offset.store", "false", err, err_size) < 0 ||
        set_default(conf, cfg, "auto.offset.reset", "earliest", err, err_size) < 0 ||
        set_default(conf, cfg, "partition.assignment.strategy", "cooperative-sticky", err,
                    err_size) < 0 ||
        set_default(conf, cfg, "enable.partition.eof", "false", err, err_size) < 0 ||
        set_default(conf, cfg, "fetch.wait.max.ms", "100", err, err_size) < 0 ||
        /* librdkafka 2.0 stops fetching every partition once the (single,
         * shared) consumer queue holds queued.min.messages and only looks
         * again after a timeout: with the default 100000 a consumer that does
         * real work per message idles half the time. Prefetch stays bounded
         * by queued.max.messages.kbytes (64 MiB). */
        set_default(conf, cfg, "queued.min.messages", "1000000", err, err_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, err_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_resp_err_t e = rd_kafka_poll_set_consumer(rk);
    if (e) {
        snprintf(err, err_size, "rd_kafka_poll_set_consumer: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

static rd_kafka_t *new_producer(pipeline_t *p, char *err, size_t err_size)
{
    const hookd_config_t *cfg = p->cfg;
    char max_msg[32], max_queue[32];
    /* a job carries up to a whole event; a dead letter up to twice the limit */
    int64_t mm = cfg->max_event_bytes * 2 + 65536;
    if (mm < 1000000) mm = 1000000;
    if (mm > 1000000000) mm = 1000000000;
    snprintf(max_msg, sizeof(max_msg), "%lld", (long long)mm);
    int64_t mq = cfg->max_pending_jobs * 2 + 100000;
    if (mq > 10000000) mq = 10000000;
    snprintf(max_queue, sizeof(max_queue), "%lld", (long long)mq);
    rd_kafka_conf_t *conf = hookd_kafka_conf(cfg, "hookd-ingest", err, err_size);
    if (!conf) return NULL;
    if (hookd_kafka_set(conf, "enable.idempotence", "true", err, err_size) < 0 ||
        set_default(conf, cfg, "message.max.bytes", max_msg, err, err_size) < 0 ||
        set_default(conf, cfg, "queue.buffering.max.messages", max_queue, err, err_size) < 0 ||
        set_default(conf, cfg, "queue.buffering.max.kbytes", "2097151", err, err_size) < 0 ||
        set_default(conf, cfg, "linger.ms", "10", err, err_size) < 0 ||
        set_default(conf, cfg, "batch.num.messages", "10000", err, err_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, err_size);
    if (!rk) rd_kafka_conf_destroy(conf);
    return rk;
}

static void register_metrics(pipeline_t *p)
{
    for (int e = 1; e < EVENT_ERR__COUNT; e++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", event_error_name((event_error_t)e));
        p->m_rejected[e] =
            metrics_counter("hookd_events_rejected_total",
                            "Events sent to the dead-letter topic, by reason", labels);
    }
    p->m_matched = metrics_counter("hookd_events_matched_total",
                                   "Valid events that matched at least one subscription", NULL);
    p->m_unmatched = metrics_counter("hookd_events_unmatched_total",
                                     "Valid events that matched no subscription", NULL);
    p->m_jobs = metrics_counter("hookd_jobs_published_total",
                                "Delivery jobs acknowledged by the broker", NULL);
    p->m_dead_letters = metrics_counter("hookd_dead_letters_published_total",
                                        "Rejected events acknowledged by the broker on the "
                                        "dead-letter topic",
                                        NULL);
    p->m_dropped = metrics_counter("hookd_dead_letters_dropped_total",
                                   "Dead letters the broker refused even when emptied", NULL);
    p->m_pending = metrics_gauge("hookd_jobs_pending",
                                 "Jobs and dead letters produced but not yet acknowledged", NULL);
    p->m_paused = metrics_gauge("hookd_consumer_paused",
                                "1 while consumption is paused by back-pressure", NULL);
    p->m_commits_ok =
        metrics_counter("hookd_offset_commits_total",
                        "Offset commits of the event topics, by result", "result=\"ok\"");
    p->m_commits_err =
        metrics_counter("hookd_offset_commits_total",
                        "Offset commits of the event topics, by result", "result=\"error\"");
    p->m_retries = metrics_counter("hookd_produce_retries_total",
                                   "Jobs and dead letters produced again after a failure", NULL);
    p->m_subs = metrics_gauge("hookd_matcher_subscriptions",
                              "Active subscriptions in the in-memory index", NULL);
}

static void destroy(pipeline_t *p)
{
    if (p->cq) {
        rd_kafka_queue_io_event_enable(p->cq, -1, NULL, 0);
        rd_kafka_queue_destroy(p->cq);
    }
    if (p->pq) {
        rd_kafka_queue_io_event_enable(p->pq, -1, NULL, 0);
        rd_kafka_queue_destroy(p->pq);
    }
    hookd_kafka_consumer_destroy(p->consumer, p->ever_assigned);
    if (p->jobs_rkt) rd_kafka_topic_destroy(p->jobs_rkt);
    if (p->dlq_rkt) rd_kafka_topic_destroy(p->dlq_rkt);
    if (p->producer) {
        if (rd_kafka_outq_len(p->producer) > 0) {
            rd_kafka_resp_err_t e =
                rd_kafka_purge(p->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            if (e) log_warn("producer_purge_failed error=\"%s\"", rd_kafka_err2str(e));
            rd_kafka_poll(p->producer, 0);
        }
        rd_kafka_destroy(p->producer);
    }
    free_retries(p);
    subsync_stop(p->subsync);
    catalog_free(p->catalog);
    matcher_free(p->matcher);
    for (int i = 0; i < p->n_slots; i++) {
        offsets_free(p->slots[i]->offsets);
        free(p->slots[i]);
    }
    free(p->slots);
    matcher_result_free(&p->hits);
    strbuf_free(&p->job);
    if (p->wake[0] >= 0) close(p->wake[0]);
    if (p->wake[1] >= 0) close(p->wake[1]);
    free(p);
}

pipeline_t *pipeline_start(ingest_t *ing, char *err, size_t err_size)
{
    pipeline_t *p = calloc(1, sizeof(*p));
    if (!p) abort();
    p->ing = ing;
    p->cfg = &ing->cfg;
    p->wake[0] = p->wake[1] = -1;
    p->commit_retry_ms = REVOKE_COMMIT_MS;
    p->health_subs = p->health_catalog = -1;
    strbuf_init(&p->job, 4096);
    register_metrics(p);

    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, err_size, "pipe: %s", strerror(errno));
        goto fail;
    }
    p->producer = new_producer(p, err, err_size);
    if (!p->producer) goto fail;
    p->consumer = new_consumer(p, err, err_size);
    if (!p->consumer) goto fail;
    p->jobs_rkt = rd_kafka_topic_new(p->producer, p->cfg->jobs_topic, NULL);
    p->dlq_rkt = rd_kafka_topic_new(p->producer, p->cfg->dlq_topic, NULL);
    if (!p->jobs_rkt || !p->dlq_rkt) {
        snprintf(err, err_size, "topic handle: %s", rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    p->cq = rd_kafka_queue_get_consumer(p->consumer);
    p->pq = rd_kafka_queue_get_main(p->producer);
    if (!p->cq || !p->pq) {
        snprintf(err, err_size, "cannot get the client queues");
        goto fail;
    }
    rd_kafka_queue_io_event_enable(p->cq, p->wake[1], "c", 1);
    rd_kafka_queue_io_event_enable(p->pq, p->wake[1], "p", 1);

    p->matcher = matcher_new();
    p->catalog =
        catalog_start(p->cfg->database_url, "hookd-ingest-catalog", p->cfg->matcher_reload_s);
    if (!p->catalog) {
        snprintf(err, err_size, "cannot start the catalog thread");
        goto fail;
    }
    p->subsync = subsync_start(p->cfg->database_url, "hookd-ingest-subscriptions",
                               &matcher_subsync_callbacks, p->matcher, p->cfg->matcher_reload_s, 0);
    if (!p->subsync) {
        snprintf(err, err_size, "cannot start the subscription feed");
        goto fail;
    }
    report_health(p);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        snprintf(err, err_size, "cannot start the pipeline thread");
        goto fail;
    }
    p->thread_started = true;
    return p;
fail:
    destroy(p);
    return NULL;
}

bool pipeline_failed(const pipeline_t *p)
{
    return p && atomic_load(&p->failed);
}

void pipeline_begin_stop(pipeline_t *p)
{
    if (!p) return;
    atomic_store(&p->stop, 1);
    if (p->thread_started && write(p->wake[1], "s", 1) < 0) {
        /* the thread also polls with a timeout */
    }
}

bool pipeline_done(const pipeline_t *p)
{
    return !p || !p->thread_started || atomic_load(&p->finished);
}

void pipeline_stop(pipeline_t *p)
{
    if (!p) return;
    pipeline_begin_stop(p);
    if (p->thread_started) pthread_join(p->thread, NULL);
    log_info("pipeline_stopped");
    destroy(p);
}
