/* Unit tests for the batcher: when an endpoint is due (window, size,
 * bytes, solo jobs, concurrency, grey-list, flush), the global slot bound,
 * round-robin service, queue surgery and idle endpoint collection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "batcher.h"

#include "hookd/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    bool allow;     /* may_send */
    int slots;      /* free global slots */
    int take;       /* jobs per request */
    char log[4096]; /* endpoint ids sent from, in order */
    int sends;
} fake_t;

static bool may_send(endpoint_t *ep, void *ud)
{
    (void)ep;
    return ((fake_t *)ud)->allow;
}

static bool slot_free(void *ud)
{
    return ((fake_t *)ud)->slots > 0;
}

static bool send_one(endpoint_t *ep, void *ud)
{
    fake_t *f = ud;
    for (int i = 0; i < f->take && ep->head; i++) {
        wjob_t *j = ep->head;
        batcher_unlink(ep, NULL, j);
        free(j);
    }
    f->slots--;
    f->sends++;
    strncat(f->log, ep->id, sizeof(f->log) - strlen(f->log) - 1);
    return true;
}

static wjob_t *job(uint32_t len, bool solo)
{
    wjob_t *j = calloc(1, sizeof(*j));
    j->len = len;
    j->solo = solo;
    return j;
}

static struct event_base *base;

static batcher_t *make(fake_t *f, int64_t window, int max, int64_t bytes, int conc)
{
    memset(f, 0, sizeof(*f));
    f->allow = true;
    f->slots = 1000;
    f->take = 1000;
    batcher_opts_t o = {window, max, bytes, conc};
    batcher_hooks_t h = {may_send, slot_free, send_one};
    return batcher_new(base, &o, &h, f);
}

static void run_now(void)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static void drain(batcher_t *b, endpoint_t *ep)
{
    for (wjob_t *j = batcher_take_all(ep), *n; j; j = n) {
        n = j->next;
        free(j);
    }
    (void)b;
}

static void test_window_then_send(void **state)
{
    (void)state;
    fake_t f;
    batcher_t *b = make(&f, 150, 100, 1 << 20, 1);
    endpoint_t *ep = batcher_endpoint(b, "A", true);
    assert_ptr_equal(batcher_endpoint(b, "A", false), ep);
    assert_null(batcher_endpoint(b, "B", false));
    batcher_enqueue(b, ep, job(10, false));
    batcher_enqueue(b, ep, job(10, false));
    run_now();
    assert_int_equal(f.sends, 0); /* inside the window */
    assert_int_equal(batcher_queued(b), 2);
    int64_t t0 = hookd_mono_ms();
    while (f.sends == 0 && hookd_mono_ms() - t0 < 5000)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(f.sends, 1);
    assert_true(hookd_mono_ms() - t0 >= 100);
    assert_int_equal(batcher_queued(b), 0);
    batcher_free(b);
}

static void test_due_rules(void **state)
{
    (void)state;
    fake_t f;
    batcher_t *b = make(&f, 60000, 3, 1000, 1);
    endpoint_t *ep = batcher_endpoint(b, "A", true);
    int64_t now = hookd_mono_ms();
    batcher_enqueue(b, ep, job(10, false));
    assert_false(batcher_due(b, ep, now));
    assert_true(batcher_due(b, ep, now + 60001)); /* the window ended */
    batcher_enqueue(b, ep, job(10, false));
    batcher_enqueue(b, ep, job(10, false));
    assert_true(batcher_due(b, ep, now)); /* HOOKD_BATCH_MAX reached */
    drain(b, ep);
    batcher_enqueue(b, ep, job(1000, false));
    assert_true(batcher_due(b, ep, now)); /* HOOKD_BATCH_MAX_BYTES reached */
    drain(b, ep);
    batcher_enqueue(b, ep, job(10, true));
    assert_true(batcher_due(b, ep, now)); /* cannot share a request: no wait */
    ep->inflight = 1;
    assert_false(batcher_due(b, ep, now)); /* HOOKD_ENDPOINT_CONCURRENCY */
    ep->inflight = 0;
    f.allow = false;
    assert_false(batcher_due(b, ep, now)); /* grey-listed */
    f.allow = true;
    drain(b, ep);
    batcher_enqueue(b, ep, job(10, false));
    assert_false(batcher_due(b, ep, now));
    batcher_set_flush_all(b, true);
    assert_true(batcher_due(b, ep, now)); /* pressure or shutdown */
    batcher_set_flush_all(b, false);
    /* a probe goes alone, grey-list or not, once nothing is in flight */
    wjob_t *p = job(10, false);
    f.allow = false;
    batcher_set_probe(b, ep, p);
    assert_true(batcher_due(b, ep, now));
    ep->inflight = 1;
    assert_false(batcher_due(b, ep, now));
    ep->inflight = 0;
    ep->probe = NULL;
    free(p);
    drain(b, ep);
    batcher_free(b);
}

/* An endpoint made due by flush_all that waits for a global slot until
 * flush_all has ended is not due when its turn comes: it must wait for its
 * window again, not drop out of the batcher with its jobs still queued. */
static void test_flush_all_ends_while_waiting_for_a_slot(void **state)
{
    (void)state;
    fake_t f;
    batcher_t *b = make(&f, 150, 100, 1 << 20, 1);
    f.slots = 0;
    endpoint_t *ep = batcher_endpoint(b, "A", true);
    batcher_set_flush_all(b, true);
    batcher_enqueue(b, ep, job(10, false));
    run_now();
    assert_int_equal(f.sends, 0); /* due, but no global slot */
    batcher_set_flush_all(b, false);
    f.slots = 1;
    batcher_kick(b);
    run_now();
    assert_int_equal(f.sends, 0); /* inside the window again */
    int64_t t0 = hookd_mono_ms();
    while (f.sends == 0 && hookd_mono_ms() - t0 < 5000)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(f.sends, 1); /* sent when the window ended */
    assert_int_equal(batcher_queued(b), 0);
    batcher_free(b);
}

static void test_window_zero_and_slots(void **state)
{
    (void)state;
    fake_t f;
    batcher_t *b = make(&f, 0, 100, 1 << 20, 1);
    f.slots = 0;
    endpoint_t *a = batcher_endpoint(b, "A", true);
    batcher_enqueue(b, a, job(10, false));
    run_now();
    assert_int_equal(f.sends, 0); /* no global slot */
    f.slots = 1;
    batcher_kick(b);
    run_now();
    assert_int_equal(f.sends, 1);
    batcher_free(b);
}

static void test_round_robin(void **state)
{
    (void)state;
    fake_t f;
    batcher_t *b = make(&f, 0, 100, 1 << 20, 100);
    f.take = 1;
    f.slots = 9;
    const char *ids[] = {"A", "B", "C"};
    for (int e = 0; e < 3; e++) {
        endpoint_t *ep = batcher_endpoint(b, ids[e], true);
        for (int i = 0; i < 5; i++)
            batcher_enqueue(b, ep, job(10, false));
    }
    run_now();
    assert_int_equal(f.sends, 9);
    assert_string_equal(f.log, "ABCABCABC");
    for (int e = 0; e < 3; e++)
        drain(b, batcher_endpoint(b, ids[e], false));
    batcher_free(b);
}

static void test_queue_surgery_and_gc(void **state)
{
    (void)state;
    fake_t f;
    batcher_t *b = make(&f, 60000, 100, 1 << 20, 1);
    endpoint_t *ep = batcher_endpoint(b, "A", true);
    wjob_t *j1 = job(1, false), *j2 = job(2, false), *j3 = job(3, false);
    batcher_enqueue(b, ep, j1);
    batcher_enqueue(b, ep, j2);
    batcher_enqueue(b, ep, j3);
    assert_int_equal(ep->queued, 3);
    assert_int_equal(ep->queued_bytes, 6);
    batcher_unlink(ep, j1, j2); /* from the middle */
    assert_ptr_equal(ep->head, j1);
    assert_ptr_equal(j1->next, j3);
    batcher_unlink(ep, j1, j3); /* the tail */
    assert_ptr_equal(ep->tail, j1);
    assert_int_equal(ep->queued, 1);
    j2->next = j3;
    batcher_requeue_front(b, ep, j2);
    assert_ptr_equal(ep->head, j2);
    assert_ptr_equal(j3->next, j1);
    assert_ptr_equal(ep->tail, j1);
    assert_int_equal(ep->queued, 3);
    assert_int_equal(batcher_queued(b), 3);
    wjob_t *rest = batcher_take_after(ep, 1); /* keep j2 */
    assert_ptr_equal(rest, j3);
    assert_ptr_equal(j3->next, j1);
    assert_ptr_equal(ep->tail, j2);
    assert_int_equal(ep->queued, 1);
    assert_int_equal(ep->queued_bytes, 2);
    assert_null(batcher_take_after(ep, 1));
    batcher_requeue_front(b, ep, rest); /* j3 j1 j2 */
    assert_int_equal(ep->queued, 3);
    wjob_t *all = batcher_take_all(ep);
    assert_ptr_equal(all, j3);
    assert_int_equal(batcher_queued(b), 0);
    free(j1);
    free(j2);
    free(j3);
    /* idle and healthy: collected; referenced or grey-listed: kept */
    endpoint_t *kept = batcher_endpoint(b, "B", true);
    kept->gl.until_ms = 1;
    assert_int_equal(batcher_endpoints(b), 2);
    batcher_gc(b, hookd_mono_ms() + 1);
    assert_int_equal(batcher_endpoints(b), 1);
    assert_null(batcher_endpoint(b, "A", false));
    assert_non_null(batcher_endpoint(b, "B", false));
    batcher_free(b);
}

static int setup(void **state)
{
    (void)state;
    base = event_base_new();
    return base ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    event_base_free(base);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_then_send),
        cmocka_unit_test(test_due_rules),
        cmocka_unit_test(test_flush_all_ends_while_waiting_for_a_slot),
        cmocka_unit_test(test_window_zero_and_slots),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_queue_surgery_and_gc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
