/* A string-keyed open-addressing hash map (linear probing, backward-shift
 * deletion) for the in-memory indexes of hookd-ingest: no allocation on
 * lookup, keys owned by the caller. */
#ifndef HOOKD_INGEST_STRMAP_H
#define HOOKD_INGEST_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_entry {
    uint64_t hash;   /* 0 marks an empty slot (real hashes are forced non-zero) */
    const char *key; /* not owned: must live as long as the entry */
    uint32_t key_len;
    void *value;
} strmap_entry_t;

typedef struct strmap {
    strmap_entry_t *slots;
    size_t cap; /* power of two, or 0 before the first insert */
    size_t len;
} strmap_t;

/* Hash of a key as the map uses it (never 0). */
uint64_t strmap_hash(const char *key, size_t len);

void strmap_init(strmap_t *m);
/* Frees the slot array (not keys or values). */
void strmap_free(strmap_t *m);

/* Value stored under 'key' (with its strmap_hash 'hash'), or NULL. */
void *strmap_get(const strmap_t *m, const char *key, size_t len, uint64_t hash);

/* Stores 'value' under 'key', replacing any value; returns the previous
 * value or NULL. 'key' is kept by pointer. */
void *strmap_put(strmap_t *m, const char *key, size_t len, uint64_t hash, void *value);

/* Removes 'key'; returns its value or NULL when absent. */
void *strmap_del(strmap_t *m, const char *key, size_t len, uint64_t hash);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].hash) ... */

#endif
