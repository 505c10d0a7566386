/* Unit tests for the worker's subscription cache: only what was read for
 * jobs is kept, the subsync feed keeps it current (full loads sweep what
 * they did not see, changes, removals), snapshots outlive replacements,
 * reads crossed by a change are not stored, 410 deactivation and the
 * validity of a rotated secret. */
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

/* Reads 'id' as if from PostgreSQL into the cache; returns whether it was stored. */
static bool fetch(subcache_t *c, const char *id, const char *url, bool active)
{
    sub_record_t r = rec(id, url, active);
    return subcache_put_fetched(c, &r, subcache_seq(c));
}

static void test_feed_keeps_what_is_cached_current(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    const subsync_callbacks_t *f = &subcache_feed;
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        assert_true(fetch(c, id, "https://a.example/hook", true));
    }
    /* a full load of 3,000 rows only refreshes the 10 cached ones */
    f->begin_load(c);
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        sub_record_t r = rec(id, i == 3 ? "https://new.example/hook" : "https://a.example/hook", true);
        f->upsert(&r, c);
    }
    f->end_load(true, c);
    assert_int_equal(subcache_count(c), 10);
    assert_null(subcache_get(c, "s42"));
    sub_t *s = subcache_get(c, "s3");
    assert_non_null(s);
    assert_string_equal(s->url, "https://new.example/hook");
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
    assert_int_equal(subcache_count(c), 9);

    /* a full reload that only sees s0 and s7 removes everything else */
    f->begin_load(c);
    sub_record_t r0 = rec("s0", "https://a.example/hook", true);
    sub_record_t r7 = rec("s7", "https://a.example/hook", true);
    f->upsert(&r0, c);
    f->upsert(&r7, c);
    f->end_load(true, c);
    assert_int_equal(subcache_count(c), 2);
    assert_null(subcache_get(c, "s3"));

    /* a load that fails part way keeps the previous entries; a read stored
     * meanwhile survives the load */
    f->begin_load(c);
    assert_true(fetch(c, "s9", "https://a.example/hook", true));
    f->upsert(&r0, c);
    f->end_load(true, c);
    assert_int_equal(subcache_count(c), 2); /* s0, s9 */
    f->begin_load(c);
    f->upsert(&r0, c);
    f->abort_load(c);
    assert_int_equal(subcache_count(c), 2);
    subcache_free(c);
}

static void test_reads_crossed_by_changes(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    const subsync_callbacks_t *f = &subcache_feed;
    /* a read starts, x changes (passed over: not cached), the read ends:
     * its (old) record is not stored, and the job must read again */
    uint64_t since = subcache_seq(c);
    sub_record_t newer = rec("x", "https://new.example/hook", true);
    f->upsert(&newer, c);
    f->end_load(false, c);
    sub_record_t older = rec("x", "https://old.example/hook", true);
    assert_false(subcache_put_fetched(c, &older, since));
    assert_null(subcache_get(c, "x"));
    assert_true(subcache_changed_since(c, "x", since));
    assert_false(subcache_changed_since(c, "y", since)); /* other ids are not affected */
    since = subcache_seq(c);
    assert_false(subcache_changed_since(c, "x", since));
    assert_true(subcache_put_fetched(c, &newer, since));
    sub_t *s = subcache_get(c, "x");
    assert_string_equal(s->url, "https://new.example/hook");
    sub_unref(s);

    /* a removal crossing a read counts as a change too */
    since = subcache_seq(c);
    f->remove("z", c);
    sub_record_t z = rec("z", "https://z.example/hook", true);
    assert_false(subcache_put_fetched(c, &z, since));
    assert_null(subcache_get(c, "z"));

    /* a read that overlapped more changes than are remembered reads again */
    since = subcache_seq(c);
    char id[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "o%d", i);
        f->remove(id, c);
    }
    assert_true(subcache_changed_since(c, "q", since));
    assert_false(subcache_changed_since(c, "q", subcache_seq(c) - 100));
    subcache_free(c);
}

static void test_fetched_records_and_deactivation(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    assert_true(fetch(c, "x", "https://a.example/hook", true)); /* a miss: inserted */
    sub_t *s = subcache_get(c, "x");
    assert_non_null(s);
    /* 410: inactive at once, for holders of the snapshot too */
    subcache_deactivate(c, "x");
    assert_false(atomic_load(&s->active));
    sub_unref(s);
    /* a read with no change since it started replaces the cached copy (a
     * re-activation whose notification is still on its way) */
    assert_true(fetch(c, "x", "https://other.example/hook", true));
    s = subcache_get(c, "x");
    assert_true(atomic_load(&s->active));
    assert_string_equal(s->url, "https://other.example/hook");
    sub_unref(s);
    assert_int_equal(subcache_count(c), 1);
    subcache_free(c);
}

static void test_previous_secret_validity(void **state)
{
    (void)state;
    subcache_t *c = subcache_new();
    sub_record_t r = rec("x", "https://a.example/hook", true);
    r.previous_secret = "whsec_BBBB";
    r.previous_secret_until = 2000;
    assert_true(subcache_put_fetched(c, &r, subcache_seq(c)));
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
        cmocka_unit_test(test_feed_keeps_what_is_cached_current),
        cmocka_unit_test(test_reads_crossed_by_changes),
        cmocka_unit_test(test_fetched_records_and_deactivation),
        cmocka_unit_test(test_previous_secret_validity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
