/* Readiness: a monitor thread that checks PostgreSQL (SELECT 1 on its own
 * connection) and Kafka (broker metadata) every second, plus named checks a
 * service sets itself. Feeds /readyz and the hookd_up gauges. */
#ifndef HOOKD_HEALTH_H
#define HOOKD_HEALTH_H

#include "hookd/util.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>

typedef struct health health_t;

/* Starts monitoring. 'rk' (not owned, may be NULL) is pinged for Kafka;
 * 'database_url' for PostgreSQL. Returns NULL on thread creation failure. */
health_t *health_start(const char *database_url, const char *app_name, rd_kafka_t *rk);

/* Sets a named check (copied): ok=false makes /readyz answer 503. The
 * detail (may be NULL) is shown instead of "ok"/"down". Thread-safe. */
void health_set(health_t *h, const char *name, bool ok, const char *detail);

/* True when PostgreSQL answered within the last few seconds. */
bool health_pg_ok(health_t *h);
bool health_kafka_ok(health_t *h);

/* httpd_ready_fn: writes {"postgres":"ok","kafka":"ok",...} and returns
 * whether every check is ok. 'ud' is the health_t. */
bool health_ready(strbuf_t *checks, void *ud);

/* Stops the thread and frees everything. */
void health_stop(health_t *h);

#endif
