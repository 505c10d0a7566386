/* Subscription change feed: full loads in single-row mode (bounded memory for
 * large tables), LISTEN/NOTIFY for changes, reload after reconnects. */
#include "hookd/subsync.h"
#include "hookd/event.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/pg.h"
#include "hookd/util.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUBSYNC_CHANNEL "hookd_subscriptions"
#define SUBSYNC_MAX_PATTERNS 128

static const char *SELECT_COLUMNS =
    "SELECT id, owner_kind, owner_id, array_to_json(event_types)::text, target_url, endpoint_id,"
    " array_to_json(statuses)::text, payload_mode, body_format, batch, active, secret,"
    " CASE WHEN previous_secret_expires_at > now() THEN previous_secret END,"
    " CASE WHEN previous_secret_expires_at > now()"
    "  THEN (extract(epoch FROM previous_secret_expires_at) * 1000)::bigint ELSE 0 END"
    " FROM subscriptions";

struct subsync {
    pthread_t thread;
    char *url, *app;
    subsync_callbacks_t cb;
    void *ud;
    int64_t reload_s;
    atomic_int stop;
    atomic_bool loaded, connected;
    atomic_uint_fast64_t changes;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool first_done;
    metric_t *m_reloads, *m_changes;
};

/* Parses a JSON array of strings into 'out' (pointers into 'holder'). */
static int json_strings(const char *text, struct json_object **holder, const char **out, int max)
{
    *holder = NULL;
    if (!text || !*text) return 0;
    struct json_object *a = json_tokener_parse(text);
    if (!a || !json_object_is_type(a, json_type_array)) {
        json_object_put(a);
        return 0;
    }
    int n = (int)json_object_array_length(a);
    if (n > max) n = max;
    for (int i = 0; i < n; i++) out[i] = json_object_get_string(json_object_array_get_idx(a, i));
    *holder = a;
    return n;
}

static void emit_row(subsync_t *s, PGresult *r, int row)
{
    const char *types[SUBSYNC_MAX_PATTERNS], *statuses[SUBSYNC_MAX_PATTERNS];
    struct json_object *th, *sh;
    sub_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.id = PQgetvalue(r, row, 0);
    rec.directory = strcmp(PQgetvalue(r, row, 1), "directory") == 0;
    rec.owner_id = PQgetvalue(r, row, 2);
    rec.n_event_types = json_strings(PQgetvalue(r, row, 3), &th, types, SUBSYNC_MAX_PATTERNS);
    rec.event_types = types;
    rec.target_url = PQgetvalue(r, row, 4);
    rec.endpoint_id = PQgetvalue(r, row, 5);
    rec.n_statuses = PQgetisnull(r, row, 6)
                         ? 0
                         : json_strings(PQgetvalue(r, row, 6), &sh, statuses, SUBSYNC_MAX_PATTERNS);
    if (PQgetisnull(r, row, 6)) sh = NULL;
    rec.statuses = rec.n_statuses ? statuses : NULL;
    int pm = payload_mode_parse(PQgetvalue(r, row, 7));
    int bf = body_format_parse(PQgetvalue(r, row, 8));
    rec.payload_mode = pm < 0 ? PAYLOAD_FULL : pm;
    rec.body_format = bf < 0 ? FORMAT_STANDARD : bf;
    rec.batch = PQgetvalue(r, row, 9)[0] == 't';
    rec.active = PQgetvalue(r, row, 10)[0] == 't';
    rec.secret = PQgetvalue(r, row, 11);
    rec.previous_secret = PQgetisnull(r, row, 12) ? NULL : PQgetvalue(r, row, 12);
    rec.previous_secret_until = strtoll(PQgetvalue(r, row, 13), NULL, 10);
    s->cb.upsert(&rec, s->ud);
    json_object_put(th);
    json_object_put(sh);
}

/* Streams every subscription through the callbacks. Returns 0 or -1. */
static int full_load(subsync_t *s, PGconn *c)
{
    char err[256];
    int64_t t0 = hookd_mono_ms();
    if (!PQsendQueryParams(c, SELECT_COLUMNS, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode(c)) {
        log_warn("subscriptions_load_failed error=\"%s\"", PQerrorMessage(c));
        return -1;
    }
    s->cb.begin_load(s->ud);
    long rows = 0;
    int rc = 0;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            emit_row(s, r, 0);
            rows++;
        } else if (st != PGRES_TUPLES_OK) {
            snprintf(err, sizeof(err), "%s", PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    if (rc == 0 || !s->cb.abort_load)
        s->cb.end_load(true, s->ud);
    else
        s->cb.abort_load(s->ud);
    if (rc == 0) {
        metric_inc(s->m_reloads);
        log_info("subscriptions_loaded count=%ld ms=%lld", rows, (long long)(hookd_mono_ms() - t0));
    } else {
        log_warn("subscriptions_load_failed error=\"%s\"", err);
    }
    return rc;
}

typedef struct {
    subsync_t *s;
    PGconn *c;
    bool reload;
    int failed;
} notify_ctx_t;

/* Applies "upsert:<id>,<id>" / "delete:<id>,..." / "reload". */
static void on_notify(const char *channel, const char *payload, void *arg)
{
    notify_ctx_t *n = arg;
    (void)channel;
    if (strcmp(payload, "reload") == 0 || n->reload) {
        n->reload = true;
        return;
    }
    bool del = strncmp(payload, "delete:", 7) == 0;
    if (!del && strncmp(payload, "upsert:", 7) != 0) return;
    const char *ids = payload + 7;
    if (del) {
        const char *p = ids;
        while (*p) {
            size_t len = strcspn(p, ",");
            char id[128];
            snprintf(id, sizeof(id), "%.*s", (int)len, p);
            n->s->cb.remove(id, n->s->ud);
            p += len;
            if (*p == ',') p++;
        }
    } else {
        /* ids are [A-Za-z0-9_-] (CHECK constraint), so "{a,b}" is a valid array */
        char *arr = malloc(strlen(ids) + 3);
        if (!arr) abort();
        sprintf(arr, "{%s}", ids);
        strbuf_t sql = {0};
        strbuf_init(&sql, 256);
        strbuf_printf(&sql, "%s WHERE id = ANY($1::text[])", SELECT_COLUMNS);
        char err[256];
        const char *params[] = {arr};
        PGresult *r = pg_query(n->c, sql.data, 1, params, err, sizeof(err));
        if (r) {
            /* ids that are gone by now were deleted in between */
            for (const char *p = ids; *p;) {
                size_t len = strcspn(p, ",");
                bool found = false;
                for (int i = 0; i < PQntuples(r); i++)
                    if (strlen(PQgetvalue(r, i, 0)) == len && !strncmp(PQgetvalue(r, i, 0), p, len))
                        found = true;
                if (!found) {
                    char id[128];
                    snprintf(id, sizeof(id), "%.*s", (int)len, p);
                    n->s->cb.remove(id, n->s->ud);
                }
                p += len;
                if (*p == ',') p++;
            }
            for (int i = 0; i < PQntuples(r); i++) emit_row(n->s, r, i);
            PQclear(r);
        } else {
            log_warn("subscriptions_fetch_failed error=\"%s\"", err);
            n->failed = 1;
        }
        strbuf_free(&sql);
        free(arr);
    }
    atomic_fetch_add(&n->s->changes, 1);
    metric_inc(n->s->m_changes);
}

static void mark_first_done(subsync_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->first_done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *run(void *arg)
{
    subsync_t *s = arg;
    char err[256];
    while (!atomic_load(&s->stop)) {
        PGconn *c = pg_connect(s->url, s->app, 0, (const volatile int *)&s->stop, err, sizeof(err));
        if (!c) break; /* stopping */
        /* LISTEN first, then load: no change can fall between the two */
        if (pg_listen(c, SUBSYNC_CHANNEL, err, sizeof(err)) < 0 || full_load(s, c) < 0) {
            PQfinish(c);
            continue;
        }
        atomic_store(&s->connected, true);
        atomic_store(&s->loaded, true);
        mark_first_done(s);
        int64_t next_reload = s->reload_s > 0 ? hookd_mono_ms() + s->reload_s * 1000 : INT64_MAX;
        while (!atomic_load(&s->stop)) {
            notify_ctx_t n = {s, c, false, 0};
            int got = pg_wait_notify(c, 200, on_notify, &n);
            if (got < 0 || n.failed) break;
            if (n.reload || hookd_mono_ms() >= next_reload) {
                if (full_load(s, c) < 0) break;
                next_reload = s->reload_s > 0 ? hookd_mono_ms() + s->reload_s * 1000 : INT64_MAX;
            } else if (got > 0) {
                s->cb.end_load(false, s->ud);
            }
        }
        atomic_store(&s->connected, false);
        PQfinish(c);
        if (!atomic_load(&s->stop)) log_warn("subscriptions_feed_lost action=reconnect_and_reload");
    }
    mark_first_done(s);
    return NULL;
}

subsync_t *subsync_start(const char *database_url, const char *app_name,
                         const subsync_callbacks_t *cb, void *ud, int64_t reload_s,
                         int64_t first_load_timeout_ms)
{
    subsync_t *s = calloc(1, sizeof(*s));
    if (!s) abort();
    s->url = strdup(database_url);
    s->app = strdup(app_name);
    s->cb = *cb;
    s->ud = ud;
    s->reload_s = reload_s;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->m_reloads = metrics_counter("hookd_subscription_reloads_total",
                                   "Full loads of the subscriptions table", NULL);
    s->m_changes = metrics_counter("hookd_subscription_changes_total",
                                   "Subscription change notifications applied", NULL);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        free(s->url);
        free(s->app);
        free(s);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += first_load_timeout_ms / 1000;
    ts.tv_nsec += (first_load_timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->first_done)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) != 0) break;
    pthread_mutex_unlock(&s->lock);
    return s;
}

bool subsync_loaded(subsync_t *s)
{
    return atomic_load(&s->loaded);
}

bool subsync_connected(subsync_t *s)
{
    return atomic_load(&s->connected);
}

uint64_t subsync_changes(subsync_t *s)
{
    return atomic_load(&s->changes);
}

void subsync_stop(subsync_t *s)
{
    if (!s) return;
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->url);
    free(s->app);
    free(s);
}
