/* Per-partition tracker of consumed messages whose output (jobs, dead
 * letters) is not yet acknowledged by the broker, and of the offset that is
 * safe to commit: the first offset not yet fully done. Single-threaded. */
#ifndef HOOKD_INGEST_OFFSETS_H
#define HOOKD_INGEST_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct offsets offsets_t;

offsets_t *offsets_new(void);
void offsets_free(offsets_t *o);

/* Registers the consumed message at 'offset' (strictly increasing per
 * partition) holding one hold: the caller releases it once everything for
 * the message has been produced. Returns the message's sequence number
 * (consecutive from 0). */
uint64_t offsets_begin(offsets_t *o, int64_t offset);

/* Adds a hold to message 'seq' (one per message produced for it). */
void offsets_hold(offsets_t *o, uint64_t seq);

/* Releases one hold of 'seq'. A message with no holds left is done.
 * Returns false (and does nothing) when 'seq' is not in flight. */
bool offsets_release(offsets_t *o, uint64_t seq);

/* Offset to commit: one past the last message such that it and every
 * message before it are done; -1 when no message has been done yet. */
int64_t offsets_committable(const offsets_t *o);

/* Messages consumed but not yet committable (done or not). */
size_t offsets_in_flight(const offsets_t *o);

/* Offset of in-flight message 'seq', or -1. */
int64_t offsets_offset_of(const offsets_t *o, uint64_t seq);

/* Rebuilds a full sequence number from its low 'bits' bits, assuming it is
 * in flight (sequence numbers travel truncated in message opaques). */
uint64_t offsets_seq_expand(const offsets_t *o, uint64_t low, unsigned bits);

#endif
