/* The event type catalog in memory: the names in event_types and the aliases
 * in event_type_aliases (Communico hook names such as eventAdded), kept live
 * by a thread that LISTENs on channel hookd_catalog and reloads on change or
 * reconnect. Lookups never touch PostgreSQL. */
#ifndef HOOKD_INGEST_CATALOG_H
#define HOOKD_INGEST_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct catalog catalog_t;

/* An empty catalog without a thread (unit tests fill it with catalog_set). */
catalog_t *catalog_new(void);

/* A catalog kept live from 'database_url' by a background thread; returns at
 * once (see catalog_loaded). 'reload_s' > 0 adds a periodic full reload. */
catalog_t *catalog_start(const char *database_url, const char *app_name, int64_t reload_s);

/* Stops the thread (if any) and frees everything. */
void catalog_free(catalog_t *c);

/* Replaces the contents: 'types' (n_types names) and aliases
 * alias_names[i] -> alias_targets[i]. Names and targets are stored
 * normalised (event_type_normalize), as event types are compared after
 * normalisation. Strings are copied. Thread-safe. */
void catalog_set(catalog_t *c, const char *const *types, size_t n_types,
                 const char *const *alias_names, const char *const *alias_targets,
                 size_t n_aliases);

/* True once the catalog has been loaded (or set) at least once. */
bool catalog_loaded(catalog_t *c);
/* True while the LISTEN connection is up. */
bool catalog_connected(catalog_t *c);
/* Number of distinct (normalised) event types. */
size_t catalog_size(catalog_t *c);

/* True when 'type' (normalised) is in the catalog. */
bool catalog_has_type(catalog_t *c, const char *type);

/* Copies the type that 'alias' stands for into 'out'. Returns false when
 * 'alias' is unknown or the target does not fit. */
bool catalog_resolve_alias(catalog_t *c, const char *alias, char *out, size_t out_size);

#endif
