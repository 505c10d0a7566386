/* Subscription matcher: owner -> pattern -> subscriptions index, built from
 * the subsync feed, read by the pipeline under a short mutex. */
#include "matcher.h"

#include "strmap.h"

#include "hookd/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MATCHER_MAX_PATTERNS 128

/* One subscription as the index keeps it; one allocation holding the struct,
 * its arrays and its strings. */
typedef struct msub {
    const char *id;
    size_t id_len;
    bool directory; /* owner kind */
    const char *owner;
    size_t owner_len;
    const char **patterns; /* normalised, distinct */
    int n_patterns;
    const char **statuses; /* empty: no status filter */
    int n_statuses;
    payload_mode_t mode;
    const char *endpoint_id;
    size_t endpoint_len;
} msub_t;

/* The subscriptions of one owner having one pattern. */
typedef struct plist {
    char *pattern; /* owned; the key in owner->patterns */
    size_t len;
    msub_t **subs;
    uint32_t n, cap;
} plist_t;

typedef struct owner {
    char *id; /* owned; the key in index->owners[] */
    size_t len;
    strmap_t patterns; /* pattern -> plist_t */
} owner_t;

typedef struct index {
    strmap_t by_id;     /* subscription id -> msub_t (key: msub->id) */
    strmap_t owners[2]; /* [0] accounts, [1] directories: owner id -> owner_t */
} index_t;

struct matcher {
    pthread_mutex_t lock; /* guards 'live' and everything reachable from it */
    index_t *live;
    index_t *loading; /* full load in progress (writer thread only) */
};

static const char STAR[] = "*";
static uint64_t star_hash;
static pthread_once_t star_once = PTHREAD_ONCE_INIT;

static void init_star(void)
{
    star_hash = strmap_hash(STAR, 1);
}

/* ---------------------------------------------------------------- index */

static index_t *index_new(void)
{
    index_t *ix = calloc(1, sizeof(*ix));
    if (!ix) abort();
    strmap_init(&ix->by_id);
    strmap_init(&ix->owners[0]);
    strmap_init(&ix->owners[1]);
    return ix;
}

static void index_free(index_t *ix)
{
    if (!ix) return;
    for (int k = 0; k < 2; k++) {
        strmap_t *owners = &ix->owners[k];
        for (size_t i = 0; i < owners->cap; i++) {
            if (!owners->slots[i].hash) continue;
            owner_t *o = owners->slots[i].value;
            for (size_t j = 0; j < o->patterns.cap; j++) {
                if (!o->patterns.slots[j].hash) continue;
                plist_t *pl = o->patterns.slots[j].value;
                free(pl->subs);
                free(pl->pattern);
                free(pl);
            }
            strmap_free(&o->patterns);
            free(o->id);
            free(o);
        }
        strmap_free(owners);
    }
    for (size_t i = 0; i < ix->by_id.cap; i++)
        if (ix->by_id.slots[i].hash) free(ix->by_id.slots[i].value);
    strmap_free(&ix->by_id);
    free(ix);
}

static void index_add(index_t *ix, msub_t *s)
{
    strmap_put(&ix->by_id, s->id, s->id_len, strmap_hash(s->id, s->id_len), s);
    strmap_t *owners = &ix->owners[s->directory];
    uint64_t oh = strmap_hash(s->owner, s->owner_len);
    owner_t *o = strmap_get(owners, s->owner, s->owner_len, oh);
    if (!o) {
        o = calloc(1, sizeof(*o));
        if (!o) abort();
        o->id = hookd_strndup(s->owner, s->owner_len);
        o->len = s->owner_len;
        strmap_init(&o->patterns);
        strmap_put(owners, o->id, o->len, oh, o);
    }
    for (int i = 0; i < s->n_patterns; i++) {
        size_t pl_len = strlen(s->patterns[i]);
        uint64_t ph = strmap_hash(s->patterns[i], pl_len);
        plist_t *pl = strmap_get(&o->patterns, s->patterns[i], pl_len, ph);
        if (!pl) {
            pl = calloc(1, sizeof(*pl));
            if (!pl) abort();
            pl->pattern = hookd_strndup(s->patterns[i], pl_len);
            pl->len = pl_len;
            strmap_put(&o->patterns, pl->pattern, pl->len, ph, pl);
        }
        if (pl->n == pl->cap) {
            pl->cap = pl->cap ? pl->cap * 2 : 2;
            pl->subs = realloc(pl->subs, pl->cap * sizeof(*pl->subs));
            if (!pl->subs) abort();
        }
        pl->subs[pl->n++] = s;
    }
}

/* Unlinks subscription 'id' from the index and returns it (caller frees), or
 * NULL when absent. */
static msub_t *index_del(index_t *ix, const char *id, size_t id_len)
{
    msub_t *s = strmap_del(&ix->by_id, id, id_len, strmap_hash(id, id_len));
    if (!s) return NULL;
    strmap_t *owners = &ix->owners[s->directory];
    uint64_t oh = strmap_hash(s->owner, s->owner_len);
    owner_t *o = strmap_get(owners, s->owner, s->owner_len, oh);
    if (!o) return s;
    for (int i = 0; i < s->n_patterns; i++) {
        size_t pl_len = strlen(s->patterns[i]);
        uint64_t ph = strmap_hash(s->patterns[i], pl_len);
        plist_t *pl = strmap_get(&o->patterns, s->patterns[i], pl_len, ph);
        if (!pl) continue;
        for (uint32_t j = 0; j < pl->n; j++) {
            if (pl->subs[j] == s) {
                /* keep the order (jobs of one event come out in index order) */
                memmove(&pl->subs[j], &pl->subs[j + 1], (pl->n - j - 1) * sizeof(*pl->subs));
                pl->n--;
                break;
            }
        }
        if (pl->n == 0) {
            strmap_del(&o->patterns, pl->pattern, pl->len, ph);
            free(pl->subs);
            free(pl->pattern);
            free(pl);
        }
    }
    if (o->patterns.len == 0) {
        strmap_del(owners, o->id, o->len, oh);
        strmap_free(&o->patterns);
        free(o->id);
        free(o);
    }
    return s;
}

/* ---------------------------------------------------------------- records */

/* Copies a subsync record into one allocation, normalising and
 * de-duplicating its patterns. Returns NULL when it has no usable pattern. */
static msub_t *msub_from_record(const sub_record_t *r)
{
    char norm[MATCHER_MAX_PATTERNS][EVENT_TYPE_MAX];
    int n = 0;
    for (int i = 0; i < r->n_event_types && n < MATCHER_MAX_PATTERNS; i++) {
        const char *p = r->event_types[i];
        if (!p) continue;
        if (event_type_normalize(p, strlen(p), norm[n], sizeof(norm[n]), true) < 0) {
            log_warn("subscription_pattern_ignored id=%s pattern=\"%s\"", r->id, p);
            continue;
        }
        bool dup = false;
        for (int j = 0; j < n && !dup; j++)
            dup = strcmp(norm[j], norm[n]) == 0;
        if (!dup) n++;
    }
    if (n == 0) return NULL;
    int ns = r->statuses ? r->n_statuses : 0;
    size_t id_len = strlen(r->id), owner_len = strlen(r->owner_id);
    size_t ep_len = r->endpoint_id ? strlen(r->endpoint_id) : 0;
    if (id_len >= MATCHER_ID_MAX || ep_len >= MATCHER_ID_MAX) {
        log_warn("subscription_ignored id=%.64s reason=\"id too long\"", r->id);
        return NULL;
    }
    size_t size =
        sizeof(msub_t) + (size_t)(n + ns) * sizeof(char *) + id_len + owner_len + ep_len + 3;
    for (int i = 0; i < n; i++)
        size += strlen(norm[i]) + 1;
    for (int i = 0; i < ns; i++)
        size += strlen(r->statuses[i] ? r->statuses[i] : "") + 1;
    msub_t *s = malloc(size);
    if (!s) abort();
    s->patterns = (const char **)(s + 1);
    s->statuses = s->patterns + n;
    char *p = (char *)(s->statuses + ns);
#define COPY_STR(dst, src, len)                                                                    \
    do {                                                                                           \
        memcpy(p, (src), (len));                                                                   \
        p[len] = '\0';                                                                             \
        (dst) = p;                                                                                 \
        p += (len) + 1;                                                                            \
    } while (0)
    COPY_STR(s->id, r->id, id_len);
    COPY_STR(s->owner, r->owner_id, owner_len);
    COPY_STR(s->endpoint_id, r->endpoint_id ? r->endpoint_id : "", ep_len);
    for (int i = 0; i < n; i++)
        COPY_STR(s->patterns[i], norm[i], strlen(norm[i]));
    for (int i = 0; i < ns; i++) {
        const char *st = r->statuses[i] ? r->statuses[i] : "";
        COPY_STR(s->statuses[i], st, strlen(st));
    }
#undef COPY_STR
    s->id_len = id_len;
    s->owner_len = owner_len;
    s->endpoint_len = ep_len;
    s->directory = r->directory;
    s->n_patterns = n;
    s->n_statuses = ns;
    s->mode = (unsigned)r->payload_mode <= PAYLOAD_EXTENDED ? (payload_mode_t)r->payload_mode
                                                            : PAYLOAD_FULL;
    return s;
}

/* ---------------------------------------------------------------- API */

matcher_t *matcher_new(void)
{
    pthread_once(&star_once, init_star);
    matcher_t *m = calloc(1, sizeof(*m));
    if (!m) abort();
    pthread_mutex_init(&m->lock, NULL);
    m->live = index_new();
    return m;
}

void matcher_free(matcher_t *m)
{
    if (!m) return;
    index_free(m->live);
    index_free(m->loading);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void matcher_upsert(matcher_t *m, const sub_record_t *r)
{
    msub_t *s = r->active ? msub_from_record(r) : NULL;
    if (m->loading) {
        free(index_del(m->loading, r->id, strlen(r->id)));
        if (s) index_add(m->loading, s);
        return;
    }
    pthread_mutex_lock(&m->lock);
    msub_t *old = index_del(m->live, r->id, strlen(r->id));
    if (s) index_add(m->live, s);
    pthread_mutex_unlock(&m->lock);
    free(old);
}

void matcher_remove(matcher_t *m, const char *id)
{
    if (m->loading) {
        free(index_del(m->loading, id, strlen(id)));
        return;
    }
    pthread_mutex_lock(&m->lock);
    msub_t *old = index_del(m->live, id, strlen(id));
    pthread_mutex_unlock(&m->lock);
    free(old);
}

void matcher_begin_load(matcher_t *m)
{
    index_free(m->loading);
    m->loading = index_new();
}

void matcher_end_load(matcher_t *m, bool full)
{
    if (!full || !m->loading) return;
    pthread_mutex_lock(&m->lock);
    index_t *old = m->live;
    m->live = m->loading;
    pthread_mutex_unlock(&m->lock);
    m->loading = NULL;
    index_free(old);
}

void matcher_abort_load(matcher_t *m)
{
    index_free(m->loading);
    m->loading = NULL;
}

static void cb_begin(void *ud)
{
    matcher_begin_load(ud);
}
static void cb_upsert(const sub_record_t *s, void *ud)
{
    matcher_upsert(ud, s);
}
static void cb_remove(const char *id, void *ud)
{
    matcher_remove(ud, id);
}
static void cb_end(bool full, void *ud)
{
    matcher_end_load(ud, full);
}
static void cb_abort(void *ud)
{
    matcher_abort_load(ud);
}

const subsync_callbacks_t matcher_subsync_callbacks = {
    .begin_load = cb_begin,
    .upsert = cb_upsert,
    .remove = cb_remove,
    .end_load = cb_end,
    .abort_load = cb_abort,
};

size_t matcher_count(matcher_t *m)
{
    pthread_mutex_lock(&m->lock);
    size_t n = m->live->by_id.len;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void matcher_result_free(matcher_result_t *r)
{
    free(r->hits);
    r->hits = NULL;
    r->n = r->cap = 0;
}

static bool status_ok(const msub_t *s, const event_t *ev)
{
    if (s->n_statuses == 0) return true;
    for (int i = 0; i < s->n_statuses; i++)
        if (strcmp(s->statuses[i], ev->status) == 0) return true;
    return false;
}

static void add_hits(const plist_t *pl, const event_t *ev, matcher_result_t *out,
                     size_t scope_start)
{
    for (uint32_t i = 0; i < pl->n; i++) {
        const msub_t *s = pl->subs[i];
        if (!status_ok(s, ev)) continue;
        if (s->n_patterns > 1) {
            /* it may already have matched through another of its patterns */
            bool seen = false;
            for (size_t j = scope_start; j < out->n && !seen; j++)
                seen = out->hits[j].ref == s;
            if (seen) continue;
        }
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 16;
            out->hits = realloc(out->hits, out->cap * sizeof(*out->hits));
            if (!out->hits) abort();
        }
        matcher_hit_t *h = &out->hits[out->n++];
        memcpy(h->sub_id, s->id, s->id_len + 1);
        memcpy(h->endpoint_id, s->endpoint_id, s->endpoint_len + 1);
        h->payload_mode = s->mode;
        h->ref = s;
    }
}

typedef struct {
    const char *key;
    size_t len;
    uint64_t hash;
} mkey_t;

static void match_scope(const strmap_t *owners, const char *owner_id, const mkey_t *keys,
                        int n_keys, const event_t *ev, matcher_result_t *out)
{
    size_t len = strlen(owner_id);
    const owner_t *o = strmap_get(owners, owner_id, len, strmap_hash(owner_id, len));
    if (!o) return;
    size_t start = out->n;
    for (int k = 0; k < n_keys; k++) {
        const plist_t *pl = strmap_get(&o->patterns, keys[k].key, keys[k].len, keys[k].hash);
        if (pl) add_hits(pl, ev, out, start);
    }
}

size_t matcher_match(matcher_t *m, const event_t *ev, matcher_result_t *out)
{
    char wild[EVENT_TYPE_MAX + 2];
    mkey_t keys[3];
    int n_keys = 0;
    out->n = 0;
    size_t tlen = strlen(ev->type);
    keys[n_keys++] = (mkey_t){ev->type, tlen, strmap_hash(ev->type, tlen)};
    const char *slash = memchr(ev->type, '/', tlen);
    if (slash) {
        size_t elen = (size_t)(slash - ev->type);
        memcpy(wild, ev->type, elen);
        memcpy(wild + elen, "/*", 3);
        keys[n_keys++] = (mkey_t){wild, elen + 2, strmap_hash(wild, elen + 2)};
    }
    keys[n_keys++] = (mkey_t){STAR, 1, star_hash};
    pthread_mutex_lock(&m->lock);
    if (ev->account[0]) match_scope(&m->live->owners[0], ev->account, keys, n_keys, ev, out);
    if (ev->directory[0]) match_scope(&m->live->owners[1], ev->directory, keys, n_keys, ev, out);
    pthread_mutex_unlock(&m->lock);
    return out->n;
}
