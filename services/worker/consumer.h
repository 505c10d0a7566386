/* Consumer of the jobs topic (HOOKD_JOBS_TOPIC, group HOOKD_WORKER_GROUP,
 * read_committed, cooperative-sticky, no auto commit, no auto offset
 * store) driven by the event loop: librdkafka writes to a pipe when its
 * queue becomes non-empty (rd_kafka_queue_io_event_enable), and a short
 * timer polls as a safety net. Each assigned partition has an offset
 * tracker; every HOOKD_COMMIT_INTERVAL_MS the position up to the lowest job
 * not yet done (terminal or durably parked in PostgreSQL) is committed.
 * While too many jobs are held in memory no messages are taken (librdkafka
 * stops fetching once its bounded prefetch queue is full). */
#ifndef HOOKD_WORKER_CONSUMER_H
#define HOOKD_WORKER_CONSUMER_H

#include "worker.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct consumer consumer_t;

/* Creates the consumer (w->consumer), subscribes and hooks it into
 * w->base. Jobs go to w->dlv. Returns NULL (logged) on failure. */
consumer_t *consumer_new(worker_t *w);

/* The job at (partition, gen, seq) is done: its offset may be committed. */
void consumer_job_done(consumer_t *c, int32_t partition, uint64_t gen, uint64_t seq);
/* Whether the assignment (partition, gen) is still ours. */
bool consumer_alive(const consumer_t *c, int32_t partition, uint64_t gen);

/* Takes messages again soon (memory was freed). */
void consumer_kick(consumer_t *c);

/* Stops taking messages (first SIGTERM). */
void consumer_stop(consumer_t *c);
/* Commits what is done, synchronously. */
void consumer_commit_sync(consumer_t *c);
/* Commits, leaves the group, destroys the client and frees everything. */
void consumer_close(consumer_t *c);

#endif
