/* Configuration: one declarative table of every HOOKD_* variable drives parsing
 * from the environment and --flags, validation, --help and the README table. */
#ifndef HOOKD_CONFIG_H
#define HOOKD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HOOKD_SVC_INGEST 0x1u
#define HOOKD_SVC_WORKER 0x2u
#define HOOKD_SVC_ALL (HOOKD_SVC_INGEST | HOOKD_SVC_WORKER)

#define HOOKD_MAX_SCHEDULE 32     /* entries in HOOKD_RETRY_SCHEDULE */
#define HOOKD_MAX_KAFKA_PROPS 64  /* HOOKD_KAFKA_* passthrough properties */

typedef enum {
    CFG_STR,      /* free text */
    CFG_SECRET,   /* text never printed; URLs print with the password masked */
    CFG_INT,      /* integer within [min, max] */
    CFG_BOOL,     /* true/false/1/0/yes/no/on/off */
    CFG_ENUM,     /* one of enum_values ("a|b|c"), stored as index */
    CFG_ADDR,     /* host:port to listen on */
    CFG_SCHEDULE, /* comma list of durations: 500ms,5s,2m,1h,1d */
} cfg_type_t;

typedef enum { LOG_FORMAT_TEXT, LOG_FORMAT_JSON } cfg_log_format_t;
typedef enum { DELIVERY_LOG_ALL, DELIVERY_LOG_FAILURES, DELIVERY_LOG_NONE } cfg_delivery_log_t;

typedef struct hookd_kafka_prop {
    char *name;  /* librdkafka property, e.g. "security.protocol" */
    char *value; /* owned */
    char *var;   /* the HOOKD_KAFKA_* variable it came from (for errors) */
    bool secret; /* value must never be printed */
} hookd_kafka_prop_t;

typedef struct hookd_config {
    /* common */
    char *database_url;
    char *kafka_brokers;
    char *kafka_client_id;
    char *jobs_topic;
    int log_level; /* LOG_DEBUG..LOG_ERROR */
    int log_format;
    int64_t shutdown_timeout_s;
    bool require_https;
    bool allow_private_targets;
    /* ingest */
    char *http_addr;
    char *probe_addr; /* "" = none */
    char *ingest_topics;
    char *ingest_group;
    char *dlq_topic;
    bool auto_migrate;
    int64_t max_event_bytes;
    bool accept_unknown_types;
    int64_t commit_interval_ms;
    int64_t max_pending_jobs;
    int64_t api_max_body_bytes;
    int64_t matcher_reload_s;
    /* worker */
    char *worker_http_addr;
    char *worker_group;
    int64_t http_timeout_ms;
    int64_t connect_timeout_ms;
    int64_t max_inflight;
    int64_t endpoint_concurrency;
    int64_t batch_window_ms;
    int64_t batch_max;
    int64_t batch_max_bytes;
    int64_t retry_schedule_ms[HOOKD_MAX_SCHEDULE];
    int retry_schedule_len;
    char *retry_schedule; /* the text form, for printing */
    int64_t retry_jitter_pct;
    int64_t greylist_threshold;
    int64_t greylist_base_s;
    int64_t greylist_max_s;
    int64_t park_retention_h;
    int delivery_log;
    int64_t delivery_log_retention_h;
    int64_t dedup_retention_h;
    int64_t dedup_cache_size;
    char *ca_bundle;
    int64_t scheduler_poll_ms;
    /* HOOKD_KAFKA_<PROP> passthrough (everything not in the table) */
    hookd_kafka_prop_t kafka_props[HOOKD_MAX_KAFKA_PROPS];
    int kafka_props_len;
    /* HOOKD_* variables that are not in the table (typos?), warned about */
    char *unknown_vars[16];
    int unknown_vars_len;
} hookd_config_t;

typedef struct hookd_config_var {
    const char *name; /* HOOKD_... */
    cfg_type_t type;
    const char *def;         /* default, as text */
    int64_t min, max;        /* bounds for CFG_INT */
    const char *enum_values; /* "a|b|c" for CFG_ENUM */
    unsigned services;       /* HOOKD_SVC_* mask */
    size_t offset;           /* into hookd_config_t */
    const char *help;
} hookd_config_var_t;

/* Service-specific command-line options (actions such as --migrate) that the
 * config parser should accept and hand back rather than reject. */
typedef struct hookd_cli_opt {
    const char *flag; /* "--create-token" */
    bool has_arg;     /* takes a value ("--scope account:1" or "--scope=...") */
    const char *help;
    const char **value; /* set to the argument (or "1" for a flag); not owned */
} hookd_cli_opt_t;

/* The table, terminated by an entry with name == NULL. */
extern const hookd_config_var_t hookd_config_vars[];

/* Loads defaults, then HOOKD_* from 'envp' (NULL = environ), then --flags
 * from argv (--batch-max=5 or --batch-max 5 for HOOKD_BATCH_MAX). 'opts'
 * (may be NULL, terminated by flag == NULL) lists extra service flags.
 * Sets *want_help / *want_version when --help / --version was given.
 * Returns 0, or -1 with one line in 'err' naming the variable or flag and the
 * bad value. The caller prints it and exits 2. Free with hookd_config_free. */
int hookd_config_load(hookd_config_t *cfg, unsigned service, int argc, char **argv, char **envp,
                      const hookd_cli_opt_t *opts, bool *want_help, bool *want_version,
                      char *err, size_t err_size);

void hookd_config_free(hookd_config_t *cfg);

/* Prints usage: the service's flags and every variable it reads with type,
 * default and help. */
void hookd_config_print_help(FILE *out, const char *prog, unsigned service,
                             const hookd_cli_opt_t *opts);

/* Prints the README configuration table (Markdown) for all variables. */
void hookd_config_print_markdown(FILE *out);

/* Writes the effective configuration as "NAME=value" lines to the log at
 * info level, secrets masked. */
void hookd_config_log(const hookd_config_t *cfg, unsigned service);

/* Copies 'url' to 'out' with any password masked as "***". */
void hookd_config_redact_url(const char *url, char *out, size_t out_size);

/* Parses "5s,30s,2m" into milliseconds. Returns the count, or -1 on error. */
int hookd_config_parse_schedule(const char *text, int64_t *out_ms, int max);

/* Parses "host:port" / "[v6]:port" / ":port". Returns 0 or -1. 'host' gets
 * "0.0.0.0" when empty. */
int hookd_config_parse_addr(const char *text, char *host, size_t host_size, int *port);

#endif
