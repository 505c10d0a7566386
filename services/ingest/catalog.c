/* Event type catalog: an immutable snapshot of types and aliases, replaced
 * as a whole by the LISTEN hookd_catalog thread, read under a short mutex. */
#include "catalog.h"

#include "strmap.h"

#include "hookd/event.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/pg.h"
#include "hookd/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CATALOG_CHANNEL "hookd_catalog"

typedef struct snapshot {
    strmap_t types;   /* name -> name (key and value are the same owned string) */
    strmap_t aliases; /* alias -> target; both owned, key allocated right before value */
} snapshot_t;

struct catalog {
    pthread_mutex_t lock; /* guards 'snap' */
    snapshot_t *snap;
    bool threaded;
    pthread_t thread;
    char *url, *app;
    int64_t reload_s;
    volatile int stop; /* read by pg_connect's retry loop */
    atomic_bool loaded, connected;
    metric_t *m_types;
};

static void snapshot_free(snapshot_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->types.cap; i++)
        if (s->types.slots[i].hash) free(s->types.slots[i].value);
    for (size_t i = 0; i < s->aliases.cap; i++) {
        if (!s->aliases.slots[i].hash) continue;
        free((char *)s->aliases.slots[i].key);
        free(s->aliases.slots[i].value);
    }
    strmap_free(&s->types);
    strmap_free(&s->aliases);
    free(s);
}

catalog_t *catalog_new(void)
{
    catalog_t *c = calloc(1, sizeof(*c));
    if (!c) abort();
    pthread_mutex_init(&c->lock, NULL);
    c->m_types =
        metrics_gauge("hookd_catalog_event_types", "Event types in the in-memory catalog", NULL);
    return c;
}

void catalog_set(catalog_t *c, const char *const *types, size_t n_types,
                 const char *const *alias_names, const char *const *alias_targets, size_t n_aliases)
{
    snapshot_t *s = calloc(1, sizeof(*s));
    if (!s) abort();
    strmap_init(&s->types);
    strmap_init(&s->aliases);
    for (size_t i = 0; i < n_types; i++) {
        /* stored in the spelling events are normalised to (entity/event) */
        char norm[EVENT_TYPE_MAX];
        const char *t = types[i];
        if (event_type_normalize(t, strlen(t), norm, sizeof(norm), false) == 0) t = norm;
        size_t len = strlen(t);
        char *name = hookd_strndup(t, len);
        char *old = strmap_put(&s->types, name, len, strmap_hash(name, len), name);
        free(old);
    }
    for (size_t i = 0; i < n_aliases; i++) {
        size_t len = strlen(alias_names[i]);
        uint64_t h = strmap_hash(alias_names[i], len);
        if (strmap_get(&s->aliases, alias_names[i], len, h)) continue; /* primary key: unique */
        char norm[EVENT_TYPE_MAX];
        const char *t = alias_targets[i];
        if (event_type_normalize(t, strlen(t), norm, sizeof(norm), false) == 0) t = norm;
        char *alias = hookd_strndup(alias_names[i], len);
        char *target = hookd_strndup(t, strlen(t));
        strmap_put(&s->aliases, alias, len, h, target);
    }
    pthread_mutex_lock(&c->lock);
    snapshot_t *old = c->snap;
    c->snap = s;
    pthread_mutex_unlock(&c->lock);
    snapshot_free(old);
    metric_set(c->m_types, (double)s->types.len);
    atomic_store(&c->loaded, true);
}

bool catalog_loaded(catalog_t *c)
{
    return atomic_load(&c->loaded);
}

bool catalog_connected(catalog_t *c)
{
    return atomic_load(&c->connected);
}

size_t catalog_size(catalog_t *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->snap ? c->snap->types.len : 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

bool catalog_has_type(catalog_t *c, const char *type)
{
    size_t len = strlen(type);
    uint64_t h = strmap_hash(type, len);
    pthread_mutex_lock(&c->lock);
    bool found = c->snap && strmap_get(&c->snap->types, type, len, h) != NULL;
    pthread_mutex_unlock(&c->lock);
    return found;
}

bool catalog_resolve_alias(catalog_t *c, const char *alias, char *out, size_t out_size)
{
    size_t len = strlen(alias);
    uint64_t h = strmap_hash(alias, len);
    bool ok = false;
    pthread_mutex_lock(&c->lock);
    const char *target = c->snap ? strmap_get(&c->snap->aliases, alias, len, h) : NULL;
    if (target && strlen(target) < out_size) {
        memcpy(out, target, strlen(target) + 1);
        ok = true;
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* ---------------------------------------------------------------- thread */

/* Loads both tables in one statement (one snapshot). Returns 0 or -1. */
static int load(catalog_t *c, PGconn *pg)
{
    char err[256];
    PGresult *r = pg_query(pg,
                           "SELECT 't', name, NULL FROM event_types"
                           " UNION ALL SELECT 'a', alias, name FROM event_type_aliases",
                           0, NULL, err, sizeof(err));
    if (!r) {
        log_warn("catalog_load_failed error=\"%s\"", err);
        return -1;
    }
    int n = PQntuples(r);
    const char **types = malloc(sizeof(char *) * (size_t)(n + 1));
    const char **names = malloc(sizeof(char *) * (size_t)(n + 1));
    const char **targets = malloc(sizeof(char *) * (size_t)(n + 1));
    if (!types || !names || !targets) abort();
    size_t nt = 0, na = 0;
    for (int i = 0; i < n; i++) {
        if (PQgetvalue(r, i, 0)[0] == 't') {
            types[nt++] = PQgetvalue(r, i, 1);
        } else {
            names[na] = PQgetvalue(r, i, 1);
            targets[na++] = PQgetvalue(r, i, 2);
        }
    }
    catalog_set(c, types, nt, names, targets, na);
    log_info("catalog_loaded types=%zu aliases=%zu", nt, na);
    free(types);
    free(names);
    free(targets);
    PQclear(r);
    return 0;
}

static void on_notify(const char *channel, const char *payload, void *ud)
{
    (void)channel;
    (void)payload;
    *(bool *)ud = true;
}

static void *run(void *arg)
{
    catalog_t *c = arg;
    char err[256];
    while (!c->stop) {
        PGconn *pg = pg_connect(c->url, c->app, 0, &c->stop, err, sizeof(err));
        if (!pg) break; /* stopping */
        /* LISTEN first, then load: no change can fall between the two */
        if (pg_listen(pg, CATALOG_CHANNEL, err, sizeof(err)) < 0 || load(c, pg) < 0) {
            PQfinish(pg);
            continue;
        }
        atomic_store(&c->connected, true);
        int64_t next = c->reload_s > 0 ? hookd_mono_ms() + c->reload_s * 1000 : INT64_MAX;
        while (!c->stop) {
            bool changed = false;
            if (pg_wait_notify(pg, 200, on_notify, &changed) < 0) break;
            if (changed || hookd_mono_ms() >= next) {
                if (load(c, pg) < 0) break;
                next = c->reload_s > 0 ? hookd_mono_ms() + c->reload_s * 1000 : INT64_MAX;
            }
        }
        atomic_store(&c->connected, false);
        PQfinish(pg);
        if (!c->stop) log_warn("catalog_feed_lost action=reconnect_and_reload");
    }
    return NULL;
}

catalog_t *catalog_start(const char *database_url, const char *app_name, int64_t reload_s)
{
    catalog_t *c = catalog_new();
    c->url = strdup(database_url);
    c->app = strdup(app_name);
    if (!c->url || !c->app) abort();
    c->reload_s = reload_s;
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        catalog_free(c);
        return NULL;
    }
    c->threaded = true;
    return c;
}

void catalog_free(catalog_t *c)
{
    if (!c) return;
    if (c->threaded) {
        c->stop = 1;
        pthread_join(c->thread, NULL);
    }
    snapshot_free(c->snap);
    pthread_mutex_destroy(&c->lock);
    free(c->url);
    free(c->app);
    free(c);
}
