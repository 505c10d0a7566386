/* Offset tracker: a ring of (offset, done) in consumption order; the commit
 * position is the first entry not done. */
#include "offtrack.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct offtrack {
    int32_t partition;
    uint64_t gen;
    int64_t *offsets; /* ring, indexed by seq & (cap - 1) */
    bool *done;
    size_t cap;        /* power of two */
    uint64_t head;     /* seq of the oldest entry not yet done (or == tail) */
    uint64_t tail;     /* seq the next added offset gets */
    int64_t next;      /* last added offset + 1, -1 before any */
    int64_t committed; /* last position handed to a commit, -1 none */
};

offtrack_t *offtrack_new(int32_t partition, uint64_t gen)
{
    offtrack_t *t = calloc(1, sizeof(*t));
    if (!t) abort();
    t->partition = partition;
    t->gen = gen;
    t->cap = 256;
    t->offsets = malloc(t->cap * sizeof(*t->offsets));
    t->done = malloc(t->cap * sizeof(*t->done));
    if (!t->offsets || !t->done) abort();
    t->next = -1;
    t->committed = -1;
    return t;
}

void offtrack_free(offtrack_t *t)
{
    if (!t) return;
    free(t->offsets);
    free(t->done);
    free(t);
}

int32_t offtrack_partition(const offtrack_t *t)
{
    return t->partition;
}

uint64_t offtrack_gen(const offtrack_t *t)
{
    return t->gen;
}

static void grow(offtrack_t *t)
{
    size_t ncap = t->cap * 2;
    int64_t *no = malloc(ncap * sizeof(*no));
    bool *nd = malloc(ncap * sizeof(*nd));
    if (!no || !nd) abort();
    for (uint64_t s = t->head; s < t->tail; s++) {
        no[s & (ncap - 1)] = t->offsets[s & (t->cap - 1)];
        nd[s & (ncap - 1)] = t->done[s & (t->cap - 1)];
    }
    free(t->offsets);
    free(t->done);
    t->offsets = no;
    t->done = nd;
    t->cap = ncap;
}

uint64_t offtrack_add(offtrack_t *t, int64_t offset)
{
    if (t->tail - t->head == t->cap) grow(t);
    uint64_t seq = t->tail++;
    t->offsets[seq & (t->cap - 1)] = offset;
    t->done[seq & (t->cap - 1)] = false;
    if (offset + 1 > t->next) t->next = offset + 1; /* never backwards */
    return seq;
}

void offtrack_done(offtrack_t *t, uint64_t seq)
{
    if (seq < t->head || seq >= t->tail) return; /* already behind the head */
    t->done[seq & (t->cap - 1)] = true;
    while (t->head < t->tail && t->done[t->head & (t->cap - 1)])
        t->head++;
}

int64_t offtrack_position(const offtrack_t *t)
{
    if (t->head < t->tail) return t->offsets[t->head & (t->cap - 1)];
    return t->next;
}

size_t offtrack_outstanding(const offtrack_t *t)
{
    size_t n = 0;
    for (uint64_t s = t->head; s < t->tail; s++)
        if (!t->done[s & (t->cap - 1)]) n++;
    return n;
}

int64_t offtrack_committed(const offtrack_t *t)
{
    return t->committed;
}

void offtrack_set_committed(offtrack_t *t, int64_t pos)
{
    t->committed = pos;
}
