/* Delivery: the life of a job from consumption to a durable outcome -
 * dedup, subscription check, grey-list verdict, batching into requests,
 * signing and sending, outcome rows, retries and grey-list updates. */
#include "delivery.h"

#include "consumer.h"
#include "dedup.h"
#include "formats.h"
#include "scheduler.h"
#include "sender.h"
#include "subcache.h"

#include "hookd/json.h"
#include "hookd/log.h"
#include "hookd/metrics.h"
#include "hookd/target.h"
#include "hookd/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Memory bound: no messages are taken above these; windows are cut short
 * until below 3/4. */
#define HELD_MAX_JOBS 8000
#define HELD_MAX_BYTES (6u << 20)
#define EXCERPT_MAX 1024
/* An endpoint with every request slot busy and no completion for STALL_MS
 * is stalled (slow or dead): its queued jobs go to parked_jobs (reason
 * 'greylist'), new ones behind them, until it has drained them again - so
 * dead endpoints cannot fill the memory bound and stop consumption for
 * everybody. Draining takes jobs back in windows that grow while the
 * endpoint keeps up (up to DRAIN_CHUNK_MIN or 2 x HOOKD_BATCH_MAX) and
 * shrink when it stalls again, so a slow endpoint does not churn. */
#define STALL_MS 1000
#define DRAIN_CHUNK_MIN 100
/* While the memory bound is reached, an endpoint counts as stalled after
 * PRESSURE_STALL_MS without progress (checked every PRESSURE_CHECK_MS).
 * Both thresholds grow with the typical request duration (STALL_FACTOR
 * times its moving average), so a loaded machine does not mistake slow
 * for stalled and start parking everything. */
#define PRESSURE_STALL_MS 100
#define PRESSURE_CHECK_MS 50
#define STALL_FACTOR 10
/* ... and only once the other endpoints have shown they are answering:
 * since the endpoint's last progress, twice as many requests have
 * completed as the others have in flight. A loop that was busy or
 * descheduled, or a receiver that is slow for everybody, completes
 * nothing meanwhile, so it parks nobody. */
/* Overdue requests - unanswered after STALL_MS, or STALL_FACTOR typical
 * requests - may hold at most half of the request slots (HOOKD_MAX_INFLIGHT,
 * rounded up) while other endpoints wait for one: beyond that the oldest
 * are given up as timeouts, so hanging endpoints cannot take every slot
 * until HOOKD_HTTP_TIMEOUT_MS while healthy ones wait (their jobs are
 * retried, and the failures grey-list them sooner). A request counts as
 * overdue at two ticks in a row, so a loop that was busy reads the answers
 * that came meanwhile first. */

enum {
    TAG_LOOKUP = 1, /* dedup lookup of consumed jobs (jobs[]) */
    TAG_FETCH,      /* subscription re-read for jobs[] */
    TAG_REQUEST,    /* outcome rows of a request (ctx = request) */
    TAG_PLAIN,      /* outcome rows without a request (cancellations) */
    TAG_PARK,       /* grey-list parking (ctx = endpoint) */
    TAG_ENDPOINT,   /* grey-list update (ctx = endpoint) */
    TAG_DRAIN,      /* parked jobs of draining endpoints (ctx = their park epochs) */
    TAG_NONE,       /* nothing to do on completion */
};

typedef enum { OC_SUCCESS, OC_FAILURE, OC_FAILED, OC_GONE, OC__COUNT } outcome_t;
static const char *outcome_names[OC__COUNT] = {"success", "failure", "failed", "gone"};

typedef struct request {
    struct request *prev, *next; /* every live request */
    struct delivery *d;
    endpoint_t *ep;
    wjob_t *jobs; /* linked by next, in order */
    wjob_t *jobs_tail;
    int n;
    bool probe;
    bool in_sender; /* the sender's done callback is still due */
    bool overdue;   /* unanswered past the give-up age at the last tick */
    int64_t sent_ms; /* monotonic time it was handed to the sender */
    strbuf_t body;
    char webhook_id[SIGN_JOB_ID_LEN + 1];
} request_t;

struct delivery {
    worker_t *w;
    batcher_t *b;
    int threshold;
    size_t held, held_bytes;
    bool pressure;       /* windows ignored: memory is tight */
    bool hurry;          /* the store is told to write at once (update_hurry) */
    int64_t last_relieve_ms;
    double latency_ewma_ms; /* moving average of answered requests' duration */
    int unconfirmed;     /* requests started whose outcome is not durable yet */
    int http_inflight;   /* requests the sender has */
    uint64_t completions; /* requests answered (or failed) so far */
    int ops_pending;     /* our store operations not back yet */
    int claims_asked;    /* jobs asked of claims and drains not back yet (counted as held) */
    int held_claimed;    /* held jobs that came from parked_jobs */
    store_op_t *lookup;  /* filled during a consume round */
    store_op_t *fetch;   /* subscription reads waiting to be sent */
    uint64_t fetch_sent, fetch_back; /* numbers of the last fetch sent and answered */
    wjob_t *waiting, *waiting_tail; /* jobs in arrival order behind a subscription read */
    request_t *requests; /* live requests */
    job_t *scratch;      /* decoded jobs of the request being built */
    const job_t **scratch_ptrs;
    const char **ids; /* job ids of the request being built (set_webhook_id) */
    int ids_cap;
    int scratch_cap;
    uint64_t rng;
    bool stopping, abandoned;
    /* metrics */
    metric_t *m_consumed, *m_invalid, *m_duplicates, *m_cancelled, *m_retries, *m_parked,
        *m_given_up, *m_inflight, *m_held, *m_queued, *m_ops, *m_unconfirmed, *m_event_latency,
        *m_job_latency, *m_batch;
    metric_t *m_deliveries[OC__COUNT][SEND__COUNT];
    metric_t *m_requests[SEND__COUNT];
    metric_t *m_duration[OC__COUNT];
};

static void submit(delivery_t *d, store_op_t *op, int tag, void *ctx)
{
    op->tag = tag;
    op->ctx = ctx;
    d->ops_pending++;
    store_submit(d->w->store, op);
}

/* ---------------------------------------------------------------- held jobs */

/* The store gathers its writes into rounds of up to STORE_GATHER_MS under
 * load, which costs nothing while the event loop has plenty of jobs ready to
 * send (unbatched: the loop is the bound). Once half the memory bound is
 * held and little of it is ready - most held jobs wait for their outcome to
 * be written (batched) - each millisecond of that wait is throughput lost,
 * so the store is told to hurry. Hysteresis keeps it from flapping. */
static void update_hurry(delivery_t *d)
{
    size_t queued = batcher_queued(d->b);
    bool half = d->held >= HELD_MAX_JOBS / 2 || d->held_bytes >= HELD_MAX_BYTES / 2;
    bool low = d->held < HELD_MAX_JOBS * 3 / 8 && d->held_bytes < HELD_MAX_BYTES / 8 * 3;
    if (!d->hurry && half && queued < d->held / 4) {
        d->hurry = true;
        store_set_hurry(d->w->store, true);
    } else if (d->hurry && (low || queued >= d->held / 2)) {
        d->hurry = false;
        store_set_hurry(d->w->store, false);
    }
}

static void update_pressure(delivery_t *d)
{
    update_hurry(d);
    if (!d->pressure && delivery_over_high_water(d)) {
        d->pressure = true;
        batcher_set_flush_all(d->b, true);
    } else if (d->pressure && delivery_under_low_water(d)) {
        d->pressure = false;
        batcher_set_flush_all(d->b, d->stopping);
        consumer_kick(d->w->cons);
    }
}

static void hold(delivery_t *d, wjob_t *j)
{
    dedup_hold(d->w->dedup, j);
    d->held++;
    if (j->source == WJOB_PARKED) d->held_claimed++;
    d->held_bytes += wjob_size(j);
    update_pressure(d);
}

/* Forgets a held job without marking it done. */
static void release(delivery_t *d, wjob_t *j)
{
    dedup_unhold(d->w->dedup, j);
    d->held--;
    if (j->source == WJOB_PARKED) d->held_claimed--;
    d->held_bytes -= wjob_size(j);
    wjob_free(j);
    update_pressure(d);
}

/* The job is terminal or durably parked: remember its id, let its offset
 * be committed, forget it. */
static void finalize(delivery_t *d, wjob_t *j)
{
    dedup_add_finished(d->w->dedup, j->id);
    if (j->source == WJOB_KAFKA) consumer_job_done(d->w->cons, j->partition, j->gen, j->seq);
    release(d, j);
}

static bool alive(const delivery_t *d, const wjob_t *j)
{
    return j->source != WJOB_KAFKA || consumer_alive(d->w->cons, j->partition, j->gen);
}

static uint64_t next_random(delivery_t *d)
{
    uint64_t x = d->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return x * 2685821657736338717ULL;
}

/* Makes room for 'n' decoded jobs (pointers into the scratch stay valid
 * until the next call that grows it). */
static void scratch_reserve(delivery_t *d, int n)
{
    if (n <= d->scratch_cap) return;
    int cap = d->scratch_cap ? d->scratch_cap : 16;
    while (cap < n)
        cap *= 2;
    d->scratch = realloc(d->scratch, sizeof(*d->scratch) * (size_t)cap);
    d->scratch_ptrs = realloc(d->scratch_ptrs, sizeof(*d->scratch_ptrs) * (size_t)cap);
    if (!d->scratch || !d->scratch_ptrs) abort();
    d->scratch_cap = cap;
    for (int i = 0; i < cap; i++)
        d->scratch_ptrs[i] = &d->scratch[i];
}

/* The job_t of 'j' in scratch slot 'i' (for format_can_join/format_body). */
static const job_t *decode_into(delivery_t *d, int i, const wjob_t *j)
{
    scratch_reserve(d, i + 1);
    wjob_job(j, &d->scratch[i]);
    return &d->scratch[i];
}

/* ---------------------------------------------------------------- outcomes */

static store_row_t *row_for(store_op_t *op, wjob_t *j)
{
    store_row_t *r = store_op_add_row(op);
    r->job = j;
    r->attempt = j->attempt;
    r->unpark = j->source == WJOB_PARKED;
    return r;
}

static bool log_all(const delivery_t *d)
{
    return d->w->cfg.delivery_log == DELIVERY_LOG_ALL;
}

static bool log_failures(const delivery_t *d)
{
    return d->w->cfg.delivery_log != DELIVERY_LOG_NONE;
}

static void submit_endpoint(delivery_t *d, endpoint_t *ep, store_ep_action_t action, bool probe,
                            const char *cls, int status, const char *error)
{
    store_op_t *op = store_op_new(STORE_ENDPOINT);
    snprintf(op->endpoint_id, sizeof(op->endpoint_id), "%s", ep->id);
    op->action = action;
    op->probe = probe;
    op->error_class = cls;
    op->status = status;
    snprintf(op->error, sizeof(op->error), "%s", error ? error : "");
    if (action == STORE_EP_FAILURE) ep->gl.pending_failures++;
    ep->refs++;
    submit(d, op, TAG_ENDPOINT, ep);
}

/* Cancels a job whose subscription is gone or inactive. */
static void cancel(delivery_t *d, wjob_t *j, const char *why)
{
    log_info("job_cancelled job_id=%s subscription_id=%s reason=%s", j->id, j->sub_id, why);
    metric_inc(d->m_cancelled);
    if (j->probe) {
        endpoint_t *ep = batcher_endpoint(d->b, j->ep_id, true);
        submit_endpoint(d, ep, STORE_EP_PROBE_RELEASE, true, NULL, 0, NULL);
    }
    store_op_t *op = store_op_new(STORE_OUTCOME);
    store_row_t *r = row_for(op, j);
    r->finish = "cancelled";
    r->outcome = log_failures(d) ? "cancelled" : NULL;
    submit(d, op, TAG_PLAIN, NULL);
}

/* Parks jobs (a list) of a grey-listed or draining endpoint in parked_jobs. */
static void park_list(delivery_t *d, endpoint_t *ep, wjob_t *list)
{
    if (!list) return;
    store_op_t *op = store_op_new(STORE_OUTCOME);
    int n = 0;
    for (wjob_t *j = list, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        store_row_t *r = store_op_add_row(op);
        r->job = j;
        r->attempt = j->attempt;
        r->park_reason = "greylist";
        r->park_attempt = j->attempt;
        n++; /* no log row: parking is no attempt */
    }
    metric_add(d->m_parked, n);
    ep->gl.park_ops++;
    ep->gl.park_epoch++;
    ep->refs++;
    submit(d, op, TAG_PARK, ep);
}

/* Whether a job queued at 'ep' must be parked now. */
static bool must_park(const delivery_t *d, const endpoint_t *ep, const wjob_t *j)
{
    return greylist_verdict(&ep->gl, d->threshold, j->source == WJOB_PARKED) == GL_PARK;
}

/* No answer for 'base' ms (or STALL_FACTOR typical requests) with every
 * request slot of the endpoint busy, while the other endpoints answered. */
static bool no_progress(const delivery_t *d, const endpoint_t *ep, int64_t now, int64_t base)
{
    if (ep->inflight < batcher_opts(d->b)->concurrency) return false;
    int64_t typical = (int64_t)(d->latency_ewma_ms * STALL_FACTOR);
    int64_t limit = typical > base ? typical : base;
    if (now - ep->last_progress_ms <= limit) return false;
    uint64_t others = (uint64_t)(d->http_inflight - ep->inflight);
    return d->completions - ep->progress_mark >= 2 * others;
}

static bool stalled(const delivery_t *d, const endpoint_t *ep, int64_t now)
{
    return no_progress(d, ep, now, STALL_MS);
}

/* Every request slot busy, no answer for PRESSURE_STALL_MS (or STALL_FACTOR
 * typical requests): not the time to take parked jobs back. */
static bool busy_and_slow(const delivery_t *d, const endpoint_t *ep, int64_t now)
{
    int64_t typical = (int64_t)(d->latency_ewma_ms * STALL_FACTOR);
    int64_t limit = typical > PRESSURE_STALL_MS ? typical : PRESSURE_STALL_MS;
    return ep->inflight >= batcher_opts(d->b)->concurrency && now - ep->last_progress_ms > limit;
}

/* Parks what a stalled endpoint has queued; from now on its new jobs queue
 * in parked_jobs behind them (draining). */
static void spill(delivery_t *d, endpoint_t *ep)
{
    if (!ep->gl.draining)
        log_info("endpoint_stalled endpoint_id=%s in_flight=%d queued=%d action=park_queue",
                 ep->id, ep->inflight, ep->queued);
    ep->gl.draining = true;
    ep->stalled_since_drain = true;
    ep->drain_window = ep->drain_window > 4 ? ep->drain_window / 4 : 1;
    park_list(d, ep, batcher_take_all(ep));
}

/* After a grey-list state change: parks what must not wait in memory. */
static void park_queued(delivery_t *d, endpoint_t *ep)
{
    wjob_t *park = NULL, **tail = &park, *prev = NULL;
    for (wjob_t *j = ep->head, *next; j; j = next) {
        next = j->next;
        if (must_park(d, ep, j)) {
            batcher_unlink(ep, prev, j);
            *tail = j;
            tail = &j->next;
        } else {
            prev = j;
        }
    }
    park_list(d, ep, park);
}

static void apply_state(delivery_t *d, endpoint_t *ep, const greylist_row_t *row)
{
    bool was_grey = ep->gl.until_ms != 0;
    if (greylist_apply_row(&ep->gl, row)) {
        char until[40];
        hookd_format_time(ep->gl.until_ms, until, sizeof(until));
        log_warn("endpoint_greylisted endpoint_id=%s level=%d failures=%d until=%s", ep->id,
                 ep->gl.level, ep->gl.failures, until);
    } else if (was_grey && ep->gl.until_ms == 0) {
        log_info("endpoint_recovered endpoint_id=%s draining=%s", ep->id,
                 ep->gl.draining ? "true" : "false");
    }
    if (ep->head) park_queued(d, ep);
    batcher_check(d->b, ep);
}

/* Copies up to EXCERPT_MAX bytes keeping only valid UTF-8 (the column is
 * text): invalid bytes become '?', NULs are dropped. */
static char *excerpt_copy(const char *p, size_t len)
{
    size_t n = len < EXCERPT_MAX ? len : EXCERPT_MAX, o = 0;
    char *out = malloc(n + 1);
    if (!out) abort();
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (c == 0) {
            i++;
        } else if (l == 0 || i + l > n || !json_utf8_valid(p + i, l)) {
            out[o++] = '?';
            i++;
        } else {
            memcpy(out + o, p + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = '\0';
    return out;
}

/* The outcome of one request (from the sender, or made up when it could
 * not be posted): rows for every job, retry or terminal state, grey-list
 * update, 410 deactivation. */
static void on_result(delivery_t *d, request_t *req, const send_result_t *r)
{
    endpoint_t *ep = req->ep;
    const worker_t *w = d->w;
    d->http_inflight--;
    d->completions++;
    ep->inflight--;
    ep->last_progress_ms = hookd_mono_ms();
    ep->progress_mark = d->completions;
    req->in_sender = false;
    strbuf_free(&req->body);

    outcome_t oc = r->cls == SEND_SUCCESS ? OC_SUCCESS : r->cls == SEND_GONE ? OC_GONE : OC_FAILURE;
    if (r->status > 0) /* answered: a sample of how long requests take now */
        d->latency_ewma_ms = d->latency_ewma_ms * 0.95 + (double)r->latency_us / 1000.0 * 0.05;
    metric_inc(d->m_requests[r->cls]);
    metric_observe(d->m_duration[oc], (double)r->latency_us / 1e6);
    metric_observe(d->m_batch, req->n);

    store_op_t *op = store_op_new(STORE_OUTCOME);
    if (r->excerpt_len > 0) op->excerpt = excerpt_copy(r->excerpt, r->excerpt_len);
    char last_error[sizeof(((store_op_t *)0)->error)];
    if (r->error && r->error[0])
        snprintf(last_error, sizeof(last_error), "%s", r->error);
    else
        snprintf(last_error, sizeof(last_error), "HTTP %d", r->status);
    if (oc == OC_FAILURE) {
        op->last_error = strdup(last_error);
        if (!op->last_error) abort();
    }
    const char *cls = oc == OC_SUCCESS ? NULL : send_class_name(r->cls);
    int64_t now = hookd_now_ms();
    int64_t delay = -1; /* one delay for the whole request, so its jobs stay together */
    for (wjob_t *j = req->jobs; j; j = j->next) {
        store_row_t *row = row_for(op, j);
        int attempts = j->attempt + 1;
        row->webhook_id = req->webhook_id;
        row->attempt = attempts;
        row->batch_size = req->n;
        row->status = r->status;
        row->latency_ms = (int)(r->latency_us / 1000);
        row->error_class = cls;
        row->excerpt = op->excerpt;
        outcome_t job_oc = oc;
        if (oc == OC_SUCCESS) {
            row->finish = "delivered";
            row->outcome = log_all(d) ? "success" : NULL;
            row->log_shared = true; /* one log row for the request (job_ids) */
            metric_observe(d->m_event_latency, (double)(now - j->occurred_at_ms) / 1e3);
            if (j->ingested_at_ms > 0)
                metric_observe(d->m_job_latency, (double)(now - j->ingested_at_ms) / 1e3);
        } else if (oc == OC_GONE) {
            row->finish = "gone";
            row->outcome = log_failures(d) ? "gone" : NULL;
        } else if (attempts > w->cfg.retry_schedule_len) {
            job_oc = OC_FAILED;
            row->finish = "failed";
            row->outcome = log_failures(d) ? "failed" : NULL;
            row->log_job = true;
            log_warn("job_failed job_id=%s subscription_id=%s attempts=%d class=%s", j->id,
                     j->sub_id, attempts, cls);
        } else {
            if (delay < 0)
                delay = scheduler_retry_delay_ms(w->cfg.retry_schedule_ms,
                                                 w->cfg.retry_schedule_len, attempts,
                                                 (int)w->cfg.retry_jitter_pct, next_random(d));
            row->outcome = log_failures(d) ? "failure" : NULL;
            row->park_reason = "retry";
            row->park_attempt = attempts;
            row->park_delay_ms = delay;
            row->last_error = op->last_error;
            row->unpark = false; /* the upsert keeps the row */
            metric_inc(d->m_retries);
        }
        metric_inc(d->m_deliveries[job_oc][r->cls]);
    }
    submit(d, op, TAG_REQUEST, req);

    if (oc == OC_GONE) {
        const char *sub_id = req->jobs->sub_id;
        log_warn("subscription_deactivated subscription_id=%s reason=\"410 Gone from receiver\"",
                 sub_id);
        subcache_deactivate(w->subs, sub_id);
        store_op_t *g = store_op_new(STORE_DEACTIVATE);
        store_op_add_id(g, sub_id);
        submit(d, g, TAG_NONE, NULL);
    }
    if (req->probe) {
        bool ok = oc != OC_FAILURE; /* any answer but a failure shows the endpoint is back */
        log_info("probe_result endpoint_id=%s job_id=%s class=%s", ep->id, req->webhook_id,
                 send_class_name(r->cls));
        submit_endpoint(d, ep, ok ? STORE_EP_SUCCESS : STORE_EP_FAILURE, true, cls, r->status,
                        last_error);
    } else if (oc == OC_SUCCESS) {
        if (ep->gl.failures > 0 || ep->gl.pending_failures > 0 || ep->gl.until_ms != 0)
            submit_endpoint(d, ep, STORE_EP_SUCCESS, false, NULL, 0, NULL);
    } else if (oc == OC_FAILURE) {
        submit_endpoint(d, ep, STORE_EP_FAILURE, false, cls, r->status, last_error);
    }
    batcher_check(d->b, ep);
}

static void on_sent(const send_result_t *r, void *ctx)
{
    request_t *req = ctx;
    on_result(req->d, req, r);
}

static void fail_request(delivery_t *d, request_t *req, send_class_t cls, const char *why)
{
    send_result_t r = {cls, 0, 0, NULL, 0, why};
    on_result(d, req, &r);
}

/* ---------------------------------------------------------------- requests */

/* Appends 'j' to the list from *head to *tail (linked by next). */
static void jobs_append(wjob_t **head, wjob_t **tail, wjob_t *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

static void req_append(request_t *req, wjob_t *j)
{
    jobs_append(&req->jobs, &req->jobs_tail, j);
    req->n++;
}

/* Takes the jobs of the head's subscription that may share its request
 * (format_can_join), in order, up to HOOKD_BATCH_MAX / _BYTES. Jobs of
 * other subscriptions at the endpoint are skipped over and stay queued. */
static void gather(delivery_t *d, endpoint_t *ep, const sub_t *sub, request_t *req)
{
    const batcher_opts_t *o = batcher_opts(d->b);
    scratch_reserve(d, o->batch_max); /* 'first' must not move */
    const job_t *first = &d->scratch[0];
    int64_t bytes = req->jobs->len;
    wjob_t *prev = NULL;
    for (wjob_t *j = ep->head, *next; j && req->n < o->batch_max; j = next) {
        next = j->next;
        if (strcmp(j->sub_id, req->jobs->sub_id) != 0) {
            prev = j;
            continue;
        }
        if (bytes + (int64_t)j->len > o->batch_max_bytes) break;
        const job_t *jt = decode_into(d, req->n, j);
        if (!format_can_join((body_format_t)sub->format, sub->batch, first, jt)) break;
        batcher_unlink(ep, prev, j);
        req_append(req, j);
        bytes += j->len;
    }
}

/* The request's webhook-id, from its jobs' ids (sign_request_id): sent
 * again with the same jobs (a retry, a resend after a crash) it is the
 * same, and a request with other jobs never reuses it, so a receiver that
 * drops repeated webhook-ids never drops an item it has not seen. */
static void set_webhook_id(delivery_t *d, request_t *req)
{
    if (req->n > d->ids_cap) {
        d->ids_cap = req->n;
        d->ids = realloc(d->ids, sizeof(*d->ids) * (size_t)d->ids_cap);
        if (!d->ids) abort();
    }
    int n = 0;
    for (wjob_t *j = req->jobs; j; j = j->next)
        d->ids[n++] = j->id;
    sign_request_id(d->ids, n, req->webhook_id);
}

static void build_body(delivery_t *d, const sub_t *sub, request_t *req)
{
    if (req->body.data) strbuf_reset(&req->body);
    size_t hint = 2;
    for (const wjob_t *j = req->jobs; j; j = j->next)
        hint += j->payload_len + strlen(j->event_id) + strlen(j->type) + 160;
    strbuf_reserve(&req->body, hint);
    format_body((body_format_t)sub->format, sub->batch, d->scratch_ptrs, req->n, &req->body);
}

/* batcher hook: one request from the endpoint's probe or queue head. */
static bool on_send(endpoint_t *ep, void *ud)
{
    delivery_t *d = ud;
    worker_t *w = d->w;
    bool probe = ep->probe != NULL;
    wjob_t *first = probe ? ep->probe : ep->head;
    if (probe)
        ep->probe = NULL;
    else
        batcher_unlink(ep, NULL, first);
    sub_t *sub = subcache_get(w->subs, first->sub_id);
    if (!sub || !atomic_load(&sub->active)) {
        if (probe) ep->gl.probing = false;
        cancel(d, first, sub ? "subscription_inactive" : "subscription_deleted");
        sub_unref(sub);
        return true;
    }
    request_t *req = calloc(1, sizeof(*req));
    if (!req) abort();
    req->d = d;
    req->ep = ep;
    req->probe = probe;
    req_append(req, first); /* (the body buffer is allocated by build_body) */
    decode_into(d, 0, first);
    if (!probe && !first->solo) gather(d, ep, sub, req);
    build_body(d, sub, req);
    /* the size was estimated from the job messages: trim if still too big */
    wjob_t *back = NULL;
    while ((int64_t)req->body.len > batcher_opts(d->b)->batch_max_bytes && req->n > 1) {
        wjob_t *last = req->jobs, *before = NULL;
        while (last->next) {
            before = last;
            last = last->next;
        }
        before->next = NULL;
        req->jobs_tail = before;
        req->n--;
        last->next = back;
        back = last;
        build_body(d, sub, req);
    }
    if (back) batcher_requeue_front(d->b, ep, back);
    set_webhook_id(d, req);

    req->next = d->requests;
    if (d->requests) d->requests->prev = req;
    d->requests = req;
    if (ep->inflight == 0) {
        ep->last_progress_ms = hookd_mono_ms();
        ep->progress_mark = d->completions;
    }
    ep->inflight++;
    d->unconfirmed++;
    d->http_inflight++;
    req->in_sender = true;
    req->sent_ms = hookd_mono_ms();
    metric_set(d->m_inflight, d->http_inflight);

    int64_t now = hookd_now_ms();
    struct curl_slist *headers =
        format_headers(req->webhook_id, now / 1000, sub->secret, sub_previous_secret(sub, now),
                       req->body.data, req->body.len);
    if (!headers) {
        log_error("signing_failed subscription_id=%s", sub->id);
        fail_request(d, req, SEND_OTHER, "the subscription secret cannot be used to sign");
    } else if (sender_post(w->sender, sub->url, headers, req->body.data, req->body.len, on_sent,
                           req) < 0) {
        /* a URL the API would have refused (written with admin SQL) */
        target_url_t t;
        char why[160] = "request not accepted";
        send_class_t cls = SEND_OTHER;
        if (target_parse(sub->url, false, &t, why, sizeof(why)) == 0 &&
            target_parse(sub->url, w->cfg.require_https, &t, why, sizeof(why)) < 0)
            cls = SEND_SSRF; /* plain http:// while HOOKD_REQUIRE_HTTPS */
        log_warn("target_refused subscription_id=%s class=%s error=\"%s\"", sub->id,
                 send_class_name(cls), why);
        fail_request(d, req, cls, why);
    }
    sub_unref(sub);
    return true;
}

static bool may_send(endpoint_t *ep, void *ud)
{
    delivery_t *d = ud;
    return greylist_verdict(&ep->gl, d->threshold, true) == GL_SEND;
}

static bool slot_free(void *ud)
{
    delivery_t *d = ud;
    return d->unconfirmed < (int)d->w->cfg.max_inflight && !d->abandoned;
}

/* ---------------------------------------------------------------- dispatch */

/* Asks PostgreSQL for the job's subscription (with the next fetch sent). */
static void queue_fetch(delivery_t *d, wjob_t *j)
{
    if (!d->fetch) {
        d->fetch = store_op_new(STORE_SUB_FETCH);
        d->fetch->sub_since = subcache_seq(d->w->subs);
    }
    j->fetch_no = d->fetch_sent + 1;
    j->fetch_since = d->fetch->sub_since;
    store_op_add_id(d->fetch, j->sub_id);
}

static void flush_fetch(delivery_t *d)
{
    if (!d->fetch) return;
    store_op_t *op = d->fetch;
    d->fetch = NULL;
    d->fetch_sent++;
    submit(d, op, TAG_FETCH, NULL);
}

static bool is_solo(delivery_t *d, const sub_t *sub, const wjob_t *j)
{
    if (!sub->batch) return true;
    if (sub->format != FORMAT_VIK) return false;
    const job_t *jt = decode_into(d, 0, j);
    return !format_can_join(FORMAT_VIK, true, jt, jt);
}

/* A job whose subscription is known and active: to its endpoint's queue,
 * its probe slot, or parked_jobs. */
static void route(delivery_t *d, wjob_t *j, const sub_t *sub)
{
    snprintf(j->ep_id, sizeof(j->ep_id), "%s", sub->endpoint_id);
    j->solo = is_solo(d, sub, j);
    endpoint_t *ep = batcher_endpoint(d->b, j->ep_id, true);
    if (j->probe) {
        if (ep->probe) { /* a second probe cannot happen; keep order anyway */
            j->probe = false;
            batcher_requeue_front(d->b, ep, j);
            return;
        }
        ep->gl.probing = true;
        log_info("probe_claimed endpoint_id=%s job_id=%s", ep->id, j->id);
        batcher_set_probe(d->b, ep, j);
        return;
    }
    if (must_park(d, ep, j)) {
        j->next = NULL;
        park_list(d, ep, j);
        return;
    }
    batcher_enqueue(d->b, ep, j);
    if (j->source == WJOB_KAFKA && stalled(d, ep, hookd_mono_ms())) spill(d, ep);
}

/* A held job that cannot go on (shutting down, or its partition is gone). */
static void drop(delivery_t *d, wjob_t *j)
{
    if (d->abandoned && j->source == WJOB_PARKED) { /* a claimed job goes back at once */
        store_op_t *op = store_op_new(STORE_LEASE);
        op->release = true;
        store_op_add_id(op, j->id);
        store_submit(d->w->store, op);
    }
    release(d, j);
}

/* Routes the waiting jobs from the front while their subscriptions are
 * known; a job whose subscription was read and is gone or inactive is
 * cancelled, unless a change crossed the read (then it reads again). */
static void drain_waiting(delivery_t *d)
{
    wjob_t *j;
    while ((j = d->waiting)) {
        sub_t *sub = NULL;
        bool go = d->abandoned || !alive(d, j);
        if (!go && j->fetch_no <= d->fetch_back) {
            sub = subcache_get(d->w->subs, j->sub_id);
            if (sub && atomic_load(&sub->active)) {
                go = true;
            } else if (j->fetch_no == 0 ||
                       subcache_changed_since(d->w->subs, j->sub_id, j->fetch_since)) {
                queue_fetch(d, j); /* never read, or read before a change */
            } else {
                go = true;
            }
        }
        if (!go) {
            sub_unref(sub);
            break;
        }
        d->waiting = j->next;
        if (!d->waiting) d->waiting_tail = NULL;
        j->next = NULL;
        if (d->abandoned || !alive(d, j))
            drop(d, j);
        else if (sub && atomic_load(&sub->active))
            route(d, j, sub);
        else
            cancel(d, j, sub ? "subscription_inactive" : "subscription_deleted");
        sub_unref(sub);
    }
}

/* A job that passed dedup (or was claimed). Jobs go on in arrival order:
 * while earlier ones wait for their subscription to be read from
 * PostgreSQL (a job for one not cached yet, or cached inactive), later
 * ones wait behind them, so one endpoint's jobs never overtake each other
 * across its subscriptions. */
static void dispatch(delivery_t *d, wjob_t *j)
{
    if (d->abandoned) {
        drop(d, j);
        return;
    }
    j->fetch_no = 0;
    sub_t *sub = subcache_get(d->w->subs, j->sub_id);
    bool known = sub && atomic_load(&sub->active);
    if (known && !d->waiting) {
        route(d, j, sub);
        sub_unref(sub);
        return;
    }
    sub_unref(sub);
    if (!known) queue_fetch(d, j); /* read now; looked up again at the front */
    jobs_append(&d->waiting, &d->waiting_tail, j);
}

/* ---------------------------------------------------------------- store completions */

typedef struct {
    delivery_t *d;
    store_op_t *drain;
    uint64_t *epochs;
    int cap;
    int64_t now;
} tick_ctx_t;

static void tick_endpoint(endpoint_t *ep, void *ud)
{
    tick_ctx_t *c = ud;
    delivery_t *d = c->d;
    if (ep->gl.until_ms != 0 || ep->gl.probing) return;
    bool is_stalled = stalled(d, ep, c->now);
    if (is_stalled && ep->queued > 0) spill(d, ep);
    if (!ep->gl.draining || ep->drain_claiming || is_stalled || d->stopping) return;
    if (busy_and_slow(d, ep, c->now)) return;
    const batcher_opts_t *o = batcher_opts(d->b);
    int chunk = 2 * o->batch_max > DRAIN_CHUNK_MIN ? 2 * o->batch_max : DRAIN_CHUNK_MIN;
    if (ep->drain_window <= 0) ep->drain_window = chunk;
    int want = ep->drain_window / 2 > 0 ? ep->drain_window / 2 : 1;
    if (ep->queued >= want) return;
    if (!ep->stalled_since_drain && ep->drain_window < chunk)
        ep->drain_window = ep->drain_window * 2 < chunk ? ep->drain_window * 2 : chunk;
    ep->stalled_since_drain = false;
    if (delivery_claim_budget(d) < ep->drain_window) return;
    if (!c->drain) c->drain = store_op_new(STORE_DRAIN);
    if (c->drain->n_ids == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->epochs = realloc(c->epochs, sizeof(*c->epochs) * (size_t)c->cap);
        if (!c->epochs) abort();
    }
    c->epochs[c->drain->n_ids] = ep->gl.park_epoch;
    store_op_add_drain(c->drain, ep->id, ep->drain_window);
    d->claims_asked += ep->drain_window;
    ep->drain_claiming = true;
    ep->refs++;
}

typedef struct {
    delivery_t *d;
    int64_t now;
    int spilled;
} relieve_ctx_t;

static void relieve_endpoint(endpoint_t *ep, void *ud)
{
    relieve_ctx_t *c = ud;
    if (ep->queued == 0 || ep->gl.until_ms != 0 || ep->gl.probing) return;
    if (!no_progress(c->d, ep, c->now, PRESSURE_STALL_MS)) return;
    c->spilled += ep->queued;
    spill(c->d, ep);
}

void delivery_relieve(delivery_t *d)
{
    int64_t now = hookd_mono_ms();
    if (!delivery_over_high_water(d) || now - d->last_relieve_ms < PRESSURE_CHECK_MS) return;
    d->last_relieve_ms = now;
    relieve_ctx_t c = {d, now, 0};
    batcher_each(d->b, relieve_endpoint, &c);
    if (c.spilled) log_debug("memory_relieved jobs_parked=%d", c.spilled);
}

/* Gives up the oldest overdue requests while slots run out (see "Overdue
 * requests" above). */
static void give_up_overdue(delivery_t *d, int64_t now)
{
    int64_t typical = (int64_t)(d->latency_ewma_ms * STALL_FACTOR);
    int64_t age = typical > STALL_MS ? typical : STALL_MS;
    bool short_of_slots = !slot_free(d) && batcher_waiting(d->b);
    request_t **due = NULL; /* overdue at this tick and the last, newest first */
    int n = 0, cap = 0, overdue = 0, given_up = 0;
    for (request_t *req = d->requests; req; req = req->next) {
        bool was = req->overdue;
        req->overdue = short_of_slots && req->in_sender && now - req->sent_ms > age;
        overdue += req->overdue;
        if (!req->overdue || !was) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            due = realloc(due, sizeof(*due) * (size_t)cap);
            if (!due) abort();
        }
        due[n++] = req;
    }
    int excess = overdue - ((int)d->w->cfg.max_inflight + 1) / 2; /* half, rounded up */
    if (excess > 0 && n > 0) {
        char why[160];
        snprintf(why, sizeof(why),
                 "no answer after %lld ms while every request slot (HOOKD_MAX_INFLIGHT=%d) was "
                 "taken",
                 (long long)age, (int)d->w->cfg.max_inflight);
        /* the oldest first; each one's on_sent runs now (a request lives on
         * until its outcome is written, so the pointers stay valid while
         * new requests start) */
        for (int i = n - 1; i >= 0 && given_up < excess; i--)
            if (sender_cancel(d->w->sender, due[i], why) == 0) given_up++;
    }
    free(due);
    metric_add(d->m_given_up, given_up);
    if (given_up)
        log_warn("requests_given_up count=%d after_ms=%lld reason=request_slots_taken", given_up,
                 (long long)age);
}

void delivery_tick(delivery_t *d)
{
    int64_t now = hookd_mono_ms();
    give_up_overdue(d, now);
    tick_ctx_t c = {d, NULL, NULL, 0, now};
    batcher_each(d->b, tick_endpoint, &c);
    if (c.drain)
        submit(d, c.drain, TAG_DRAIN, c.epochs);
    else
        free(c.epochs);
}

static void drain_done(delivery_t *d, store_op_t *op)
{
    uint64_t *epochs = op->ctx;
    for (int i = 0; i < op->n_ids; i++) {
        d->claims_asked -= op->limits[i];
        endpoint_t *ep = batcher_endpoint(d->b, op->ids[i], false);
        if (!ep) continue; /* cannot happen: referenced */
        ep->refs--;
        ep->drain_claiming = false;
        if (op->failed || !op->empty || !op->empty[i] || ep->gl.park_ops > 0 ||
            ep->gl.park_epoch != epochs[i])
            continue;
        ep->gl.draining = false;
        log_info("endpoint_drained endpoint_id=%s", ep->id);
        batcher_check(d->b, ep);
    }
    free(epochs);
    wjob_t *list = op->claimed;
    op->claimed = NULL;
    delivery_claimed(d, list);
}

static void lookup_done(delivery_t *d, store_op_t *op)
{
    for (int i = 0; i < op->n_jobs; i++) {
        wjob_t *j = op->jobs[i];
        if (op->failed || !alive(d, j)) {
            release(d, j);
        } else if (op->found && op->found[i]) {
            metric_inc(d->m_duplicates);
            log_debug("duplicate_skipped job_id=%s where=postgres", j->id);
            finalize(d, j);
        } else {
            dispatch(d, j);
        }
    }
    flush_fetch(d);
}

static void fetch_done(delivery_t *d)
{
    d->fetch_back++; /* answers come in submission order */
    drain_waiting(d);
    flush_fetch(d);
}

static void request_done(delivery_t *d, store_op_t *op)
{
    request_t *req = op->ctx;
    for (wjob_t *j = req->jobs, *next; j; j = next) {
        next = j->next;
        if (op->failed)
            release(d, j);
        else
            finalize(d, j);
    }
    if (req->prev)
        req->prev->next = req->next;
    else
        d->requests = req->next;
    if (req->next) req->next->prev = req->prev;
    free(req);
    d->unconfirmed--;
    batcher_kick(d->b);
}

static void rows_done(delivery_t *d, store_op_t *op)
{
    for (int i = 0; i < op->n_rows; i++) {
        wjob_t *j = (wjob_t *)op->rows[i].job;
        if (op->failed)
            release(d, j);
        else
            finalize(d, j);
    }
}

static void endpoint_done(delivery_t *d, store_op_t *op)
{
    endpoint_t *ep = op->ctx;
    ep->refs--;
    if (op->action == STORE_EP_FAILURE) ep->gl.pending_failures--;
    if (op->probe) ep->gl.probing = false;
    if (op->failed) return;
    if (op->probe && op->action == STORE_EP_SUCCESS)
        log_info("endpoint_released endpoint_id=%s", ep->id);
    apply_state(d, ep, &op->row);
}

typedef struct {
    delivery_t *d;
    store_op_t *op;
} states_ctx_t;

/* After a full state load: endpoints not in it are healthy now. */
static void reset_unlisted(endpoint_t *ep, void *ud)
{
    states_ctx_t *c = ud;
    if (greylist_idle(&ep->gl) && !ep->gl.draining) return;
    for (int i = 0; i < c->op->n_ids; i++)
        if (strcmp(c->op->ids[i], ep->id) == 0) return;
    greylist_row_t healthy = {true, 0, 0, 0, false};
    apply_state(c->d, ep, &healthy);
}

static void states_done(delivery_t *d, store_op_t *op)
{
    for (int i = 0; i < op->n_ids; i++) {
        const greylist_row_t *row = &op->states[i];
        bool interesting = row->found && (row->failures > 0 || row->until_ms != 0 || row->has_parked);
        endpoint_t *ep = batcher_endpoint(d->b, op->ids[i], interesting);
        if (ep) apply_state(d, ep, row);
    }
    if (op->full) {
        states_ctx_t c = {d, op};
        batcher_each(d->b, reset_unlisted, &c);
    }
}

void delivery_store_done(store_op_t *op, void *ud)
{
    delivery_t *d = ud;
    if (op->kind == STORE_ENDPOINT_STATES) {
        states_done(d, op);
        store_op_free(op);
        return;
    }
    if (op->kind == STORE_CLAIM) {
        scheduler_claim_done(d->w->sched, op);
        return;
    }
    if (op->kind == STORE_LEASE) {
        store_op_free(op);
        return;
    }
    d->ops_pending--;
    switch (op->tag) {
    case TAG_LOOKUP:
        lookup_done(d, op);
        break;
    case TAG_FETCH:
        fetch_done(d);
        break;
    case TAG_REQUEST:
        request_done(d, op);
        break;
    case TAG_PLAIN:
        rows_done(d, op);
        break;
    case TAG_PARK: {
        endpoint_t *ep = op->ctx;
        ep->gl.park_ops--;
        ep->refs--;
        rows_done(d, op);
        break;
    }
    case TAG_ENDPOINT:
        endpoint_done(d, op);
        break;
    case TAG_DRAIN:
        drain_done(d, op);
        break;
    default:
        break;
    }
    store_op_free(op);
}

/* ---------------------------------------------------------------- public */

bool delivery_consumed(delivery_t *d, const char *payload, size_t len, int32_t partition,
                       uint64_t gen, uint64_t seq)
{
    job_t job;
    char err[256];
    metric_inc(d->m_consumed);
    if (!payload || job_decode(payload, len, &job, err, sizeof(err)) < 0) {
        metric_inc(d->m_invalid);
        log_error("job_invalid partition=%d seq=%llu error=\"%s\" action=skipped", (int)partition,
                  (unsigned long long)seq, payload ? err : "empty message");
        return false;
    }
    if (dedup_held(d->w->dedup, job.id) || dedup_is_finished(d->w->dedup, job.id)) {
        metric_inc(d->m_duplicates);
        log_debug("duplicate_skipped job_id=%s where=memory", job.id);
        return false;
    }
    wjob_t *j = wjob_new(payload, len, &job);
    j->source = WJOB_KAFKA;
    j->partition = partition;
    j->gen = gen;
    j->seq = seq;
    hold(d, j);
    if (!d->lookup) d->lookup = store_op_new(STORE_LOOKUP);
    store_op_add_job(d->lookup, j);
    return true;
}

void delivery_round_end(delivery_t *d)
{
    if (!d->lookup) return;
    store_op_t *op = d->lookup;
    d->lookup = NULL;
    submit(d, op, TAG_LOOKUP, NULL);
}

typedef struct {
    delivery_t *d;
    int32_t partition;
    uint64_t gen;
    int dropped;
} drop_ctx_t;

static void drop_in_endpoint(endpoint_t *ep, void *ud)
{
    drop_ctx_t *c = ud;
    wjob_t *prev = NULL;
    for (wjob_t *j = ep->head, *next; j; j = next) {
        next = j->next;
        if (j->source == WJOB_KAFKA && j->partition == c->partition && j->gen == c->gen) {
            batcher_unlink(ep, prev, j);
            release(c->d, j);
            c->dropped++;
        } else {
            prev = j;
        }
    }
}

void delivery_drop_partition(delivery_t *d, int32_t partition, uint64_t gen)
{
    drop_ctx_t c = {d, partition, gen, 0};
    batcher_each(d->b, drop_in_endpoint, &c);
    if (c.dropped) log_info("partition_jobs_dropped partition=%d jobs=%d", (int)partition, c.dropped);
}

bool delivery_over_high_water(const delivery_t *d)
{
    return d->held >= HELD_MAX_JOBS || d->held_bytes >= HELD_MAX_BYTES;
}

bool delivery_under_low_water(const delivery_t *d)
{
    return d->held < HELD_MAX_JOBS * 3 / 4 && d->held_bytes < HELD_MAX_BYTES / 4 * 3;
}

void delivery_claimed(delivery_t *d, wjob_t *list)
{
    for (wjob_t *j = list, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        if (dedup_held(d->w->dedup, j->id)) { /* already here (its lease expired meanwhile) */
            wjob_free(j);
            continue;
        }
        hold(d, j);
        dispatch(d, j);
    }
    flush_fetch(d);
}

/* Jobs from parked_jobs (drains, due retries, probes) may fill at most half
 * of the memory bound, counting what claims and drains in flight will
 * bring: a worker that finds hundreds of endpoints with parked jobs (say,
 * dead ones another worker parked) keeps the other half for new jobs from
 * Kafka, so their latency does not wait on draining. */
int delivery_claim_budget(const delivery_t *d)
{
    if (d->stopping || delivery_over_high_water(d)) return 0;
    int total = HELD_MAX_JOBS - (int)d->held - d->claims_asked;
    int claimed = HELD_MAX_JOBS / 2 - d->held_claimed - d->claims_asked;
    int budget = total < claimed ? total : claimed;
    return budget > 0 ? budget : 0;
}

void delivery_claims_asked(delivery_t *d, int jobs)
{
    d->claims_asked += jobs;
}

batcher_t *delivery_batcher(delivery_t *d)
{
    return d->b;
}

void delivery_begin_shutdown(delivery_t *d)
{
    d->stopping = true;
    batcher_set_flush_all(d->b, true);
}

bool delivery_settled(const delivery_t *d)
{
    return d->http_inflight == 0 && d->ops_pending == 0 && !d->lookup && !d->fetch && !d->waiting &&
           batcher_queued(d->b) == 0;
}

typedef struct {
    delivery_t *d;
    store_op_t *leases;
} abandon_ctx_t;

/* Takes every job queued for 'ep' and its probe, handing each to 'fn'. */
static void take_queued(endpoint_t *ep, void (*fn)(void *ud, wjob_t *j), void *ud)
{
    for (wjob_t *j = batcher_take_all(ep), *next; j; j = next) {
        next = j->next;
        fn(ud, j);
    }
    if (ep->probe) {
        wjob_t *probe = ep->probe;
        ep->probe = NULL;
        fn(ud, probe);
    }
}

static void abandon_job(void *ud, wjob_t *j)
{
    abandon_ctx_t *c = ud;
    if (j->source == WJOB_PARKED) store_op_add_id(c->leases, j->id);
    release(c->d, j);
}

static void abandon_endpoint(endpoint_t *ep, void *ud)
{
    take_queued(ep, abandon_job, ud);
}

void delivery_abandon(delivery_t *d)
{
    abandon_ctx_t c = {d, store_op_new(STORE_LEASE)};
    c.leases->release = true;
    d->abandoned = true;
    int abandoned = 0;
    for (request_t *req = d->requests, *next; req; req = next) {
        next = req->next;
        if (!req->in_sender) continue; /* its outcome is in the store already */
        for (wjob_t *j = req->jobs, *jn; j; j = jn) {
            jn = j->next;
            abandon_job(&c, j);
        }
        req->ep->inflight--;
        d->http_inflight--;
        d->unconfirmed--;
        strbuf_free(&req->body);
        if (req->prev)
            req->prev->next = req->next;
        else
            d->requests = req->next;
        if (req->next) req->next->prev = req->prev;
        free(req);
        abandoned++;
    }
    batcher_each(d->b, abandon_endpoint, &c);
    if (abandoned) log_warn("requests_abandoned count=%d", abandoned);
    if (c.leases->n_ids > 0)
        store_submit(d->w->store, c.leases);
    else
        store_op_free(c.leases);
}

size_t delivery_held(const delivery_t *d)
{
    return d->held;
}

int delivery_inflight(const delivery_t *d)
{
    return d->http_inflight;
}

static void on_render(void *ud)
{
    delivery_t *d = ud;
    metric_set(d->m_held, (double)d->held);
    metric_set(d->m_queued, (double)batcher_queued(d->b));
    metric_set(d->m_ops, (double)d->ops_pending);
    metric_set(d->m_unconfirmed, (double)d->unconfirmed);
    metric_set(d->m_inflight, d->http_inflight);
}

delivery_t *delivery_new(worker_t *w)
{
    static const double batch_buckets[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000};
    delivery_t *d = calloc(1, sizeof(*d));
    if (!d) abort();
    d->w = w;
    d->threshold = (int)w->cfg.greylist_threshold;
    if (hookd_random(&d->rng, sizeof(d->rng)) < 0 || d->rng == 0) d->rng = 0x9e3779b97f4a7c15ULL;
    batcher_opts_t bo = {w->cfg.batch_window_ms, (int)w->cfg.batch_max, w->cfg.batch_max_bytes,
                         (int)w->cfg.endpoint_concurrency};
    batcher_hooks_t hooks = {may_send, slot_free, on_send};
    d->b = batcher_new(w->base, &bo, &hooks, d);
    if (!d->b) {
        free(d);
        return NULL;
    }
    d->m_consumed = metrics_counter("hookd_jobs_consumed_total", "Job messages consumed", NULL);
    d->m_invalid = metrics_counter("hookd_jobs_invalid_total",
                                   "Job messages that could not be decoded (skipped)", NULL);
    d->m_duplicates = metrics_counter("hookd_duplicates_skipped_total",
                                      "Jobs skipped because their id was already finished or "
                                      "parked",
                                      NULL);
    d->m_cancelled = metrics_counter("hookd_jobs_cancelled_total",
                                     "Jobs cancelled: subscription deleted or inactive", NULL);
    d->m_retries = metrics_counter("hookd_retries_scheduled_total",
                                   "Failed jobs scheduled for another attempt", NULL);
    d->m_parked = metrics_counter("hookd_jobs_parked_total",
                                  "Jobs parked in PostgreSQL for a grey-listed, stalled or "
                                  "draining endpoint",
                                  "reason=\"greylist\"");
    d->m_inflight = metrics_gauge("hookd_requests_in_flight", "Delivery requests in flight", NULL);
    d->m_held = metrics_gauge("hookd_jobs_held", "Jobs held in the worker's memory", NULL);
    d->m_given_up = metrics_counter("hookd_requests_given_up_total",
                                    "Requests given up before HOOKD_HTTP_TIMEOUT_MS because "
                                    "unanswered ones held the request slots",
                                    NULL);
    d->m_queued = metrics_gauge("hookd_jobs_queued",
                                "Jobs waiting in endpoint queues (batch windows, busy endpoints)",
                                NULL);
    d->m_unconfirmed = metrics_gauge("hookd_requests_unconfirmed",
                                     "Requests started whose outcome is not yet written "
                                     "(bounded by HOOKD_MAX_INFLIGHT)",
                                     NULL);
    d->m_ops = metrics_gauge("hookd_store_operations_pending",
                             "Writes and lookups submitted to PostgreSQL, not yet done", NULL);
    d->m_event_latency = metrics_histogram(
        "hookd_event_delivery_seconds", "From the event's occurred_at to its successful delivery",
        NULL, metrics_latency_buckets, metrics_latency_buckets_len);
    d->m_job_latency = metrics_histogram("hookd_job_delivery_seconds",
                                         "From ingest publishing the job to its successful delivery",
                                         NULL, metrics_latency_buckets, metrics_latency_buckets_len);
    d->m_batch = metrics_histogram("hookd_batch_size", "Jobs per delivery request", NULL,
                                   batch_buckets, (int)HOOKD_ARRAY_LEN(batch_buckets));
    for (int o = 0; o < OC__COUNT; o++) {
        char labels[96];
        /* only the pairs that occur: success and gone have their own class,
         * failure and failed any other (an impossible pair counts as other) */
        for (int c = 0; c < SEND__COUNT; c++) {
            bool occurs = o == OC_SUCCESS   ? c == SEND_SUCCESS
                          : o == OC_GONE    ? c == SEND_GONE
                                            : c != SEND_SUCCESS && c != SEND_GONE;
            if (!occurs) continue;
            snprintf(labels, sizeof(labels), "outcome=\"%s\",class=\"%s\"", outcome_names[o],
                     send_class_name((send_class_t)c));
            d->m_deliveries[o][c] =
                metrics_counter("hookd_deliveries_total", "Delivery attempts per job", labels);
        }
        metric_t *fallback = d->m_deliveries[o][o == OC_SUCCESS ? SEND_SUCCESS
                                                : o == OC_GONE  ? SEND_GONE
                                                                : SEND_OTHER];
        for (int c = 0; c < SEND__COUNT; c++)
            if (!d->m_deliveries[o][c]) d->m_deliveries[o][c] = fallback;
        if (o == OC_FAILED) continue;
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_names[o]);
        d->m_duration[o] = metrics_histogram("hookd_delivery_duration_seconds",
                                             "Duration of delivery requests", labels,
                                             metrics_latency_buckets, metrics_latency_buckets_len);
    }
    d->m_duration[OC_FAILED] = d->m_duration[OC_FAILURE];
    for (int c = 0; c < SEND__COUNT; c++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "class=\"%s\"", send_class_name((send_class_t)c));
        d->m_requests[c] =
            metrics_counter("hookd_delivery_requests_total", "Delivery requests by result", labels);
    }
    metrics_on_render(on_render, d);
    return d;
}

static void release_job(void *ud, wjob_t *j)
{
    release(ud, j);
}

static void free_queued(endpoint_t *ep, void *ud)
{
    take_queued(ep, release_job, ud);
}

void delivery_free(delivery_t *d)
{
    if (!d) return;
    batcher_each(d->b, free_queued, d);
    while (d->requests) {
        request_t *req = d->requests;
        d->requests = req->next;
        for (wjob_t *j = req->jobs, *next; j; j = next) {
            next = j->next;
            release(d, j);
        }
        strbuf_free(&req->body);
        free(req);
    }
    if (d->lookup) {
        for (int i = 0; i < d->lookup->n_jobs; i++)
            release(d, d->lookup->jobs[i]);
        store_op_free(d->lookup);
    }
    while (d->waiting) {
        wjob_t *j = d->waiting;
        d->waiting = j->next;
        release(d, j);
    }
    store_op_free(d->fetch);
    batcher_free(d->b);
    free(d->scratch);
    free(d->scratch_ptrs);
    free(d->ids);
    free(d);
}
