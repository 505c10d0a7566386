/* hookd-ingest: consumes domain events from Kafka, matches them against the
 * subscriptions in PostgreSQL, publishes delivery jobs; serves the API. */
#include "ingest.h"
#include "api.h"
#include "pipeline.h"
#include "replay.h"

#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *opt_migrate, *opt_create_token, *opt_scope, *opt_name, *opt_markdown;
static const char *opt_replay, *opt_reason, *opt_from_offset, *opt_to_topic;

static const hookd_cli_opt_t cli_opts[] = {
    {"--migrate", false, "apply pending schema migrations and exit", &opt_migrate},
    {"--create-token", false, "create an API token for --scope, print it once and exit",
     &opt_create_token},
    {"--scope", true, "token scope: account:<id> or directory:<id>", &opt_scope},
    {"--name", true, "token name (a label for admins)", &opt_name},
    {"--config-markdown", false, "print the configuration table as Markdown and exit",
     &opt_markdown},
    {"--replay-dlq", false,
     "republish the dead letters of HOOKD_DLQ_TOPIC to their source topic, print "
     "\"replayed=N skipped=M\" and exit",
     &opt_replay},
    {"--reason", true, "with --replay-dlq: only dead letters of this reason (e.g. unknown_type)",
     &opt_reason},
    {"--from-offset", true, "with --replay-dlq: start at this offset of every partition",
     &opt_from_offset},
    {"--to-topic", true, "with --replay-dlq: republish to this topic instead", &opt_to_topic},
    {NULL, false, NULL, NULL},
};

static int run_migrations(PGconn *pg)
{
    char err[1024];
    int applied = 0;
    if (pg_migrate(pg, hookd_migrations, &applied, err, sizeof(err)) < 0) {
        log_error("migration_failed error=\"%s\"", err);
        return -1;
    }
    log_info("schema_ready migrations_applied=%d", applied);
    return 0;
}

/* --create-token: prints the token on stdout, nothing else. */
static int create_token(ingest_t *ing)
{
    char err[512];
    if (!opt_scope || (strncmp(opt_scope, "account:", 8) != 0 &&
                       strncmp(opt_scope, "directory:", 10) != 0) ||
        !strchr(opt_scope, ':')[1]) {
        fprintf(stderr, "hookd-ingest: invalid --scope=%s: expected account:<id> or directory:<id>\n",
                opt_scope ? opt_scope : "");
        return 2;
    }
    PGconn *pg = pg_connect(ing->cfg.database_url, "hookd-ingest", 10000, NULL, err, sizeof(err));
    if (!pg) {
        fprintf(stderr, "hookd-ingest: cannot connect to PostgreSQL: %s\n", err);
        return 1;
    }
    int rc = 1;
    if (ing->cfg.auto_migrate && run_migrations(pg) < 0) goto done;
    const char *params[] = {opt_scope, opt_name ? opt_name : ""};
    PGresult *r = pg_query(pg, "SELECT hookd_create_token($1, $2)", 2, params, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "hookd-ingest: cannot create token: %s\n", err);
        goto done;
    }
    printf("%s\n", PQgetvalue(r, 0, 0));
    PQclear(r);
    log_info("token_created scope=%s", opt_scope);
    rc = 0;
done:
    PQfinish(pg);
    return rc;
}

static struct event *stop_tick; /* checks whether the pipeline has drained */

static void on_stop_tick(evutil_socket_t fd, short what, void *ud)
{
    ingest_t *ing = ud;
    (void)fd;
    (void)what;
    if (pipeline_done(ing->pipeline)) event_base_loopexit(ing->base, NULL);
}

/* First SIGTERM/SIGINT: the pipeline drains on its thread while the loop
 * keeps running, so /healthz answers and a second signal exits at once. */
static void on_stop(void *ud)
{
    ingest_t *ing = ud;
    ing->stopping = 1;
    pipeline_begin_stop(ing->pipeline);
    struct timeval tv = {0, 20 * 1000};
    stop_tick = event_new(ing->base, -1, EV_PERSIST, on_stop_tick, ing);
    if (!stop_tick || event_add(stop_tick, &tv) < 0) event_base_loopexit(ing->base, NULL);
}

static rd_kafka_t *new_producer(ingest_t *ing)
{
    char err[512];
    rd_kafka_conf_t *conf = hookd_kafka_conf(&ing->cfg, "hookd-ingest", err, sizeof(err));
    if (!conf) {
        log_error("kafka_config_failed error=\"%s\"", err);
        return NULL;
    }
    if (hookd_kafka_set(conf, "enable.idempotence", "true", err, sizeof(err)) < 0) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka_config_failed error=\"%s\"", err);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        log_error("kafka_producer_failed error=\"%s\"", err);
    }
    return rk;
}

int main(int argc, char **argv)
{
    ingest_t ing;
    char err[512];
    int rc = 1;
    hookd_signals_t *sig = NULL;
    httpd_probe_t *probes = NULL;
    memset(&ing, 0, sizeof(ing));

    int early = hookd_service_setup("hookd-ingest", HOOKD_SVC_INGEST, argc, argv, cli_opts,
                                    &ing.cfg);
    if (early >= 0) return early;
    if (opt_markdown) {
        hookd_config_print_markdown(stdout);
        rc = 0;
        goto out;
    }
    if (opt_create_token) {
        rc = create_token(&ing);
        goto out;
    }
    if (opt_replay || opt_reason || opt_from_offset || opt_to_topic) {
        replay_opts_t ro;
        if (!opt_replay || replay_opts_parse(&ing.cfg, opt_reason, opt_from_offset,
                                             opt_to_topic, &ro, err, sizeof(err)) < 0) {
            fprintf(stderr, "hookd-ingest: %s\n",
                    opt_replay ? err : "--reason, --from-offset and --to-topic need --replay-dlq");
            rc = 2;
            goto out;
        }
        rc = replay_dlq(&ing.cfg, &ro);
        goto out;
    }
    log_info("starting version=%s", HOOKD_VERSION);

    ing.base = event_base_new();
    if (!ing.base) goto out;
    sig = hookd_signals_new(ing.base, on_stop, NULL, &ing);
    if (!sig) goto out;

    ing.api_pg = pg_connect(ing.cfg.database_url, "hookd-ingest", opt_migrate ? 30000 : 0,
                            &ing.stopping, err, sizeof(err));
    if (!ing.api_pg) {
        if (hookd_shutdown_requested()) { /* SIGTERM while waiting for PostgreSQL */
            log_info("stopped");
            rc = 0;
            goto out;
        }
        log_error("pg_unavailable error=\"%s\"", err);
        goto out;
    }
    if (opt_migrate || ing.cfg.auto_migrate) {
        if (run_migrations(ing.api_pg) < 0) goto out;
        if (opt_migrate) {
            rc = 0;
            goto out;
        }
    }

    ing.producer = new_producer(&ing);
    if (!ing.producer) goto out;
    ing.health = health_start(ing.cfg.database_url, "hookd-ingest-health", ing.producer);
    if (!ing.health) goto out;
    ing.pipeline = pipeline_start(&ing, err, sizeof(err));
    if (!ing.pipeline) {
        log_error("pipeline_start_failed error=\"%s\"", err);
        goto out;
    }

    ing.httpd = httpd_new(ing.base, ing.cfg.http_addr, (size_t)ing.cfg.api_max_body_bytes, err,
                          sizeof(err));
    if (!ing.httpd) {
        log_error("http_listen_failed addr=%s error=\"%s\"", ing.cfg.http_addr, err);
        goto out;
    }
    httpd_add_standard_routes(ing.httpd, health_ready, ing.health);
    if (api_register(&ing) < 0) goto out;
    log_info("listening addr=%s port=%d", ing.cfg.http_addr, httpd_port(ing.httpd));
    if (hookd_service_probes(&ing.cfg, ing.base, ing.health, &probes) < 0) goto out;

    if (event_base_dispatch(ing.base) < 0) goto out;
    log_info("stopped");
    rc = pipeline_failed(ing.pipeline) ? 1 : 0;
out:
    httpd_probe_stop(probes);
    httpd_free(ing.httpd);
    api_free(&ing);
    pipeline_stop(ing.pipeline);
    health_stop(ing.health);
    if (ing.producer) {
        rd_kafka_flush(ing.producer, 5000);
        rd_kafka_destroy(ing.producer);
    }
    PQfinish(ing.api_pg);
    hookd_signals_free(sig);
    if (stop_tick) event_free(stop_tick);
    if (ing.base) event_base_free(ing.base);
    hookd_config_free(&ing.cfg);
    metrics_shutdown();
    hookd_log_shutdown();
    return rc;
}
