/* Grey-listing (SPEC §7): the per-endpoint state this worker caches from the
 * endpoints table, the decision send/hold/park for a new job, and the
 * period arithmetic. The table is the truth shared by every replica: it is
 * changed only by atomic UPDATE ... RETURNING statements (store.c, which
 * mirror greylist_period_s) and re-read on NOTIFY hookd_endpoints.
 *
 * Life of an endpoint: HOOKD_GREYLIST_THRESHOLD consecutive failures set
 * greylisted_until = now + base (level 1). Until then nothing is sent; new
 * jobs are parked in parked_jobs (reason 'greylist'). When the period ends
 * the scheduler leases the oldest parked job as the probe (probe_job_id).
 * Probe failure: level + 1, period base * 2^(level-1) capped at the max.
 * Probe success: the state resets and every parked job of the endpoint is
 * released in seq order; while grey-list parked jobs remain ("draining"),
 * new jobs are parked behind them so the original order holds. Pure. */
#ifndef HOOKD_WORKER_GREYLIST_H
#define HOOKD_WORKER_GREYLIST_H

#include <stdbool.h>
#include <stdint.h>

typedef struct greylist_state {
    int failures;         /* consecutive_failures as last read */
    int level;            /* greylist_level as last read */
    int64_t until_ms;     /* greylisted_until (ms since epoch), 0 = not grey-listed */
    int pending_failures; /* failure updates submitted whose answer has not come back */
    bool draining;        /* released, grey-list parked jobs remain: park new ones behind */
    bool probing;         /* this worker holds the endpoint's probe job */
    int park_ops;         /* park writes submitted and not yet confirmed */
    uint64_t park_epoch;  /* bumped at every park write (drain checks compare it) */
} greylist_state_t;

/* One row of the endpoints table as read back. */
typedef struct greylist_row {
    bool found;        /* false: no such endpoint row (treated as healthy) */
    int failures;      /* consecutive_failures */
    int level;         /* greylist_level */
    int64_t until_ms;  /* greylisted_until, 0 when NULL */
    bool has_parked;   /* grey-list parked jobs exist for it */
} greylist_row_t;

typedef enum {
    GL_SEND, /* deliver normally */
    GL_HOLD, /* failures reached the threshold, the verdict of PostgreSQL is on its way: keep
                queued jobs in memory, send nothing */
    GL_PARK, /* grey-listed (or awaiting its probe, or draining): park new jobs */
} greylist_verdict_t;

/* What to do with a (non-probe) job for the endpoint. 'from_parked': the
 * job was just released from parked_jobs, so draining does not park it
 * again (it is one of the jobs being drained). */
greylist_verdict_t greylist_verdict(const greylist_state_t *s, int threshold, bool from_parked);

/* Applies a row read from the endpoints table. Returns true when the
 * endpoint became grey-listed (was not, now is) with this row. */
bool greylist_apply_row(greylist_state_t *s, const greylist_row_t *row);

/* True when the state carries nothing worth keeping in memory. */
bool greylist_idle(const greylist_state_t *s);

/* Length of grey-list period number 'level' (1 = the first): base doubled
 * level-1 times, capped at max. */
int64_t greylist_period_s(int level, int64_t base_s, int64_t max_s);

#endif
