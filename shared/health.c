/* Dependency monitor behind /readyz. */
#include "hookd/health.h"
#include "hookd/json.h"
#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/pg.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HEALTH_MAX_CHECKS 16

struct health {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
    char *database_url, *app_name;
    rd_kafka_t *rk;
    atomic_bool pg_ok, kafka_ok;
    struct {
        char name[48];
        bool ok;
        char detail[128];
    } checks[HEALTH_MAX_CHECKS];
    int n_checks;
    metric_t *up_pg, *up_kafka;
};

static void *monitor(void *arg)
{
    health_t *h = arg;
    PGconn *pg = NULL;
    char err[256];
    bool was_pg = true, was_kafka = true, kafka_failed_once = false;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        pthread_mutex_unlock(&h->lock);
        if (!pg_alive(pg)) {
            PQfinish(pg);
            pg = pg_connect(h->database_url, h->app_name, 1, NULL, err, sizeof(err));
        }
        bool pg_ok = false;
        if (pg) {
            PGresult *r = pg_query(pg, "SELECT 1", 0, NULL, err, sizeof(err));
            pg_ok = r != NULL;
            PQclear(r);
        }
        /* one lost metadata answer (a broker going down mid-request) is not
         * an outage: Kafka is down after two failed checks in a row */
        bool kafka_ok = h->rk ? hookd_kafka_ping(h->rk, 2000) : true;
        if (!kafka_ok && was_kafka && !kafka_failed_once) {
            kafka_failed_once = true;
            kafka_ok = true;
        } else if (kafka_ok) {
            kafka_failed_once = false;
        }
        atomic_store(&h->pg_ok, pg_ok);
        atomic_store(&h->kafka_ok, kafka_ok);
        metric_set(h->up_pg, pg_ok);
        metric_set(h->up_kafka, kafka_ok);
        if (pg_ok != was_pg) {
            if (pg_ok) log_info("dependency_up name=postgres");
            else log_warn("dependency_down name=postgres error=\"%s\"", err);
        }
        if (kafka_ok != was_kafka) {
            if (kafka_ok) log_info("dependency_up name=kafka");
            else log_warn("dependency_down name=kafka");
        }
        was_pg = pg_ok;
        was_kafka = kafka_ok;

        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_mutex_lock(&h->lock);
        if (!h->stop) pthread_cond_timedwait(&h->cond, &h->lock, &ts);
    }
    pthread_mutex_unlock(&h->lock);
    PQfinish(pg);
    return NULL;
}

health_t *health_start(const char *database_url, const char *app_name, rd_kafka_t *rk)
{
    health_t *h = calloc(1, sizeof(*h));
    if (!h) abort();
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->database_url = strdup(database_url);
    h->app_name = strdup(app_name);
    h->rk = rk;
    atomic_store(&h->pg_ok, false);
    atomic_store(&h->kafka_ok, false);
    h->up_pg = metrics_gauge("hookd_dependency_up", "Whether a dependency answers (1) or not (0)",
                             "dependency=\"postgres\"");
    h->up_kafka = metrics_gauge("hookd_dependency_up", "Whether a dependency answers (1) or not (0)",
                                "dependency=\"kafka\"");
    if (pthread_create(&h->thread, NULL, monitor, h) != 0) {
        free(h->database_url);
        free(h->app_name);
        free(h);
        return NULL;
    }
    return h;
}

void health_set(health_t *h, const char *name, bool ok, const char *detail)
{
    pthread_mutex_lock(&h->lock);
    int i;
    for (i = 0; i < h->n_checks; i++)
        if (strcmp(h->checks[i].name, name) == 0) break;
    if (i == h->n_checks && h->n_checks < HEALTH_MAX_CHECKS) h->n_checks++;
    if (i < HEALTH_MAX_CHECKS) {
        snprintf(h->checks[i].name, sizeof(h->checks[i].name), "%s", name);
        h->checks[i].ok = ok;
        snprintf(h->checks[i].detail, sizeof(h->checks[i].detail), "%s",
                 detail ? detail : ok ? "ok" : "down");
    }
    pthread_mutex_unlock(&h->lock);
}

bool health_pg_ok(health_t *h)
{
    return atomic_load(&h->pg_ok);
}

bool health_kafka_ok(health_t *h)
{
    return atomic_load(&h->kafka_ok);
}

bool health_ready(strbuf_t *checks, void *ud)
{
    health_t *h = ud;
    bool pg = atomic_load(&h->pg_ok), kafka = atomic_load(&h->kafka_ok);
    bool ok = pg && kafka;
    strbuf_printf(checks, "{\"postgres\":\"%s\",\"kafka\":\"%s\"", pg ? "ok" : "down",
                  kafka ? "ok" : "down");
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < h->n_checks; i++) {
        strbuf_putc(checks, ',');
        json_escape(checks, h->checks[i].name, strlen(h->checks[i].name));
        strbuf_putc(checks, ':');
        json_escape(checks, h->checks[i].detail, strlen(h->checks[i].detail));
        if (!h->checks[i].ok) ok = false;
    }
    pthread_mutex_unlock(&h->lock);
    strbuf_putc(checks, '}');
    return ok;
}

void health_stop(health_t *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    h->stop = 1;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h->database_url);
    free(h->app_name);
    free(h);
}
