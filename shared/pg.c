/* libpq wrappers: resilient connect, parameterised queries, notifications,
 * and the advisory-locked, transactional migration runner. */
#include "hookd/pg.h"
#include "hookd/log.h"
#include "hookd/service.h"
#include "hookd/util.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIGRATION_LOCK_KEY 7304816102345L /* arbitrary, constant */

/* Copies libpq's message without the trailing newline. */
static void copy_err(char *err, size_t err_size, const char *msg)
{
    snprintf(err, err_size, "%s", msg ? msg : "unknown error");
    size_t n = strlen(err);
    while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = '\0';
    for (char *p = err; *p; p++)
        if (*p == '\n') *p = ' ';
}

PGconn *pg_connect(const char *url, const char *app_name, int64_t timeout_ms,
                   const volatile int *stop, char *err, size_t err_size)
{
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {url, app_name, "5", NULL};
    int64_t start = hookd_mono_ms();
    int64_t backoff = 200;
    for (int attempt = 1;; attempt++) {
        PGconn *c = PQconnectdbParams(keys, vals, 1);
        if (c && PQstatus(c) == CONNECTION_OK) {
            if (attempt > 1) log_info("pg_connected attempts=%d", attempt);
            return c;
        }
        copy_err(err, err_size, c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        if (attempt == 1 || attempt % 10 == 0)
            log_warn("pg_connect_failed attempt=%d error=\"%s\"", attempt, err);
        if ((stop && *stop) || hookd_shutdown_requested() ||
            (timeout_ms > 0 && hookd_mono_ms() - start >= timeout_ms))
            return NULL;
        for (int64_t slept = 0; slept < backoff && !(stop && *stop) && !hookd_shutdown_requested();
             slept += 50)
            hookd_sleep_ms(50);
        if (backoff < 5000) backoff *= 2;
    }
}

PGresult *pg_query(PGconn *c, const char *sql, int n_params, const char *const *params, char *err,
                   size_t err_size)
{
    PGresult *r = PQexecParams(c, sql, n_params, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    copy_err(err, err_size, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    if (err[0] == '\0') copy_err(err, err_size, PQerrorMessage(c));
    PQclear(r);
    return NULL;
}

int pg_exec(PGconn *c, const char *sql, int n_params, const char *const *params, char *err,
            size_t err_size)
{
    PGresult *r = pg_query(c, sql, n_params, params, err, err_size);
    if (!r) return -1;
    PQclear(r);
    return 0;
}

bool pg_alive(PGconn *c)
{
    return c && PQstatus(c) == CONNECTION_OK;
}

int pg_listen(PGconn *c, const char *channel, char *err, size_t err_size)
{
    char *quoted = PQescapeIdentifier(c, channel, strlen(channel));
    if (!quoted) {
        copy_err(err, err_size, PQerrorMessage(c));
        return -1;
    }
    char sql[256];
    snprintf(sql, sizeof(sql), "LISTEN %s", quoted);
    PQfreemem(quoted);
    return pg_exec(c, sql, 0, NULL, err, err_size);
}

int pg_wait_notify(PGconn *c, int timeout_ms, pg_notify_cb cb, void *ud)
{
    int delivered = 0;
    if (!pg_alive(c)) return -1;
    struct pollfd pfd = {PQsocket(c), POLLIN, 0};
    if (pfd.fd < 0) return -1;
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0) return 0; /* EINTR: let the caller loop */
    if (r > 0 && !PQconsumeInput(c)) return -1;
    PGnotify *n;
    while ((n = PQnotifies(c)) != NULL) {
        cb(n->relname, n->extra, ud);
        PQfreemem(n);
        delivered++;
    }
    return pg_alive(c) ? delivered : -1;
}

int pg_migration_version(const char *name)
{
    if (!name || strlen(name) < 6) return -1;
    for (int i = 0; i < 4; i++)
        if (name[i] < '0' || name[i] > '9') return -1;
    if (name[4] != '_') return -1;
    size_t n = strlen(name);
    if (n < 9 || strcmp(name + n - 4, ".sql") != 0) return -1;
    return atoi(name);
}

int pg_migrations_check(const pg_migration_t *migs, char *err, size_t err_size)
{
    int prev = 0;
    for (const pg_migration_t *m = migs; m->name; m++) {
        int v = pg_migration_version(m->name);
        if (v <= 0) {
            snprintf(err, err_size, "migration %s: name must be NNNN_name.sql with NNNN > 0",
                     m->name);
            return -1;
        }
        if (v <= prev) {
            snprintf(err, err_size, "migration %s: version %d is not greater than %d", m->name, v,
                     prev);
            return -1;
        }
        prev = v;
    }
    return 0;
}

int pg_migrate(PGconn *c, const pg_migration_t *migs, int *applied, char *err, size_t err_size)
{
    char lock_sql[128];
    PGresult *r = NULL;
    *applied = 0;
    if (pg_migrations_check(migs, err, err_size) < 0) return -1;
    snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_xact_lock(%ld)", MIGRATION_LOCK_KEY);
    if (pg_exec(c, "BEGIN", 0, NULL, err, err_size) < 0) return -1;
    if (pg_exec(c, lock_sql, 0, NULL, err, err_size) < 0 ||
        pg_exec(c,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                0, NULL, err, err_size) < 0)
        goto fail;
    r = pg_query(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, err,
                 err_size);
    if (!r) goto fail;
    int have = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    int newest = 0;
    for (const pg_migration_t *m = migs; m->name; m++) {
        int v = pg_migration_version(m->name);
        newest = v;
        if (v <= have) continue;
        /* simple-query protocol: a migration may hold many statements */
        PGresult *x = PQexec(c, m->sql);
        ExecStatusType st = PQresultStatus(x);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            char msg[512];
            copy_err(msg, sizeof(msg), PQresultErrorMessage(x));
            snprintf(err, err_size, "migration %s failed: %s", m->name, msg);
            PQclear(x);
            goto fail;
        }
        PQclear(x);
        char vbuf[16];
        snprintf(vbuf, sizeof(vbuf), "%d", v);
        const char *params[] = {vbuf, m->name};
        if (pg_exec(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, params,
                    err, err_size) < 0)
            goto fail;
        log_info("migration_applied name=%s", m->name);
        (*applied)++;
    }
    if (have > newest)
        log_warn("schema_newer_than_binary schema_version=%d binary_version=%d", have, newest);
    if (pg_exec(c, "COMMIT", 0, NULL, err, err_size) < 0) return -1;
    return 0;
fail:
    PQclear(r);
    {
        char ignored[64];
        pg_exec(c, "ROLLBACK", 0, NULL, ignored, sizeof(ignored));
    }
    *applied = 0;
    return -1;
}
