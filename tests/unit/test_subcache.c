/* Unit tests for the worker's subscription cache: the subsync feed (full
 * loads sweep what they did not see, changes, removals), snapshots that
 * outlive replacements, fetched records for cache misses, 410 deactivation
 * and the validity of a rotated secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "subcache.h"

#include "hookd/event.h"

#include <stdio.h>
#include <string.h>

static sub_record_t rec(const char *id, const char *url, bool active)
{
    sub_record_t r;
    memset(&r, 0, sizeof(r));
    r.id = id;
    r.owner_id = "acct_1";
    r.target_url = url;
    r.endpoint_id = "ep_1";
    r.secret = "whsec_AAAA";
    r.active = active;
    r.batch = true;
    r.body_format = FORMAT_VCITA;
    return r;
}

static void test_feed_loads_changes_and_sweeps(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    const subsync_callbacks_t *f = &subcache_feed;
    f->begin_load(c);
    for (int i = 0; i < 3000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "s%d", i);
        sub_record_t r = rec(id, "https://a.example/hook", true);
        f->upsert(&r, c);
    }
    f->end_load(true, c);
    assert_int_equal(subcache_count(c), 3000);
    sub_t *s = subcache_get(c, "s42");
    assert_non_null(s);
    assert_string_equal(s->url, "https://a.example/hook");
    assert_string_equal(s->endpoint_id, "ep_1");
    assert_int_equal(s->format, FORMAT_VCITA);
    assert_true(s->batch && atomic_load(&s->active));
    sub_unref(s);

    /* a change: upsert + end_load(false) replaces; the old snapshot lives on */
    sub_t *old = subcache_get(c, "s1");
    sub_record_t r = rec("s1", "https://b.example/hook", false);
    f->upsert(&r, c);
    f->end_load(false, c);
    sub_t *now = subcache_get(c, "s1");
    assert_string_equal(now->url, "https://b.example/hook");
    assert_false(atomic_load(&now->active));
    assert_string_equal(old->url, "https://a.example/hook");
    sub_unref(old);
    sub_unref(now);
    f->remove("s2", c);
    f->end_load(false, c);
    assert_null(subcache_get(c, "s2"));

    /* a full reload that only sees s0 and s7 removes everything else */
    f->begin_load(c);
    sub_record_t r0 = rec("s0", "https://a.example/hook", true);
    sub_record_t r7 = rec("s7", "https://a.example/hook", true);
    f->upsert(&r0, c);
    f->upsert(&r7, c);
    f->end_load(true, c);
    assert_int_equal(subcache_count(c), 2);
    assert_null(subcache_get(c, "s42"));

    /* a load that fails part way keeps the previous entries */
    f->begin_load(c);
    sub_record_t r9 = rec("s9", "https://a.example/hook", true);
    f->upsert(&r9, c);
    f->abort_load(c);
    assert_int_equal(subcache_count(c), 3);
    subcache_free(c);
}

static void test_fetched_records_and_deactivation(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    sub_record_t r = rec("x", "https://a.example/hook", true);
    subcache_put_fetched(c, &r); /* a miss: inserted */
    sub_t *s = subcache_get(c, "x");
    assert_non_null(s);
    sub_unref(s);
    /* an active cached copy is not replaced by a fetched one */
    sub_record_t r2 = rec("x", "https://other.example/hook", true);
    subcache_put_fetched(c, &r2);
    s = subcache_get(c, "x");
    assert_string_equal(s->url, "https://a.example/hook");
    sub_unref(s);
    /* 410: inactive at once, for holders of the snapshot too */
    s = subcache_get(c, "x");
    subcache_deactivate(c, "x");
    assert_false(atomic_load(&s->active));
    sub_unref(s);
    /* an inactive copy is replaced by a fetched active one (re-activation race) */
    subcache_put_fetched(c, &r2);
    s = subcache_get(c, "x");
    assert_true(atomic_load(&s->active));
    assert_string_equal(s->url, "https://other.example/hook");
    sub_unref(s);
    subcache_free(c);
}

static void test_previous_secret_validity(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    sub_record_t r = rec("x", "https://a.example/hook", true);
    r.previous_secret = "whsec_BBBB";
    r.previous_secret_until = 2000;
    subcache_feed.upsert(&r, c);
    sub_t *s = subcache_get(c, "x");
    assert_string_equal(sub_previous_secret(s, 1999), "whsec_BBBB");
    assert_null(sub_previous_secret(s, 2000));
    sub_unref(s);
    r.previous_secret = NULL;
    subcache_feed.upsert(&r, c);
    s = subcache_get(c, "x");
    assert_null(sub_previous_secret(s, 0));
    sub_unref(s);
    subcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feed_loads_changes_and_sweeps),
        cmocka_unit_test(test_fetched_records_and_deactivation),
        cmocka_unit_test(test_previous_secret_validity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
