/* PostgreSQL helpers over libpq: connect with retry and backoff,
 * parameterised queries, LISTEN/NOTIFY, and the schema migration runner. */
#ifndef HOOKD_PG_H
#define HOOKD_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pg_migration {
    const char *name; /* "0001_init.sql" */
    const char *sql;
} pg_migration_t;

/* The schemas/NNNN_*.sql files compiled into the binary, in order,
 * terminated by {NULL, NULL}. */
extern const pg_migration_t hookd_migrations[];

/* Connects to 'url', setting application_name. Retries with backoff (200 ms
 * doubling to 5 s) until connected, 'timeout_ms' elapsed (0 = retry forever)
 * or *stop becomes non-zero. Returns the connection or NULL with a reason in
 * 'err' (never containing the password). */
PGconn *pg_connect(const char *url, const char *app_name, int64_t timeout_ms,
                   const volatile int *stop, char *err, size_t err_size);

/* Runs 'sql' with text parameters (NULL entries are SQL NULL). Returns the
 * result (caller PQclear()s) when it is COMMAND_OK or TUPLES_OK, else NULL
 * with the server's message in 'err'. */
PGresult *pg_query(PGconn *c, const char *sql, int n_params, const char *const *params, char *err,
                   size_t err_size);

/* Same, discarding the result. Returns 0 or -1. */
int pg_exec(PGconn *c, const char *sql, int n_params, const char *const *params, char *err,
            size_t err_size);

/* True when the connection is usable (CONNECTION_OK). */
bool pg_alive(PGconn *c);

/* LISTEN on 'channel' (an identifier; quoted here). Returns 0 or -1. */
int pg_listen(PGconn *c, const char *channel, char *err, size_t err_size);

typedef void (*pg_notify_cb)(const char *channel, const char *payload, void *ud);

/* Waits up to 'timeout_ms' for notifications and calls 'cb' for each.
 * Returns the number delivered (>= 0), or -1 when the connection broke. */
int pg_wait_notify(PGconn *c, int timeout_ms, pg_notify_cb cb, void *ud);

/* Version number of a migration file name ("0007_x.sql" -> 7), or -1. */
int pg_migration_version(const char *name);

/* Checks that the list has strictly increasing, well-formed versions.
 * Returns 0 or -1 with 'err'. */
int pg_migrations_check(const pg_migration_t *migs, char *err, size_t err_size);

/* Applies every migration not yet in schema_migrations, in order, in one
 * transaction holding an advisory lock (so N replicas starting at once apply
 * each exactly once). *applied gets the number applied. Returns 0 or -1. */
int pg_migrate(PGconn *c, const pg_migration_t *migs, int *applied, char *err, size_t err_size);

#endif
