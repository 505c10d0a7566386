/* Subscription cache: a mutex-protected chained hash of immutable,
 * reference-counted records; full loads mark and sweep by generation; a
 * ring of the latest changes' id hashes orders reads against changes. */
#include "subcache.h"

#include "hookd/metrics.h"
#include "hookd/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Changes remembered for subcache_changed_since: a read that takes longer
 * than this many changes is repeated. */
#define CHANGE_RING 4096

struct subcache {
    pthread_mutex_t lock;
    uint64_t seq;                    /* changes seen by the feed */
    uint64_t ring[CHANGE_RING];      /* hash of the id of change n at n % CHANGE_RING */
    sub_t **buckets;
    size_t n_buckets, count;
    uint64_t gen;  /* current generation; a full load starts a new one */
    bool loading;  /* between begin_load and end_load/abort_load */
    metric_t *m_count;
};

static size_t bucket_of(const subcache_t *c, const char *id)
{
    return (size_t)hookd_fnv1a(id, strlen(id)) & (c->n_buckets - 1);
}

subcache_t *subcache_new(void)
{
    subcache_t *c = calloc(1, sizeof(*c));
    if (!c) abort();
    pthread_mutex_init(&c->lock, NULL);
    c->n_buckets = 1024;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (!c->buckets) abort();
    c->m_count = metrics_gauge("hookd_worker_subscriptions", "Subscriptions in the worker's cache",
                               NULL);
    return c;
}

void sub_unref(sub_t *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) free(s);
}

void subcache_free(subcache_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (sub_t *s = c->buckets[i], *next; s; s = next) {
            next = s->hnext;
            sub_unref(s);
        }
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static char *put_str(char **p, const char *s)
{
    size_t n = strlen(s) + 1;
    char *at = *p;
    memcpy(at, s, n);
    *p += n;
    return at;
}

static sub_t *sub_from_record(const sub_record_t *r, uint64_t gen)
{
    const char *prev = r->previous_secret && r->previous_secret[0] ? r->previous_secret : NULL;
    size_t n = strlen(r->id) + strlen(r->target_url) + strlen(r->endpoint_id) +
               strlen(r->secret) + (prev ? strlen(prev) : 0) + 5;
    sub_t *s = malloc(sizeof(*s) + n);
    if (!s) abort();
    memset(s, 0, sizeof(*s));
    atomic_init(&s->refs, 1);
    atomic_init(&s->active, r->active);
    s->batch = r->batch;
    s->format = r->body_format;
    s->previous_secret_until = prev ? r->previous_secret_until : 0;
    char *p = s->data;
    s->id = put_str(&p, r->id);
    s->url = put_str(&p, r->target_url);
    s->endpoint_id = put_str(&p, r->endpoint_id);
    s->secret = put_str(&p, r->secret);
    s->previous_secret = prev ? put_str(&p, prev) : NULL;
    s->gen = gen;
    return s;
}

static void grow(subcache_t *c)
{
    size_t old_n = c->n_buckets;
    sub_t **old = c->buckets;
    c->n_buckets *= 2;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (!c->buckets) abort();
    for (size_t i = 0; i < old_n; i++) {
        for (sub_t *s = old[i], *next; s; s = next) {
            next = s->hnext;
            size_t b = bucket_of(c, s->id);
            s->hnext = c->buckets[b];
            c->buckets[b] = s;
        }
    }
    free(old);
}

/* The slot holding 'id', or the empty slot at the end of its chain (lock
 * held). */
static sub_t **slot_of(subcache_t *c, const char *id)
{
    sub_t **pp = &c->buckets[bucket_of(c, id)];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

/* Replaces or inserts 's' (lock held). */
static void put_locked(subcache_t *c, sub_t *s)
{
    sub_t **pp = slot_of(c, s->id);
    if (*pp) {
        sub_t *old = *pp;
        s->hnext = old->hnext;
        *pp = s;
        sub_unref(old);
        return;
    }
    if (c->count >= c->n_buckets) grow(c);
    size_t b = bucket_of(c, s->id);
    s->hnext = c->buckets[b];
    c->buckets[b] = s;
    c->count++;
}

static void remove_locked(subcache_t *c, const char *id)
{
    sub_t **pp = slot_of(c, id);
    if (!*pp) return;
    sub_t *s = *pp;
    *pp = s->hnext;
    c->count--;
    sub_unref(s);
}

sub_t *subcache_get(subcache_t *c, const char *id)
{
    pthread_mutex_lock(&c->lock);
    sub_t *found = *slot_of(c, id);
    if (found) atomic_fetch_add(&found->refs, 1);
    pthread_mutex_unlock(&c->lock);
    return found;
}

const char *sub_previous_secret(const sub_t *s, int64_t now_ms)
{
    if (!s->previous_secret) return NULL;
    if (s->previous_secret_until != 0 && s->previous_secret_until <= now_ms) return NULL;
    return s->previous_secret;
}

uint64_t subcache_seq(subcache_t *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t n = c->seq;
    pthread_mutex_unlock(&c->lock);
    return n;
}

static uint64_t id_hash(const char *id)
{
    return hookd_fnv1a(id, strlen(id)) | 1; /* 0 marks an unused slot */
}

/* A change to 'id' (lock held). */
static void note_change(subcache_t *c, const char *id)
{
    c->seq++;
    c->ring[c->seq % CHANGE_RING] = id_hash(id);
}

static bool changed_since_locked(const subcache_t *c, const char *id, uint64_t since)
{
    if (since >= c->seq) return false;
    if (c->seq - since > CHANGE_RING) return true; /* forgotten: cannot tell */
    uint64_t h = id_hash(id);
    for (uint64_t n = since + 1; n <= c->seq; n++)
        if (c->ring[n % CHANGE_RING] == h) return true;
    return false;
}

bool subcache_changed_since(subcache_t *c, const char *id, uint64_t since)
{
    pthread_mutex_lock(&c->lock);
    bool changed = changed_since_locked(c, id, since);
    pthread_mutex_unlock(&c->lock);
    return changed;
}

bool subcache_put_fetched(subcache_t *c, const sub_record_t *rec, uint64_t since)
{
    sub_t *s = sub_from_record(rec, 0);
    pthread_mutex_lock(&c->lock);
    bool fresh = !changed_since_locked(c, rec->id, since);
    if (fresh) {
        s->gen = c->gen;
        put_locked(c, s);
        metric_set(c->m_count, (double)c->count);
    }
    pthread_mutex_unlock(&c->lock);
    if (!fresh) sub_unref(s);
    return fresh;
}

void subcache_deactivate(subcache_t *c, const char *id)
{
    pthread_mutex_lock(&c->lock);
    sub_t *s = *slot_of(c, id);
    if (s) atomic_store(&s->active, false);
    pthread_mutex_unlock(&c->lock);
}

size_t subcache_count(subcache_t *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- subsync feed (runs on the subsync thread) ---- */

static void feed_begin(void *ud)
{
    subcache_t *c = ud;
    pthread_mutex_lock(&c->lock);
    c->gen++;
    c->loading = true;
    pthread_mutex_unlock(&c->lock);
}

/* A row of a full load or a change: replaces the cached copy; passed over
 * (but numbered) when the id is not cached. */
static void feed_upsert(const sub_record_t *r, void *ud)
{
    subcache_t *c = ud;
    pthread_mutex_lock(&c->lock);
    note_change(c, r->id);
    if (*slot_of(c, r->id)) put_locked(c, sub_from_record(r, c->gen));
    pthread_mutex_unlock(&c->lock);
}

static void feed_remove(const char *id, void *ud)
{
    subcache_t *c = ud;
    pthread_mutex_lock(&c->lock);
    note_change(c, id);
    remove_locked(c, id);
    pthread_mutex_unlock(&c->lock);
}

static void feed_end(bool full, void *ud)
{
    subcache_t *c = ud;
    pthread_mutex_lock(&c->lock);
    if (full && c->loading) { /* sweep what the load did not see */
        for (size_t i = 0; i < c->n_buckets; i++) {
            sub_t **pp = &c->buckets[i];
            while (*pp) {
                sub_t *s = *pp;
                if (s->gen != c->gen) {
                    *pp = s->hnext;
                    c->count--;
                    sub_unref(s);
                } else {
                    pp = &s->hnext;
                }
            }
        }
    }
    if (full) c->loading = false;
    metric_set(c->m_count, (double)c->count);
    pthread_mutex_unlock(&c->lock);
}

static void feed_abort(void *ud)
{
    subcache_t *c = ud;
    pthread_mutex_lock(&c->lock);
    c->loading = false; /* keep everything: old entries plus what was read */
    pthread_mutex_unlock(&c->lock);
}

const subsync_callbacks_t subcache_feed = {feed_begin, feed_upsert, feed_remove, feed_end,
                                           feed_abort};
