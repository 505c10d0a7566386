/* hookd-worker's shared context: what main.c creates and the concerns
 * (consumer, batcher, sender, grey-list, scheduler) use. */
#ifndef HOOKD_WORKER_H
#define HOOKD_WORKER_H

#include "hookd/config.h"
#include "hookd/health.h"
#include "hookd/httpd.h"
#include "hookd/pg.h"

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

typedef struct worker {
    hookd_config_t cfg;
    struct event_base *base; /* main thread: consumer, sender, batcher, health, metrics */
    httpd_t *httpd;
    health_t *health;
    PGconn *pg;            /* main-thread connection (start-up checks) */
    rd_kafka_t *consumer;  /* jobs topic consumer */
    volatile int stopping; /* set on the first SIGTERM/SIGINT */
} worker_t;

#endif
