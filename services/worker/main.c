/* hookd-worker: consumes delivery jobs and delivers them over HTTPS, signed,
 * batched per endpoint, retried and grey-listed. */
#include "worker.h"

#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *opt_markdown;

static const hookd_cli_opt_t cli_opts[] = {
    {"--config-markdown", false, "print the configuration table as Markdown and exit",
     &opt_markdown},
    {NULL, false, NULL, NULL},
};

static void on_stop(void *ud)
{
    worker_t *w = ud;
    w->stopping = 1;
    event_base_loopexit(w->base, NULL);
}

/* Waits until hookd-ingest (or a migration Job) has created the schema. */
static int wait_for_schema(worker_t *w)
{
    char err[512];
    for (int i = 0; !w->stopping; i++) {
        PGresult *r = pg_query(w->pg, "SELECT max(version) FROM schema_migrations", 0, NULL, err,
                               sizeof(err));
        bool ok = r && !PQgetisnull(r, 0, 0);
        PQclear(r);
        if (ok) return 0;
        if (i % 10 == 0) log_warn("schema_missing hint=\"run hookd-ingest --migrate\"");
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static rd_kafka_t *new_consumer(worker_t *w)
{
    char err[512];
    rd_kafka_conf_t *conf = hookd_kafka_conf(&w->cfg, "hookd-worker", err, sizeof(err));
    if (!conf) {
        log_error("kafka_config_failed error=\"%s\"", err);
        return NULL;
    }
    if (hookd_kafka_set(conf, "group.id", w->cfg.worker_group, err, sizeof(err)) < 0 ||
        hookd_kafka_set(conf, "isolation.level", "read_committed", err, sizeof(err)) < 0 ||
        hookd_kafka_set(conf, "enable.auto.commit", "false", err, sizeof(err)) < 0) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka_config_failed error=\"%s\"", err);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka_consumer_failed error=\"%s\"", err);
    }
    return rk;
}

int main(int argc, char **argv)
{
    worker_t w;
    char err[512];
    int rc = 1;
    hookd_signals_t *sig = NULL;
    memset(&w, 0, sizeof(w));

    int early = hookd_service_setup("hookd-worker", HOOKD_SVC_WORKER, argc, argv, cli_opts,
                                    &w.cfg);
    if (early >= 0) return early;
    if (opt_markdown) {
        hookd_config_print_markdown(stdout);
        rc = 0;
        goto out;
    }
    log_info("starting version=%s", HOOKD_VERSION);

    w.base = event_base_new();
    if (!w.base) goto out;
    sig = hookd_signals_new(w.base, on_stop, NULL, &w);
    if (!sig) goto out;

    w.pg = pg_connect(w.cfg.database_url, "hookd-worker", 0, &w.stopping, err, sizeof(err));
    if (!w.pg) {
        log_error("pg_unavailable error=\"%s\"", err);
        goto out;
    }
    if (wait_for_schema(&w) < 0) goto out;

    w.consumer = new_consumer(&w);
    if (!w.consumer) goto out;
    w.health = health_start(w.cfg.database_url, "hookd-worker-health", w.consumer);
    if (!w.health) goto out;

    w.httpd = httpd_new(w.base, w.cfg.worker_http_addr, 65536, err, sizeof(err));
    if (!w.httpd) {
        log_error("http_listen_failed addr=%s error=\"%s\"", w.cfg.worker_http_addr, err);
        goto out;
    }
    httpd_add_standard_routes(w.httpd, health_ready, w.health);
    log_info("listening addr=%s port=%d", w.cfg.worker_http_addr, httpd_port(w.httpd));

    if (event_base_dispatch(w.base) < 0) goto out;
    log_info("stopped");
    rc = 0;
out:
    httpd_free(w.httpd);
    health_stop(w.health);
    if (w.consumer) {
        rd_kafka_consumer_close(w.consumer);
        rd_kafka_destroy(w.consumer);
    }
    PQfinish(w.pg);
    hookd_signals_free(sig);
    if (w.base) event_base_free(w.base);
    hookd_config_free(&w.cfg);
    metrics_shutdown();
    hookd_log_shutdown();
    return rc;
}
