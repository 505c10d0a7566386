/* In-memory dedup: a FIFO ring of 16-byte finished ids indexed by a
 * linear-probing hash (backward-shift deletion on eviction), and a chained
 * table of the jobs held in memory. */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char b[16];
} id16_t;

struct dedup {
    /* finished ids */
    id16_t *ring;
    size_t cap, count, oldest; /* ring of 'cap'; 'count' used; index of the oldest */
    uint32_t *index;           /* ring position + 1, 0 = empty */
    size_t index_mask;
    /* held jobs */
    wjob_t **buckets;
    size_t n_buckets, n_held;
};

int dedup_parse_id(const char *id, unsigned char out[16])
{
    for (int i = 0; i < 16; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = id[2 * i + k];
            int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (x < 0) return -1;
            v = v * 16 + x;
        }
        out[i] = (unsigned char)v;
    }
    return id[32] == '\0' ? 0 : -1;
}

static size_t id_hash(const unsigned char *b)
{
    uint64_t h;
    memcpy(&h, b, sizeof(h)); /* the ids are SHA-256 bits already */
    return (size_t)(h ^ (h >> 29));
}

dedup_t *dedup_new(size_t cache_size)
{
    dedup_t *d = calloc(1, sizeof(*d));
    if (!d) abort();
    d->cap = cache_size < 16 ? 16 : cache_size;
    d->ring = malloc(d->cap * sizeof(*d->ring));
    size_t n = 16;
    while (n < d->cap * 2)
        n <<= 1;
    d->index = calloc(n, sizeof(*d->index));
    d->index_mask = n - 1;
    d->n_buckets = 1024;
    d->buckets = calloc(d->n_buckets, sizeof(*d->buckets));
    if (!d->ring || !d->index || !d->buckets) abort();
    return d;
}

void dedup_free(dedup_t *d)
{
    if (!d) return;
    free(d->ring);
    free(d->index);
    free(d->buckets);
    free(d);
}

/* Index slot holding 'b', or the empty slot where it would go. */
static size_t find_slot(const dedup_t *d, const unsigned char *b, bool *found)
{
    size_t i = id_hash(b) & d->index_mask;
    for (;;) {
        uint32_t v = d->index[i];
        if (v == 0) {
            *found = false;
            return i;
        }
        if (memcmp(d->ring[v - 1].b, b, 16) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & d->index_mask;
    }
}

bool dedup_is_finished(const dedup_t *d, const char *id)
{
    unsigned char b[16];
    bool found;
    if (dedup_parse_id(id, b) < 0) return false;
    find_slot(d, b, &found);
    return found;
}

/* Removes index slot 'i' keeping every probe chain intact. */
static void index_delete(dedup_t *d, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & d->index_mask;
        uint32_t v = d->index[j];
        if (v == 0) break;
        size_t home = id_hash(d->ring[v - 1].b) & d->index_mask;
        /* move v back into the hole unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            d->index[i] = v;
            i = j;
        }
    }
    d->index[i] = 0;
}

void dedup_add_finished(dedup_t *d, const char *id)
{
    unsigned char b[16];
    bool found;
    if (dedup_parse_id(id, b) < 0) return;
    find_slot(d, b, &found);
    if (found) return;
    size_t pos;
    if (d->count == d->cap) { /* evict the oldest */
        pos = d->oldest;
        size_t slot = find_slot(d, d->ring[pos].b, &found);
        if (found) index_delete(d, slot);
        d->oldest = (d->oldest + 1) % d->cap;
    } else {
        pos = (d->oldest + d->count) % d->cap;
        d->count++;
    }
    memcpy(d->ring[pos].b, b, 16);
    size_t slot = find_slot(d, b, &found);
    d->index[slot] = (uint32_t)pos + 1;
}

size_t dedup_finished_count(const dedup_t *d)
{
    return d->count;
}

static size_t held_bucket(const dedup_t *d, const char *id)
{
    return (size_t)hookd_fnv1a(id, SIGN_JOB_ID_LEN) & (d->n_buckets - 1);
}

wjob_t *dedup_held(const dedup_t *d, const char *id)
{
    for (wjob_t *j = d->buckets[held_bucket(d, id)]; j; j = j->hnext)
        if (memcmp(j->id, id, SIGN_JOB_ID_LEN) == 0) return j;
    return NULL;
}

static void held_grow(dedup_t *d)
{
    size_t old_n = d->n_buckets;
    wjob_t **old = d->buckets;
    d->n_buckets = old_n * 2;
    d->buckets = calloc(d->n_buckets, sizeof(*d->buckets));
    if (!d->buckets) abort();
    for (size_t i = 0; i < old_n; i++) {
        wjob_t *j = old[i];
        while (j) {
            wjob_t *next = j->hnext;
            size_t b = held_bucket(d, j->id);
            j->hnext = d->buckets[b];
            d->buckets[b] = j;
            j = next;
        }
    }
    free(old);
}

void dedup_hold(dedup_t *d, wjob_t *j)
{
    if (d->n_held >= d->n_buckets) held_grow(d);
    size_t b = held_bucket(d, j->id);
    j->hnext = d->buckets[b];
    d->buckets[b] = j;
    d->n_held++;
}

void dedup_unhold(dedup_t *d, wjob_t *j)
{
    wjob_t **pp = &d->buckets[held_bucket(d, j->id)];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == j) {
            *pp = j->hnext;
            j->hnext = NULL;
            d->n_held--;
            return;
        }
    }
}

size_t dedup_held_count(const dedup_t *d)
{
    return d->n_held;
}

void dedup_each_held(const dedup_t *d, void (*fn)(wjob_t *j, void *ud), void *ud)
{
    for (size_t i = 0; i < d->n_buckets; i++) {
        for (wjob_t *j = d->buckets[i], *next; j; j = next) {
            next = j->hnext;
            fn(j, ud);
        }
    }
}
