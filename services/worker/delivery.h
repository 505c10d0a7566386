/* The path of a job through the worker, gluing the concerns together:
 * consumed (or claimed) -> dedup (memory, then PostgreSQL) -> subscription
 * check (missing/inactive: cancelled) -> grey-list verdict (park, hold or
 * queue) -> batcher -> request (formats.h body, headers, signature;
 * sender.h POST) -> outcome (delivered / gone / retry scheduled / failed)
 * written by the store -> offset done. Also the memory bound and the
 * global in-flight bound: a request slot is taken when a request starts and
 * given back only when its outcome is durable in PostgreSQL, so after a
 * kill -9 at most HOOKD_MAX_INFLIGHT requests are sent again. */
#ifndef HOOKD_WORKER_DELIVERY_H
#define HOOKD_WORKER_DELIVERY_H

#include "batcher.h"
#include "store.h"
#include "worker.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct delivery delivery_t;

/* Needs w->store, w->dedup, w->subs and w->sender. */
delivery_t *delivery_new(worker_t *w);
/* Frees what is left (call after delivery_abandon and store_stop). */
void delivery_free(delivery_t *d);

/* ---- from the consumer ---- */

/* A message of the jobs topic at (partition, tracker gen, seq). Returns
 * true when the job is held (its offset becomes done later through
 * consumer_job_done), false when it is done now (invalid or duplicate). */
bool delivery_consumed(delivery_t *d, const char *payload, size_t len, int32_t partition,
                       uint64_t gen, uint64_t seq);
/* End of a consume round: sends the batched dedup lookup. */
void delivery_round_end(delivery_t *d);
/* The partition was revoked: forget its jobs that are only queued. */
void delivery_drop_partition(delivery_t *d, int32_t partition, uint64_t gen);

/* At the memory bound: parks the queues of endpoints that are not making
 * progress (rate-limited; the consumer calls it while held back). */
void delivery_relieve(delivery_t *d);

/* Whether consumption should pause (too much held) / may resume. */
bool delivery_over_high_water(const delivery_t *d);
bool delivery_under_low_water(const delivery_t *d);

/* ---- from the scheduler ---- */

/* Jobs leased from parked_jobs (a list linked by next; ownership passes). */
void delivery_claimed(delivery_t *d, wjob_t *list);
/* Periodic (scheduler poll): spills the queues of stalled endpoints to
 * parked_jobs and asks for the next parked jobs of draining endpoints. */
void delivery_tick(delivery_t *d);
/* How many more jobs may be claimed now. */
int delivery_claim_budget(const delivery_t *d);
/* A claim of up to 'jobs' was sent (negative: it came back). */
void delivery_claims_asked(delivery_t *d, int jobs);
batcher_t *delivery_batcher(delivery_t *d);

/* ---- from the store (the store's completion callback; ud = delivery) ---- */
void delivery_store_done(store_op_t *op, void *ud);

/* ---- shutdown ---- */

/* Stop taking work; send what is queued now (windows ignored). */
void delivery_begin_shutdown(delivery_t *d);
/* True when nothing is left that could still complete: no request in
 * flight, nothing sendable queued, no store operation of ours pending. */
bool delivery_settled(const delivery_t *d);
/* Gives up on what is left (after sender_free abandoned the requests in
 * flight): their jobs and every other held job are dropped without being
 * marked done, leases of claimed jobs are released. */
void delivery_abandon(delivery_t *d);

/* Jobs held in memory / requests in flight (for logs and tests). */
size_t delivery_held(const delivery_t *d);
int delivery_inflight(const delivery_t *d);

#endif
