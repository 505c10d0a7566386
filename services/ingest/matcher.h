/* The subscription matcher: an in-memory index of the active subscriptions
 * (owner kind + owner id -> event type pattern -> subscriptions) answering
 * "which subscriptions want this event" without touching PostgreSQL.
 * Fed by subsync (shared/subsync.c): a full load builds a new index that is
 * swapped in at the end; single changes are applied in place. */
#ifndef HOOKD_INGEST_MATCHER_H
#define HOOKD_INGEST_MATCHER_H

#include "hookd/event.h"
#include "hookd/subsync.h"

#include <stdbool.h>
#include <stddef.h>

#define MATCHER_ID_MAX 65 /* subscription / endpoint ids are at most 64 chars */

typedef struct matcher matcher_t;

/* One matching subscription, copied out of the index (valid after the index
 * changes). */
typedef struct matcher_hit {
    char sub_id[MATCHER_ID_MAX];
    char endpoint_id[MATCHER_ID_MAX];
    payload_mode_t payload_mode;
    const void *ref; /* internal: identity of the subscription within one match call */
} matcher_hit_t;

/* A reusable result buffer; grows as needed, free with matcher_result_free. */
typedef struct matcher_result {
    matcher_hit_t *hits;
    size_t n, cap;
} matcher_result_t;

matcher_t *matcher_new(void);
void matcher_free(matcher_t *m);

/* Adds or replaces the subscription 's' (copied). An inactive subscription,
 * or one without usable patterns, is removed instead. During a full load
 * (between matcher_begin_load and matcher_end_load) it goes to the index
 * being built. Called from one writer thread at a time. */
void matcher_upsert(matcher_t *m, const sub_record_t *s);
/* Removes subscription 'id' if present. */
void matcher_remove(matcher_t *m, const char *id);

/* Full load protocol: begin_load starts an empty index; upserts go to it;
 * end_load(true) swaps it in atomically for matchers; abort_load drops it
 * and keeps the current index. end_load(false) ends a batch of changes
 * (nothing to do: changes apply at once). */
void matcher_begin_load(matcher_t *m);
void matcher_end_load(matcher_t *m, bool full);
void matcher_abort_load(matcher_t *m);

/* Callbacks for subsync_start with 'ud' = the matcher. */
extern const subsync_callbacks_t matcher_subsync_callbacks;

/* Finds the subscriptions matching 'ev' (type already normalised, aliases
 * resolved): active, owned by ev->account (account scope) or ev->directory
 * (directory scope), with a pattern equal to the type, "<entity>/ *" or "*",
 * and a status filter that is empty or lists ev->status. Each subscription
 * at most once. Resets 'out' and fills it; returns out->n. Thread-safe
 * against the writer; never blocks on anything but a short in-memory lock. */
size_t matcher_match(matcher_t *m, const event_t *ev, matcher_result_t *out);

/* Number of subscriptions in the live index. */
size_t matcher_count(matcher_t *m);

void matcher_result_free(matcher_result_t *r);

#endif
