/* PostgreSQL thread of hookd-worker: group-commits the operations of the
 * event loop, LISTENs for grey-list changes, and does the periodic upkeep
 * (parked job expiry, dedup and delivery log retention, gauges). */
#include "store.h"

#include "dedup.h"

#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/pg.h"
#include "hookd/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STORE_MAX_OPS_PER_ROUND 4096
#define STORE_MAX_ROWS_PER_ROUND 4096
#define STORE_IDLE_WAIT_MS 50
/* Group commit: under load a round starts at most every STORE_GATHER_MS
 * unless STORE_GATHER_ROWS rows are already queued. A round's fixed cost in
 * PostgreSQL (transaction, a COPY set-up and round trip per table, commit)
 * is then shared by ~200 unbatched jobs instead of ~40: measured, 20-30 %
 * less PostgreSQL CPU per job. The first operation after an idle moment
 * starts a round at once. */
#define STORE_GATHER_MS 10
#define STORE_GATHER_ROWS 512
#define STORE_EXPIRE_EVERY_MS 5000
#define STORE_GAUGES_EVERY_MS 2000
#define STORE_PRUNE_EVERY_MS 60000
#define STORE_PRUNE_CHUNK 5000
#define LOOKUP_MAX_JOBS 4096 /* ids per lookup statement */

struct store {
    store_opts_t o;
    char *url, *instance_id;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    store_op_t *queue_head, *queue_tail; /* submitted, not taken */
    int queued_rows;                     /* op_rows() of the queue */
    int64_t taken_us;                    /* when the queue was last taken */
    atomic_bool hurry;                   /* no gathering (store_set_hurry) */
    store_op_t *done_head, *done_tail;   /* completed, not delivered */
    int stop;                            /* 1: finish the queue; 2: give up now */
    atomic_int pending;                  /* submitted - delivered (event loop view) */
    atomic_bool connected;
    PGconn *conn; /* store thread only */
    /* the lookup thread (see lookup_run) */
    pthread_t lookup_thread;
    bool lookup_started;
    pthread_cond_t lookup_cond;
    store_op_t *lookup_head, *lookup_tail; /* STORE_LOOKUP ops submitted, not taken */
    bool safe; /* run this round without COPY (a job was finished or parked twice) */
    /* event loop side */
    struct event_base *base;
    struct event *wake_ev;
    int wake_fd[2];
    store_done_fn done;
    void *ud;
    /* upkeep */
    int64_t next_expire, next_gauges, next_prune;
    metric_t *m_rounds, *m_round_seconds, *m_errors, *m_expired, *m_parked, *m_greylisted,
        *m_pruned_finished, *m_pruned_deliveries, *m_backlog;
};

/* ---------------------------------------------------------------- operations */

store_op_t *store_op_new(store_kind_t kind)
{
    store_op_t *op = calloc(1, sizeof(*op));
    if (!op) abort();
    op->kind = kind;
    return op;
}

void store_op_free(store_op_t *op)
{
    if (!op) return;
    free(op->jobs);
    free(op->found);
    free(op->rows);
    free(op->excerpt);
    free(op->last_error);
    for (int i = 0; i < op->n_ids; i++)
        free(op->ids[i]);
    free(op->ids);
    free(op->empty);
    free(op->states);
    free(op->limits);
    free(op);
}

/* Grows an array to hold n + 1 elements when n is 0 or a power of two. */
static void *grow_for(void *arr, int n, size_t elem)
{
    if (n == 0 || (n & (n - 1)) == 0) {
        size_t cap = n == 0 ? 4 : (size_t)n * 2;
        arr = realloc(arr, cap * elem);
        if (!arr) abort();
    }
    return arr;
}

void store_op_add_id(store_op_t *op, const char *id)
{
    op->ids = grow_for(op->ids, op->n_ids, sizeof(*op->ids));
    op->ids[op->n_ids] = strdup(id);
    if (!op->ids[op->n_ids]) abort();
    op->n_ids++;
}

void store_op_add_drain(store_op_t *op, const char *id, int limit)
{
    op->limits = grow_for(op->limits, op->n_ids, sizeof(*op->limits));
    op->limits[op->n_ids] = limit;
    store_op_add_id(op, id);
}

/* What an operation weighs in a round (see STORE_MAX_ROWS_PER_ROUND). */
static int op_rows(const store_op_t *op)
{
    return op->n_rows + op->n_jobs + op->n_ids + 1;
}

void store_op_add_job(store_op_t *op, wjob_t *j)
{
    op->jobs = grow_for(op->jobs, op->n_jobs, sizeof(*op->jobs));
    op->jobs[op->n_jobs++] = j;
}

store_row_t *store_op_add_row(store_op_t *op)
{
    op->rows = grow_for(op->rows, op->n_rows, sizeof(*op->rows));
    store_row_t *r = &op->rows[op->n_rows++];
    memset(r, 0, sizeof(*r));
    r->latency_ms = -1;
    r->batch_size = 1;
    return r;
}

/* ---------------------------------------------------------------- array parameters */

/* Array parameters are sent in PostgreSQL's binary format: no quoting on
 * our side, no parsing on the server's (the text form of a uuid[] costs the
 * server about a microsecond per element). Layout: ndim, has-null flag,
 * element type oid, then for the one dimension its length and lower bound,
 * then each element as a 4-byte length (-1 = NULL) and its bytes; all
 * integers big-endian. */
#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define OID_UUID 2950
#define ARR_HEADER 20

typedef struct {
    strbuf_t b;
    int n;
    bool has_null;
    uint32_t oid; /* element type */
} pgarr_t;

static void put_be32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static void arr_init(pgarr_t *a, uint32_t oid)
{
    strbuf_init(&a->b, 256);
    memset(a->b.data, 0, ARR_HEADER);
    a->b.len = ARR_HEADER;
    a->n = 0;
    a->has_null = false;
    a->oid = oid;
}

/* Appends the 4-byte length word of the next element and room for 'len'. */
static char *arr_elem(pgarr_t *a, int32_t len)
{
    size_t room = len > 0 ? (size_t)len : 0;
    strbuf_reserve(&a->b, 4 + room);
    char *p = a->b.data + a->b.len;
    put_be32(p, (uint32_t)len);
    a->b.len += 4 + room;
    a->n++;
    return p + 4;
}

static void arr_null(pgarr_t *a)
{
    arr_elem(a, -1);
    a->has_null = true;
}

static void arr_strn(pgarr_t *a, const char *s, size_t len)
{
    memcpy(arr_elem(a, (int32_t)len), s, len);
}

static void arr_str(pgarr_t *a, const char *s)
{
    if (!s)
        arr_null(a);
    else
        arr_strn(a, s, strlen(s));
}

static void arr_int4(pgarr_t *a, int32_t v)
{
    put_be32(arr_elem(a, 4), (uint32_t)v);
}

/* An int8, or a timestamptz (microseconds since 2000-01-01 UTC). */
static void arr_int8(pgarr_t *a, int64_t v)
{
    char *p = arr_elem(a, 8);
    put_be32(p, (uint32_t)((uint64_t)v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* An int4, or NULL when 'v' is negative. */
static void arr_int4_or_null(pgarr_t *a, int v)
{
    if (v < 0)
        arr_null(a);
    else
        arr_int4(a, v);
}

/* A job id (32 hex digits, as every id the worker holds) as a uuid; an
 * unusable one becomes NULL, which the statements never match. */
static void arr_uuid(pgarr_t *a, const char *hex)
{
    unsigned char b[16];
    if (dedup_parse_id(hex, b) < 0) {
        arr_null(a);
        return;
    }
    memcpy(arr_elem(a, 16), b, 16);
}

/* Finishes the array; returns its bytes and length. */
static const char *arr_end(pgarr_t *a, int *len)
{
    char *h = a->b.data;
    if (a->n == 0) { /* an empty array has no dimension */
        put_be32(h, 0);
        put_be32(h + 4, 0);
        put_be32(h + 8, a->oid);
        *len = 12;
        return h;
    }
    put_be32(h, 1);
    put_be32(h + 4, a->has_null ? 1 : 0);
    put_be32(h + 8, a->oid);
    put_be32(h + 12, (uint32_t)a->n);
    put_be32(h + 16, 1);
    *len = (int)a->b.len;
    return h;
}

static void arr_free(pgarr_t *a)
{
    strbuf_free(&a->b);
}

/* The data of a COPY ... FROM STDIN (FORMAT binary) is built in a pgarr_t
 * too: a tuple is its field count (2 bytes), then each field as an array
 * element is (4-byte length, -1 = NULL, and the bytes), in the same
 * binary formats. The data starts with a signature, flags and an empty
 * header extension, and ends with a field count of -1. */
#define COPY_SIGNATURE "PGCOPY\n\377\r\n" /* with its NUL: 11 bytes */

static void copy_init(pgarr_t *c)
{
    static const char zeros[8] = {0}; /* flags, header extension length */
    strbuf_init(&c->b, 4096);
    strbuf_append(&c->b, COPY_SIGNATURE, sizeof(COPY_SIGNATURE));
    strbuf_append(&c->b, zeros, sizeof(zeros));
    c->n = 0;
    c->has_null = false;
    c->oid = 0;
}

static void copy_tuple(pgarr_t *c, int fields)
{
    char f[2] = {(char)(fields >> 8), (char)fields};
    strbuf_append(&c->b, f, 2);
}

static void copy_finish(pgarr_t *c)
{
    strbuf_append(&c->b, "\377\377", 2);
}

/* Runs a prepared or plain statement whose parameters are binary arrays
 * (formats[i] = 1) or text. Returns the result (caller clears) or NULL
 * with 'err' filled. */
static PGresult *exec_params(PGconn *c, const char *name, const char *sql, int n,
                             const char *const *values, const int *lengths, const int *formats,
                             char *err, size_t err_size)
{
    PGresult *r = name ? PQexecPrepared(c, name, n, values, lengths, formats, 0)
                       : PQexecParams(c, sql, n, NULL, values, lengths, formats, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    snprintf(err, err_size, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return NULL;
}

/* ---------------------------------------------------------------- SQL */

/* The statement of a round for the rows it does not COPY (see
 * park_copied): the deletes of claimed parked jobs and the upserts of
 * re-parked ones (ORDER BY ord so seq follows the order jobs were parked
 * in); and in a "safe" round, one that runs again after a job was
 * finished or parked twice (two replicas around a rebalance, an expired
 * lease), every row: finished_jobs (ON CONFLICT DO NOTHING), the delivery
 * log, parked_jobs. All in one round trip; empty arrays make a part a
 * no-op. (The dedup lookups of newly consumed jobs run beside these rounds
 * on a connection of their own: SQL_LOOKUP.)
 *
 * A log row covering several jobs (a successful batched request) names
 * them in job_ids: the slice $18[k] .. $18[k] + $19[k] - 1 of the finished
 * ids ($1). Its created_at equals the jobs' finished_at (one transaction),
 * which is how the README's "what became of a job" recipe finds it; a
 * COPYed log row names them itself. */
#define SQL_HOT_NAME "hookd_worker_round"
#define SQL_HOT_PARAMS 29
#define SQL_HOT                                                                                    \
    "WITH f AS ("                                                                                  \
    "  INSERT INTO finished_jobs (job_id, state, subscription_id)"                                 \
    "  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) ON CONFLICT (job_id) DO NOTHING)," \
    " d AS ("                                                                                      \
    "  INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id,"        \
    "   event_type, attempt, outcome, error_class, status_code, latency_ms, batch_size,"           \
    "   response_excerpt, job, job_ids)"                                                           \
    "  SELECT t.j, t.w, t.s, t.e, t.ev, t.ty, t.a, t.o, t.c, t.st, t.l, t.b, t.x, t.job,"          \
    "   CASE WHEN t.n > 0 THEN ($1::uuid[])[t.k : t.k + t.n - 1] END"                              \
    "  FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],"        \
    "   $10::int[], $11::text[], $12::text[], $13::int[], $14::int[], $15::int[], $16::text[],"    \
    "   $17::text[], $18::int[], $19::int[])"                                                      \
    "   AS t(j, w, s, e, ev, ty, a, o, c, st, l, b, x, job, k, n)),"                               \
    " p AS ("                                                                                      \
    "  INSERT INTO parked_jobs (job_id, endpoint_id, subscription_id, reason, attempt,"            \
    "   not_before, job, last_error, expires_at)"                                                  \
    "  SELECT t.j, t.e, t.s, t.r, t.a, now() + t.d * interval '1 millisecond', t.job, t.le,"       \
    "   now() + $28::int * interval '1 hour'"                                                      \
    "  FROM unnest($20::uuid[], $21::text[], $22::text[], $23::text[], $24::int[], $25::bigint[]," \
    "   $26::text[], $27::text[]) WITH ORDINALITY AS t(j, e, s, r, a, d, job, le, ord)"            \
    "  ORDER BY t.ord"                                                                             \
    "  ON CONFLICT (job_id) DO UPDATE SET reason = excluded.reason, attempt = excluded.attempt,"   \
    "   not_before = excluded.not_before, last_error = excluded.last_error,"                       \
    "   endpoint_id = excluded.endpoint_id, lease_owner = NULL, lease_until = NULL),"              \
    " u AS (DELETE FROM parked_jobs WHERE job_id = ANY($29::uuid[]))"                              \
    " SELECT 1"

/* Which of the ids $1 are finished or parked (hex, unordered). Runs on the
 * lookup connection, concurrently with the rounds of the store thread, and
 * needs no snapshot shared with them: a job whose outcome is not committed
 * yet is still held in memory (dedup.h), so its duplicates are skipped
 * there and never reach a lookup; once committed, any later lookup sees it
 * (a claimed parked job's delete and finish commit together). */
#define SQL_LOOKUP_NAME "hookd_worker_lookup"
#define SQL_LOOKUP                                                                                 \
    "SELECT replace(job_id::text, '-', '') FROM finished_jobs WHERE job_id = ANY($1::uuid[])"      \
    " UNION ALL"                                                                                   \
    " SELECT replace(job_id::text, '-', '') FROM parked_jobs WHERE job_id = ANY($1::uuid[])"

static const char SQL_DEACTIVATE[] =
    "UPDATE subscriptions SET active = false, deactivated_reason = '410 Gone from receiver'"
    " WHERE id = ANY($1::text[]) AND active";

static const char SQL_LEASE_RENEW[] =
    "UPDATE parked_jobs SET lease_until = now() + $2::bigint * interval '1 millisecond'"
    " WHERE job_id = ANY($1::uuid[]) AND lease_owner = $3";

static const char SQL_LEASE_RELEASE[] =
    "UPDATE parked_jobs SET lease_owner = NULL, lease_until = NULL"
    " WHERE job_id = ANY($1::uuid[]) AND lease_owner = $2";

static const char SQL_PROBE_FORGET[] =
    "UPDATE endpoints SET probe_job_id = NULL, probe_lease_until = NULL"
    " WHERE probe_job_id = ANY($1::uuid[])";

#define EP_STATE_COLUMNS                                                                           \
    "consecutive_failures, greylist_level,"                                                        \
    " coalesce((extract(epoch FROM greylisted_until) * 1000)::bigint, 0),"                         \
    " EXISTS (SELECT 1 FROM parked_jobs p WHERE p.endpoint_id = endpoints.id"                      \
    "  AND p.reason = 'greylist')"

/* $1 id, $2 probe, $3 threshold, $4 base_s, $5 max_s, $6 class, $7 status, $8 error.
 * Mirrors greylist_period_s: period n lasts base * 2^(n-1), capped. A failure
 * while grey-listed that is not the probe (a request started before) changes
 * nothing but the counters. */
static const char SQL_EP_FAILURE[] =
    "UPDATE endpoints SET"
    " consecutive_failures = consecutive_failures + 1,"
    " greylist_level = CASE"
    "  WHEN greylisted_until IS NOT NULL AND $2::boolean THEN greylist_level + 1"
    "  WHEN greylisted_until IS NOT NULL THEN greylist_level"
    "  WHEN consecutive_failures + 1 >= $3::int THEN 1"
    "  ELSE greylist_level END,"
    " greylisted_until = CASE"
    "  WHEN greylisted_until IS NOT NULL AND $2::boolean THEN now() + least($4::numeric"
    "   * power(2::numeric, least(greylist_level, 40)), $5::numeric) * interval '1 second'"
    "  WHEN greylisted_until IS NOT NULL THEN greylisted_until"
    "  WHEN consecutive_failures + 1 >= $3::int THEN"
    "   now() + least($4::numeric, $5::numeric) * interval '1 second'"
    "  ELSE NULL END,"
    " probe_job_id = CASE WHEN $2::boolean THEN NULL ELSE probe_job_id END,"
    " probe_lease_until = CASE WHEN $2::boolean THEN NULL ELSE probe_lease_until END,"
    " last_failure_at = now(), last_failure_class = $6, last_status_code = $7::int,"
    " last_error = $8, updated_at = now()"
    " WHERE id = $1 RETURNING " EP_STATE_COLUMNS;

static const char SQL_EP_WAS_GREY[] =
    "SELECT greylisted_until IS NOT NULL FROM endpoints WHERE id = $1 FOR UPDATE";

static const char SQL_EP_SUCCESS[] =
    "UPDATE endpoints SET consecutive_failures = 0, greylist_level = 0, greylisted_until = NULL,"
    " probe_job_id = NULL, probe_lease_until = NULL, last_success_at = now(), updated_at = now()"
    " WHERE id = $1 RETURNING " EP_STATE_COLUMNS;

/* After a probe succeeded: every parked job of the endpoint is due at the
 * same instant, so the scheduler (ORDER BY not_before, seq) takes them in
 * their original order. */
static const char SQL_EP_RELEASE[] =
    "UPDATE parked_jobs SET not_before = now() WHERE endpoint_id = $1"
    " AND (lease_until IS NULL OR lease_until < now())";

static const char SQL_EP_PROBE_RELEASE[] =
    "UPDATE endpoints SET probe_job_id = NULL, probe_lease_until = NULL"
    " WHERE id = $1 RETURNING " EP_STATE_COLUMNS;

static const char SQL_SUB_FETCH[] =
    "SELECT id, owner_kind, owner_id, target_url, endpoint_id, payload_mode, body_format, batch,"
    " active, secret, CASE WHEN previous_secret_expires_at > now() THEN previous_secret END,"
    " CASE WHEN previous_secret_expires_at > now()"
    "  THEN (extract(epoch FROM previous_secret_expires_at) * 1000)::bigint ELSE 0 END"
    " FROM subscriptions WHERE id = ANY($1::text[])";

/* Draining an endpoint: its next due parked jobs in seq order (what
 * expired is left to the expiry), then whether grey-list parked ones are
 * left that this worker does not hold. */
static const char SQL_DRAIN[] =
    "WITH c AS ("
    "  SELECT p.job_id FROM parked_jobs p"
    "  WHERE p.endpoint_id = $1 AND p.not_before <= now() AND p.expires_at > now()"
    "   AND (p.lease_until IS NULL OR p.lease_until < now())"
    "   AND NOT EXISTS (SELECT 1 FROM endpoints e WHERE e.id = p.endpoint_id"
    "    AND e.greylisted_until IS NOT NULL)"
    "  ORDER BY p.seq LIMIT $2::int FOR UPDATE OF p SKIP LOCKED),"
    " u AS ("
    "  UPDATE parked_jobs p SET lease_owner = $3,"
    "   lease_until = now() + $4::bigint * interval '1 millisecond'"
    "  FROM c WHERE p.job_id = c.job_id RETURNING p.job_id, p.seq, p.attempt, p.job)"
    " SELECT replace(job_id::text, '-', ''), seq, attempt, job FROM u ORDER BY seq";

static const char SQL_DRAIN_LEFT[] =
    "SELECT EXISTS (SELECT 1 FROM parked_jobs WHERE endpoint_id = $1 AND reason = 'greylist'"
    " AND (lease_owner IS DISTINCT FROM $2 OR lease_until < now()))";

/* Probes: endpoints whose period is over get their oldest parked job
 * leased as the probe, by exactly one replica (row locks, SKIP LOCKED). */
static const char SQL_CLAIM_PROBES[] =
    "WITH ep AS ("
    "  SELECT id FROM endpoints"
    "  WHERE greylisted_until <= now() AND (probe_job_id IS NULL OR probe_lease_until < now())"
    "  ORDER BY greylisted_until LIMIT 100 FOR UPDATE SKIP LOCKED),"
    " pj AS ("
    "  SELECT DISTINCT ON (p.endpoint_id) p.endpoint_id, p.job_id FROM parked_jobs p"
    "  JOIN ep ON ep.id = p.endpoint_id WHERE p.expires_at > now()"
    "  ORDER BY p.endpoint_id, p.seq),"
    " upd AS ("
    "  UPDATE endpoints e SET probe_job_id = pj.job_id,"
    "   probe_lease_until = now() + $2::bigint * interval '1 millisecond'"
    "  FROM pj WHERE e.id = pj.endpoint_id RETURNING pj.job_id)"
    " UPDATE parked_jobs p SET lease_owner = $1,"
    "  lease_until = now() + $2::bigint * interval '1 millisecond'"
    " FROM upd WHERE p.job_id = upd.job_id"
    " RETURNING replace(p.job_id::text, '-', ''), p.seq, p.attempt, p.job";

/* Due retries and API redeliveries of endpoints that are neither
 * grey-listed nor draining, oldest first (a draining endpoint's jobs come
 * back through SQL_DRAIN, in seq order). */
static const char SQL_CLAIM_DUE[] =
    "WITH due AS ("
    "  SELECT p.job_id FROM parked_jobs p"
    "  WHERE p.not_before <= now() AND p.reason = 'retry' AND p.expires_at > now()"
    "   AND (p.lease_until IS NULL OR p.lease_until < now())"
    "   AND NOT EXISTS (SELECT 1 FROM endpoints e WHERE e.id = p.endpoint_id"
    "    AND e.greylisted_until IS NOT NULL)"
    "   AND NOT EXISTS (SELECT 1 FROM parked_jobs g WHERE g.endpoint_id = p.endpoint_id"
    "    AND g.reason = 'greylist')"
    "  ORDER BY p.not_before, p.seq LIMIT $3::int FOR UPDATE OF p SKIP LOCKED),"
    " upd AS ("
    "  UPDATE parked_jobs p SET lease_owner = $1,"
    "   lease_until = now() + $2::bigint * interval '1 millisecond'"
    "  FROM due WHERE p.job_id = due.job_id"
    "  RETURNING p.job_id, p.seq, p.attempt, p.job, p.not_before)"
    " SELECT replace(job_id::text, '-', ''), seq, attempt, job FROM upd ORDER BY not_before, seq";

/* A parked row whose job message does not decode cannot be delivered. */
static const char SQL_DROP_BAD[] =
    "WITH x AS (DELETE FROM parked_jobs WHERE job_id = $1::uuid RETURNING job_id, subscription_id)"
    " INSERT INTO finished_jobs (job_id, state, subscription_id)"
    " SELECT job_id, 'failed', subscription_id FROM x ON CONFLICT (job_id) DO NOTHING";

static const char SQL_STATES_IDS[] =
    "SELECT id, " EP_STATE_COLUMNS " FROM endpoints WHERE id = ANY($1::text[])";

static const char SQL_STATES_FULL[] =
    "SELECT id, " EP_STATE_COLUMNS " FROM endpoints"
    " WHERE consecutive_failures > 0 OR greylisted_until IS NOT NULL"
    "  OR EXISTS (SELECT 1 FROM parked_jobs p WHERE p.endpoint_id = endpoints.id"
    "   AND p.reason = 'greylist')";

static const char SQL_EXPIRE[] =
    "WITH x AS ("
    "  DELETE FROM parked_jobs WHERE job_id IN ("
    "   SELECT job_id FROM parked_jobs WHERE expires_at <= now()"
    "   AND (lease_until IS NULL OR lease_until < now())"
    "   ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED)"
    "  RETURNING job_id, endpoint_id, subscription_id, attempt, job),"
    " f AS (INSERT INTO finished_jobs (job_id, state, subscription_id)"
    "  SELECT job_id, 'expired', subscription_id FROM x ON CONFLICT (job_id) DO NOTHING),"
    " d AS (INSERT INTO deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id,"
    "  event_type, attempt, outcome, job)"
    "  SELECT job_id, replace(job_id::text, '-', ''), subscription_id, endpoint_id,"
    "   coalesce(job::json->>'event_id', ''), coalesce(job::json->>'type', ''), attempt,"
    "   'expired', job FROM x WHERE $1::boolean)"
    " SELECT count(*) FROM x";

static const char SQL_GAUGES[] =
    "SELECT (SELECT count(*) FROM parked_jobs),"
    " (SELECT count(*) FROM endpoints WHERE greylisted_until IS NOT NULL)";

static const char SQL_PRUNE_FINISHED[] =
    "DELETE FROM finished_jobs WHERE job_id IN (SELECT job_id FROM finished_jobs"
    " WHERE finished_at < now() - $1::int * interval '1 hour' LIMIT 5000)";

static const char SQL_PRUNE_DELIVERIES[] =
    "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
    " WHERE created_at < now() - $1::int * interval '1 hour' LIMIT 5000)";

/* ---------------------------------------------------------------- one round */

typedef struct {
    char err[512];
    bool duplicate; /* the round failed on a job id's unique key (run it safe) */
} round_err_t;

static int exec(store_t *s, const char *sql, int n, const char *const *params, round_err_t *e)
{
    return pg_exec(s->conn, sql, n, params, e->err, sizeof(e->err));
}

static PGresult *query(store_t *s, const char *sql, int n, const char *const *params,
                       round_err_t *e)
{
    return pg_query(s->conn, sql, n, params, e->err, sizeof(e->err));
}

static void int_text(char *buf, size_t size, long long v)
{
    snprintf(buf, size, "%lld", v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sets found[] of every STORE_LOOKUP op from the sorted list of found ids. */
static void mark_found(store_op_t **ops, int n, PGresult *r)
{
    int nf = PQntuples(r);
    char **found = nf ? malloc(sizeof(*found) * (size_t)nf) : NULL;
    if (nf && !found) abort();
    for (int i = 0; i < nf; i++)
        found[i] = PQgetvalue(r, i, 0);
    if (nf) qsort(found, (size_t)nf, sizeof(*found), cmp_str);
    for (int k = 0; k < n; k++) {
        if (ops[k]->kind != STORE_LOOKUP) continue;
        for (int i = 0; i < ops[k]->n_jobs && nf; i++) {
            const char *id = ops[k]->jobs[i]->id;
            ops[k]->found[i] = bsearch(&id, found, (size_t)nf, sizeof(*found), cmp_str) != NULL;
        }
    }
    free(found);
}

/* Whether rows 'a' and 'b' (neighbours in one operation) share one log row. */
static bool shares_log(const store_row_t *a, const store_row_t *b)
{
    return a->log_shared && b->log_shared && a->finish && b->finish && a->outcome && b->outcome &&
           a->attempt == b->attempt && strcmp(a->outcome, b->outcome) == 0;
}

/* How many jobs the log row that row i of 'op' opens covers: 0 when the row
 * writes none (no outcome, or a later job of a shared log row). */
static int log_group(const store_op_t *op, int i)
{
    const store_row_t *r = &op->rows[i];
    if (!r->outcome || (i > 0 && shares_log(&op->rows[i - 1], r))) return 0;
    int group = 1;
    if (r->log_shared)
        while (i + group < op->n_rows && shares_log(r, &op->rows[i + group]))
            group++;
    return group;
}

/* ---------------------------------------------------------------- row columns */

/* A round writes each kind of row either as the array parameters of
 * SQL_HOT (one array per column) or as the tuples of a binary COPY (every
 * column into one buffer, in the same binary formats): col(k, i) is where
 * column i goes. */
typedef struct {
    pgarr_t *arrays; /* column i -> arrays[i]; NULL: */
    pgarr_t *copy;   /* every column -> this COPY buffer */
} sink_t;

static pgarr_t *col(const sink_t *k, int i)
{
    return k->arrays ? &k->arrays[i] : k->copy;
}

/* finished_jobs (job_id, state, subscription_id) */
#define FINISHED_COLUMNS 3
static void put_finished(const sink_t *k, const store_row_t *r)
{
    arr_uuid(col(k, 0), r->job->id);
    arr_str(col(k, 1), r->finish);
    arr_str(col(k, 2), r->job->sub_id);
}

/* deliveries (job_id ... job) and then job_ids, which the caller writes */
#define LOG_COLUMNS 15
static void put_log(const sink_t *k, const store_row_t *r)
{
    const wjob_t *j = r->job;
    arr_uuid(col(k, 0), j->id);
    arr_str(col(k, 1), r->webhook_id ? r->webhook_id : j->id);
    arr_str(col(k, 2), j->sub_id);
    arr_str(col(k, 3), j->ep_id);
    arr_str(col(k, 4), j->event_id);
    arr_str(col(k, 5), j->type);
    arr_int4(col(k, 6), r->attempt);
    arr_str(col(k, 7), r->outcome);
    arr_str(col(k, 8), r->error_class);
    arr_int4_or_null(col(k, 9), r->status > 0 ? r->status : -1);
    arr_int4_or_null(col(k, 10), r->latency_ms);
    arr_int4(col(k, 11), r->batch_size);
    arr_str(col(k, 12), r->excerpt);
    if (r->log_job)
        arr_strn(col(k, 13), j->data, j->len);
    else
        arr_null(col(k, 13));
}

/* parked_jobs (job_id, endpoint_id, subscription_id, reason, attempt,
 * not_before, job, last_error): not_before is an int8, the delay in
 * SQL_HOT, the time itself in a COPY (which adds expires_at) */
#define PARK_COLUMNS 9
static void put_park(const sink_t *k, const store_row_t *r, int64_t not_before)
{
    const wjob_t *j = r->job;
    arr_uuid(col(k, 0), j->id);
    arr_str(col(k, 1), j->ep_id);
    arr_str(col(k, 2), j->sub_id);
    arr_str(col(k, 3), r->park_reason);
    arr_int4(col(k, 4), r->park_attempt);
    arr_int8(col(k, 5), not_before);
    arr_strn(col(k, 6), j->data, j->len);
    arr_str(col(k, 7), r->last_error);
}

/* ---------------------------------------------------------------- the rows of a round */

/* Which rows of a round go in by COPY, and which through SQL_HOT. Log
 * rows, finished ids and newly parked jobs are COPYed: PostgreSQL inserts
 * COPY rows a page at a time (one WAL record per page, no executor per
 * row), which costs its backend about half of what the same rows cost as
 * INSERT ... SELECT FROM unnest(...): measured with the worker's rows, a
 * log row 6.4 µs of CPU instead of 11.5, a parked job 7 instead of 15, a
 * finished id 3.3 instead of 4. The deletes of claimed parked jobs and the
 * upserts of re-parked ones (their row exists) stay in SQL_HOT. COPY has
 * no ON CONFLICT: a job finished or parked twice (rare, see SQL_HOT) fails
 * the round with a unique violation, and the round runs again "safe",
 * everything through SQL_HOT. */
static bool park_copied(const store_t *s, const store_row_t *r)
{
    return !s->safe && r->park_reason && r->job->source != WJOB_PARKED;
}

typedef struct {
    int finished, logs, parks; /* COPYed rows */
    int hot;                   /* array elements of SQL_HOT */
} round_rows_t;

static round_rows_t count_rows(const store_t *s, store_op_t **ops, int n)
{
    round_rows_t c = {0, 0, 0, 0};
    /* a safe round sends finished ids and log rows through SQL_HOT too */
    int *finished = s->safe ? &c.hot : &c.finished, *logs = s->safe ? &c.hot : &c.logs;
    for (int k = 0; k < n; k++) {
        const store_op_t *op = ops[k];
        if (op->kind != STORE_OUTCOME) continue;
        for (int i = 0; i < op->n_rows; i++) {
            const store_row_t *r = &op->rows[i];
            if (r->finish) ++*finished;
            if (log_group(op, i) > 0) ++*logs;
            if (park_copied(s, r))
                c.parks++;
            else if (r->park_reason)
                c.hot++;
            if (r->unpark) c.hot++;
        }
    }
    return c;
}

/* Records a failed statement's error in 'e'; a unique violation of a job
 * id is a job finished or parked twice. */
static void round_error(PGconn *c, const PGresult *r, round_err_t *e)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *constraint = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    e->duplicate = state && strcmp(state, "23505") == 0 && constraint &&
                   (strcmp(constraint, "finished_jobs_pkey") == 0 ||
                    strcmp(constraint, "parked_jobs_pkey") == 0);
    snprintf(e->err, sizeof(e->err), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
}

enum { PART_FINISHED, PART_LOGS, PART_PARKS, PARTS };

static const char COPY_FINISHED[] =
    " COPY finished_jobs (job_id, state, subscription_id) FROM STDIN (FORMAT binary);";
static const char COPY_LOGS[] =
    " COPY deliveries (job_id, webhook_id, subscription_id, endpoint_id, event_id, event_type,"
    " attempt, outcome, error_class, status_code, latency_ms, batch_size, response_excerpt, job,"
    " job_ids) FROM STDIN (FORMAT binary);";
static const char COPY_PARKS[] =
    " COPY parked_jobs (job_id, endpoint_id, subscription_id, reason, attempt, not_before, job,"
    " last_error, expires_at) FROM STDIN (FORMAT binary);";
static const char *const COPY_SQL[PARTS] = {COPY_FINISHED, COPY_LOGS, COPY_PARKS};

/* The transaction's start, now(), in microseconds since 2000-01-01 UTC
 * (a timestamptz's binary form): parked rows get now() + delay. */
static const char SQL_NOW_US[] =
    " SELECT ((extract(epoch FROM now()) - 946684800) * 1000000)::int8;";

/* The COPY data of one part of a round. */
static void copy_part(const store_t *s, store_op_t **ops, int n, int part, int64_t now_us,
                      pgarr_t *c)
{
    const sink_t k = {NULL, c};
    int64_t expires_us = now_us + s->o.park_retention_h * 3600 * 1000000;
    copy_init(c);
    for (int o = 0; o < n; o++) {
        const store_op_t *op = ops[o];
        if (op->kind != STORE_OUTCOME) continue;
        for (int i = 0; i < op->n_rows; i++) {
            const store_row_t *r = &op->rows[i];
            int group;
            if (part == PART_FINISHED && r->finish) {
                copy_tuple(c, FINISHED_COLUMNS);
                put_finished(&k, r);
            } else if (part == PART_LOGS && (group = log_group(op, i)) > 0) {
                copy_tuple(c, LOG_COLUMNS);
                put_log(&k, r);
                if (group == 1) {
                    arr_null(c);
                    continue;
                }
                pgarr_t ids; /* job_ids: every job of the shared row */
                arr_init(&ids, OID_UUID);
                for (int m = 0; m < group; m++)
                    arr_uuid(&ids, op->rows[i + m].job->id);
                int len;
                const char *bytes = arr_end(&ids, &len);
                arr_strn(c, bytes, (size_t)len);
                arr_free(&ids);
            } else if (part == PART_PARKS && park_copied(s, r)) {
                copy_tuple(c, PARK_COLUMNS);
                put_park(&k, r, now_us + r->park_delay_ms * 1000);
                arr_int8(c, expires_us);
            }
        }
    }
    copy_finish(c);
}

/* Opens the round's transaction and COPYs its rows, in one query string:
 * BEGIN, the time (when jobs are parked), a COPY per part that has rows,
 * and COMMIT too when 'commit' (nothing else to write). */
static int run_copy(store_t *s, store_op_t **ops, int n, const round_rows_t *c, bool commit,
                    round_err_t *e)
{
    const int rows[PARTS] = {c->finished, c->logs, c->parks};
    strbuf_t sql;
    strbuf_init(&sql, 1024);
    strbuf_puts(&sql, "BEGIN;");
    if (c->parks) strbuf_puts(&sql, SQL_NOW_US);
    for (int p = 0; p < PARTS; p++)
        if (rows[p]) strbuf_puts(&sql, COPY_SQL[p]);
    if (commit) strbuf_puts(&sql, " COMMIT;");
    int part = -1;
    int64_t now_us = 0;
    bool failed = !PQsendQuery(s->conn, sql.data);
    strbuf_free(&sql);
    if (failed) {
        round_error(s->conn, NULL, e);
        return -1;
    }
    /* every result up to the last (NULL), also after an error; a broken
     * connection ends it (the round is run again after a reconnect) */
    PGresult *r;
    while ((r = PQgetResult(s->conn))) {
        ExecStatusType st = PQresultStatus(r);
        if (PQstatus(s->conn) == CONNECTION_BAD) {
            if (!failed) round_error(s->conn, st == PGRES_COPY_IN ? NULL : r, e);
            PQclear(r);
            return -1;
        }
        if (st == PGRES_TUPLES_OK) {
            now_us = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        } else if (st == PGRES_COPY_IN) {
            while (++part < PARTS && !rows[part])
                ;
            if (part < PARTS) {
                pgarr_t data;
                copy_part(s, ops, n, part, now_us, &data);
                bool sent = PQputCopyData(s->conn, data.b.data, (int)data.b.len) == 1;
                PQputCopyEnd(s->conn, sent ? NULL : "the COPY data could not be sent");
                arr_free(&data);
            } else {
                PQputCopyEnd(s->conn, "no data for this COPY");
            }
        } else if (st != PGRES_COMMAND_OK && !failed) {
            round_error(s->conn, r, e);
            failed = true;
        }
        PQclear(r);
    }
    return failed ? -1 : 0;
}

/* The rows of a round that are not COPYed, in the one prepared statement. */
static int run_hot(store_t *s, store_op_t **ops, int n, round_err_t *e)
{
    enum { F = 0, D = 3, P = 19, HOURS = 27, U = 28 }; /* first array of each part */
    static const uint32_t oids[SQL_HOT_PARAMS] = {
        OID_UUID, OID_TEXT, OID_TEXT,                                         /* F */
        OID_UUID, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT4, /* D */
        OID_TEXT, OID_TEXT, OID_INT4, OID_INT4, OID_INT4, OID_TEXT, OID_TEXT, OID_INT4, OID_INT4,
        OID_UUID, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT4, OID_INT8, OID_TEXT, OID_TEXT, /* P */
        0,                                                                    /* hours */
        OID_UUID};                                                            /* U */
    pgarr_t a[SQL_HOT_PARAMS];
    const sink_t fin = {&a[F], NULL}, log = {&a[D], NULL}, park = {&a[P], NULL};
    int rows = 0, rc = 0, finished = 0;
    for (int i = 0; i < SQL_HOT_PARAMS; i++)
        if (i != HOURS) arr_init(&a[i], oids[i]);
    for (int k = 0; k < n; k++) {
        store_op_t *op = ops[k];
        if (op->kind != STORE_OUTCOME) continue;
        for (int i = 0; i < op->n_rows; i++) {
            const store_row_t *r = &op->rows[i];
            if (s->safe && r->finish) {
                put_finished(&fin, r);
                finished++;
                rows++;
            }
            int group = s->safe ? log_group(op, i) : 0;
            if (group > 0) {
                put_log(&log, r);
                /* job_ids: this row's finished id and the next group - 1 */
                arr_int4(&a[D + 14], group > 1 ? finished : 0);
                arr_int4(&a[D + 15], group > 1 ? group : 0);
                rows++;
            }
            if (r->park_reason && !park_copied(s, r)) {
                put_park(&park, r, r->park_delay_ms);
                rows++;
            }
            if (r->unpark) {
                arr_uuid(&a[U], r->job->id);
                rows++;
            }
        }
    }
    if (rows > 0) {
        const char *values[SQL_HOT_PARAMS];
        int lengths[SQL_HOT_PARAMS], formats[SQL_HOT_PARAMS];
        char hours[24];
        int_text(hours, sizeof(hours), s->o.park_retention_h);
        for (int i = 0; i < SQL_HOT_PARAMS; i++) {
            formats[i] = i != HOURS;
            if (i == HOURS) {
                values[i] = hours;
                lengths[i] = 0;
            } else {
                values[i] = arr_end(&a[i], &lengths[i]);
            }
        }
        PGresult *r =
            PQexecPrepared(s->conn, SQL_HOT_NAME, SQL_HOT_PARAMS, values, lengths, formats, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            round_error(s->conn, r, e);
            rc = -1;
        }
        PQclear(r);
    }
    for (int i = 0; i < SQL_HOT_PARAMS; i++)
        if (i != HOURS) arr_free(&a[i]);
    return rc;
}

/* A binary text[] (or uuid[] when 'uuid') of the ids of every op of 'kind'
 * in 'ops'. Returns how many there are. */
static int collect_ids(pgarr_t *a, store_op_t **ops, int n, store_kind_t kind, bool uuid)
{
    int count = 0;
    arr_init(a, uuid ? OID_UUID : OID_TEXT);
    for (int k = 0; k < n; k++) {
        if (ops[k]->kind != kind) continue;
        for (int i = 0; i < ops[k]->n_ids; i++, count++) {
            if (uuid)
                arr_uuid(a, ops[k]->ids[i]);
            else
                arr_str(a, ops[k]->ids[i]);
        }
    }
    return count;
}

/* Runs 'sql' with 'ids' of every op of 'kind' as $1 (text[]). Returns 0
 * (also when there is nothing to do) or -1. */
static int exec_ids(store_t *s, store_op_t **ops, int n, store_kind_t kind, const char *sql,
                    round_err_t *e)
{
    pgarr_t a;
    int rc = 0;
    if (collect_ids(&a, ops, n, kind, false) > 0) {
        int len, fmt = 1;
        const char *v = arr_end(&a, &len);
        PGresult *r = exec_params(s->conn, NULL, sql, 1, &v, &len, &fmt, e->err, sizeof(e->err));
        rc = r ? 0 : -1;
        PQclear(r);
    }
    arr_free(&a);
    return rc;
}

static int write_leases(store_t *s, store_op_t **ops, int n, round_err_t *e)
{
    for (int k = 0; k < n; k++) {
        store_op_t *op = ops[k];
        if (op->kind != STORE_LEASE || op->n_ids == 0) continue;
        pgarr_t a;
        collect_ids(&a, &op, 1, STORE_LEASE, true);
        int len;
        const char *ids = arr_end(&a, &len);
        PGresult *r;
        if (op->release) {
            const char *v[2] = {ids, s->instance_id};
            int lens[2] = {len, 0}, fmts[2] = {1, 0};
            r = exec_params(s->conn, NULL, SQL_LEASE_RELEASE, 2, v, lens, fmts, e->err,
                            sizeof(e->err));
            if (r) {
                PQclear(r);
                r = exec_params(s->conn, NULL, SQL_PROBE_FORGET, 1, v, lens, fmts, e->err,
                                sizeof(e->err));
            }
        } else {
            char lease[24];
            int_text(lease, sizeof(lease), s->o.lease_ms);
            const char *v[3] = {ids, lease, s->instance_id};
            int lens[3] = {len, 0, 0}, fmts[3] = {1, 0, 0};
            r = exec_params(s->conn, NULL, SQL_LEASE_RENEW, 3, v, lens, fmts, e->err,
                            sizeof(e->err));
        }
        arr_free(&a);
        if (!r) return -1;
        PQclear(r);
    }
    return 0;
}

static void read_state(PGresult *r, int row, int col, greylist_row_t *out)
{
    out->found = true;
    out->failures = atoi(PQgetvalue(r, row, col));
    out->level = atoi(PQgetvalue(r, row, col + 1));
    out->until_ms = strtoll(PQgetvalue(r, row, col + 2), NULL, 10);
    out->has_parked = PQgetvalue(r, row, col + 3)[0] == 't';
}

static int write_endpoint(store_t *s, store_op_t *op, round_err_t *e)
{
    PGresult *r = NULL;
    memset(&op->row, 0, sizeof(op->row));
    if (op->action == STORE_EP_FAILURE) {
        char thr[16], base[24], max[24], status[16];
        int_text(thr, sizeof(thr), s->o.greylist_threshold);
        int_text(base, sizeof(base), s->o.greylist_base_s);
        int_text(max, sizeof(max), s->o.greylist_max_s);
        int_text(status, sizeof(status), op->status);
        const char *params[8] = {op->endpoint_id,
                                 op->probe ? "true" : "false",
                                 thr,
                                 base,
                                 max,
                                 op->error_class,
                                 op->status > 0 ? status : NULL,
                                 op->error[0] ? op->error : NULL};
        r = query(s, SQL_EP_FAILURE, 8, params, e);
    } else if (op->action == STORE_EP_SUCCESS) {
        const char *params[1] = {op->endpoint_id};
        PGresult *g = query(s, SQL_EP_WAS_GREY, 1, params, e);
        if (!g) return -1;
        bool was_grey = PQntuples(g) > 0 && PQgetvalue(g, 0, 0)[0] == 't';
        PQclear(g);
        r = query(s, SQL_EP_SUCCESS, 1, params, e);
        if (r && (was_grey || op->probe) && exec(s, SQL_EP_RELEASE, 1, params, e) < 0) {
            PQclear(r);
            return -1;
        }
    } else {
        const char *params[1] = {op->endpoint_id};
        r = query(s, SQL_EP_PROBE_RELEASE, 1, params, e);
    }
    if (!r) return -1;
    if (PQntuples(r) > 0) read_state(r, 0, 0, &op->row);
    PQclear(r);
    return 0;
}

static int read_subs(store_t *s, store_op_t **ops, int n, round_err_t *e)
{
    pgarr_t a;
    if (collect_ids(&a, ops, n, STORE_SUB_FETCH, false) == 0) {
        arr_free(&a);
        return 0;
    }
    uint64_t since = UINT64_MAX; /* the earliest start of the reads merged here */
    for (int i = 0; i < n; i++)
        if (ops[i]->kind == STORE_SUB_FETCH && ops[i]->sub_since < since) since = ops[i]->sub_since;
    int len, fmt = 1;
    const char *v = arr_end(&a, &len);
    PGresult *r = exec_params(s->conn, NULL, SQL_SUB_FETCH, 1, &v, &len, &fmt, e->err,
                              sizeof(e->err));
    arr_free(&a);
    if (!r) return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        sub_record_t rec;
        memset(&rec, 0, sizeof(rec));
        rec.id = PQgetvalue(r, i, 0);
        rec.directory = strcmp(PQgetvalue(r, i, 1), "directory") == 0;
        rec.owner_id = PQgetvalue(r, i, 2);
        rec.target_url = PQgetvalue(r, i, 3);
        rec.endpoint_id = PQgetvalue(r, i, 4);
        int pm = payload_mode_parse(PQgetvalue(r, i, 5));
        int bf = body_format_parse(PQgetvalue(r, i, 6));
        rec.payload_mode = pm < 0 ? PAYLOAD_FULL : pm;
        rec.body_format = bf < 0 ? FORMAT_STANDARD : bf;
        rec.batch = PQgetvalue(r, i, 7)[0] == 't';
        rec.active = PQgetvalue(r, i, 8)[0] == 't';
        rec.secret = PQgetvalue(r, i, 9);
        rec.previous_secret = PQgetisnull(r, i, 10) ? NULL : PQgetvalue(r, i, 10);
        rec.previous_secret_until = strtoll(PQgetvalue(r, i, 11), NULL, 10);
        (void)subcache_put_fetched(s->o.subs, &rec, since); /* false: a job reads again */
    }
    PQclear(r);
    return 0;
}

static void free_claimed(store_op_t *op)
{
    while (op->claimed) {
        wjob_t *j = op->claimed;
        op->claimed = j->next;
        wjob_free(j);
    }
}

/* Appends the claimed rows of 'r' to op->claimed. */
static int take_claimed(store_t *s, PGresult *r, bool probe, wjob_t ***tail, round_err_t *e)
{
    for (int i = 0; i < PQntuples(r); i++) {
        const char *text = PQgetvalue(r, i, 3);
        size_t len = (size_t)PQgetlength(r, i, 3);
        job_t job;
        char why[256];
        if (job_decode(text, len, &job, why, sizeof(why)) < 0) {
            log_error("parked_job_unusable job_id=%s error=\"%s\" action=failed",
                      PQgetvalue(r, i, 0), why);
            const char *params[1] = {PQgetvalue(r, i, 0)};
            if (exec(s, SQL_DROP_BAD, 1, params, e) < 0) return -1;
            continue;
        }
        /* the row's id wins: the API's redeliveries carry a new one */
        snprintf(job.id, sizeof(job.id), "%s", PQgetvalue(r, i, 0));
        wjob_t *j = wjob_new(text, len, &job);
        j->source = WJOB_PARKED;
        j->probe = probe;
        j->parked_seq = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        j->attempt = atoi(PQgetvalue(r, i, 2));
        **tail = j;
        *tail = &j->next;
    }
    return 0;
}

static int read_claims(store_t *s, store_op_t **ops, int n, round_err_t *e)
{
    for (int k = 0; k < n; k++) {
        store_op_t *op = ops[k];
        if (op->kind != STORE_CLAIM) continue;
        free_claimed(op);
        wjob_t **tail = &op->claimed;
        char lease[24], limit[16];
        int_text(lease, sizeof(lease), s->o.lease_ms);
        int_text(limit, sizeof(limit), op->limit);
        const char *p2[2] = {s->instance_id, lease};
        PGresult *r = query(s, SQL_CLAIM_PROBES, 2, p2, e);
        if (!r) return -1;
        int rc = take_claimed(s, r, true, &tail, e);
        PQclear(r);
        if (rc < 0) return -1;
        if (op->limit <= 0) continue;
        const char *p3[3] = {s->instance_id, lease, limit};
        r = query(s, SQL_CLAIM_DUE, 3, p3, e);
        if (!r) return -1;
        rc = take_claimed(s, r, false, &tail, e);
        PQclear(r);
        if (rc < 0) return -1;
    }
    return 0;
}

static int read_drains(store_t *s, store_op_t **ops, int n, round_err_t *e)
{
    for (int k = 0; k < n; k++) {
        store_op_t *op = ops[k];
        if (op->kind != STORE_DRAIN) continue;
        free_claimed(op);
        free(op->empty);
        op->empty = calloc((size_t)op->n_ids + 1, 1);
        if (!op->empty) abort();
        wjob_t **tail = &op->claimed;
        char lease[24], limit[16];
        int_text(lease, sizeof(lease), s->o.lease_ms);
        for (int i = 0; i < op->n_ids; i++) {
            int_text(limit, sizeof(limit), op->limits ? op->limits[i] : 1);
            const char *p4[4] = {op->ids[i], limit, s->instance_id, lease};
            PGresult *r = query(s, SQL_DRAIN, 4, p4, e);
            if (!r) return -1;
            int rc = take_claimed(s, r, false, &tail, e);
            PQclear(r);
            if (rc < 0) return -1;
            const char *p2[2] = {op->ids[i], s->instance_id};
            r = query(s, SQL_DRAIN_LEFT, 2, p2, e);
            if (!r) return -1;
            op->empty[i] = PQgetvalue(r, 0, 0)[0] != 't';
            PQclear(r);
        }
    }
    return 0;
}

/* Runs every operation of one round in one transaction. */
static int run_round(store_t *s, store_op_t **ops, int n, round_err_t *e)
{
    bool others = false;
    for (int k = 0; k < n && !others; k++)
        others = ops[k]->kind != STORE_OUTCOME;
    round_rows_t c = count_rows(s, ops, n);
    bool copy = c.finished + c.logs + c.parks > 0;
    bool txn = others || copy;
    if (copy) {
        /* the COPYs commit too when they are all the round writes (the
         * steady state: 3 round trips) */
        bool commit = !others && c.hot == 0;
        if (run_copy(s, ops, n, &c, commit, e) < 0) goto fail;
        if (commit) return 0;
    } else if (txn && exec(s, "BEGIN", 0, NULL, e) < 0) {
        return -1;
    }
    if (c.hot > 0 && run_hot(s, ops, n, e) < 0) goto fail;
    if (!txn) return 0;
    if (exec_ids(s, ops, n, STORE_DEACTIVATE, SQL_DEACTIVATE, e) < 0) goto fail;
    if (write_leases(s, ops, n, e) < 0) goto fail;
    for (int k = 0; k < n; k++)
        if (ops[k]->kind == STORE_ENDPOINT && write_endpoint(s, ops[k], e) < 0) goto fail;
    if (read_subs(s, ops, n, e) < 0) goto fail;
    if (read_drains(s, ops, n, e) < 0) goto fail;
    if (read_claims(s, ops, n, e) < 0) goto fail;
    if (exec(s, "COMMIT", 0, NULL, e) < 0) goto fail;
    return 0;
fail:
    if (txn && pg_alive(s->conn)) {
        round_err_t ignored;
        exec(s, "ROLLBACK", 0, NULL, &ignored);
    }
    for (int k = 0; k < n; k++)
        if (ops[k]->kind == STORE_CLAIM || ops[k]->kind == STORE_DRAIN) free_claimed(ops[k]);
    return -1;
}

/* ---------------------------------------------------------------- completions */

static void post_done(store_t *s, store_op_t *op)
{
    op->next = NULL;
    pthread_mutex_lock(&s->lock);
    bool was_empty = s->done_head == NULL;
    if (s->done_tail)
        s->done_tail->next = op;
    else
        s->done_head = op;
    s->done_tail = op;
    pthread_mutex_unlock(&s->lock);
    if (was_empty) {
        char c = 1;
        ssize_t w = write(s->wake_fd[1], &c, 1);
        (void)w; /* a full pipe already wakes the loop */
    }
}

static void deliver_done(store_t *s)
{
    pthread_mutex_lock(&s->lock);
    store_op_t *op = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (op) {
        store_op_t *next = op->next;
        op->next = NULL;
        if (op->kind != STORE_ENDPOINT_STATES) atomic_fetch_sub(&s->pending, 1);
        s->done(op, s->ud);
        op = next;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    deliver_done(arg);
}

/* ---------------------------------------------------------------- notifications */

static int load_states(store_t *s, char **ids, int n_ids, bool full)
{
    round_err_t e;
    PGresult *r;
    if (full) {
        r = query(s, SQL_STATES_FULL, 0, NULL, &e);
    } else {
        pgarr_t a;
        arr_init(&a, OID_TEXT);
        for (int i = 0; i < n_ids; i++)
            arr_str(&a, ids[i]);
        int len, fmt = 1;
        const char *v = arr_end(&a, &len);
        r = exec_params(s->conn, NULL, SQL_STATES_IDS, 1, &v, &len, &fmt, e.err, sizeof(e.err));
        arr_free(&a);
    }
    if (!r) {
        log_warn("endpoint_states_failed error=\"%s\"", e.err);
        return -1;
    }
    store_op_t *op = store_op_new(STORE_ENDPOINT_STATES);
    op->full = full;
    if (full) {
        for (int i = 0; i < PQntuples(r); i++)
            store_op_add_id(op, PQgetvalue(r, i, 0));
    } else {
        for (int i = 0; i < n_ids; i++)
            store_op_add_id(op, ids[i]);
    }
    op->states = calloc((size_t)op->n_ids + 1, sizeof(*op->states));
    if (!op->states) abort();
    for (int i = 0; i < PQntuples(r); i++) {
        const char *id = PQgetvalue(r, i, 0);
        for (int x = 0; x < op->n_ids; x++)
            if (strcmp(op->ids[x], id) == 0) read_state(r, i, 1, &op->states[x]);
    }
    PQclear(r);
    post_done(s, op);
    return 0;
}

/* Reads pending NOTIFYs (endpoint ids) and posts their current state. */
static int check_notifications(store_t *s)
{
    if (!PQconsumeInput(s->conn)) return -1;
    char **ids = NULL;
    int n = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(s->conn)) != NULL) {
        bool dup = false;
        for (int i = 0; i < n && !dup; i++)
            dup = strcmp(ids[i], nt->extra) == 0;
        if (!dup) {
            ids = grow_for(ids, n, sizeof(*ids));
            ids[n] = strdup(nt->extra);
            if (!ids[n]) abort();
            n++;
        }
        PQfreemem(nt);
    }
    int rc = n ? load_states(s, ids, n, false) : 0;
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return rc;
}

/* ---------------------------------------------------------------- upkeep */

static void upkeep(store_t *s)
{
    int64_t now = hookd_mono_ms();
    round_err_t e;
    if (now >= s->next_expire) {
        s->next_expire = now + STORE_EXPIRE_EVERY_MS;
        const char *params[1] = {s->o.log_expired ? "true" : "false"};
        for (int round = 0; round < 10; round++) {
            PGresult *r = query(s, SQL_EXPIRE, 1, params, &e);
            if (!r) {
                log_warn("parked_expiry_failed error=\"%s\"", e.err);
                break;
            }
            long n = atol(PQgetvalue(r, 0, 0));
            PQclear(r);
            if (n > 0) {
                metric_add(s->m_expired, (double)n);
                log_info("parked_jobs_expired count=%ld", n);
            }
            if (n < 1000) break;
        }
    }
    if (now >= s->next_gauges) {
        s->next_gauges = now + STORE_GAUGES_EVERY_MS;
        PGresult *r = query(s, SQL_GAUGES, 0, NULL, &e);
        if (r) {
            metric_set(s->m_parked, atof(PQgetvalue(r, 0, 0)));
            metric_set(s->m_greylisted, atof(PQgetvalue(r, 0, 1)));
            PQclear(r);
        }
    }
    if (now >= s->next_prune) {
        s->next_prune = now + STORE_PRUNE_EVERY_MS;
        struct {
            const char *sql;
            int64_t hours;
            metric_t *m;
        } prunes[] = {{SQL_PRUNE_FINISHED, s->o.dedup_retention_h, s->m_pruned_finished},
                      {SQL_PRUNE_DELIVERIES, s->o.delivery_log_retention_h,
                       s->m_pruned_deliveries}};
        for (size_t i = 0; i < HOOKD_ARRAY_LEN(prunes); i++) {
            char hours[24];
            int_text(hours, sizeof(hours), prunes[i].hours);
            const char *params[1] = {hours};
            for (int round = 0; round < 20; round++) {
                PGresult *r = query(s, prunes[i].sql, 1, params, &e);
                if (!r) {
                    log_warn("retention_failed error=\"%s\"", e.err);
                    break;
                }
                long n = atol(PQcmdTuples(r));
                PQclear(r);
                metric_add(prunes[i].m, (double)n);
                if (n < STORE_PRUNE_CHUNK) break;
            }
        }
    }
}

/* ---------------------------------------------------------------- thread */

/* Empties a queue (under s->lock), returning its list. */
static store_op_t *take_queue(store_op_t **head, store_op_t **tail)
{
    store_op_t *list = *head;
    *head = *tail = NULL;
    return list;
}

static void fail_all(store_t *s, store_op_t *list)
{
    while (list) {
        store_op_t *next = list->next;
        list->failed = true;
        post_done(s, list);
        list = next;
    }
}

static int prepare(store_t *s, char *err, size_t err_size)
{
    /* Every statement of this connection finds its rows through an index
     * (job ids, endpoint ids, due times), however small a table looked when
     * it was planned: finished_jobs grows by thousands of rows a second, and
     * a plan made while it was small would scan it sequentially for ever.
     * With sequential scans ruled out, the round statement's one generic
     * plan is right at any size, and it is not planned again each round
     * (which costs more than running a small round). */
    if (pg_exec(s->conn, "SET enable_seqscan = off", 0, NULL, err, err_size) < 0 ||
        pg_exec(s->conn, "SET plan_cache_mode = force_generic_plan", 0, NULL, err, err_size) < 0)
        return -1;
    PGresult *r = PQprepare(s->conn, SQL_HOT_NAME, SQL_HOT, SQL_HOT_PARAMS, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc < 0)
        snprintf(err, err_size, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
    PQclear(r);
    return rc;
}

static int stop_level(store_t *s)
{
    pthread_mutex_lock(&s->lock);
    int v = s->stop;
    pthread_mutex_unlock(&s->lock);
    return v;
}

static bool connect_store(store_t *s)
{
    char err[512] = "";
    if (s->conn) PQfinish(s->conn);
    s->conn = NULL;
    atomic_store(&s->connected, false);
    for (int64_t backoff = 200; stop_level(s) < 2;
         backoff = backoff < 5000 ? backoff * 2 : 5000) {
        s->conn = pg_connect(s->url, "hookd-worker-store", 1000, NULL, err, sizeof(err));
        if (s->conn && pg_listen(s->conn, "hookd_endpoints", err, sizeof(err)) == 0 &&
            prepare(s, err, sizeof(err)) == 0 && load_states(s, NULL, 0, true) == 0) {
            atomic_store(&s->connected, true);
            log_info("store_connected");
            return true;
        }
        PQfinish(s->conn);
        s->conn = NULL;
        log_warn("store_connect_failed error=\"%s\" retry_ms=%lld", err, (long long)backoff);
        hookd_sleep_ms(backoff);
    }
    return false;
}

/* Waits on s->cond (s->lock held) for at most 'ms' milliseconds. */
static void wait_ms(store_t *s, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

static void *run(void *arg)
{
    store_t *s = arg;
    store_op_t **batch = malloc(sizeof(*batch) * STORE_MAX_OPS_PER_ROUND);
    if (!batch) abort();
    store_op_t *retry = NULL; /* ops of a failed round, run again first */
    int failures = 0;
    connect_store(s);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (!retry && !s->queue_head && s->stop == 0) wait_ms(s, STORE_IDLE_WAIT_MS);
        /* group commit (see STORE_GATHER_MS); store_submit signals when
         * the queue reaches STORE_GATHER_ROWS */
        while (!retry && s->queue_head && s->stop == 0 && s->queued_rows < STORE_GATHER_ROWS &&
               !atomic_load(&s->hurry)) {
            int64_t left_us = s->taken_us + STORE_GATHER_MS * 1000 - hookd_mono_us();
            if (left_us <= 0) break;
            wait_ms(s, (left_us + 999) / 1000);
        }
        int stop = s->stop;
        store_op_t *list = retry;
        retry = NULL;
        if (!list) {
            list = take_queue(&s->queue_head, &s->queue_tail);
            s->queued_rows = 0;
            if (list) s->taken_us = hookd_mono_us();
        }
        pthread_mutex_unlock(&s->lock);
        if (stop >= 2) {
            fail_all(s, list);
            break;
        }
        if (stop == 1 && !list) break;

        if (!pg_alive(s->conn) && !connect_store(s)) {
            retry = list; /* giving up: stop >= 2 */
            continue;
        }
        if (check_notifications(s) < 0 && !pg_alive(s->conn)) {
            retry = list;
            continue;
        }
        /* take a bounded round off the front of the list */
        while (list) {
            int n = 0, rows = 0;
            store_op_t *op = list;
            while (op && n < STORE_MAX_OPS_PER_ROUND && rows < STORE_MAX_ROWS_PER_ROUND) {
                batch[n++] = op;
                rows += op_rows(op);
                op = op->next;
            }
            round_err_t e = {{0}, false};
            int64_t t0 = hookd_mono_us();
            int rc = run_round(s, batch, n, &e);
            if (rc < 0 && e.duplicate && !s->safe && pg_alive(s->conn)) {
                /* a job finished or parked twice (see SQL_HOT): the same round, tolerating it */
                log_debug("store_round_rerun reason=duplicate ops=%d", n);
                s->safe = true;
                rc = run_round(s, batch, n, &e);
            }
            s->safe = false;
            if (rc == 0) {
                failures = 0;
                metric_inc(s->m_rounds);
                metric_observe(s->m_round_seconds, (double)(hookd_mono_us() - t0) / 1e6);
                list = op;
                for (int i = 0; i < n; i++)
                    post_done(s, batch[i]);
                continue;
            }
            metric_inc(s->m_errors);
            failures++;
            log_warn("store_round_failed ops=%d attempt=%d error=\"%s\"", n, failures, e.err);
            if (!pg_alive(s->conn)) atomic_store(&s->connected, false);
            if (failures >= 5 && pg_alive(s->conn)) {
                /* an error that keeps coming back with a working connection is
                 * in the data: run the round one operation at a time and drop
                 * (with an error line) the one that fails alone */
                int i = 0;
                for (; i < n && pg_alive(s->conn); i++) {
                    round_err_t e1 = {{0}, false};
                    s->safe = true; /* one at a time: tolerate finished twice */
                    if (run_round(s, &batch[i], 1, &e1) < 0) {
                        if (!pg_alive(s->conn)) break;
                        log_error("store_op_dropped kind=%d error=\"%s\"", (int)batch[i]->kind,
                                  e1.err);
                    }
                }
                s->safe = false;
                /* batch[0..i) are done; the rest stays in the list */
                store_op_t *rest = i < n ? batch[i] : op;
                for (int k = 0; k < i; k++)
                    post_done(s, batch[k]);
                failures = 0;
                list = rest;
                if (i < n) {
                    retry = list;
                    list = NULL;
                }
                continue;
            }
            retry = list;
            list = NULL;
            int64_t backoff = failures < 5 ? 100 * failures : 1000;
            hookd_sleep_ms(backoff);
        }
        if (pg_alive(s->conn)) upkeep(s);
    }
    free(batch);
    PQfinish(s->conn);
    s->conn = NULL;
    atomic_store(&s->connected, false);
    return NULL;
}


/* ---------------------------------------------------------------- lookups */

/* The dedup lookups (STORE_LOOKUP) have a thread and a connection of their
 * own. Every consumed job is looked up and every outcome written, and one
 * PostgreSQL backend doing both, one round after the other, was what bounded
 * the worker's throughput; reads and writes now run on two backends at
 * once. Lookups come back as soon as they are done, not in submission order
 * with the other operations (nothing orders them: see SQL_LOOKUP). */

static PGconn *lookup_connect(store_t *s)
{
    char err[512] = "";
    for (int64_t backoff = 200; stop_level(s) < 2;
         backoff = backoff < 5000 ? backoff * 2 : 5000) {
        PGconn *c = pg_connect(s->url, "hookd-worker-lookup", 1000, NULL, err, sizeof(err));
        if (c && pg_exec(c, "SET enable_seqscan = off", 0, NULL, err, sizeof(err)) == 0 &&
            pg_exec(c, "SET plan_cache_mode = force_generic_plan", 0, NULL, err, sizeof(err)) == 0) {
            PGresult *r = PQprepare(c, SQL_LOOKUP_NAME, SQL_LOOKUP, 1, NULL);
            bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            if (!ok) snprintf(err, sizeof(err), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
            PQclear(r);
            if (ok) return c;
        }
        PQfinish(c);
        log_warn("store_lookup_connect_failed error=\"%s\" retry_ms=%lld", err, (long long)backoff);
        hookd_sleep_ms(backoff);
    }
    return NULL;
}

/* One statement for the lookups ops[0..n). */
static int run_lookups(PGconn *c, store_op_t **ops, int n, char *err, size_t err_size)
{
    pgarr_t a;
    arr_init(&a, OID_UUID);
    for (int k = 0; k < n; k++) {
        free(ops[k]->found);
        ops[k]->found = calloc((size_t)ops[k]->n_jobs + 1, 1);
        if (!ops[k]->found) abort();
        for (int i = 0; i < ops[k]->n_jobs; i++)
            arr_uuid(&a, ops[k]->jobs[i]->id);
    }
    int len, fmt = 1;
    const char *v = arr_end(&a, &len);
    PGresult *r = exec_params(c, SQL_LOOKUP_NAME, NULL, 1, &v, &len, &fmt, err, err_size);
    arr_free(&a);
    if (!r) return -1;
    mark_found(ops, n, r);
    PQclear(r);
    return 0;
}

static void *lookup_run(void *arg)
{
    store_t *s = arg;
    store_op_t **batch = malloc(sizeof(*batch) * STORE_MAX_OPS_PER_ROUND);
    if (!batch) abort();
    PGconn *conn = NULL;
    store_op_t *list = NULL; /* taken, not done */
    int failures = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!list && !s->lookup_head && s->stop == 0)
            pthread_cond_wait(&s->lookup_cond, &s->lock);
        int stop = s->stop;
        if (!list) list = take_queue(&s->lookup_head, &s->lookup_tail);
        pthread_mutex_unlock(&s->lock);
        if (stop >= 2) {
            fail_all(s, list);
            break;
        }
        if (stop == 1 && !list) break;
        if (!conn || !pg_alive(conn)) {
            PQfinish(conn);
            if (!(conn = lookup_connect(s))) continue; /* giving up: stop >= 2 */
        }
        while (list) {
            int n = 0, jobs = 0;
            store_op_t *op = list;
            while (op && n < STORE_MAX_OPS_PER_ROUND && (n == 0 || jobs + op->n_jobs <= LOOKUP_MAX_JOBS)) {
                batch[n++] = op;
                jobs += op->n_jobs;
                op = op->next;
            }
            char err[512];
            if (run_lookups(conn, batch, n, err, sizeof(err)) == 0) {
                failures = 0;
                for (int i = 0; i < n; i++)
                    post_done(s, batch[i]);
                list = op;
                continue;
            }
            metric_inc(s->m_errors);
            failures++;
            log_warn("store_lookup_failed ops=%d attempt=%d error=\"%s\"", n, failures, err);
            int64_t backoff = failures < 5 ? 100 * failures : 1000;
            hookd_sleep_ms(backoff);
            break; /* again from the top: reconnect, or give up at stop >= 2 */
        }
    }
    free(batch);
    PQfinish(conn);
    return NULL;
}

store_t *store_start(const store_opts_t *o, struct event_base *base, store_done_fn done, void *ud)
{
    store_t *s = calloc(1, sizeof(*s));
    if (!s) abort();
    s->o = *o;
    s->url = strdup(o->database_url);
    s->instance_id = strdup(o->instance_id);
    if (!s->url || !s->instance_id) abort();
    s->base = base;
    s->done = done;
    s->ud = ud;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->lookup_cond, NULL);
    int64_t now = hookd_mono_ms();
    s->next_expire = now + 1000;
    s->next_gauges = now;
    s->next_prune = now + 5000;
    s->m_rounds = metrics_counter("hookd_store_rounds_total",
                                  "PostgreSQL transactions of the worker's store", NULL);
    s->m_round_seconds = metrics_histogram("hookd_store_round_seconds",
                                           "Duration of one store transaction", NULL,
                                           metrics_latency_buckets, metrics_latency_buckets_len);
    s->m_errors = metrics_counter("hookd_store_errors_total",
                                  "Failed store transactions (retried)", NULL);
    s->m_expired = metrics_counter("hookd_jobs_expired_total",
                                   "Parked jobs that expired (HOOKD_PARK_RETENTION_H)", NULL);
    s->m_parked = metrics_gauge("hookd_parked_jobs", "Jobs waiting in parked_jobs", NULL);
    s->m_greylisted = metrics_gauge("hookd_greylisted_endpoints", "Grey-listed endpoints", NULL);
    s->m_pruned_finished = metrics_counter("hookd_retention_deleted_total",
                                           "Rows deleted by retention", "table=\"finished_jobs\"");
    s->m_pruned_deliveries = metrics_counter("hookd_retention_deleted_total",
                                             "Rows deleted by retention", "table=\"deliveries\"");
    if (pipe(s->wake_fd) < 0) goto fail;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(s->wake_fd[i], F_GETFL);
        if (fl < 0 || fcntl(s->wake_fd[i], F_SETFL, fl | O_NONBLOCK) < 0) goto fail;
    }
    s->wake_ev = event_new(base, s->wake_fd[0], EV_READ | EV_PERSIST, on_wake, s);
    if (!s->wake_ev || event_add(s->wake_ev, NULL) < 0) goto fail;
    if (pthread_create(&s->lookup_thread, NULL, lookup_run, s) != 0) goto fail;
    s->lookup_started = true;
    if (pthread_create(&s->thread, NULL, run, s) != 0) goto fail;
    return s;
fail:
    if (s->lookup_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = 2;
        pthread_cond_signal(&s->lookup_cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->lookup_thread, NULL);
    }
    if (s->wake_ev) event_free(s->wake_ev);
    if (s->wake_fd[0] > 0) close(s->wake_fd[0]);
    if (s->wake_fd[1] > 0) close(s->wake_fd[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->lookup_cond);
    free(s->url);
    free(s->instance_id);
    free(s);
    return NULL;
}

void store_submit(store_t *s, store_op_t *op)
{
    op->next = NULL;
    atomic_fetch_add(&s->pending, 1);
    bool lookup = op->kind == STORE_LOOKUP;
    store_op_t **head = lookup ? &s->lookup_head : &s->queue_head;
    store_op_t **tail = lookup ? &s->lookup_tail : &s->queue_tail;
    pthread_mutex_lock(&s->lock);
    bool was_empty = !*head;
    if (*tail)
        (*tail)->next = op;
    else
        *head = op;
    *tail = op;
    if (lookup) {
        pthread_cond_signal(&s->lookup_cond);
    } else {
        /* wake the store thread from its idle wait, or from gathering once
         * the queue is worth a round (not on every operation) */
        int before = s->queued_rows;
        s->queued_rows += op_rows(op);
        if (was_empty || (before < STORE_GATHER_ROWS && s->queued_rows >= STORE_GATHER_ROWS))
            pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

void store_set_hurry(store_t *s, bool hurry)
{
    if (atomic_exchange(&s->hurry, hurry) == hurry || !hurry) return;
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->cond); /* out of a gathering wait */
    pthread_mutex_unlock(&s->lock);
}

int store_pending(const store_t *s)
{
    return atomic_load(&s->pending);
}

bool store_connected(const store_t *s)
{
    return atomic_load(&s->connected);
}

void store_stop(store_t *s, int64_t timeout_ms)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_cond_signal(&s->lookup_cond);
    pthread_mutex_unlock(&s->lock);
    /* let it finish the queue for a while, delivering completions meanwhile */
    int64_t deadline = hookd_mono_ms() + timeout_ms;
    while (atomic_load(&s->pending) > 0 && hookd_mono_ms() < deadline) {
        deliver_done(s);
        hookd_sleep_ms(5);
    }
    pthread_mutex_lock(&s->lock);
    s->stop = 2;
    pthread_cond_signal(&s->cond);
    pthread_cond_signal(&s->lookup_cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_join(s->lookup_thread, NULL);
    /* whatever was never taken fails; completions may submit more: repeat */
    for (;;) {
        store_op_t *left = take_queue(&s->queue_head, &s->queue_tail);
        s->queued_rows = 0;
        store_op_t *lookups = take_queue(&s->lookup_head, &s->lookup_tail);
        if (!left && !lookups && !s->done_head) break;
        fail_all(s, left);
        fail_all(s, lookups);
        deliver_done(s);
    }
    event_free(s->wake_ev);
    close(s->wake_fd[0]);
    close(s->wake_fd[1]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->lookup_cond);
    free(s->url);
    free(s->instance_id);
    free(s);
}
