/* The worker's copy of the subscriptions it delivers for: id -> target
 * URL, endpoint, secrets, body format, batch flag, active flag. Only the
 * subscriptions jobs arrived for are kept: a job for an unknown one has it
 * read from PostgreSQL (subcache_put_fetched); the subsync feed (full loads
 * + LISTEN/NOTIFY, on its own thread) keeps those current and passes over
 * the others. Read by the event loop. Entries are immutable and
 * reference-counted, so a reader keeps a consistent snapshot while the feed
 * replaces it.
 *
 * A read and a change can cross: a job's read sees the old row, the
 * change's notification arrives before that read is stored and is passed
 * over because the id is not cached yet. So every change the feed sees is
 * numbered (subcache_seq) and the ids of the latest ones are remembered: a
 * read that started before a change to its id is not stored, and its job
 * reads again (subcache_changed_since). */
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

/* The number of changes the feed has seen so far: take it before reading
 * subscriptions from PostgreSQL and pass it to subcache_put_fetched. */
uint64_t subcache_seq(subcache_t *c);

/* Stores a record read straight from PostgreSQL by a read that started at
 * change number 'since' (inserted, or replacing the cached copy). Returns
 * false, storing nothing, when the feed saw a change to the id since then:
 * the cached copy (if any) is newer, else the read must be repeated.
 * Thread-safe. */
bool subcache_put_fetched(subcache_t *c, const sub_record_t *rec, uint64_t since);

/* True when the feed saw a change to 'id' after change number 'since' (or
 * cannot tell: too many changes since then). */
bool subcache_changed_since(subcache_t *c, const char *id, uint64_t since);

/* Marks the subscription inactive in the cache right away (after a 410;
 * the feed brings the row's new state shortly). */
void subcache_deactivate(subcache_t *c, const char *id);

size_t subcache_count(subcache_t *c);

#endif
