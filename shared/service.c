/* Common service start-up: config, help, version, log, signals. */
#include "hookd/service.h"
#include "hookd/kafka.h"
#include "hookd/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <event2/event.h>
#include <json-c/json_c_version.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <malloc.h>
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

static void install_raw_handlers(void);

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

/* Many connections (receivers, brokers, PostgreSQL): use the hard limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) log_warn("fd_limit_unchanged");
    }
}

int hookd_service_setup(const char *name, unsigned service, int argc, char **argv,
                        const hookd_cli_opt_t *opts, hookd_config_t *cfg)
{
    char err[512];
    bool help = false, version = false;
    /* glibc raises its mmap threshold each time a large block is freed, up
     * to 32 MiB, after which librdkafka's fetch buffers and PostgreSQL
     * results come from the heap and stay resident once freed: a fixed
     * 128 KiB threshold gives them back at once (the bench's peak RSS:
     * about 10 MiB less for either service) */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    hookd_log_init(name, HOOKD_LOG_INFO, 0);
    install_raw_handlers();
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
    raise_fd_limit();
    hookd_config_log(cfg, service);
    return -1;
}

/* Signals are caught by a plain handler from the very start (so a SIGTERM
 * while we still wait for PostgreSQL stops the process), which counts them
 * and wakes the event loop through a pipe once it runs. */
static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t last_signal;
static int signal_pipe[2] = {-1, -1};

static volatile sig_atomic_t exit_on_second = 1;
static char forced_line[768] = "shutdown_forced\n";
static volatile sig_atomic_t forced_len = 16;

/* Pre-formats the log line the signal handler writes on a forced exit (it
 * cannot format or allocate itself). */
static void prepare_forced_line(void)
{
    char line[sizeof(forced_line) - 1];
    size_t n = hookd_log_format_line(line, sizeof(line), HOOKD_LOG_WARN,
                                     "shutdown_forced reason=second_signal");
    forced_len = 0;
    memcpy(forced_line, line, n);
    forced_line[n] = '\n';
    forced_len = (sig_atomic_t)(n + 1);
}

static void on_raw_signal(int sig)
{
    int saved = errno;
    signal_count++;
    last_signal = sig;
    /* A second signal ends the process at once, even while the event loop is
     * not running any more (final flushes): uncommitted work is replayed. */
    if (signal_count >= 2 && exit_on_second) {
        ssize_t w = write(STDERR_FILENO, forced_line, (size_t)forced_len);
        (void)w;
        _exit(1);
    }
    if (signal_pipe[1] >= 0) {
        ssize_t w = write(signal_pipe[1], "s", 1);
        (void)w;
    }
    errno = saved;
}

static void install_raw_handlers(void)
{
    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        signal_pipe[0] = signal_pipe[1] = -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_raw_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool hookd_shutdown_requested(void)
{
    return signal_count > 0;
}

struct hookd_signals {
    struct event *ev;
    void (*on_stop)(void *);
    void (*on_force)(void *);
    void *ud;
    int handled;
};

static void on_signal_pipe(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    hookd_signals_t *s = arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    const char *name = last_signal == SIGINT ? "SIGINT" : "SIGTERM";
    while (s->handled < signal_count) {
        s->handled++;
        if (s->handled == 1) {
            log_info("shutdown_requested signal=%s", name);
            prepare_forced_line(); /* fresh timestamp for a forced exit */
            s->on_stop(s->ud);
            continue;
        }
        log_warn("shutdown_forced signal=%s", name);
        if (s->on_force) s->on_force(s->ud);
        else _exit(1);
        break;
    }
}

hookd_signals_t *hookd_signals_new(struct event_base *base, void (*on_stop)(void *ud),
                                   void (*on_force)(void *ud), void *ud)
{
    install_raw_handlers();
    if (signal_pipe[0] < 0) return NULL;
    hookd_signals_t *s = calloc(1, sizeof(*s));
    if (!s) abort();
    s->on_stop = on_stop;
    s->on_force = on_force;
    s->ud = ud;
    exit_on_second = on_force == NULL;
    prepare_forced_line();
    s->ev = event_new(base, signal_pipe[0], EV_READ | EV_PERSIST, on_signal_pipe, s);
    if (!s->ev || event_add(s->ev, NULL) < 0) {
        hookd_signals_free(s);
        return NULL;
    }
    /* a signal that arrived before the loop existed is handled on its first turn */
    if (signal_count > 0) event_active(s->ev, EV_READ, 0);
    return s;
}

void hookd_signals_free(hookd_signals_t *s)
{
    if (!s) return;
    if (s->ev) event_free(s->ev);
    free(s);
}

/* Longer than any wait a service's loop allows itself (API statements 5 s,
 * name lookups 3 s): past it, the probe address's /healthz fails. */
#define PROBE_LOOP_SILENT_MS 30000

int hookd_service_probes(const hookd_config_t *cfg, struct event_base *base, health_t *health,
                         httpd_probe_t **out)
{
    char err[256];
    *out = NULL;
    if (!cfg->probe_addr[0]) return 0;
    *out = httpd_probe_start(base, cfg->probe_addr, PROBE_LOOP_SILENT_MS, health_ready, health, err,
                             sizeof(err));
    if (!*out) {
        log_error("probe_listen_failed addr=%s error=\"%s\"", cfg->probe_addr, err);
        return -1;
    }
    log_info("probes_listening addr=%s port=%d", cfg->probe_addr, httpd_probe_port(*out));
    return 0;
}
