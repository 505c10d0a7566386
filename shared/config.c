/* Configuration table and its parser: environment first, then --flags.
 * Every HOOKD_* variable is declared exactly once, in hookd_config_vars[]. */
#include "hookd/config.h"
#include "hookd/log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define OFF(f) offsetof(hookd_config_t, f)
#define I ((int64_t)1)

const hookd_config_var_t hookd_config_vars[] = {
    /* common */
    {"HOOKD_DATABASE_URL", CFG_SECRET, "postgresql://hookd@localhost:5432/hookd", 0, 0, NULL,
     HOOKD_SVC_ALL, OFF(database_url),
     "PostgreSQL connection string (libpq URL or key=value); password is never logged"},
    {"HOOKD_KAFKA_BROKERS", CFG_STR, "localhost:9092", 0, 0, NULL, HOOKD_SVC_ALL,
     OFF(kafka_brokers), "Kafka bootstrap servers, comma separated"},
    {"HOOKD_KAFKA_CLIENT_ID", CFG_STR, "", 0, 0, NULL, HOOKD_SVC_ALL, OFF(kafka_client_id),
     "Kafka client.id; empty means <service>-<hostname>"},
    {"HOOKD_JOBS_TOPIC", CFG_STR, "hookd.deliveries", 0, 0, NULL, HOOKD_SVC_ALL, OFF(jobs_topic),
     "Topic of delivery jobs between ingest and worker, keyed by endpoint id"},
    {"HOOKD_LOG_LEVEL", CFG_ENUM, "info", 0, 0, "debug|info|warn|error", HOOKD_SVC_ALL,
     OFF(log_level), "Minimum level of log lines"},
    {"HOOKD_LOG_FORMAT", CFG_ENUM, "text", 0, 0, "text|json", HOOKD_SVC_ALL, OFF(log_format),
     "Log lines as text or as JSON objects"},
    {"HOOKD_SHUTDOWN_TIMEOUT_S", CFG_INT, "30", 1, 3600, NULL, HOOKD_SVC_ALL,
     OFF(shutdown_timeout_s), "Seconds to finish in-flight work after SIGTERM before exiting"},
    {"HOOKD_REQUIRE_HTTPS", CFG_BOOL, "true", 0, 0, NULL, HOOKD_SVC_ALL, OFF(require_https),
     "Only https:// target URLs: the API refuses others and the worker does not send to them "
     "(class ssrf)"},
    {"HOOKD_ALLOW_PRIVATE_TARGETS", CFG_BOOL, "false", 0, 0, NULL, HOOKD_SVC_ALL,
     OFF(allow_private_targets),
     "Allow targets resolving to loopback, private, link-local, CGNAT or metadata addresses"},
    {"HOOKD_PROBE_ADDR", CFG_ADDR, "", 0, 0, NULL, HOOKD_SVC_ALL, OFF(probe_addr),
     "Also answer /healthz and /readyz here, on a thread of their own: probes never wait behind "
     "API requests or a busy event loop (empty: only on the service's HTTP address)"},
    /* ingest */
    {"HOOKD_HTTP_ADDR", CFG_ADDR, "0.0.0.0:8080", 0, 0, NULL, HOOKD_SVC_INGEST, OFF(http_addr),
     "Listen address of the ingest HTTP API, health and metrics"},
    {"HOOKD_INGEST_TOPICS", CFG_STR, "hookd.events", 0, 0, NULL, HOOKD_SVC_INGEST,
     OFF(ingest_topics), "Event topics: comma separated list, or one regex starting with ^"},
    {"HOOKD_INGEST_GROUP", CFG_STR, "hookd-ingest", 0, 0, NULL, HOOKD_SVC_INGEST, OFF(ingest_group),
     "Consumer group of hookd-ingest"},
    {"HOOKD_DLQ_TOPIC", CFG_STR, "hookd.events.dlq", 0, 0, NULL, HOOKD_SVC_INGEST, OFF(dlq_topic),
     "Dead-letter topic for rejected events"},
    {"HOOKD_AUTO_MIGRATE", CFG_BOOL, "true", 0, 0, NULL, HOOKD_SVC_INGEST, OFF(auto_migrate),
     "Apply pending schema migrations at start"},
    {"HOOKD_MAX_EVENT_BYTES", CFG_INT, "1048576", 1024, 16 * 1048576, NULL, HOOKD_SVC_INGEST,
     OFF(max_event_bytes), "Largest accepted event; larger ones go to the dead-letter topic"},
    {"HOOKD_ACCEPT_UNKNOWN_TYPES", CFG_BOOL, "false", 0, 0, NULL, HOOKD_SVC_INGEST,
     OFF(accept_unknown_types), "Accept event types missing from the event_types catalog"},
    {"HOOKD_COMMIT_INTERVAL_MS", CFG_INT, "100", 10, 60000, NULL, HOOKD_SVC_ALL,
     OFF(commit_interval_ms), "How often finished consumer offsets are committed"},
    {"HOOKD_MAX_PENDING_JOBS", CFG_INT, "200000", 100, 10000000, NULL, HOOKD_SVC_INGEST,
     OFF(max_pending_jobs), "Jobs awaiting broker acknowledgement before consumption pauses"},
    {"HOOKD_API_MAX_BODY_BYTES", CFG_INT, "65536", 1024, 1048576, NULL, HOOKD_SVC_INGEST,
     OFF(api_max_body_bytes), "Largest API request body; larger ones get 413"},
    {"HOOKD_MATCHER_RELOAD_S", CFG_INT, "300", 0, 86400, NULL, HOOKD_SVC_ALL, OFF(matcher_reload_s),
     "Full reload of the subscription cache every N seconds besides LISTEN/NOTIFY (0 = never)"},
    /* worker */
    {"HOOKD_WORKER_HTTP_ADDR", CFG_ADDR, "0.0.0.0:8090", 0, 0, NULL, HOOKD_SVC_WORKER,
     OFF(worker_http_addr), "Listen address of the worker's health and metrics"},
    {"HOOKD_WORKER_GROUP", CFG_STR, "hookd-worker", 0, 0, NULL, HOOKD_SVC_WORKER, OFF(worker_group),
     "Consumer group of hookd-worker"},
    {"HOOKD_HTTP_TIMEOUT_MS", CFG_INT, "10000", 100, 300000, NULL, HOOKD_SVC_WORKER,
     OFF(http_timeout_ms), "Total time allowed for one delivery request"},
    {"HOOKD_CONNECT_TIMEOUT_MS", CFG_INT, "5000", 100, 300000, NULL, HOOKD_SVC_WORKER,
     OFF(connect_timeout_ms), "Time allowed to connect (TCP and TLS) to a receiver"},
    {"HOOKD_MAX_INFLIGHT", CFG_INT, "1024", 1, 65536, NULL, HOOKD_SVC_WORKER, OFF(max_inflight),
     "Delivery requests in flight at once, all endpoints together"},
    {"HOOKD_ENDPOINT_CONCURRENCY", CFG_INT, "1", 1, 1024, NULL, HOOKD_SVC_WORKER,
     OFF(endpoint_concurrency),
     "Requests in flight per endpoint; 1 keeps deliveries strictly in partition order"},
    {"HOOKD_BATCH_WINDOW_MS", CFG_INT, "5000", 0, 3600000, NULL, HOOKD_SVC_WORKER,
     OFF(batch_window_ms), "Jobs of one endpoint arriving within this window share a request"},
    {"HOOKD_BATCH_MAX", CFG_INT, "100", 1, 10000, NULL, HOOKD_SVC_WORKER, OFF(batch_max),
     "Most items in one batched request"},
    {"HOOKD_BATCH_MAX_BYTES", CFG_INT, "262144", 1024, 64 * 1048576, NULL, HOOKD_SVC_WORKER,
     OFF(batch_max_bytes), "Largest batched request body"},
    {"HOOKD_RETRY_SCHEDULE", CFG_SCHEDULE, "5s,30s,2m,10m,1h", 0, 0, NULL, HOOKD_SVC_WORKER,
     OFF(retry_schedule), "Delays before each retry; after the last the job is failed"},
    {"HOOKD_RETRY_JITTER_PCT", CFG_INT, "20", 0, 100, NULL, HOOKD_SVC_WORKER, OFF(retry_jitter_pct),
     "Random +/- percentage applied to each retry delay"},
    {"HOOKD_GREYLIST_THRESHOLD", CFG_INT, "3", 1, 1000, NULL, HOOKD_SVC_WORKER,
     OFF(greylist_threshold), "Consecutive failures that grey-list an endpoint"},
    {"HOOKD_GREYLIST_BASE_S", CFG_INT, "60", 1, 86400, NULL, HOOKD_SVC_WORKER, OFF(greylist_base_s),
     "First grey-list period; doubles on each further failure"},
    {"HOOKD_GREYLIST_MAX_S", CFG_INT, "86400", 1, 30 * 86400, NULL, HOOKD_SVC_WORKER,
     OFF(greylist_max_s), "Longest grey-list period"},
    {"HOOKD_PARK_RETENTION_H", CFG_INT, "72", 1, 24 * 365, NULL, HOOKD_SVC_WORKER,
     OFF(park_retention_h), "Parked jobs older than this expire"},
    {"HOOKD_DELIVERY_LOG", CFG_ENUM, "all", 0, 0, "all|failures|none", HOOKD_SVC_WORKER,
     OFF(delivery_log), "Which delivery attempts are written to the deliveries table"},
    {"HOOKD_DELIVERY_LOG_RETENTION_H", CFG_INT, "168", 1, 24 * 3650, NULL, HOOKD_SVC_WORKER,
     OFF(delivery_log_retention_h), "Delivery log rows older than this are deleted"},
    {"HOOKD_DEDUP_RETENTION_H", CFG_INT, "48", 24, 24 * 365, NULL, HOOKD_SVC_WORKER,
     OFF(dedup_retention_h), "How long finished job ids are remembered (at least 24 h)"},
    {"HOOKD_DEDUP_CACHE_SIZE", CFG_INT, "262144", 1024, 67108864, NULL, HOOKD_SVC_WORKER,
     OFF(dedup_cache_size), "Finished job ids kept in memory"},
    {"HOOKD_CA_BUNDLE", CFG_STR, "", 0, 0, NULL, HOOKD_SVC_WORKER, OFF(ca_bundle),
     "CA bundle file for verifying receivers (default: system store)"},
    {"HOOKD_SCHEDULER_POLL_MS", CFG_INT, "500", 10, 60000, NULL, HOOKD_SVC_WORKER,
     OFF(scheduler_poll_ms), "How often due retries and released parked jobs are fetched"},
    {NULL, 0, NULL, 0, 0, NULL, 0, 0, NULL},
};

static const char *type_name(const hookd_config_var_t *v)
{
    switch (v->type) {
    case CFG_STR: return "string";
    case CFG_SECRET: return "secret";
    case CFG_INT: return "integer";
    case CFG_BOOL: return "bool";
    case CFG_ENUM: return v->enum_values;
    case CFG_ADDR: return "host:port";
    case CFG_SCHEDULE: return "durations";
    }
    return "?";
}

/* "HOOKD_BATCH_MAX" -> "--batch-max" */
static void flag_name(const char *var, char *out, size_t out_size)
{
    size_t n = 0;
    const char *p = var + strlen("HOOKD_");
    if (out_size < 3) return;
    out[n++] = '-';
    out[n++] = '-';
    for (; *p && n + 1 < out_size; p++) out[n++] = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
    out[n] = '\0';
}

int hookd_config_parse_schedule(const char *text, int64_t *out_ms, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0) return -1;
        int64_t mult;
        if (strncmp(end, "ms", 2) == 0) {
            mult = 1;
            end += 2;
        } else if (*end == 's') {
            mult = 1000;
            end++;
        } else if (*end == 'm') {
            mult = 60000;
            end++;
        } else if (*end == 'h') {
            mult = 3600000;
            end++;
        } else if (*end == 'd') {
            mult = 86400000;
            end++;
        } else {
            return -1;
        }
        if (v > INT64_MAX / mult / 2 || n >= max) return -1;
        out_ms[n++] = v * mult;
        if (*end == ',') {
            end++;
            if (*end == '\0') return -1;
        } else if (*end != '\0') {
            return -1;
        }
        p = end;
    }
    return n;
}

int hookd_config_parse_addr(const char *text, char *host, size_t host_size, int *port)
{
    const char *colon;
    size_t hlen;
    const char *h = text;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') return -1;
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) return -1;
        hlen = (size_t)(colon - text);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || errno || p < 0 || p > 65535) return -1;
    if (hlen == 0) {
        h = "0.0.0.0";
        hlen = 7;
    }
    if (hlen + 1 > host_size) return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "1", "yes", "on"};
    static const char *no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int enum_index(const char *values, const char *s)
{
    int idx = 0;
    size_t len = strlen(s);
    for (const char *p = values; *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncasecmp(p, s, n) == 0) return idx;
        idx++;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

/* Applies 'value' to the variable. Returns 0, or -1 with 'err' filled. */
static int set_var(hookd_config_t *cfg, const hookd_config_var_t *v, const char *value,
                   bool from_flag, char *err, size_t err_size)
{
    void *field = (char *)cfg + v->offset;
    char label[160], suffix[96] = "";
    if (from_flag) {
        flag_name(v->name, label, sizeof(label));
        snprintf(suffix, sizeof(suffix), " (%s)", v->name);
    } else {
        snprintf(label, sizeof(label), "%s", v->name);
    }
    switch (v->type) {
    case CFG_STR:
    case CFG_SECRET: {
        char **s = field;
        free(*s);
        *s = strdup(value);
        return 0;
    }
    case CFG_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        if (*value == '\0' || *end || errno || n < v->min || n > v->max) {
            snprintf(err, err_size,
                     "invalid %s=%s%s: expected an integer between %" PRId64 " and %" PRId64,
                     label, value, suffix, v->min, v->max);
            return -1;
        }
        *(int64_t *)field = n;
        return 0;
    }
    case CFG_BOOL:
        if (parse_bool(value, field) < 0) {
            snprintf(err, err_size, "invalid %s=%s%s: expected true or false", label, value,
                     suffix);
            return -1;
        }
        return 0;
    case CFG_ENUM: {
        int idx = enum_index(v->enum_values, value);
        if (idx < 0) {
            snprintf(err, err_size, "invalid %s=%s%s: expected one of %s", label, value, suffix,
                     v->enum_values);
            return -1;
        }
        *(int *)field = idx;
        return 0;
    }
    case CFG_ADDR: {
        char host[256];
        int port;
        bool optional_unset = !value[0] && !v->def[0]; /* an address that may stay unset */
        if (!optional_unset && hookd_config_parse_addr(value, host, sizeof(host), &port) < 0) {
            snprintf(err, err_size, "invalid %s=%s%s: expected host:port", label, value, suffix);
            return -1;
        }
        char **s = field;
        free(*s);
        *s = strdup(value);
        return 0;
    }
    case CFG_SCHEDULE: {
        int n = hookd_config_parse_schedule(value, cfg->retry_schedule_ms, HOOKD_MAX_SCHEDULE);
        if (n <= 0) {
            snprintf(err, err_size,
                     "invalid %s=%s%s: expected 1 to %d comma separated durations like 5s,2m,1h",
                     label, value, suffix, HOOKD_MAX_SCHEDULE);
            return -1;
        }
        cfg->retry_schedule_len = n;
        char **s = field;
        free(*s);
        *s = strdup(value);
        return 0;
    }
    }
    return 0;
}

static const hookd_config_var_t *find_var(const char *name, size_t len)
{
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++)
        if (strlen(v->name) == len && strncmp(v->name, name, len) == 0) return v;
    return NULL;
}

static bool is_secret_prop(const char *prop)
{
    return strstr(prop, "password") || strstr(prop, "secret") || strstr(prop, "key.pem") ||
           strstr(prop, "jaas") || strstr(prop, "token");
}

/* HOOKD_KAFKA_SECURITY_PROTOCOL=SSL -> security.protocol=SSL */
static int add_kafka_prop(hookd_config_t *cfg, const char *var, size_t var_len, const char *value,
                          char *err, size_t err_size)
{
    if (cfg->kafka_props_len >= HOOKD_MAX_KAFKA_PROPS) {
        snprintf(err, err_size, "too many HOOKD_KAFKA_* variables (at most %d)",
                 HOOKD_MAX_KAFKA_PROPS);
        return -1;
    }
    size_t skip = strlen("HOOKD_KAFKA_");
    if (var_len <= skip) {
        snprintf(err, err_size, "invalid variable HOOKD_KAFKA_: missing property name");
        return -1;
    }
    hookd_kafka_prop_t *p = &cfg->kafka_props[cfg->kafka_props_len++];
    p->var = strndup(var, var_len);
    p->name = strndup(var + skip, var_len - skip);
    for (char *c = p->name; *c; c++) *c = *c == '_' ? '.' : (char)tolower((unsigned char)*c);
    p->value = strdup(value);
    p->secret = is_secret_prop(p->name);
    return 0;
}

/* Kubernetes injects HOOKD_INGEST_SERVICE_HOST, HOOKD_INGEST_PORT_8080_TCP ...
 * for a Service named hookd-ingest; those are not typos. */
static bool is_service_link(const char *name, size_t len)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%.*s", (int)len, name);
    return strstr(buf, "_SERVICE_HOST") || strstr(buf, "_SERVICE_PORT") ||
           strstr(buf, "_PORT_") || (len > 5 && strcmp(buf + len - 5, "_PORT") == 0);
}

static const hookd_cli_opt_t *find_opt(const hookd_cli_opt_t *opts, const char *flag, size_t len)
{
    for (; opts && opts->flag; opts++)
        if (strlen(opts->flag) == len && strncmp(opts->flag, flag, len) == 0) return opts;
    return NULL;
}

int hookd_config_load(hookd_config_t *cfg, unsigned service, int argc, char **argv, char **envp,
                      const hookd_cli_opt_t *opts, bool *want_help, bool *want_version,
                      char *err, size_t err_size)
{
    memset(cfg, 0, sizeof(*cfg));
    *want_help = false;
    *want_version = false;
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++)
        if (set_var(cfg, v, v->def, false, err, err_size) < 0) return -1;

    for (char **e = envp ? envp : environ; e && *e; e++) {
        if (strncmp(*e, "HOOKD_", 6) != 0) continue;
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        size_t len = (size_t)(eq - *e);
        const hookd_config_var_t *v = find_var(*e, len);
        if (v) {
            if (set_var(cfg, v, eq + 1, false, err, err_size) < 0) return -1;
        } else if (strncmp(*e, "HOOKD_KAFKA_", 12) == 0) {
            if (add_kafka_prop(cfg, *e, len, eq + 1, err, err_size) < 0) return -1;
        }
        else if (!is_service_link(*e, len) && cfg->unknown_vars_len < 16) {
            /* Not fatal: a ConfigMap may carry variables of a newer version. */
            cfg->unknown_vars[cfg->unknown_vars_len++] = strndup(*e, len);
        }
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *want_help = true;
            continue;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            *want_version = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, err_size, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        const char *eq = strchr(a, '=');
        size_t flen = eq ? (size_t)(eq - a) : strlen(a);
        const hookd_cli_opt_t *o = find_opt(opts, a, flen);
        const hookd_config_var_t *v = NULL;
        if (!o) {
            char fname[128];
            for (v = hookd_config_vars; v->name; v++) {
                flag_name(v->name, fname, sizeof(fname));
                if (strlen(fname) == flen && strncmp(fname, a, flen) == 0) break;
            }
            if (!v->name) {
                snprintf(err, err_size, "unknown option '%.*s' (see --help)", (int)flen, a);
                return -1;
            }
        }
        const char *value;
        if (o && !o->has_arg) {
            if (eq) {
                snprintf(err, err_size, "option '%.*s' takes no value", (int)flen, a);
                return -1;
            }
            *o->value = "1";
            continue;
        }
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, err_size, "option '%s' needs a value", a);
            return -1;
        }
        if (o) {
            *o->value = value;
        } else if (set_var(cfg, v, value, true, err, err_size) < 0) {
            return -1;
        }
    }

    /* Cross-variable rules. */
    if (cfg->greylist_base_s > cfg->greylist_max_s) {
        snprintf(err, err_size,
                 "invalid HOOKD_GREYLIST_BASE_S=%" PRId64 ": larger than HOOKD_GREYLIST_MAX_S=%" PRId64,
                 cfg->greylist_base_s, cfg->greylist_max_s);
        return -1;
    }
    if ((service & HOOKD_SVC_INGEST) && cfg->ingest_topics[0] == '\0') {
        snprintf(err, err_size, "invalid HOOKD_INGEST_TOPICS=: at least one topic is needed");
        return -1;
    }
    static const struct {
        const char *name;
        size_t off;
    } nonempty[] = {{"HOOKD_KAFKA_BROKERS", OFF(kafka_brokers)},
                    {"HOOKD_JOBS_TOPIC", OFF(jobs_topic)},
                    {"HOOKD_DATABASE_URL", OFF(database_url)}};
    for (size_t k = 0; k < sizeof(nonempty) / sizeof(nonempty[0]); k++) {
        if (**(char **)((char *)cfg + nonempty[k].off) == '\0') {
            snprintf(err, err_size, "invalid %s=: must not be empty", nonempty[k].name);
            return -1;
        }
    }
    return 0;
}

void hookd_config_free(hookd_config_t *cfg)
{
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++) {
        if (v->type == CFG_STR || v->type == CFG_SECRET || v->type == CFG_ADDR ||
            v->type == CFG_SCHEDULE) {
            char **s = (char **)((char *)cfg + v->offset);
            free(*s);
            *s = NULL;
        }
    }
    for (int i = 0; i < cfg->kafka_props_len; i++) {
        free(cfg->kafka_props[i].name);
        free(cfg->kafka_props[i].value);
        free(cfg->kafka_props[i].var);
    }
    cfg->kafka_props_len = 0;
    for (int i = 0; i < cfg->unknown_vars_len; i++) free(cfg->unknown_vars[i]);
    cfg->unknown_vars_len = 0;
}

void hookd_config_redact_url(const char *url, char *out, size_t out_size)
{
    /* postgresql://user:pass@host/db -> postgresql://user:***@host/db;
     * key=value form: password=... -> password=*** */
    const char *scheme = strstr(url, "://");
    if (scheme) {
        const char *auth = scheme + 3;
        const char *at = strchr(auth, '@');
        const char *slash = strchr(auth, '/');
        const char *colon = strchr(auth, ':');
        if (at && (!slash || at < slash) && colon && colon < at) {
            snprintf(out, out_size, "%.*s***%s", (int)(colon + 1 - url), url, at);
            return;
        }
    }
    const char *pw = strstr(url, "password=");
    if (pw) {
        const char *end = pw + 9;
        while (*end && *end != ' ' && *end != '&') end++;
        snprintf(out, out_size, "%.*s***%s", (int)(pw + 9 - url), url, end);
        return;
    }
    snprintf(out, out_size, "%s", url);
}

static void value_text(const hookd_config_t *cfg, const hookd_config_var_t *v, char *out,
                       size_t out_size)
{
    const void *field = (const char *)cfg + v->offset;
    switch (v->type) {
    case CFG_SECRET: hookd_config_redact_url(*(char *const *)field, out, out_size); break;
    case CFG_STR:
    case CFG_ADDR:
    case CFG_SCHEDULE: snprintf(out, out_size, "%s", *(char *const *)field); break;
    case CFG_INT: snprintf(out, out_size, "%" PRId64, *(const int64_t *)field); break;
    case CFG_BOOL: snprintf(out, out_size, "%s", *(const bool *)field ? "true" : "false"); break;
    case CFG_ENUM: {
        int idx = *(const int *)field;
        const char *p = v->enum_values;
        for (int k = 0; k < idx && p; k++) {
            p = strchr(p, '|');
            if (p) p++;
        }
        const char *bar = p ? strchr(p, '|') : NULL;
        snprintf(out, out_size, "%.*s", p ? (int)(bar ? (size_t)(bar - p) : strlen(p)) : 0,
                 p ? p : "");
        break;
    }
    }
}

void hookd_config_log(const hookd_config_t *cfg, unsigned service)
{
    char buf[1024];
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++) {
        if (!(v->services & service)) continue;
        value_text(cfg, v, buf, sizeof(buf));
        log_debug("config %s=%s", v->name, buf);
    }
    for (int i = 0; i < cfg->kafka_props_len; i++) {
        const hookd_kafka_prop_t *p = &cfg->kafka_props[i];
        log_debug("config %s=%s kafka_property=%s", p->var, p->secret ? "***" : p->value, p->name);
    }
    for (int i = 0; i < cfg->unknown_vars_len; i++)
        log_warn("config_unknown_variable name=%s hint=\"not a hookd setting; see --help\"",
                 cfg->unknown_vars[i]);
}

void hookd_config_print_help(FILE *out, const char *prog, unsigned service,
                             const hookd_cli_opt_t *opts)
{
    char fname[128];
    fprintf(out, "Usage: %s [options]\n\nOptions:\n", prog);
    fprintf(out, "  %-34s %s\n", "--help", "print this help and exit");
    fprintf(out, "  %-34s %s\n", "--version", "print the version and exit");
    for (; opts && opts->flag; opts++) {
        char f[96];
        snprintf(f, sizeof(f), "%s%s", opts->flag, opts->has_arg ? " VALUE" : "");
        fprintf(out, "  %-34s %s\n", f, opts->help);
    }
    fprintf(out, "\nConfiguration (environment variable, or the flag beside it; flags win):\n");
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++) {
        if (!(v->services & service)) continue;
        flag_name(v->name, fname, sizeof(fname));
        fprintf(out, "  %s  %s=<%s>\n      %s (default: %s", v->name, fname, type_name(v), v->help,
                v->def[0] ? v->def : "empty");
        if (v->type == CFG_INT) fprintf(out, "; %" PRId64 "..%" PRId64, v->min, v->max);
        fprintf(out, ")\n");
    }
    fprintf(out, "  HOOKD_KAFKA_<PROPERTY>\n      Any other librdkafka property, e.g. "
                 "HOOKD_KAFKA_SECURITY_PROTOCOL=SSL sets security.protocol\n");
}

void hookd_config_print_markdown(FILE *out)
{
    fprintf(out, "| Variable | Service | Type | Default | Description |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (const hookd_config_var_t *v = hookd_config_vars; v->name; v++) {
        const char *svc = v->services == HOOKD_SVC_ALL      ? "both"
                          : v->services == HOOKD_SVC_INGEST ? "ingest"
                                                            : "worker";
        fprintf(out, "| `%s` | %s | ", v->name, svc);
        for (const char *t = type_name(v); *t; t++) {
            if (*t == '|') fputc('\\', out);
            fputc(*t, out);
        }
        if (v->type == CFG_INT) fprintf(out, " %" PRId64 "..%" PRId64, v->min, v->max);
        if (v->def[0]) fprintf(out, " | `%s` | %s |\n", v->def, v->help);
        else fprintf(out, " | | %s |\n", v->help);
    }
    fprintf(out, "| `HOOKD_KAFKA_<PROPERTY>` | both | string | | Passed to librdkafka as "
                 "`<property>` lower-cased with `_` as `.` (e.g. `HOOKD_KAFKA_SASL_MECHANISMS`) |\n");
}
