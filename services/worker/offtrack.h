/* Per-partition offset tracker: records the offsets of consumed jobs in
 * order, marks them done (terminal or durably parked in PostgreSQL) in any
 * order, and says up to where the partition may be committed. Pure. */
#ifndef HOOKD_WORKER_OFFTRACK_H
#define HOOKD_WORKER_OFFTRACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct offtrack offtrack_t;

/* A tracker for 'partition'; 'gen' tells this assignment apart from later
 * ones of the same partition (jobs keep (partition, gen) to find it). */
offtrack_t *offtrack_new(int32_t partition, uint64_t gen);
void offtrack_free(offtrack_t *t);

int32_t offtrack_partition(const offtrack_t *t);
uint64_t offtrack_gen(const offtrack_t *t);

/* Records a consumed offset (strictly greater than the previous one).
 * Returns the sequence number to pass to offtrack_done. */
uint64_t offtrack_add(offtrack_t *t, int64_t offset);

/* Marks the job with sequence 'seq' done. Idempotent. */
void offtrack_done(offtrack_t *t, uint64_t seq);

/* The offset to commit: the lowest offset not yet done, or one past the
 * last consumed offset when everything is done; -1 before any message. */
int64_t offtrack_position(const offtrack_t *t);

/* Consumed offsets not yet done. */
size_t offtrack_outstanding(const offtrack_t *t);

/* Position last handed to a commit (-1 none); set by the consumer. */
int64_t offtrack_committed(const offtrack_t *t);
void offtrack_set_committed(offtrack_t *t, int64_t pos);

#endif
