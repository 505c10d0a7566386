/* Scheduler: polls parked_jobs for probes and due jobs through the store,
 * renews the leases of held claimed jobs and checks draining endpoints. */
#include "scheduler.h"

#include "batcher.h"
#include "dedup.h"
#include "delivery.h"

#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/util.h"

#include <stdlib.h>
#include <string.h>

#define SCHEDULER_MAX_CLAIM 1000

struct scheduler {
    worker_t *w;
    struct event *poll_ev, *lease_ev;
    bool claiming, stopped;
    metric_t *m_claimed, *m_probes;
};

int64_t scheduler_lease_ms(const hookd_config_t *cfg)
{
    return 60000 + 2 * (cfg->batch_window_ms + cfg->http_timeout_ms);
}

int64_t scheduler_retry_delay_ms(const int64_t *schedule, int len, int attempts_made,
                                 int jitter_pct, uint64_t rnd)
{
    if (attempts_made < 1 || attempts_made > len) return -1;
    int64_t base = schedule[attempts_made - 1];
    if (jitter_pct <= 0 || base <= 0) return base;
    int64_t span = base * jitter_pct / 100;
    if (span <= 0) return base;
    int64_t delta = (int64_t)(rnd % (uint64_t)(2 * span + 1)) - span;
    return base + delta < 0 ? 0 : base + delta;
}

static void poll_now(scheduler_t *s)
{
    worker_t *w = s->w;
    if (s->stopped || w->stopping) return;
    delivery_tick(w->dlv);
    if (!s->claiming) {
        store_op_t *op = store_op_new(STORE_CLAIM);
        int budget = delivery_claim_budget(w->dlv);
        op->limit = budget < SCHEDULER_MAX_CLAIM ? budget : SCHEDULER_MAX_CLAIM;
        delivery_claims_asked(w->dlv, op->limit);
        s->claiming = true;
        store_submit(w->store, op);
    }
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_now(arg);
}

static void add_parked(wjob_t *j, void *ud)
{
    store_op_t *op = ud;
    if (j->source == WJOB_PARKED) store_op_add_id(op, j->id);
}

static void on_lease(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    scheduler_t *s = arg;
    if (s->stopped) return;
    store_op_t *op = store_op_new(STORE_LEASE);
    dedup_each_held(s->w->dedup, add_parked, op);
    if (op->n_ids == 0) {
        store_op_free(op);
        return;
    }
    store_submit(s->w->store, op);
}

scheduler_t *scheduler_new(worker_t *w)
{
    scheduler_t *s = calloc(1, sizeof(*s));
    if (!s) abort();
    s->w = w;
    s->m_claimed = metrics_counter("hookd_parked_jobs_claimed_total",
                                   "Jobs taken from parked_jobs for delivery", "kind=\"due\"");
    s->m_probes = metrics_counter("hookd_parked_jobs_claimed_total",
                                  "Jobs taken from parked_jobs for delivery", "kind=\"probe\"");
    s->poll_ev = event_new(w->base, -1, EV_PERSIST, on_poll, s);
    s->lease_ev = event_new(w->base, -1, EV_PERSIST, on_lease, s);
    int64_t poll = w->cfg.scheduler_poll_ms, lease = scheduler_lease_ms(&w->cfg) / 3;
    struct timeval tp = {poll / 1000, (poll % 1000) * 1000};
    struct timeval tl = {lease / 1000, (lease % 1000) * 1000};
    if (!s->poll_ev || !s->lease_ev || event_add(s->poll_ev, &tp) < 0 ||
        event_add(s->lease_ev, &tl) < 0) {
        scheduler_free(s);
        return NULL;
    }
    return s;
}

void scheduler_free(scheduler_t *s)
{
    if (!s) return;
    if (s->poll_ev) event_free(s->poll_ev);
    if (s->lease_ev) event_free(s->lease_ev);
    free(s);
}

void scheduler_stop(scheduler_t *s)
{
    s->stopped = true;
}

void scheduler_claim_done(scheduler_t *s, store_op_t *op)
{
    s->claiming = false;
    delivery_claims_asked(s->w->dlv, -op->limit);
    int due = 0, probes = 0;
    for (wjob_t *j = op->claimed; j; j = j->next) {
        if (j->probe)
            probes++;
        else
            due++;
    }
    if (due || probes) {
        metric_add(s->m_claimed, due);
        metric_add(s->m_probes, probes);
        log_debug("parked_jobs_claimed due=%d probes=%d", due, probes);
    }
    wjob_t *list = op->claimed;
    op->claimed = NULL;
    bool full = op->limit > 0 && due >= op->limit;
    store_op_free(op);
    delivery_claimed(s->w->dlv, list);
    if (full) poll_now(s); /* a backlog is being released: keep going */
}
