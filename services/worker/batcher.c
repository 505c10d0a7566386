/* Endpoint table, per-endpoint job queues, window timers and the
 * round-robin FIFO of endpoints that are due to send. */
#include "batcher.h"

#include "hookd/util.h"

#include <stdlib.h>
#include <string.h>

#define BATCHER_GC_EVERY_MS 10000
#define BATCHER_IDLE_MS 60000

struct batcher {
    struct event_base *base;
    batcher_opts_t o;
    batcher_hooks_t h;
    void *ud;
    endpoint_t **buckets;
    size_t n_buckets, count;
    endpoint_t *ready_head, *ready_tail;
    size_t queued; /* jobs queued in all endpoints */
    bool flush_all;
    bool pumping;
    struct event *pump_ev, *gc_ev;
};

static size_t bucket_of(const batcher_t *b, const char *id)
{
    return (size_t)hookd_fnv1a(id, strlen(id)) & (b->n_buckets - 1);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    batcher_pump(arg);
}

static void on_gc(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    batcher_gc(arg, hookd_mono_ms() - BATCHER_IDLE_MS);
}

batcher_t *batcher_new(struct event_base *base, const batcher_opts_t *o, const batcher_hooks_t *h,
                       void *ud)
{
    batcher_t *b = calloc(1, sizeof(*b));
    if (!b) abort();
    b->base = base;
    b->o = *o;
    if (b->o.concurrency < 1) b->o.concurrency = 1;
    if (b->o.batch_max < 1) b->o.batch_max = 1;
    b->h = *h;
    b->ud = ud;
    b->n_buckets = 256;
    b->buckets = calloc(b->n_buckets, sizeof(*b->buckets));
    if (!b->buckets) abort();
    b->pump_ev = event_new(base, -1, 0, on_pump, b);
    b->gc_ev = event_new(base, -1, EV_PERSIST, on_gc, b);
    struct timeval tv = {BATCHER_GC_EVERY_MS / 1000, 0};
    if (!b->pump_ev || !b->gc_ev || event_add(b->gc_ev, &tv) < 0) {
        batcher_free(b);
        return NULL;
    }
    return b;
}

static void endpoint_free(endpoint_t *ep)
{
    if (ep->timer) event_free(ep->timer);
    free(ep);
}

void batcher_free(batcher_t *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n_buckets; i++) {
        for (endpoint_t *ep = b->buckets[i], *next; ep; ep = next) {
            next = ep->hnext;
            endpoint_free(ep);
        }
    }
    if (b->pump_ev) event_free(b->pump_ev);
    if (b->gc_ev) event_free(b->gc_ev);
    free(b->buckets);
    free(b);
}

const batcher_opts_t *batcher_opts(const batcher_t *b)
{
    return &b->o;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    endpoint_t *ep = arg;
    ep->timer_armed = false;
    batcher_check(ep->b, ep);
}

static void grow(batcher_t *b)
{
    size_t old_n = b->n_buckets;
    endpoint_t **old = b->buckets;
    b->n_buckets *= 2;
    b->buckets = calloc(b->n_buckets, sizeof(*b->buckets));
    if (!b->buckets) abort();
    for (size_t i = 0; i < old_n; i++) {
        for (endpoint_t *ep = old[i], *next; ep; ep = next) {
            next = ep->hnext;
            size_t k = bucket_of(b, ep->id);
            ep->hnext = b->buckets[k];
            b->buckets[k] = ep;
        }
    }
    free(old);
}

endpoint_t *batcher_endpoint(batcher_t *b, const char *id, bool create)
{
    size_t k = bucket_of(b, id);
    for (endpoint_t *ep = b->buckets[k]; ep; ep = ep->hnext)
        if (strcmp(ep->id, id) == 0) return ep;
    if (!create) return NULL;
    endpoint_t *ep = calloc(1, sizeof(*ep));
    if (!ep) abort();
    snprintf(ep->id, sizeof(ep->id), "%s", id);
    ep->b = b;
    ep->idle_since_ms = hookd_mono_ms();
    if (b->count >= b->n_buckets) {
        grow(b);
        k = bucket_of(b, id);
    }
    ep->hnext = b->buckets[k];
    b->buckets[k] = ep;
    b->count++;
    return ep;
}

void batcher_enqueue(batcher_t *b, endpoint_t *ep, wjob_t *j)
{
    j->next = NULL;
    j->arrival_ms = hookd_mono_ms();
    if (ep->tail)
        ep->tail->next = j;
    else
        ep->head = j;
    ep->tail = j;
    ep->queued++;
    ep->queued_bytes += j->len;
    b->queued++;
    ep->idle_since_ms = j->arrival_ms;
    batcher_check(b, ep);
}

void batcher_requeue_front(batcher_t *b, endpoint_t *ep, wjob_t *list)
{
    if (!list) return;
    wjob_t *last = list;
    int n = 1;
    size_t bytes = list->len;
    while (last->next) {
        last = last->next;
        n++;
        bytes += last->len;
    }
    last->next = ep->head;
    if (!ep->head) ep->tail = last;
    ep->head = list;
    ep->queued += n;
    ep->queued_bytes += bytes;
    b->queued += (size_t)n;
    batcher_check(b, ep);
}

void batcher_set_probe(batcher_t *b, endpoint_t *ep, wjob_t *j)
{
    j->next = NULL;
    ep->probe = j;
    batcher_check(b, ep);
}

void batcher_unlink(endpoint_t *ep, wjob_t *prev, wjob_t *j)
{
    if (prev)
        prev->next = j->next;
    else
        ep->head = j->next;
    if (ep->tail == j) ep->tail = prev;
    j->next = NULL;
    ep->queued--;
    ep->queued_bytes -= j->len;
    ep->b->queued--;
    ep->idle_since_ms = hookd_mono_ms();
}

wjob_t *batcher_take_all(endpoint_t *ep)
{
    wjob_t *list = ep->head;
    ep->b->queued -= (size_t)ep->queued;
    ep->head = ep->tail = NULL;
    ep->queued = 0;
    ep->queued_bytes = 0;
    if (ep->timer_armed) {
        event_del(ep->timer);
        ep->timer_armed = false;
    }
    return list;
}

wjob_t *batcher_take_after(endpoint_t *ep, int keep)
{
    if (keep <= 0) return batcher_take_all(ep);
    if (ep->queued <= keep) return NULL;
    wjob_t *last = ep->head;
    for (int i = 1; i < keep; i++)
        last = last->next;
    wjob_t *list = last->next;
    last->next = NULL;
    ep->tail = last;
    for (wjob_t *j = list; j; j = j->next) {
        ep->queued--;
        ep->queued_bytes -= j->len;
        ep->b->queued--;
    }
    return list;
}

bool batcher_due(batcher_t *b, endpoint_t *ep, int64_t now_ms)
{
    if (ep->probe) return ep->inflight == 0;
    if (!ep->head || ep->inflight >= b->o.concurrency) return false;
    if (!b->h.may_send(ep, b->ud)) return false;
    if (b->flush_all || b->o.window_ms == 0 || ep->head->solo) return true;
    if (ep->queued >= b->o.batch_max || (int64_t)ep->queued_bytes >= b->o.batch_max_bytes)
        return true;
    return now_ms >= ep->head->arrival_ms + b->o.window_ms;
}

void batcher_kick(batcher_t *b)
{
    if (!event_pending(b->pump_ev, EV_TIMEOUT, NULL)) event_active(b->pump_ev, EV_TIMEOUT, 0);
}

static void ready_append(batcher_t *b, endpoint_t *ep)
{
    ep->ready = true;
    ep->rnext = NULL;
    if (b->ready_tail)
        b->ready_tail->rnext = ep;
    else
        b->ready_head = ep;
    b->ready_tail = ep;
}

void batcher_check(batcher_t *b, endpoint_t *ep)
{
    int64_t now = hookd_mono_ms();
    if (batcher_due(b, ep, now)) {
        if (!ep->ready) ready_append(b, ep);
        batcher_kick(b);
        return;
    }
    /* not due: if only the window is missing, wake up when it ends */
    if (ep->head && !ep->probe && !b->flush_all && b->o.window_ms > 0 &&
        ep->inflight < b->o.concurrency) {
        int64_t wait = ep->head->arrival_ms + b->o.window_ms - now;
        if (wait < 1) wait = 1;
        struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((wait % 1000) * 1000)};
        if (!ep->timer) ep->timer = event_new(b->base, -1, 0, on_timer, ep);
        if (ep->timer && event_add(ep->timer, &tv) == 0) ep->timer_armed = true;
    } else if (!ep->head && ep->timer_armed) {
        event_del(ep->timer);
        ep->timer_armed = false;
    }
}

void batcher_pump(batcher_t *b)
{
    if (b->pumping) return;
    b->pumping = true;
    while (b->ready_head && b->h.slot_free(b->ud)) {
        endpoint_t *ep = b->ready_head;
        b->ready_head = ep->rnext;
        if (!b->ready_head) b->ready_tail = NULL;
        ep->ready = false;
        ep->rnext = NULL;
        if (!batcher_due(b, ep, hookd_mono_ms())) {
            /* no longer due (e.g. flush_all ended while it waited for a slot):
             * wait for its window again, or it would stay queued for good */
            batcher_check(b, ep);
            continue;
        }
        if (!b->h.send(ep, b->ud)) continue;
        /* round-robin: if it still has something due, it goes to the back */
        if (batcher_due(b, ep, hookd_mono_ms())) {
            if (!ep->ready) ready_append(b, ep);
        } else {
            batcher_check(b, ep);
        }
    }
    b->pumping = false;
}

void batcher_set_flush_all(batcher_t *b, bool on)
{
    if (b->flush_all == on) return;
    b->flush_all = on;
    if (on) {
        for (size_t i = 0; i < b->n_buckets; i++)
            for (endpoint_t *ep = b->buckets[i]; ep; ep = ep->hnext)
                if (ep->head) batcher_check(b, ep);
    }
}

void batcher_each(batcher_t *b, void (*fn)(endpoint_t *ep, void *ud), void *ud)
{
    for (size_t i = 0; i < b->n_buckets; i++) {
        for (endpoint_t *ep = b->buckets[i], *next; ep; ep = next) {
            next = ep->hnext;
            fn(ep, ud);
        }
    }
}

void batcher_gc(batcher_t *b, int64_t older_than_ms)
{
    for (size_t i = 0; i < b->n_buckets; i++) {
        endpoint_t **pp = &b->buckets[i];
        while (*pp) {
            endpoint_t *ep = *pp;
            if (!ep->head && !ep->probe && ep->inflight == 0 && ep->refs == 0 && !ep->ready &&
                greylist_idle(&ep->gl) && ep->idle_since_ms < older_than_ms) {
                *pp = ep->hnext;
                b->count--;
                endpoint_free(ep);
            } else {
                pp = &ep->hnext;
            }
        }
    }
}

size_t batcher_endpoints(const batcher_t *b)
{
    return b->count;
}

size_t batcher_queued(const batcher_t *b)
{
    return b->queued;
}

bool batcher_waiting(const batcher_t *b)
{
    return b->ready_head != NULL;
}
