/* Jobs topic consumer on the event loop: IO-event wakeups, consume rounds
 * with a budget, offset trackers per assigned partition, periodic commits,
 * cooperative rebalances, pause/resume for the memory bound, lag gauges. */
#include "consumer.h"

#include "delivery.h"
#include "offtrack.h"

#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/util.h"

#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONSUME_BUDGET 1000 /* messages per round before yielding to the loop */
#define SAFETY_POLL_MS 100
#define HELD_POLL_MAX_MS 5000
#define HANDOVER_COMMIT_MS 5000 /* retry the commit of revoked partitions this long */
#define FIRST_JOIN_WAIT_MS 5000 /* see consumer_close */
#define POKE_EVERY_MS 20        /* see poke_fetchers */
#define POKE_MAX_PARTITIONS 64

struct consumer {
    worker_t *w;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int pipe_fd[2];
    struct event *io_ev, *poll_ev, *commit_ev;
    offtrack_t **trackers; /* by partition number */
    metric_t **lag;        /* by partition number */
    int n_slots;
    uint64_t next_gen;
    bool stopped;
    bool held_back;       /* the memory bound holds consumption back */
    bool subscribed;
    bool ever_assigned;   /* a first assignment arrived (see consumer_close) */
    int64_t last_poll_ms; /* last time messages were taken */
    bool held_since_wake; /* held back since the last wake_fetchers */
    int64_t last_poke_ms;
    /* the poker thread (poke_fetchers) */
    pthread_t poker;
    bool poker_started;
    pthread_mutex_t poke_mu;
    pthread_cond_t poke_cv;
    atomic_bool poke_stop;
    bool poke_want;
    int32_t poke_parts[POKE_MAX_PARTITIONS];
    int poke_n;
    metric_t *m_fetch_wakes, *m_fetch_pokes;
    metric_t *m_commits, *m_commit_errors, *m_paused, *m_rebalances;
};

static offtrack_t *tracker(const consumer_t *c, int32_t p)
{
    return p >= 0 && p < c->n_slots ? c->trackers[p] : NULL;
}

static void ensure_slot(consumer_t *c, int32_t p)
{
    if (p < c->n_slots) return;
    int n = c->n_slots ? c->n_slots : 16;
    while (n <= p)
        n *= 2;
    c->trackers = realloc(c->trackers, sizeof(*c->trackers) * (size_t)n);
    c->lag = realloc(c->lag, sizeof(*c->lag) * (size_t)n);
    if (!c->trackers || !c->lag) abort();
    for (int i = c->n_slots; i < n; i++) {
        c->trackers[i] = NULL;
        c->lag[i] = NULL;
    }
    c->n_slots = n;
}

void consumer_job_done(consumer_t *c, int32_t partition, uint64_t gen, uint64_t seq)
{
    offtrack_t *t = tracker(c, partition);
    if (t && offtrack_gen(t) == gen) offtrack_done(t, seq);
}

bool consumer_alive(const consumer_t *c, int32_t partition, uint64_t gen)
{
    const offtrack_t *t = tracker(c, partition);
    return t && offtrack_gen(t) == gen;
}

/* Commits the trackers' positions that moved: all of them, or only the
 * partitions in 'only'. Returns the error of the commit request (of the
 * first failed partition for a synchronous one), or 0. */
static rd_kafka_resp_err_t commit(consumer_t *c, const rd_kafka_topic_partition_list_t *only,
                                  bool sync)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < c->n_slots; p++) {
        offtrack_t *t = c->trackers[p];
        if (!t) continue;
        if (only && !rd_kafka_topic_partition_list_find(only, c->w->cfg.jobs_topic, p)) continue;
        int64_t pos = offtrack_position(t);
        if (pos < 0 || pos <= offtrack_committed(t)) continue;
        rd_kafka_topic_partition_list_add(l, c->w->cfg.jobs_topic, p)->offset = pos;
        offtrack_set_committed(t, pos);
    }
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (l->cnt > 0) {
        e = rd_kafka_commit(c->rk, l, sync ? 0 : 1);
        for (int i = 0; sync && !e && i < l->cnt; i++)
            if (l->elems[i].err) e = l->elems[i].err;
        metric_inc(c->m_commits);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            metric_inc(c->m_commit_errors);
            log_warn("kafka_commit_failed error=\"%s\"", rd_kafka_err2str(e));
            /* try again next time */
            for (int i = 0; i < l->cnt; i++) {
                offtrack_t *t = tracker(c, l->elems[i].partition);
                if (t) offtrack_set_committed(t, -1);
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return e;
}

/* A synchronous commit before partitions move or the consumer closes: the
 * coordinator answers REBALANCE_IN_PROGRESS until every member has synced
 * the new generation (a few heartbeats), so retry for a bounded time;
 * committing here keeps the next owner from re-reading finished jobs. */
static void commit_before_handover(consumer_t *c, const rd_kafka_topic_partition_list_t *only)
{
    int64_t deadline = hookd_mono_ms() + HANDOVER_COMMIT_MS;
    while (commit(c, only, true) == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS &&
           hookd_mono_ms() < deadline)
        poll(NULL, 0, 50);
}

/* Result of an asynchronous commit: a partition whose commit failed is
 * committed again at the next tick (rebalances make this common). */
static void on_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    consumer_t *c = opaque;
    if (!err || !offsets) return;
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        offtrack_t *t = tracker(c, tp->partition);
        if ((tp->err || err) && t && offtrack_committed(t) <= tp->offset)
            offtrack_set_committed(t, -1);
    }
    if (err != RD_KAFKA_RESP_ERR__NO_OFFSET) metric_inc(c->m_commit_errors);
}

static void on_commit_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    consumer_t *c = arg;
    commit(c, NULL, false);
}

/* Whether to take messages now: not while the memory bound is reached
 * (librdkafka keeps what it prefetched, up to queued.max.messages.kbytes,
 * and stops fetching), except once every HELD_POLL_MAX_MS so group events
 * are served however long deliveries stall. */
static bool may_consume(consumer_t *c)
{
    int64_t now = hookd_mono_ms();
    bool full = delivery_over_high_water(c->w->dlv);
    if (full) c->held_since_wake = true;
    if (full != c->held_back) {
        c->held_back = full;
        metric_set(c->m_paused, full ? 1 : 0);
        log_debug("consumption_%s held=%zu", full ? "held_back" : "resumed",
                  delivery_held(c->w->dlv));
    }
    if (!full || now - c->last_poll_ms >= HELD_POLL_MAX_MS) {
        c->last_poll_ms = now;
        return true;
    }
    delivery_relieve(c->w->dlv);
    return false;
}

void consumer_kick(consumer_t *c)
{
    if (c && c->io_ev && !c->stopped) event_active(c->io_ev, EV_READ, 0);
}

static void log_partitions(const char *what, const rd_kafka_topic_partition_list_t *parts)
{
    char buf[512];
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && o + 16 < sizeof(buf); i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%d", i ? "," : "",
                              (int)parts->elems[i].partition);
    log_info("%s partitions=%s", what, buf);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    consumer_t *c = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *e = NULL;
    metric_inc(c->m_rebalances);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            ensure_slot(c, p);
            offtrack_free(c->trackers[p]);
            c->trackers[p] = offtrack_new(p, ++c->next_gen);
        }
        log_partitions("partitions_assigned", parts);
        c->ever_assigned = true;
        if (coop) {
            e = rd_kafka_incremental_assign(rk, parts);
        } else {
            rd_kafka_resp_err_t r = rd_kafka_assign(rk, parts);
            if (r) log_error("kafka_assign_failed error=\"%s\"", rd_kafka_err2str(r));
        }
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool lost = rd_kafka_assignment_lost(rk);
        log_partitions(lost ? "partitions_lost" : "partitions_revoked", parts);
        if (!lost) commit_before_handover(c, parts); /* what is done stays done */
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            offtrack_t *t = tracker(c, p);
            if (!t) continue;
            c->trackers[p] = NULL;
            delivery_drop_partition(c->w->dlv, p, offtrack_gen(t));
            offtrack_free(t);
            if (c->lag[p]) metric_set(c->lag[p], 0);
        }
        if (coop) {
            e = rd_kafka_incremental_unassign(rk, parts);
        } else {
            rd_kafka_resp_err_t r = rd_kafka_assign(rk, NULL);
            if (r) log_error("kafka_assign_failed error=\"%s\"", rd_kafka_err2str(r));
        }
    } else {
        log_error("kafka_rebalance_failed error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_resp_err_t r = rd_kafka_assign(rk, NULL);
        if (r) log_error("kafka_assign_failed error=\"%s\"", rd_kafka_err2str(r));
    }
    if (e) {
        log_error("kafka_assign_failed error=\"%s\"", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

/* librdkafka 2.0 stops fetching a partition while its prefetch queue is
 * over queued.max.messages.kbytes (the memory bound held consumption back)
 * and looks again only when something else wakes the broker thread, at the
 * latest after a second (2.1 added fetch.queue.backoff.ms). So once the
 * worker, after being held back, has emptied the queue while partitions
 * still have messages on the broker (last known high watermark above the
 * position), a seek to the position restarts their fetch at once. Lossless:
 * the position is the next offset the worker has not read (the queue is
 * empty; a fetch in flight is discarded and made again). At most one per
 * held-back episode, so a slow broker never sees its fetches cut short
 * over and over. */
static void wake_fetchers(consumer_t *c)
{
    c->held_since_wake = false;
    const char *topic = c->w->cfg.jobs_topic;
    rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(8);
    for (int p = 0; p < c->n_slots; p++)
        if (c->trackers[p]) rd_kafka_topic_partition_list_add(pos, topic, p);
    rd_kafka_topic_partition_list_t *seek = NULL;
    if (pos->cnt && rd_kafka_position(c->rk, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < pos->cnt; i++) {
            int64_t lo, hi, at = pos->elems[i].offset;
            if (at < 0 || rd_kafka_get_watermark_offsets(c->rk, topic, pos->elems[i].partition, &lo,
                                                         &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                hi <= at)
                continue;
            if (!seek) seek = rd_kafka_topic_partition_list_new(pos->cnt);
            rd_kafka_topic_partition_list_add(seek, topic, pos->elems[i].partition)->offset = at;
        }
    }
    rd_kafka_topic_partition_list_destroy(pos);
    if (!seek) return;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, seek, 0); /* asynchronous */
    if (e) {
        log_warn("fetch_wake_failed error=\"%s\"", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else {
        metric_inc(c->m_fetch_wakes);
        log_debug("fetch_woken partitions=%d", seek->cnt);
    }
    rd_kafka_topic_partition_list_destroy(seek);
}

/* The other half of the librdkafka 2.0 stop described above: while the
 * memory bound holds consumption back, the prefetch queue fills up and the
 * broker threads stop fetching; once the worker takes messages again they
 * would look at the queue only a second later (or when it is empty, see
 * wake_fetchers), leaving the pipeline to run dry. Any response wakes a
 * broker thread, which then sees the queue below its limit and fetches, so
 * after a held-back episode a helper thread asks each partition's leader
 * for its watermarks (ListOffsets, blocking, hence the thread), at most
 * every POKE_EVERY_MS. */
static void *poker_run(void *arg)
{
    consumer_t *c = arg;
    int32_t parts[POKE_MAX_PARTITIONS];
    pthread_mutex_lock(&c->poke_mu);
    for (;;) {
        while (!atomic_load(&c->poke_stop) && !c->poke_want)
            pthread_cond_wait(&c->poke_cv, &c->poke_mu);
        if (atomic_load(&c->poke_stop)) break;
        int n = c->poke_n;
        memcpy(parts, c->poke_parts, sizeof(parts[0]) * (size_t)n);
        c->poke_want = false;
        pthread_mutex_unlock(&c->poke_mu);
        for (int i = 0; i < n && !atomic_load(&c->poke_stop); i++) {
            int64_t lo, hi;
            (void)rd_kafka_query_watermark_offsets(c->rk, c->w->cfg.jobs_topic, parts[i], &lo, &hi,
                                                   1000);
        }
        pthread_mutex_lock(&c->poke_mu);
    }
    pthread_mutex_unlock(&c->poke_mu);
    return NULL;
}

static void poke_fetchers(consumer_t *c)
{
    int64_t now = hookd_mono_ms();
    if (!c->poker_started || now - c->last_poke_ms < POKE_EVERY_MS) return;
    c->last_poke_ms = now;
    pthread_mutex_lock(&c->poke_mu);
    if (!c->poke_want) {
        c->poke_n = 0;
        for (int p = 0; p < c->n_slots && c->poke_n < POKE_MAX_PARTITIONS; p++)
            if (c->trackers[p]) c->poke_parts[c->poke_n++] = p;
        c->poke_want = c->poke_n > 0;
        if (c->poke_want) {
            metric_inc(c->m_fetch_pokes);
            pthread_cond_signal(&c->poke_cv);
        }
    }
    pthread_mutex_unlock(&c->poke_mu);
}

static void stop_poker(consumer_t *c)
{
    if (!c->poker_started) return;
    pthread_mutex_lock(&c->poke_mu);
    atomic_store(&c->poke_stop, true);
    pthread_cond_signal(&c->poke_cv);
    pthread_mutex_unlock(&c->poke_mu);
    pthread_join(c->poker, NULL);
    c->poker_started = false;
}

static void consume_round(consumer_t *c)
{
    if (c->stopped || !may_consume(c)) return;
    int n = 0;
    while (n < CONSUME_BUDGET) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (!m) break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("kafka_consume_error error=\"%s\"", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        offtrack_t *t = tracker(c, m->partition);
        if (t) {
            uint64_t seq = offtrack_add(t, m->offset);
            if (!delivery_consumed(c->w->dlv, m->payload, m->len, m->partition, offtrack_gen(t),
                                   seq))
                offtrack_done(t, seq);
        }
        rd_kafka_message_destroy(m);
        n++;
        if (c->stopped) break; /* a rebalance callback may have run */
    }
    delivery_round_end(c->w->dlv);
    if (n == 0 && c->held_since_wake && !c->stopped) wake_fetchers(c);
    if (n > 0 && c->held_since_wake && !c->stopped) poke_fetchers(c);
    if (n >= CONSUME_BUDGET) event_active(c->io_ev, EV_READ, 0); /* more after other events */
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    consume_round(arg);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    consume_round(arg);
}

static void on_render(void *ud)
{
    consumer_t *c = ud;
    for (int p = 0; p < c->n_slots; p++) {
        offtrack_t *t = c->trackers[p];
        if (!t) continue;
        int64_t lo = 0, hi = 0;
        if (rd_kafka_get_watermark_offsets(c->rk, c->w->cfg.jobs_topic, p, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0)
            continue;
        int64_t pos = offtrack_position(t);
        if (pos < 0) pos = offtrack_committed(t);
        if (pos < 0) continue;
        if (!c->lag[p]) {
            char labels[32];
            snprintf(labels, sizeof(labels), "partition=\"%d\"", p);
            c->lag[p] = metrics_gauge("hookd_consumer_lag",
                                      "Jobs not yet done behind the partition's end", labels);
        }
        metric_set(c->lag[p], (double)(hi > pos ? hi - pos : 0));
    }
}

/* librdkafka settings of the worker, unless HOOKD_KAFKA_* sets them. */
static int set_default(const hookd_config_t *cfg, rd_kafka_conf_t *conf, const char *name,
                       const char *value, char *err, size_t err_size)
{
    for (int i = 0; i < cfg->kafka_props_len; i++)
        if (strcmp(cfg->kafka_props[i].name, name) == 0) return 0;
    return hookd_kafka_set(conf, name, value, err, err_size);
}

/* Small fetches: what a fetch brings in is decompressed whole and stays in
 * memory beside the prefetch queue until its last message is consumed, and
 * jobs compress several times over, so 8 MiB compressed fetches from three
 * brokers cost ~100 MiB at once. FETCH_BYTES per response keeps that to a
 * few MiB while still moving ~10,000 jobs per round trip. librdkafka wants
 * fetch.max.bytes >= message.max.bytes (its own request size limit, whose
 * 1 MB default a consumer never needs): the default follows an operator's
 * message.max.bytes. A batch bigger than the limit is still fetched whole. */
#define FETCH_BYTES 262144
#define PARTITION_FETCH_BYTES 65536

static int set_fetch_size(const hookd_config_t *cfg, rd_kafka_conf_t *conf, char *err,
                          size_t err_size)
{
    char value[32];
    size_t size = sizeof(value);
    long long fetch = FETCH_BYTES;
    snprintf(value, sizeof(value), "%d", FETCH_BYTES);
    if (set_default(cfg, conf, "message.max.bytes", value, err, err_size) < 0) return -1;
    if (rd_kafka_conf_get(conf, "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK &&
        atoll(value) > fetch)
        fetch = atoll(value);
    snprintf(value, sizeof(value), "%lld", fetch);
    if (set_default(cfg, conf, "fetch.max.bytes", value, err, err_size) < 0) return -1;
    snprintf(value, sizeof(value), "%d", PARTITION_FETCH_BYTES);
    return set_default(cfg, conf, "max.partition.fetch.bytes", value, err, err_size);
}

static rd_kafka_t *new_client(consumer_t *c)
{
    char err[512];
    const hookd_config_t *cfg = &c->w->cfg;
    rd_kafka_conf_t *conf = hookd_kafka_conf(cfg, "hookd-worker", err, sizeof(err));
    if (!conf) {
        log_error("kafka_config_failed error=\"%s\"", err);
        return NULL;
    }
    /* fixed: the offset/durability contract depends on them */
    if (hookd_kafka_set(conf, "group.id", cfg->worker_group, err, sizeof(err)) < 0 ||
        hookd_kafka_set(conf, "isolation.level", "read_committed", err, sizeof(err)) < 0 ||
        hookd_kafka_set(conf, "enable.auto.commit", "false", err, sizeof(err)) < 0 ||
        hookd_kafka_set(conf, "enable.auto.offset.store", "false", err, sizeof(err)) < 0 ||
        /* defaults an operator may override */
        set_default(cfg, conf, "partition.assignment.strategy", "cooperative-sticky", err,
                    sizeof(err)) < 0 ||
        set_default(cfg, conf, "auto.offset.reset", "earliest", err, sizeof(err)) < 0 ||
        set_default(cfg, conf, "fetch.wait.max.ms", "100", err, sizeof(err)) < 0 ||
        /* prefetch bounded for the memory budget (~9,000 jobs); once it is full
         * librdkafka 2.0 waits up to 1 s before fetching again, which
         * wake_fetchers cuts short */
        set_default(cfg, conf, "queued.max.messages.kbytes", "4096", err, sizeof(err)) < 0 ||
        set_fetch_size(cfg, conf, err, sizeof(err)) < 0) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka_config_failed error=\"%s\"", err);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_committed);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka_consumer_failed error=\"%s\"", err);
    }
    return rk;
}

consumer_t *consumer_new(worker_t *w)
{
    consumer_t *c = calloc(1, sizeof(*c));
    if (!c) abort();
    c->w = w;
    c->pipe_fd[0] = c->pipe_fd[1] = -1;
    c->m_commits = metrics_counter("hookd_worker_commits_total", "Offset commits of the jobs topic",
                                   NULL);
    c->m_commit_errors = metrics_counter("hookd_worker_commit_errors_total",
                                         "Failed offset commits (retried)", NULL);
    c->m_paused = metrics_gauge("hookd_worker_consumption_paused",
                                "1 while the memory bound holds consumption back", NULL);
    c->m_rebalances = metrics_counter("hookd_worker_rebalances_total",
                                      "Partition assignments and revocations", NULL);
    c->m_fetch_wakes = metrics_counter("hookd_worker_fetch_wakes_total",
                                       "Seeks that restarted fetching stopped by a full prefetch "
                                       "queue (librdkafka 2.0)",
                                       NULL);
    c->m_fetch_pokes = metrics_counter("hookd_worker_fetch_pokes_total",
                                       "Requests that woke fetching stopped by a full prefetch "
                                       "queue after consumption was held back (librdkafka 2.0)",
                                       NULL);
    pthread_mutex_init(&c->poke_mu, NULL);
    pthread_cond_init(&c->poke_cv, NULL);
    if (!(c->rk = new_client(c))) goto fail;
    w->consumer = c->rk;
    c->poker_started = pthread_create(&c->poker, NULL, poker_run, c) == 0;
    rd_kafka_resp_err_t e = rd_kafka_poll_set_consumer(c->rk);
    if (e) {
        log_error("kafka_consumer_failed error=\"%s\"", rd_kafka_err2str(e));
        goto fail;
    }
    if (pipe(c->pipe_fd) < 0) goto fail;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(c->pipe_fd[i], F_GETFL);
        if (fl < 0 || fcntl(c->pipe_fd[i], F_SETFL, fl | O_NONBLOCK) < 0) goto fail;
    }
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    if (!c->queue) goto fail;
    rd_kafka_queue_io_event_enable(c->queue, c->pipe_fd[1], "1", 1);
    c->io_ev = event_new(w->base, c->pipe_fd[0], EV_READ | EV_PERSIST, on_io, c);
    c->poll_ev = event_new(w->base, -1, EV_PERSIST, on_poll_timer, c);
    c->commit_ev = event_new(w->base, -1, EV_PERSIST, on_commit_timer, c);
    struct timeval tp = {0, SAFETY_POLL_MS * 1000};
    int64_t ci = w->cfg.commit_interval_ms;
    struct timeval tc = {ci / 1000, (ci % 1000) * 1000};
    if (!c->io_ev || !c->poll_ev || !c->commit_ev || event_add(c->io_ev, NULL) < 0 ||
        event_add(c->poll_ev, &tp) < 0 || event_add(c->commit_ev, &tc) < 0)
        goto fail;
    rd_kafka_topic_partition_list_t *topics = hookd_kafka_topic_list(w->cfg.jobs_topic);
    e = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    c->subscribed = e == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e) {
        log_error("kafka_subscribe_failed topic=%s error=\"%s\"", w->cfg.jobs_topic,
                  rd_kafka_err2str(e));
        goto fail;
    }
    metrics_on_render(on_render, c);
    log_info("consumer_started topic=%s group=%s", w->cfg.jobs_topic, w->cfg.worker_group);
    return c;
fail:
    consumer_close(c);
    return NULL;
}

void consumer_stop(consumer_t *c)
{
    c->stopped = true;
}

void consumer_commit_sync(consumer_t *c)
{
    commit(c, NULL, true);
}

void consumer_close(consumer_t *c)
{
    if (!c) return;
    c->stopped = true;
    stop_poker(c);
    if (c->io_ev) event_free(c->io_ev);
    if (c->poll_ev) event_free(c->poll_ev);
    if (c->commit_ev) event_free(c->commit_ev);
    if (c->rk) {
        commit_before_handover(c, NULL);
        if (c->queue) rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
        /* librdkafka 2.0 (fixed in 2.3, issue #4312) aborts when a
         * cooperative-sticky consumer is destroyed before its first
         * assignment: wait for it (bounded), else the handle is left to exit
         * (hookd_kafka_consumer_destroy). Jobs polled meanwhile are dropped
         * unread and uncommitted, so they are consumed again after the
         * restart. */
        int64_t join_deadline = hookd_mono_ms() + FIRST_JOIN_WAIT_MS;
        while (c->subscribed && !c->ever_assigned && hookd_mono_ms() < join_deadline) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
            if (m) rd_kafka_message_destroy(m);
        }
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
        if (e) log_warn("kafka_close_failed error=\"%s\"", rd_kafka_err2str(e));
        if (c->queue) rd_kafka_queue_destroy(c->queue);
        hookd_kafka_consumer_destroy(c->rk, c->ever_assigned || !c->subscribed);
        c->w->consumer = NULL;
    }
    for (int p = 0; p < c->n_slots; p++)
        offtrack_free(c->trackers[p]);
    free(c->trackers);
    free(c->lag);
    if (c->pipe_fd[0] >= 0) close(c->pipe_fd[0]);
    if (c->pipe_fd[1] >= 0) close(c->pipe_fd[1]);
    pthread_cond_destroy(&c->poke_cv);
    pthread_mutex_destroy(&c->poke_mu);
    free(c);
}
