/* Per-endpoint queues and the decision when an endpoint sends its next
 * request: its batch window (HOOKD_BATCH_WINDOW_MS, from the oldest queued
 * job) has passed, or the queue holds HOOKD_BATCH_MAX jobs /
 * HOOKD_BATCH_MAX_BYTES, or its head job cannot share a request, or
 * everything must go now (memory pressure, shutdown) - and it has fewer
 * than HOOKD_ENDPOINT_CONCURRENCY requests in flight, its grey-list state
 * lets it send, and a global request slot is free. Due endpoints wait in
 * one FIFO and are served round-robin, so a slow or dead endpoint holds at
 * most its own concurrency and never blocks the others. What goes into a
 * request is the send hook's business (delivery.c). */
#ifndef HOOKD_WORKER_BATCHER_H
#define HOOKD_WORKER_BATCHER_H

#include "greylist.h"
#include "worker.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct batcher batcher_t;

typedef struct endpoint {
    struct endpoint *hnext; /* table chain */
    struct endpoint *rnext; /* ready FIFO */
    bool ready;             /* in the ready FIFO */
    char id[WJOB_EP_ID_MAX + 1];
    wjob_t *head, *tail; /* queued jobs in arrival order (linked by next) */
    int queued;
    size_t queued_bytes; /* sum of job message lengths */
    int inflight;        /* requests in flight */
    int64_t last_progress_ms; /* last request completion, or start of a request while idle */
    uint64_t progress_mark;   /* the worker's request completions at last_progress_ms */
    bool drain_claiming;      /* a STORE_DRAIN for it is outstanding */
    int drain_window;         /* parked jobs to take back at once (adapts: 0 = not set yet) */
    bool stalled_since_drain; /* it stalled since its last drain */
    int refs;            /* store operations that point at it */
    wjob_t *probe;       /* grey-list probe waiting to be sent alone */
    struct event *timer; /* end of the head job's window (created on first use) */
    bool timer_armed;
    int64_t idle_since_ms;
    greylist_state_t gl;
    batcher_t *b;
} endpoint_t;

typedef struct batcher_opts {
    int64_t window_ms;
    int batch_max;
    int64_t batch_max_bytes;
    int concurrency; /* per endpoint */
} batcher_opts_t;

typedef struct batcher_hooks {
    /* Whether the endpoint may send its queued jobs now (grey-list). */
    bool (*may_send)(endpoint_t *ep, void *ud);
    /* Whether a global request slot is free. */
    bool (*slot_free)(void *ud);
    /* Starts one request from the endpoint's probe or queue head (taking
     * the jobs off the queue), or disposes of jobs that cannot be sent.
     * Returns false when it could not make progress (then the endpoint is
     * not retried until something changes). */
    bool (*send)(endpoint_t *ep, void *ud);
} batcher_hooks_t;

batcher_t *batcher_new(struct event_base *base, const batcher_opts_t *o, const batcher_hooks_t *h,
                       void *ud);
/* Frees the endpoints. Queued jobs must have been taken off before. */
void batcher_free(batcher_t *b);

const batcher_opts_t *batcher_opts(const batcher_t *b);

/* The endpoint with this id; created (empty, healthy) when 'create'. */
endpoint_t *batcher_endpoint(batcher_t *b, const char *id, bool create);

/* Appends a job (its arrival time is set now) and re-evaluates. */
void batcher_enqueue(batcher_t *b, endpoint_t *ep, wjob_t *j);
/* Puts jobs (a list linked by next, in order) back at the front. */
void batcher_requeue_front(batcher_t *b, endpoint_t *ep, wjob_t *list);
/* Sets the endpoint's probe job (sent alone, before anything else). */
void batcher_set_probe(batcher_t *b, endpoint_t *ep, wjob_t *j);

/* Takes 'j' off the queue; 'prev' is its predecessor (NULL for the head). */
void batcher_unlink(endpoint_t *ep, wjob_t *prev, wjob_t *j);
/* Takes the whole queue off (a list linked by next, in order). */
wjob_t *batcher_take_all(endpoint_t *ep);
/* Takes off everything after the first 'keep' jobs (a list, in order). */
wjob_t *batcher_take_after(endpoint_t *ep, int keep);

/* Re-evaluates whether the endpoint is due (after a state change) and
 * schedules a pump. Cheap; call it whenever something changed. */
void batcher_check(batcher_t *b, endpoint_t *ep);
/* Schedules a pump (e.g. after a global slot was freed). */
void batcher_kick(batcher_t *b);
/* Sends from due endpoints while global slots are free (normally run from
 * the deferred event batcher_kick schedules). */
void batcher_pump(batcher_t *b);

/* Ignore batch windows (memory pressure, shutdown) while set. */
void batcher_set_flush_all(batcher_t *b, bool on);

/* Calls fn for every endpoint (fn must not free endpoints). */
void batcher_each(batcher_t *b, void (*fn)(endpoint_t *ep, void *ud), void *ud);
/* Frees endpoints that have been idle (nothing queued, in flight or
 * referenced, grey-list state idle) since before 'older_than_ms'. */
void batcher_gc(batcher_t *b, int64_t older_than_ms);

size_t batcher_endpoints(const batcher_t *b);
/* Jobs queued across all endpoints. */
size_t batcher_queued(const batcher_t *b);
/* Whether an endpoint has a request due that waits for a free slot. */
bool batcher_waiting(const batcher_t *b);

/* Whether the endpoint is due now (exposed for tests). */
bool batcher_due(batcher_t *b, endpoint_t *ep, int64_t now_ms);

#endif
