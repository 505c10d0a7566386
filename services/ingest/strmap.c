/* String-keyed hash map for hookd-ingest's matcher and catalog indexes:
 * linear probing over a power-of-two table, backward-shift deletion. */
#include "strmap.h"

#include "hookd/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

uint64_t strmap_hash(const char *key, size_t len)
{
    uint64_t h = hookd_fnv1a(key, len);
    h ^= h >> 29; /* fnv's low bits are weak for short keys */
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h ? h : 1;
}

void strmap_init(strmap_t *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void strmap_free(strmap_t *m)
{
    free(m->slots);
    strmap_init(m);
}

static inline int key_eq(const strmap_entry_t *e, const char *key, size_t len, uint64_t hash)
{
    return e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0;
}

void *strmap_get(const strmap_t *m, const char *key, size_t len, uint64_t hash)
{
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const strmap_entry_t *e = &m->slots[i];
        if (!e->hash) return NULL;
        if (key_eq(e, key, len, hash)) return e->value;
    }
}

static void grow(strmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 8;
    strmap_entry_t *ns = calloc(ncap, sizeof(*ns));
    if (!ns) abort();
    for (size_t i = 0; i < m->cap; i++) {
        strmap_entry_t *e = &m->slots[i];
        if (!e->hash) continue;
        size_t j = e->hash & (ncap - 1);
        while (ns[j].hash)
            j = (j + 1) & (ncap - 1);
        ns[j] = *e;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
}

void *strmap_put(strmap_t *m, const char *key, size_t len, uint64_t hash, void *value)
{
    if ((m->len + 1) * 4 > m->cap * 3) grow(m);
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        strmap_entry_t *e = &m->slots[i];
        if (!e->hash) {
            e->hash = hash;
            e->key = key;
            e->key_len = (uint32_t)len;
            e->value = value;
            m->len++;
            return NULL;
        }
        if (key_eq(e, key, len, hash)) {
            void *old = e->value;
            e->key = key;
            e->value = value;
            return old;
        }
    }
}

void *strmap_del(strmap_t *m, const char *key, size_t len, uint64_t hash)
{
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    for (;; i = (i + 1) & mask) {
        strmap_entry_t *e = &m->slots[i];
        if (!e->hash) return NULL;
        if (key_eq(e, key, len, hash)) break;
    }
    void *old = m->slots[i].value;
    /* backward shift: move later members of the probe run into the hole */
    size_t hole = i;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        strmap_entry_t *e = &m->slots[j];
        if (!e->hash) break;
        size_t home = e->hash & mask;
        /* e may move to 'hole' unless its home lies cyclically in (hole, j] */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            m->slots[hole] = *e;
            hole = j;
        }
    }
    memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
    m->len--;
    return old;
}
