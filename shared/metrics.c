/* Prometheus metrics registry: lock-free updates, locked registration and
 * rendering, families grouped under one HELP/TYPE header. */
#include "hookd/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind_t;

struct metric {
    kind_t kind;
    char *name, *help, *labels;
    _Atomic uint64_t bits; /* counter/gauge value as double bits; histogram sum */
    _Atomic uint64_t count;
    int n_buckets;
    double *bounds;
    _Atomic uint64_t *buckets; /* non-cumulative counts per bucket, +Inf last */
    struct metric *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static metric_t *head, *tail;

#define MAX_RENDER_HOOKS 16
static struct {
    void (*fn)(void *);
    void *ud;
} hooks[MAX_RENDER_HOOKS];
static int n_hooks;

const double metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10,   30};
const int metrics_latency_buckets_len = HOOKD_ARRAY_LEN(metrics_latency_buckets);

static inline double bits_to_d(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static inline uint64_t d_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

static void atomic_add_double(_Atomic uint64_t *bits, double v)
{
    uint64_t old = atomic_load_explicit(bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(bits, &old, d_to_bits(bits_to_d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static metric_t *reg(kind_t kind, const char *name, const char *help, const char *labels,
                     const double *bounds, int n)
{
    pthread_mutex_lock(&reg_lock);
    for (metric_t *m = head; m; m = m->next) {
        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels ? labels : "") == 0) {
            pthread_mutex_unlock(&reg_lock);
            return m;
        }
    }
    metric_t *m = calloc(1, sizeof(*m));
    if (!m) abort();
    m->kind = kind;
    m->name = strdup(name);
    m->help = strdup(help);
    m->labels = strdup(labels ? labels : "");
    if (kind == KIND_HISTOGRAM) {
        m->n_buckets = n;
        m->bounds = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        m->buckets = calloc((size_t)n + 1, sizeof(*m->buckets));
        if (!m->bounds || !m->buckets) abort();
        memcpy(m->bounds, bounds, sizeof(double) * (size_t)n);
    }
    /* keep a family together: insert after the last metric of the same name */
    metric_t *after = NULL;
    for (metric_t *x = head; x; x = x->next)
        if (strcmp(x->name, name) == 0) after = x;
    if (after) {
        m->next = after->next;
        after->next = m;
        if (tail == after) tail = m;
    } else if (tail) {
        tail->next = m;
        tail = m;
    } else {
        head = tail = m;
    }
    pthread_mutex_unlock(&reg_lock);
    return m;
}

metric_t *metrics_counter(const char *name, const char *help, const char *labels)
{
    return reg(KIND_COUNTER, name, help, labels, NULL, 0);
}

metric_t *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return reg(KIND_GAUGE, name, help, labels, NULL, 0);
}

metric_t *metrics_histogram(const char *name, const char *help, const char *labels,
                            const double *buckets, int n_buckets)
{
    return reg(KIND_HISTOGRAM, name, help, labels, buckets, n_buckets);
}

void metric_inc(metric_t *m)
{
    atomic_add_double(&m->bits, 1.0);
}

void metric_add(metric_t *m, double v)
{
    atomic_add_double(&m->bits, v);
}

void metric_set(metric_t *m, double v)
{
    atomic_store_explicit(&m->bits, d_to_bits(v), memory_order_relaxed);
}

void metric_observe(metric_t *m, double v)
{
    int i = 0;
    while (i < m->n_buckets && v > m->bounds[i]) i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    atomic_add_double(&m->bits, v);
}

double metric_value(const metric_t *m)
{
    if (m->kind == KIND_HISTOGRAM) return (double)atomic_load(&m->count);
    return bits_to_d(atomic_load(&((metric_t *)m)->bits));
}

void metrics_on_render(void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&reg_lock);
    if (n_hooks < MAX_RENDER_HOOKS) {
        hooks[n_hooks].fn = fn;
        hooks[n_hooks].ud = ud;
        n_hooks++;
    }
    pthread_mutex_unlock(&reg_lock);
}

static void put_number(strbuf_t *out, double v)
{
    if (isinf(v)) {
        strbuf_puts(out, v > 0 ? "+Inf" : "-Inf");
    } else if (isnan(v)) {
        strbuf_puts(out, "NaN");
    } else if (v == (double)(int64_t)v && fabs(v) < 9e15) {
        strbuf_printf(out, "%lld", (long long)v);
    } else {
        strbuf_printf(out, "%.9g", v);
    }
}

/* name{labels[,extra]} */
static void put_series(strbuf_t *out, const metric_t *m, const char *suffix, const char *extra)
{
    strbuf_puts(out, m->name);
    strbuf_puts(out, suffix);
    if (m->labels[0] || extra) {
        strbuf_putc(out, '{');
        strbuf_puts(out, m->labels);
        if (m->labels[0] && extra) strbuf_putc(out, ',');
        if (extra) strbuf_puts(out, extra);
        strbuf_putc(out, '}');
    }
    strbuf_putc(out, ' ');
}

void metrics_render(strbuf_t *out)
{
    pthread_mutex_lock(&reg_lock);
    int nh = n_hooks;
    pthread_mutex_unlock(&reg_lock);
    for (int i = 0; i < nh; i++) hooks[i].fn(hooks[i].ud);

    pthread_mutex_lock(&reg_lock);
    const char *family = NULL;
    for (metric_t *m = head; m; m = m->next) {
        if (!family || strcmp(family, m->name) != 0) {
            static const char *types[] = {"counter", "gauge", "histogram"};
            strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                          types[m->kind]);
            family = m->name;
        }
        if (m->kind != KIND_HISTOGRAM) {
            put_series(out, m, "", NULL);
            put_number(out, bits_to_d(atomic_load(&m->bits)));
            strbuf_putc(out, '\n');
            continue;
        }
        uint64_t cum = 0;
        char le[64];
        for (int b = 0; b <= m->n_buckets; b++) {
            cum += atomic_load(&m->buckets[b]);
            if (b < m->n_buckets) {
                strbuf_t tmp = {0};
                strbuf_init(&tmp, 32);
                put_number(&tmp, m->bounds[b]);
                snprintf(le, sizeof(le), "le=\"%s\"", tmp.data);
                strbuf_free(&tmp);
            } else {
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            }
            put_series(out, m, "_bucket", le);
            strbuf_printf(out, "%llu\n", (unsigned long long)cum);
        }
        put_series(out, m, "_sum", NULL);
        put_number(out, bits_to_d(atomic_load(&m->bits)));
        strbuf_putc(out, '\n');
        put_series(out, m, "_count", NULL);
        strbuf_printf(out, "%llu\n", (unsigned long long)atomic_load(&m->count));
    }
    pthread_mutex_unlock(&reg_lock);
}

void metrics_shutdown(void)
{
    pthread_mutex_lock(&reg_lock);
    metric_t *m = head;
    while (m) {
        metric_t *next = m->next;
        free(m->name);
        free(m->help);
        free(m->labels);
        free(m->bounds);
        free((void *)m->buckets);
        free(m);
        m = next;
    }
    head = tail = NULL;
    n_hooks = 0;
    pthread_mutex_unlock(&reg_lock);
}
