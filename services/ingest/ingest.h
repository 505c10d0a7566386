/* hookd-ingest's shared context: what main.c creates and the concerns
 * (API, pipeline, matcher) use. */
#ifndef HOOKD_INGEST_H
#define HOOKD_INGEST_H

#include "hookd/config.h"
#include "hookd/health.h"
#include "hookd/httpd.h"
#include "hookd/pg.h"

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

typedef struct ingest {
    hookd_config_t cfg;
    struct event_base *base; /* main thread: HTTP API, health, metrics */
    httpd_t *httpd;
    health_t *health;
    PGconn *api_pg;        /* main-thread connection used by API handlers */
    struct api *api;       /* the subscription API (api.c) */
    rd_kafka_t *producer;  /* idempotent producer for jobs and the DLQ */
    struct pipeline *pipeline; /* events -> jobs (pipeline.c), with its own clients */
    volatile int stopping; /* set on the first SIGTERM/SIGINT */
} ingest_t;

#endif
