/* Common service start-up: config, help, version, log, signals. */
#include "hookd/service.h"
#include "hookd/kafka.h"
#include "hookd/log.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <json-c/json_c_version.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void hookd_service_print_version(const char *name)
{
    int pqv = PQlibVersion();
    printf("%s %s (librdkafka %s, libpq %d.%d, libcurl %s, json-c %s, libevent %s)\n", name,
           HOOKD_VERSION, rd_kafka_version_str(), pqv / 10000, pqv % 10000,
           curl_version_info(CURLVERSION_NOW)->version, json_c_version(),
           event_get_version());
}

/* Registers the password of a database URL (and the URL itself) so that no
 * log line can print them. */
static void register_secrets(const hookd_config_t *cfg)
{
    const char *url = cfg->database_url;
    hookd_log_add_secret(url);
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (strcmp(o->keyword, "password") == 0 && o->val) hookd_log_add_secret(o->val);
        PQconninfoFree(opts);
    }
    for (int i = 0; i < cfg->kafka_props_len; i++)
        if (cfg->kafka_props[i].secret) hookd_log_add_secret(cfg->kafka_props[i].value);
}

int hookd_service_setup(const char *name, unsigned service, int argc, char **argv,
                        const hookd_cli_opt_t *opts, hookd_config_t *cfg)
{
    char err[512];
    bool help = false, version = false;
    hookd_log_init(name, HOOKD_LOG_INFO, 0);
    if (hookd_config_load(cfg, service, argc, argv, NULL, opts, &help, &version, err,
                          sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        hookd_config_free(cfg);
        return 2;
    }
    if (help) {
        hookd_config_print_help(stdout, name, service, opts);
        hookd_config_free(cfg);
        return 0;
    }
    if (version) {
        hookd_service_print_version(name);
        hookd_config_free(cfg);
        return 0;
    }
    if (hookd_kafka_check_config(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        hookd_config_free(cfg);
        return 2;
    }
    hookd_log_init(name, cfg->log_level, cfg->log_format == LOG_FORMAT_JSON);
    register_secrets(cfg);
    hookd_config_log(cfg, service);
    return -1;
}

struct hookd_signals {
    struct event *term, *intr;
    void (*on_stop)(void *);
    void (*on_force)(void *);
    void *ud;
    int count;
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    hookd_signals_t *s = arg;
    s->count++;
    if (s->count == 1) {
        log_info("shutdown_requested signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        s->on_stop(s->ud);
        return;
    }
    log_warn("shutdown_forced signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (s->on_force) {
        s->on_force(s->ud);
    } else {
        _exit(1);
    }
}

hookd_signals_t *hookd_signals_new(struct event_base *base, void (*on_stop)(void *ud),
                                   void (*on_force)(void *ud), void *ud)
{
    hookd_signals_t *s = calloc(1, sizeof(*s));
    if (!s) abort();
    signal(SIGPIPE, SIG_IGN);
    s->on_stop = on_stop;
    s->on_force = on_force;
    s->ud = ud;
    s->term = evsignal_new(base, SIGTERM, on_signal, s);
    s->intr = evsignal_new(base, SIGINT, on_signal, s);
    if (!s->term || !s->intr || evsignal_add(s->term, NULL) < 0 ||
        evsignal_add(s->intr, NULL) < 0) {
        hookd_signals_free(s);
        return NULL;
    }
    return s;
}

void hookd_signals_free(hookd_signals_t *s)
{
    if (!s) return;
    if (s->term) event_free(s->term);
    if (s->intr) event_free(s->intr);
    free(s);
}
