/* Metrics: counters, gauges and histograms updated with cheap atomics and
 * rendered in the Prometheus text exposition format at /metrics. */
#ifndef HOOKD_METRICS_H
#define HOOKD_METRICS_H

#include "hookd/util.h"

#include <stdint.h>

typedef struct metric metric_t;

/* Registration returns the metric for (name, labels), creating it on first
 * use; calling again with the same pair returns the same metric, so label
 * values may be discovered at run time. 'labels' is the inside of the braces,
 * e.g. "reason=\"invalid_json\"", or NULL. Metrics live until
 * metrics_shutdown(). Thread-safe. */
metric_t *metrics_counter(const char *name, const char *help, const char *labels);
metric_t *metrics_gauge(const char *name, const char *help, const char *labels);
/* 'buckets' are upper bounds in increasing order (copied); +Inf is implied. */
metric_t *metrics_histogram(const char *name, const char *help, const char *labels,
                            const double *buckets, int n_buckets);

void metric_inc(metric_t *m);
void metric_add(metric_t *m, double v); /* counters: v >= 0 */
void metric_set(metric_t *m, double v); /* gauges */
void metric_observe(metric_t *m, double v);
double metric_value(const metric_t *m); /* counter/gauge value, histogram count */

/* Default latency buckets in seconds (1 ms .. 30 s). */
extern const double metrics_latency_buckets[];
extern const int metrics_latency_buckets_len;

/* Registers a function called at the start of every render, to refresh
 * gauges computed on demand (lag, queue sizes). */
void metrics_on_render(void (*fn)(void *ud), void *ud);

/* Appends the exposition text of every metric to 'out'. */
void metrics_render(strbuf_t *out);

/* Frees every metric (at exit). */
void metrics_shutdown(void);

#endif
