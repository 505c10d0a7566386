/* Effectively-once delivery (SPEC §6), in-memory half: a bounded cache of
 * recently finished or parked job ids, and the table of jobs held in memory
 * right now. A job id in either is skipped when consumed again; ids in
 * neither are looked up in finished_jobs/parked_jobs (store.c) in batches. */
#ifndef HOOKD_WORKER_DEDUP_H
#define HOOKD_WORKER_DEDUP_H

#include "worker.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct dedup dedup_t;

/* A cache remembering the last 'cache_size' finished ids (oldest evicted). */
dedup_t *dedup_new(size_t cache_size);
/* Frees the tables; held jobs are not freed (they belong to the caller). */
void dedup_free(dedup_t *d);

/* True when 'id' (32 lower-case hex) was finished or parked recently. */
bool dedup_is_finished(const dedup_t *d, const char *id);
/* Remembers 'id', evicting the oldest id when full. Idempotent. */
void dedup_add_finished(dedup_t *d, const char *id);
size_t dedup_finished_count(const dedup_t *d);

/* The held job with this id, or NULL. */
wjob_t *dedup_held(const dedup_t *d, const char *id);
/* Adds 'j' to the held table (its id must not be held yet). */
void dedup_hold(dedup_t *d, wjob_t *j);
/* Removes 'j' from the held table (no-op when not held). */
void dedup_unhold(dedup_t *d, wjob_t *j);
size_t dedup_held_count(const dedup_t *d);
/* Calls fn for every held job (fn must not hold/unhold). */
void dedup_each_held(const dedup_t *d, void (*fn)(wjob_t *j, void *ud), void *ud);

/* Parses a 32-hex job id into 16 bytes. Returns 0 or -1. */
int dedup_parse_id(const char *id, unsigned char out[16]);

#endif
