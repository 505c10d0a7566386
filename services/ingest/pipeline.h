/* The ingest pipeline: one thread that consumes events from Kafka, parses and
 * validates them, matches them against the subscription index, publishes one
 * delivery job per match (or a dead letter), waits for the broker to
 * acknowledge every message produced for an event, and only then commits its
 * offset (SPEC §3, §4, §6). Owns the consumer, the job producer, the matcher
 * with its subsync feed and the event type catalog. */
#ifndef HOOKD_INGEST_PIPELINE_H
#define HOOKD_INGEST_PIPELINE_H

#include "ingest.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct pipeline pipeline_t;

/* Creates the Kafka clients, starts the subscription and catalog feeds and
 * the pipeline thread, and returns at once; consumption starts once the
 * subscriptions and the catalog are loaded (reported as the "subscriptions"
 * and "catalog" checks of ing->health). Uses ing->cfg and ing->health, which
 * must outlive it. Returns NULL with a reason in 'err'. */
pipeline_t *pipeline_start(ingest_t *ing, char *err, size_t err_size);

/* True after a fatal error (e.g. a fatal idempotent producer error). The
 * pipeline then stops consuming and sends SIGTERM to the process so the
 * main loop ends; main exits non-zero. */
bool pipeline_failed(const pipeline_t *p);

/* Tells the pipeline thread to stop consuming and drain (as pipeline_stop
 * describes) and returns at once; pipeline_done() turns true when the thread
 * has finished. Lets the main loop keep running meanwhile (health, metrics,
 * a second signal). NULL is a no-op. Main thread. */
void pipeline_begin_stop(pipeline_t *p);
bool pipeline_done(const pipeline_t *p);

/* Stops consuming, waits up to HOOKD_SHUTDOWN_TIMEOUT_S for the broker to
 * acknowledge what was produced, commits what is done, leaves the group and
 * frees everything. NULL is a no-op. */
void pipeline_stop(pipeline_t *p);

#endif
