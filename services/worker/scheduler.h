/* Jobs that wait in PostgreSQL come back from here: every
 * HOOKD_SCHEDULER_POLL_MS it leases (SELECT ... FOR UPDATE SKIP LOCKED, a
 * lease per worker instance) the probe job of each endpoint whose grey-list
 * period is over, then due retries and API redeliveries, oldest first, and
 * hands them to delivery; it also lets delivery drain the grey-list parked
 * jobs of released endpoints (delivery_tick). It renews the leases of the
 * jobs it holds and computes retry delays. Expiry and retention run on the
 * store thread. */
#ifndef HOOKD_WORKER_SCHEDULER_H
#define HOOKD_WORKER_SCHEDULER_H

#include "store.h"
#include "worker.h"

#include <stdint.h>

typedef struct scheduler scheduler_t;

scheduler_t *scheduler_new(worker_t *w);
void scheduler_free(scheduler_t *s);

/* Stops claiming (shutdown). */
void scheduler_stop(scheduler_t *s);

/* Completion routed here by delivery.c (ownership of op passes). */
void scheduler_claim_done(scheduler_t *s, store_op_t *op);

/* How long a claimed job stays leased to this instance. */
int64_t scheduler_lease_ms(const hookd_config_t *cfg);

/* Delay before retry number 'attempts_made' (1 = after the first failed
 * attempt): schedule[attempts_made - 1] +/- jitter_pct percent, using 'rnd'
 * as the random source. -1 when the schedule is exhausted (job failed). */
int64_t scheduler_retry_delay_ms(const int64_t *schedule, int len, int attempts_made,
                                 int jitter_pct, uint64_t rnd);

#endif
