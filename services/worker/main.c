/* hookd-worker: consumes delivery jobs and delivers them over HTTPS, signed,
 * batched per endpoint, retried and grey-listed. main() only wires the
 * concerns together:
 *
 *   event loop thread   consumer.c (Kafka) -> delivery.c -> batcher.c -> sender.c (curl)
 *                       scheduler.c (parked jobs), health/metrics HTTP
 *   store thread        store.c: every PostgreSQL read and write, LISTEN hookd_endpoints
 *   subsync thread      subscriptions -> subcache.c
 *   health thread       /readyz checks of PostgreSQL and Kafka */
#include "consumer.h"
#include "dedup.h"
#include "delivery.h"
#include "scheduler.h"
#include "sender.h"
#include "store.h"
#include "subcache.h"
#include "worker.h"

#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/service.h"
#include "hookd/util.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STORE_FLUSH_TIMEOUT_MS 5000

static const char *opt_markdown;

static const hookd_cli_opt_t cli_opts[] = {
    {"--config-markdown", false, "print the configuration table as Markdown and exit",
     &opt_markdown},
    {NULL, false, NULL, NULL},
};

typedef struct {
    worker_t *w;
    struct event *shutdown_ev, *ready_ev;
    int64_t deadline_ms;
} run_t;

static run_t run;

/* A first SIGTERM/SIGINT arrived (also before the loop runs). */
static bool stop_requested(const worker_t *w)
{
    return w->stopping || hookd_shutdown_requested();
}

/* Runs the loop without blocking so signals are seen during start-up. */
static void sleep_ms(worker_t *w, long ms)
{
    event_base_loop(w->base, EVLOOP_NONBLOCK);
    hookd_sleep_ms(ms);
}

/* Waits until hookd-ingest (or a migration Job) has created the schema. */
static int wait_for_schema(worker_t *w)
{
    char err[512];
    for (int i = 0; !stop_requested(w); i++) {
        PGresult *r = pg_query(w->pg, "SELECT max(version) FROM schema_migrations", 0, NULL, err,
                               sizeof(err));
        bool ok = r && !PQgetisnull(r, 0, 0);
        PQclear(r);
        if (ok) return 0;
        if (i % 10 == 0) log_warn("schema_missing hint=\"run hookd-ingest --migrate\"");
        if (!pg_alive(w->pg)) PQreset(w->pg);
        sleep_ms(w, 500);
    }
    return -1;
}

static void on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    if (delivery_settled(w->dlv)) {
        log_info("shutdown_settled");
        event_base_loopexit(w->base, NULL);
    } else if (hookd_mono_ms() >= run.deadline_ms) {
        log_warn("shutdown_timeout in_flight=%d held=%zu", delivery_inflight(w->dlv),
                 delivery_held(w->dlv));
        event_base_loopexit(w->base, NULL);
    }
}

static void on_stop(void *ud)
{
    worker_t *w = ud;
    w->stopping = 1;
    if (!w->dlv) { /* still starting */
        event_base_loopexit(w->base, NULL);
        return;
    }
    log_info("shutdown_begin in_flight=%d held=%zu", delivery_inflight(w->dlv),
             delivery_held(w->dlv));
    consumer_stop(w->cons);
    scheduler_stop(w->sched);
    delivery_begin_shutdown(w->dlv);
    run.deadline_ms = hookd_mono_ms() + w->cfg.shutdown_timeout_s * 1000;
    struct timeval tv = {0, 20 * 1000};
    run.shutdown_ev = event_new(w->base, -1, EV_PERSIST, on_shutdown_tick, w);
    if (!run.shutdown_ev || event_add(run.shutdown_ev, &tv) < 0) event_base_loopexit(w->base, NULL);
}

static void on_ready_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_t *w = arg;
    health_set(w->health, "store", store_connected(w->store),
               store_connected(w->store) ? NULL : "PostgreSQL writer reconnecting");
    bool subs = subsync_loaded(w->subsync) && subsync_connected(w->subsync);
    health_set(w->health, "subscriptions", subs, subs ? NULL : "subscription feed reconnecting");
}

static void make_instance_id(worker_t *w)
{
    char host[64] = "worker";
    unsigned char rnd[4] = {0};
    char hex[9];
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    if (hookd_random(rnd, sizeof(rnd)) < 0) memset(rnd, 0, sizeof(rnd));
    hookd_hex(rnd, sizeof(rnd), hex);
    snprintf(w->instance_id, sizeof(w->instance_id), "%s-%d-%s", host, (int)getpid(), hex);
}

int main(int argc, char **argv)
{
    worker_t w;
    char err[512];
    int rc = 1;
    hookd_signals_t *sig = NULL;
    httpd_probe_t *probes = NULL;
    memset(&w, 0, sizeof(w));
    run.w = &w;
    /* the threads (store, feeds, librdkafka) would each get a malloc arena
     * that keeps freed memory: two arenas keep the resident size down (and
     * see hookd_service_setup on the mmap threshold) */
    mallopt(M_ARENA_MAX, 2);

    int early = hookd_service_setup("hookd-worker", HOOKD_SVC_WORKER, argc, argv, cli_opts,
                                    &w.cfg);
    if (early >= 0) return early;
    if (opt_markdown) {
        hookd_config_print_markdown(stdout);
        rc = 0;
        goto out;
    }
    log_info("starting version=%s", HOOKD_VERSION);
    make_instance_id(&w);

    w.base = event_base_new();
    if (!w.base) goto out;
    sig = hookd_signals_new(w.base, on_stop, NULL, &w);
    if (!sig) goto out;

    w.pg = pg_connect(w.cfg.database_url, "hookd-worker", 0, &w.stopping, err, sizeof(err));
    if (!w.pg) {
        if (stop_requested(&w))
            rc = 0; /* SIGTERM while waiting for PostgreSQL */
        else
            log_error("pg_unavailable error=\"%s\"", err);
        goto out;
    }
    if (wait_for_schema(&w) < 0) {
        rc = 0; /* stopped while waiting */
        goto out;
    }
    PQfinish(w.pg);
    w.pg = NULL;

    w.dedup = dedup_new((size_t)w.cfg.dedup_cache_size);
    w.subs = subcache_new();
    w.subsync = subsync_start(w.cfg.database_url, "hookd-worker-subscriptions", &subcache_feed,
                              w.subs, w.cfg.matcher_reload_s, 30000);
    if (!w.subsync) goto out;
    while (!subsync_loaded(w.subsync) && !stop_requested(&w))
        sleep_ms(&w, 100);
    if (stop_requested(&w)) {
        rc = 0;
        goto out;
    }

    char ua[64];
    snprintf(ua, sizeof(ua), "hookd/%s", HOOKD_VERSION);
    sender_opts_t so = {.timeout_ms = w.cfg.http_timeout_ms,
                        .connect_timeout_ms = w.cfg.connect_timeout_ms,
                        .max_inflight = (int)w.cfg.max_inflight,
                        .allow_private = w.cfg.allow_private_targets,
                        .require_https = w.cfg.require_https,
                        .ca_bundle = w.cfg.ca_bundle,
                        .user_agent = ua};
    w.sender = sender_new(w.base, &so);
    if (!w.sender) {
        log_error("sender_failed");
        goto out;
    }
    w.dlv = delivery_new(&w);
    if (!w.dlv) goto out;
    store_opts_t sto = {
        .database_url = w.cfg.database_url,
        .instance_id = w.instance_id,
        .lease_ms = scheduler_lease_ms(&w.cfg),
        .greylist_threshold = (int)w.cfg.greylist_threshold,
        .greylist_base_s = w.cfg.greylist_base_s,
        .greylist_max_s = w.cfg.greylist_max_s,
        .park_retention_h = w.cfg.park_retention_h,
        .dedup_retention_h = w.cfg.dedup_retention_h,
        .delivery_log_retention_h = w.cfg.delivery_log_retention_h,
        .log_expired = w.cfg.delivery_log != DELIVERY_LOG_NONE,
        .subs = w.subs,
    };
    w.store = store_start(&sto, w.base, delivery_store_done, w.dlv);
    if (!w.store) goto out;
    w.sched = scheduler_new(&w);
    if (!w.sched) goto out;
    w.cons = consumer_new(&w);
    if (!w.cons) goto out;
    w.health = health_start(w.cfg.database_url, "hookd-worker-health", w.consumer);
    if (!w.health) goto out;
    on_ready_tick(-1, 0, &w);
    struct timeval one_s = {1, 0};
    run.ready_ev = event_new(w.base, -1, EV_PERSIST, on_ready_tick, &w);
    if (!run.ready_ev || event_add(run.ready_ev, &one_s) < 0) goto out;

    w.httpd = httpd_new(w.base, w.cfg.worker_http_addr, 65536, err, sizeof(err));
    if (!w.httpd) {
        log_error("http_listen_failed addr=%s error=\"%s\"", w.cfg.worker_http_addr, err);
        goto out;
    }
    httpd_add_standard_routes(w.httpd, health_ready, w.health);
    log_info("listening addr=%s port=%d instance=%s", w.cfg.worker_http_addr,
             httpd_port(w.httpd), w.instance_id);
    if (hookd_service_probes(&w.cfg, w.base, w.health, &probes) < 0) goto out;

    /* (a signal that came during start-up calls on_stop on the first turn) */
    if (event_base_dispatch(w.base) < 0) goto out;
    rc = 0;
out:
    /* stop serving and checking first: they look at the consumer and metrics */
    httpd_probe_stop(probes);
    httpd_free(w.httpd);
    health_stop(w.health);
    if (run.ready_ev) event_free(run.ready_ev);
    if (run.shutdown_ev) event_free(run.shutdown_ev);
    sender_free(w.sender); /* abandons what is still in flight: re-sent after restart */
    if (w.dlv) delivery_abandon(w.dlv); /* ... so its jobs are not done; leases go back */
    store_stop(w.store, STORE_FLUSH_TIMEOUT_MS); /* outcomes become durable, offsets done */
    scheduler_free(w.sched);
    consumer_close(w.cons); /* commits them, leaves the group */
    delivery_free(w.dlv);
    subsync_stop(w.subsync);
    subcache_free(w.subs);
    dedup_free(w.dedup);
    PQfinish(w.pg);
    hookd_signals_free(sig);
    if (w.base) event_base_free(w.base);
    if (rc == 0) log_info("stopped");
    hookd_config_free(&w.cfg);
    metrics_shutdown();
    hookd_log_shutdown();
    return rc;
}
