/* In-flight offset tracker: a ring of (offset, holds) in consumption order;
 * done messages at the head are popped and advance the commit point. */
#include "offsets.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    int64_t offset;
    int32_t holds; /* outstanding produces + the caller's guard */
} entry_t;

struct offsets {
    entry_t *ring;
    size_t cap;     /* power of two */
    uint64_t head;  /* sequence number of the oldest in-flight message */
    uint64_t tail;  /* next sequence number */
    int64_t commit; /* offset to commit, -1 before the first done message */
};

offsets_t *offsets_new(void)
{
    offsets_t *o = calloc(1, sizeof(*o));
    if (!o) abort();
    o->cap = 1024;
    o->ring = malloc(o->cap * sizeof(*o->ring));
    if (!o->ring) abort();
    o->commit = -1;
    return o;
}

void offsets_free(offsets_t *o)
{
    if (!o) return;
    free(o->ring);
    free(o);
}

static void grow(offsets_t *o)
{
    size_t ncap = o->cap * 2;
    entry_t *n = malloc(ncap * sizeof(*n));
    if (!n) abort();
    for (uint64_t s = o->head; s < o->tail; s++)
        n[s & (ncap - 1)] = o->ring[s & (o->cap - 1)];
    free(o->ring);
    o->ring = n;
    o->cap = ncap;
}

uint64_t offsets_begin(offsets_t *o, int64_t offset)
{
    if (o->tail - o->head == o->cap) grow(o);
    uint64_t seq = o->tail++;
    entry_t *e = &o->ring[seq & (o->cap - 1)];
    e->offset = offset;
    e->holds = 1;
    return seq;
}

void offsets_hold(offsets_t *o, uint64_t seq)
{
    if (seq < o->head || seq >= o->tail) return;
    o->ring[seq & (o->cap - 1)].holds++;
}

bool offsets_release(offsets_t *o, uint64_t seq)
{
    if (seq < o->head || seq >= o->tail) return false;
    entry_t *e = &o->ring[seq & (o->cap - 1)];
    if (e->holds <= 0) return false;
    if (--e->holds > 0 || seq != o->head) return true;
    /* the head is done: pop every done message behind it */
    while (o->head < o->tail) {
        entry_t *h = &o->ring[o->head & (o->cap - 1)];
        if (h->holds > 0) break;
        o->commit = h->offset + 1;
        o->head++;
    }
    return true;
}

int64_t offsets_committable(const offsets_t *o)
{
    return o->commit;
}

size_t offsets_in_flight(const offsets_t *o)
{
    return (size_t)(o->tail - o->head);
}

int64_t offsets_offset_of(const offsets_t *o, uint64_t seq)
{
    if (seq < o->head || seq >= o->tail) return -1;
    return o->ring[seq & (o->cap - 1)].offset;
}

uint64_t offsets_seq_expand(const offsets_t *o, uint64_t low, unsigned bits)
{
    uint64_t mask = bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
    return o->head + ((low - o->head) & mask);
}
