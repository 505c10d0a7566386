/* Live copy of the subscriptions table: a thread that loads every
 * subscription, LISTENs on hookd_subscriptions and applies each change, and
 * reloads fully after a reconnect or every reload interval. Both services
 * build their caches (ingest's matcher, the worker's target cache) on it. */
#ifndef HOOKD_SUBSYNC_H
#define HOOKD_SUBSYNC_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sub_record {
    const char *id;
    bool directory; /* owner_kind: false = account, true = directory */
    const char *owner_id;
    const char *const *event_types; /* normalised patterns */
    int n_event_types;
    const char *const *statuses; /* NULL / 0: no status filter */
    int n_statuses;
    int payload_mode; /* payload_mode_t */
    int body_format;  /* body_format_t */
    bool batch;
    bool active;
    const char *target_url;
    const char *endpoint_id;
    const char *secret;
    const char *previous_secret;   /* NULL when none or expired */
    int64_t previous_secret_until; /* ms since epoch, 0 when none */
} sub_record_t;

/* Callbacks run on the subsync thread. A full load is
 * begin_load(), upsert() for every row, end_load() (or abort_load()); a change is upsert() or
 * remove() for each id, then end_load(). Records and their strings are only
 * valid during the call: copy what you keep. */
typedef struct subsync_callbacks {
    void (*begin_load)(void *ud);
    void (*upsert)(const sub_record_t *s, void *ud);
    void (*remove)(const char *id, void *ud);
    void (*end_load)(bool full, void *ud);
    /* Optional (may be NULL): called instead of end_load(true) when a full
     * load fails part way (connection lost), so the caller can drop the
     * partial copy and keep its previous one. When NULL, end_load(true) is
     * called as before. */
    void (*abort_load)(void *ud);
} subsync_callbacks_t;

typedef struct subsync subsync_t;

/* Starts the thread. The first full load is done before this returns if
 * PostgreSQL is reachable within 'first_load_timeout_ms' (then
 * subsync_loaded() is true); otherwise it keeps retrying in the background.
 * 'reload_s' > 0 adds a periodic full reload. Returns NULL on failure. */
subsync_t *subsync_start(const char *database_url, const char *app_name,
                         const subsync_callbacks_t *cb, void *ud, int64_t reload_s,
                         int64_t first_load_timeout_ms);

/* True once a full load has completed. */
bool subsync_loaded(subsync_t *s);
/* True while the LISTEN connection is up. */
bool subsync_connected(subsync_t *s);
/* Number of notifications applied so far (tests, metrics). */
uint64_t subsync_changes(subsync_t *s);

void subsync_stop(subsync_t *s);

#endif
