/* The worker's copy of the subscriptions it delivers for: id -> target
 * URL, endpoint, secrets, body format, batch flag, active flag. Fed by
 * subsync (full loads + LISTEN/NOTIFY) on its own thread; read by the event
 * loop. Entries are immutable and reference-counted, so a reader keeps a
 * consistent snapshot while the feed replaces it. */
#ifndef HOOKD_WORKER_SUBCACHE_H
#define HOOKD_WORKER_SUBCACHE_H

#include "hookd/subsync.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sub {
    atomic_int refs;
    atomic_bool active; /* cleared at once by subcache_deactivate (410) */
    bool batch;
    int format;                    /* body_format_t */
    int64_t previous_secret_until; /* ms since epoch; previous_secret is valid before it */
    const char *id, *url, *endpoint_id, *secret;
    const char *previous_secret; /* NULL when none */
    uint64_t gen;                /* load generation that wrote it (mark and sweep) */
    struct sub *hnext;
    char data[];
} sub_t;

typedef struct subcache subcache_t;

subcache_t *subcache_new(void);
void subcache_free(subcache_t *c);

/* Callbacks to pass to subsync_start with the cache as 'ud'. */
extern const subsync_callbacks_t subcache_feed;

/* A new reference to the subscription, or NULL when unknown. */
sub_t *subcache_get(subcache_t *c, const char *id);
void sub_unref(sub_t *s);

/* The previous secret to sign with at 'now_ms', or NULL. */
const char *sub_previous_secret(const sub_t *s, int64_t now_ms);

/* Stores a record read straight from PostgreSQL for a cache miss: inserted
 * when absent, or replacing an inactive copy when it is active (the NOTIFY
 * of a re-activation may still be on its way). Thread-safe. */
void subcache_put_fetched(subcache_t *c, const sub_record_t *rec);

/* Marks the subscription inactive in the cache right away (after a 410;
 * the feed brings the row's new state shortly). */
void subcache_deactivate(subcache_t *c, const char *id);

size_t subcache_count(subcache_t *c);

#endif
