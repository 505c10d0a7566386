/* The worker's PostgreSQL thread. The event loop submits operations (job
 * outcomes, dedup lookups, grey-list updates, claims of parked jobs...); the
 * thread runs everything queued since its last round in ONE transaction
 * (rows of the same kind merged into one array-parameter statement: writes
 * first, then reads), commits, and posts the operations back to the event
 * loop in submission order. An operation is posted back only after the
 * transaction holding its writes has committed: that is what lets the
 * consumer commit a job's offset. On errors the round is retried (after a
 * reconnect when the connection broke), so operations never fail while the
 * worker runs. The same connection LISTENs on hookd_endpoints and turns
 * notifications into STORE_ENDPOINT_STATES operations. Periodic upkeep
 * (expiry of parked jobs, retention, gauges) runs on this thread too. */
#ifndef HOOKD_WORKER_STORE_H
#define HOOKD_WORKER_STORE_H

#include "greylist.h"
#include "subcache.h"
#include "worker.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    STORE_LOOKUP,          /* which of jobs[] are in finished_jobs or parked_jobs -> found[] */
    STORE_SUB_FETCH,       /* read subscriptions ids[] into the subscription cache */
    STORE_OUTCOME,         /* write rows[] */
    STORE_ENDPOINT,        /* grey-list update of endpoint_id, RETURNING its state -> row */
    STORE_DEACTIVATE,      /* subscriptions ids[] answered 410: active = false */
    STORE_CLAIM,           /* lease probes and due retries -> claimed (list) */
    STORE_DRAIN,           /* lease the next grey-list parked jobs of endpoints ids[] (up to
                              limit each, seq order) -> claimed; empty[i]: none left but ours */
    STORE_LEASE,           /* renew (or release) the leases of parked job ids[] */
    STORE_ENDPOINT_STATES, /* made by the store: rows states[] of ids[] after NOTIFY/reconnect */
} store_kind_t;

typedef enum {
    STORE_EP_FAILURE,       /* one failed attempt (probe: extends the period) */
    STORE_EP_SUCCESS,       /* reset; if it was grey-listed (or probe), release parked jobs */
    STORE_EP_PROBE_RELEASE, /* the probe job went away without an attempt: pick another */
} store_ep_action_t;

/* The writes for one job of a STORE_OUTCOME. Pointers must stay valid
 * until the operation comes back. */
typedef struct store_row {
    const wjob_t *job;
    const char *finish;      /* finished_jobs.state, or NULL */
    const char *outcome;     /* deliveries.outcome, or NULL for no log row */
    const char *error_class; /* deliveries.error_class or NULL */
    const char *webhook_id;
    const char *excerpt; /* response excerpt (valid UTF-8) or NULL */
    int status;          /* HTTP status, 0 = NULL */
    int latency_ms;      /* -1 = NULL */
    int attempt;         /* deliveries.attempt (1 = first) */
    int batch_size;
    bool log_job;            /* keep the job message in the log row (failed: redelivery) */
    bool log_shared;         /* may share one log row (job_ids) with the neighbouring rows of
                                its operation that have the same finish, outcome and attempt
                                (the jobs of a successful batched request) */
    const char *park_reason; /* "retry"/"greylist": upsert into parked_jobs, or NULL */
    int park_attempt;        /* parked_jobs.attempt */
    int64_t park_delay_ms;   /* not_before = now() + this */
    const char *last_error;
    bool unpark; /* delete the job's parked_jobs row */
} store_row_t;

typedef struct store_op {
    store_kind_t kind;
    struct store_op *next;
    void *ctx;   /* the submitter's */
    bool failed; /* only at shutdown: the operation could not be run */
    int tag;     /* the submitter's */
    /* STORE_LOOKUP (and the submitter's own use) */
    wjob_t **jobs;
    int n_jobs;
    uint8_t *found; /* STORE_LOOKUP result, one per job */
    /* STORE_SUB_FETCH, STORE_DEACTIVATE, STORE_DRAIN, STORE_LEASE,
     * STORE_ENDPOINT_STATES: ids */
    bool release; /* STORE_LEASE: release instead of renew */
    uint64_t sub_since; /* STORE_SUB_FETCH: subcache_seq() before the read */
    /* STORE_OUTCOME */
    store_row_t *rows;
    int n_rows;
    char *excerpt;    /* owned copies the rows point to */
    char *last_error;
    char **ids;
    int n_ids;
    uint8_t *empty;           /* STORE_DRAIN result, one per id */
    greylist_row_t *states;   /* STORE_ENDPOINT_STATES: one per id */
    bool full;                /* STORE_ENDPOINT_STATES: every failing endpoint (after connect) */
    /* STORE_ENDPOINT */
    char endpoint_id[WJOB_EP_ID_MAX + 1];
    store_ep_action_t action;
    bool probe;
    const char *error_class;
    int status;
    char error[256];
    greylist_row_t row; /* result */
    /* STORE_CLAIM, STORE_DRAIN */
    int limit;       /* STORE_CLAIM: jobs */
    int *limits;     /* STORE_DRAIN: jobs per endpoint, one per id (owned) */
    wjob_t *claimed; /* result: list via next, in release order; probes first */
} store_op_t;

/* A zeroed operation; free with store_op_free (which frees the arrays and
 * strings above, but not jobs[] entries nor claimed jobs). */
store_op_t *store_op_new(store_kind_t kind);
void store_op_free(store_op_t *op);
/* Copies 'id' into ids[] (grows the array). */
void store_op_add_id(store_op_t *op, const char *id);
/* Same, with a STORE_DRAIN limit for it. */
void store_op_add_drain(store_op_t *op, const char *id, int limit);
void store_op_add_job(store_op_t *op, wjob_t *j);
store_row_t *store_op_add_row(store_op_t *op);

typedef struct store_opts {
    const char *database_url;
    const char *instance_id;   /* lease owner */
    int64_t lease_ms;          /* lease of claimed parked jobs and probes */
    int greylist_threshold;
    int64_t greylist_base_s, greylist_max_s;
    int64_t park_retention_h;
    int64_t dedup_retention_h;
    int64_t delivery_log_retention_h;
    bool log_expired; /* write deliveries rows for expired jobs */
    subcache_t *subs; /* STORE_SUB_FETCH writes into it */
} store_opts_t;

typedef struct store store_t;

/* Called on the event loop for every operation, in submission order
 * (STORE_ENDPOINT_STATES interleaved). The callee owns the op. */
typedef void (*store_done_fn)(store_op_t *op, void *ud);

/* Starts the thread (it connects in the background). Returns NULL on failure. */
store_t *store_start(const store_opts_t *o, struct event_base *base, store_done_fn done, void *ud);

/* Queues an operation (event loop thread only). */
void store_submit(store_t *s, store_op_t *op);

/* Whether the store thread should start each round at once instead of
 * gathering a bigger one (the event loop waits on the writes). Event loop
 * thread; cheap when nothing changes. */
void store_set_hurry(store_t *s, bool hurry);

/* Operations submitted whose completion has not been delivered yet. */
int store_pending(const store_t *s);
/* True while connected to PostgreSQL. */
bool store_connected(const store_t *s);

/* Stops the thread: queued operations are still run for up to
 * 'timeout_ms'; what remains comes back with failed = true. Every
 * completion not yet delivered is delivered from inside this call. */
void store_stop(store_t *s, int64_t timeout_ms);

#endif
