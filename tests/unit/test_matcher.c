/* Unit tests for the subscription matcher: scopes, patterns, status filter,
 * inactive subscriptions, incremental changes, full loads, and a randomised
 * cross-check against a brute-force reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "matcher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

typedef struct {
    const char *id;
    bool directory;
    const char *owner;
    const char *types[8];
    const char *statuses[8];
    payload_mode_t mode;
    bool inactive;
} spec_t;

static void upsert(matcher_t *m, const spec_t *s)
{
    sub_record_t r;
    char ep[64];
    memset(&r, 0, sizeof(r));
    r.id = s->id;
    r.directory = s->directory;
    r.owner_id = s->owner;
    r.event_types = s->types;
    while (r.n_event_types < 8 && s->types[r.n_event_types])
        r.n_event_types++;
    while (r.n_statuses < 8 && s->statuses[r.n_statuses])
        r.n_statuses++;
    r.statuses = r.n_statuses ? s->statuses : NULL;
    r.payload_mode = s->mode;
    r.active = !s->inactive;
    snprintf(ep, sizeof(ep), "ep_%s", s->id);
    r.endpoint_id = ep;
    r.target_url = "https://example.com/hook";
    r.secret = "whsec_x";
    matcher_upsert(m, &r);
}

static event_t make_event(const char *type, const char *account, const char *directory,
                          const char *status)
{
    event_t ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.id, sizeof(ev.id), "evt_1");
    snprintf(ev.type, sizeof(ev.type), "%s", type);
    snprintf(ev.account, sizeof(ev.account), "%s", account);
    snprintf(ev.directory, sizeof(ev.directory), "%s", directory ? directory : "");
    snprintf(ev.status, sizeof(ev.status), "%s", status ? status : "");
    return ev;
}

/* Sorted, comma-joined ids of the matching subscriptions. */
static char *match_ids(matcher_t *m, const event_t *ev)
{
    static char out[4096];
    matcher_result_t r = {0};
    matcher_match(m, ev, &r);
    const char *ids[256];
    size_t n = r.n < 256 ? r.n : 256;
    for (size_t i = 0; i < n; i++)
        ids[i] = r.hits[i].sub_id;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(ids[j - 1], ids[j]) > 0; j--) {
            const char *t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(out, ",");
        strcat(out, ids[i]);
    }
    matcher_result_free(&r);
    return out;
}

static char *match_of(matcher_t *m, const char *type, const char *account, const char *directory,
                      const char *status)
{
    event_t ev = make_event(type, account, directory, status);
    return match_ids(m, &ev);
}

/* ---- tests ---- */

static void test_account_scope(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(m, &(spec_t){"s1", false, "acct_1", {"client/created"}, {NULL}, PAYLOAD_BASIC, false});
    upsert(m, &(spec_t){"s2", false, "acct_2", {"client/created"}, {NULL}, PAYLOAD_FULL, false});
    assert_string_equal(match_of(m, "client/created", "acct_1", NULL, NULL), "s1");
    assert_string_equal(match_of(m, "client/created", "acct_2", NULL, NULL), "s2");
    assert_string_equal(match_of(m, "client/created", "acct_3", NULL, NULL), "");
    assert_string_equal(match_of(m, "client/updated", "acct_1", NULL, NULL), "");
    /* an account subscription is not matched by the directory of an event */
    assert_string_equal(match_of(m, "client/created", "acct_9", "acct_1", NULL), "");
    assert_int_equal(matcher_count(m), 2);

    matcher_result_t r = {0};
    event_t ev = make_event("client/created", "acct_1", NULL, NULL);
    assert_int_equal(matcher_match(m, &ev, &r), 1);
    assert_string_equal(r.hits[0].sub_id, "s1");
    assert_string_equal(r.hits[0].endpoint_id, "ep_s1");
    assert_int_equal(r.hits[0].payload_mode, PAYLOAD_BASIC);
    matcher_result_free(&r);
    matcher_free(m);
}

static void test_directory_scope(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(m, &(spec_t){"d1", true, "dir_7", {"pivot/update"}, {NULL}, PAYLOAD_FULL, false});
    upsert(m, &(spec_t){"a1", false, "acct_1", {"pivot/update"}, {NULL}, PAYLOAD_FULL, false});
    upsert(m, &(spec_t){"a7", false, "dir_7", {"pivot/update"}, {NULL}, PAYLOAD_FULL, false});
    /* the catalog's pivot/update keeps its name (no past-tense rewrite) */
    /* both the account's and the directory's subscriptions match */
    assert_string_equal(match_of(m, "pivot/update", "acct_1", "dir_7", NULL), "a1,d1");
    /* no directory on the event: only account scope */
    assert_string_equal(match_of(m, "pivot/update", "acct_1", NULL, NULL), "a1");
    /* an account id equal to a directory id does not hit the directory scope */
    assert_string_equal(match_of(m, "pivot/update", "dir_7", NULL, NULL), "a7");
    assert_string_equal(match_of(m, "pivot/update", "acct_2", "dir_8", NULL), "");
    matcher_free(m);
}

static void test_patterns(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(m, &(spec_t){"exact", false, "a", {"appointment/created"}, {NULL}, 0, false});
    upsert(m, &(spec_t){"entity", false, "a", {"appointment/*"}, {NULL}, 0, false});
    upsert(m, &(spec_t){"all", false, "a", {"*"}, {NULL}, 0, false});
    upsert(
        m,
        &(spec_t){
            "multi", false, "a", {"appointment/created", "appointment/*", "*"}, {NULL}, 0, false});
    upsert(m,
           &(spec_t){"both", false, "a", {"coupon/created", "coupon/updated"}, {NULL}, 0, false});
    assert_string_equal(match_of(m, "appointment/created", "a", NULL, NULL),
                        "all,entity,exact,multi");
    assert_string_equal(match_of(m, "appointment/deleted", "a", NULL, NULL), "all,entity,multi");
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "all,multi");
    assert_string_equal(match_of(m, "coupon/updated", "a", NULL, NULL), "all,both,multi");
    assert_string_equal(match_of(m, "custom/vikappointments_add_item_cart", "a", NULL, NULL),
                        "all,multi");
    /* one job per subscription even when several of its patterns match */
    matcher_result_t r = {0};
    event_t ev = make_event("appointment/created", "a", NULL, NULL);
    assert_int_equal(matcher_match(m, &ev, &r), 4);
    matcher_result_free(&r);
    matcher_free(m);
}

static void test_pattern_normalisation(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(
        m,
        &(spec_t){
            "s", false, "a", {"client.created", "client/updated", "bad pattern"}, {NULL}, 0, false});
    upsert(m, &(spec_t){"none", false, "a", {"not valid!"}, {NULL}, 0, false});
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "s");
    assert_string_equal(match_of(m, "client/updated", "a", NULL, NULL), "s");
    assert_int_equal(matcher_count(m), 1); /* no usable pattern: not indexed */
    matcher_free(m);
}

static void test_status_filter(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(m, &(spec_t){"vik", false, "a", {"appointment/*"}, {"confirmed", "paid"}, 0, false});
    upsert(m, &(spec_t){"any", false, "a", {"appointment/*"}, {NULL}, 0, false});
    assert_string_equal(match_of(m, "appointment/status_changed", "a", NULL, "confirmed"),
                        "any,vik");
    assert_string_equal(match_of(m, "appointment/status_changed", "a", NULL, "paid"), "any,vik");
    assert_string_equal(match_of(m, "appointment/status_changed", "a", NULL, "pending"), "any");
    assert_string_equal(match_of(m, "appointment/created", "a", NULL, NULL), "any");
    assert_string_equal(match_of(m, "appointment/created", "a", NULL, "Confirmed"), "any");
    matcher_free(m);
}

static void test_inactive_and_changes(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(m, &(spec_t){"s", false, "a", {"client/created"}, {NULL}, 0, true});
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "");
    assert_int_equal(matcher_count(m), 0);
    /* activated */
    upsert(m, &(spec_t){"s", false, "a", {"client/created"}, {NULL}, 0, false});
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "s");
    /* patterns changed: the old one no longer matches */
    upsert(m, &(spec_t){"s", false, "a", {"client/deleted"}, {NULL}, 0, false});
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "");
    assert_string_equal(match_of(m, "client/deleted", "a", NULL, NULL), "s");
    /* owner changed */
    upsert(m, &(spec_t){"s", true, "dir", {"client/deleted"}, {NULL}, 0, false});
    assert_string_equal(match_of(m, "client/deleted", "a", NULL, NULL), "");
    assert_string_equal(match_of(m, "client/deleted", "x", "dir", NULL), "s");
    /* deactivated */
    upsert(m, &(spec_t){"s", true, "dir", {"client/deleted"}, {NULL}, 0, true});
    assert_string_equal(match_of(m, "client/deleted", "x", "dir", NULL), "");
    upsert(m, &(spec_t){"s", true, "dir", {"client/deleted"}, {NULL}, 0, false});
    matcher_remove(m, "s");
    matcher_remove(m, "missing");
    assert_string_equal(match_of(m, "client/deleted", "x", "dir", NULL), "");
    assert_int_equal(matcher_count(m), 0);
    matcher_free(m);
}

static void test_full_load_swaps(void **state)
{
    (void)state;
    matcher_t *m = matcher_new();
    upsert(m, &(spec_t){"old", false, "a", {"client/created"}, {NULL}, 0, false});
    matcher_begin_load(m);
    upsert(m, &(spec_t){"new", false, "a", {"client/created"}, {NULL}, 0, false});
    /* not visible before the load ends */
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "old");
    matcher_end_load(m, true);
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "new");

    /* an aborted load (connection lost half way) keeps the previous index */
    matcher_begin_load(m);
    upsert(m, &(spec_t){"partial", false, "a", {"client/created"}, {NULL}, 0, false});
    matcher_abort_load(m);
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "new");
    /* end_load(false) closes a batch of changes: nothing to swap */
    matcher_end_load(m, false);
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "new");

    /* through the subsync callbacks */
    const subsync_callbacks_t *cb = &matcher_subsync_callbacks;
    cb->begin_load(m);
    cb->end_load(true, m);
    assert_string_equal(match_of(m, "client/created", "a", NULL, NULL), "");
    matcher_free(m);
}

/* ---- randomised cross-check ---- */

#define R_SUBS 400
#define R_OWNERS 12

static const char *r_types[] = {"client/created",      "client/updated", "appointment/created",
                                "appointment/deleted", "pivot/event",    "custom/hook"};
static const char *r_patterns[] = {
    "client/created", "client/updated", "appointment/created", "appointment/deleted",
    "pivot/event",    "client/*",       "appointment/*",       "*",
    "custom/hook"};
static const char *r_statuses[] = {"confirmed", "paid", "pending"};

typedef struct {
    bool present, active, directory;
    int owner;
    int pats[3], n_pats;
    int stats[2], n_stats;
} rsub_t;

static bool ref_matches(const rsub_t *s, const event_t *ev)
{
    char owner[16];
    if (!s->present || !s->active) return false;
    snprintf(owner, sizeof(owner), "o%d", s->owner);
    if (s->directory ? strcmp(ev->directory, owner) != 0 : strcmp(ev->account, owner) != 0)
        return false;
    bool type_ok = false;
    for (int i = 0; i < s->n_pats; i++) {
        const char *p = r_patterns[s->pats[i]];
        size_t pl = strlen(p);
        if (strcmp(p, "*") == 0 || strcmp(p, ev->type) == 0 ||
            (p[pl - 1] == '*' && strncmp(p, ev->type, pl - 1) == 0))
            type_ok = true;
    }
    if (!type_ok) return false;
    if (s->n_stats == 0) return true;
    for (int i = 0; i < s->n_stats; i++)
        if (strcmp(r_statuses[s->stats[i]], ev->status) == 0) return true;
    return false;
}

static void rsub_upsert(matcher_t *m, int i, const rsub_t *s)
{
    char id[16], owner[16];
    spec_t sp;
    memset(&sp, 0, sizeof(sp));
    snprintf(id, sizeof(id), "s%03d", i);
    snprintf(owner, sizeof(owner), "o%d", s->owner);
    sp.id = id;
    sp.directory = s->directory;
    sp.owner = owner;
    for (int k = 0; k < s->n_pats; k++)
        sp.types[k] = r_patterns[s->pats[k]];
    for (int k = 0; k < s->n_stats; k++)
        sp.statuses[k] = r_statuses[s->stats[k]];
    sp.inactive = !s->active;
    upsert(m, &sp);
}

static void test_randomised_against_reference(void **state)
{
    (void)state;
    static rsub_t subs[R_SUBS];
    memset(subs, 0, sizeof(subs));
    matcher_t *m = matcher_new();
    srand(12345);
    for (int round = 0; round < 6000; round++) {
        int i = rand() % R_SUBS;
        int op = rand() % 10;
        if (op < 7) {
            rsub_t s = {.present = true,
                        .active = rand() % 8 != 0,
                        .directory = rand() % 3 == 0,
                        .owner = rand() % R_OWNERS};
            s.n_pats = 1 + rand() % 3;
            for (int k = 0; k < s.n_pats; k++)
                s.pats[k] = rand() % (int)HOOKD_ARRAY_LEN(r_patterns);
            s.n_stats = rand() % 3;
            for (int k = 0; k < s.n_stats; k++)
                s.stats[k] = rand() % (int)HOOKD_ARRAY_LEN(r_statuses);
            subs[i] = s;
            rsub_upsert(m, i, &s);
        } else {
            subs[i].present = false;
            char id[16];
            snprintf(id, sizeof(id), "s%03d", i);
            matcher_remove(m, id);
        }
        if (round % 500 == 499) { /* a full reload rebuilds the same content */
            matcher_begin_load(m);
            for (int k = 0; k < R_SUBS; k++)
                if (subs[k].present) rsub_upsert(m, k, &subs[k]);
            matcher_end_load(m, true);
        }
        if (round % 20 != 0) continue;
        for (int q = 0; q < 30; q++) {
            char acct[16], dir[16];
            snprintf(acct, sizeof(acct), "o%d", rand() % R_OWNERS);
            snprintf(dir, sizeof(dir), "o%d", rand() % R_OWNERS);
            const char *st = rand() % 4 == 0 ? "" : r_statuses[rand() % 3];
            event_t ev = make_event(r_types[rand() % (int)HOOKD_ARRAY_LEN(r_types)], acct,
                                    rand() % 2 ? dir : NULL, st);
            char expect[4096] = "";
            for (int k = 0; k < R_SUBS; k++) {
                if (!ref_matches(&subs[k], &ev)) continue;
                char id[16];
                snprintf(id, sizeof(id), "%ss%03d", expect[0] ? "," : "", k);
                strcat(expect, id);
            }
            assert_string_equal(match_ids(m, &ev), expect);
        }
    }
    size_t live = 0;
    for (int k = 0; k < R_SUBS; k++)
        live += subs[k].present && subs[k].active;
    assert_int_equal(matcher_count(m), live);
    matcher_free(m);
}

/* ---- a writer changing the index while a reader matches ---- */

typedef struct {
    matcher_t *m;
    volatile int stop;
} conc_t;

static void *writer(void *arg)
{
    conc_t *c = arg;
    for (int i = 0; i < 20000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "w%d", i % 50);
        if (i % 3 == 2) {
            matcher_remove(c->m, id);
        } else if (i % 1000 == 999) {
            matcher_begin_load(c->m);
            upsert(c->m, &(spec_t){"keep", false, "a", {"*"}, {NULL}, 0, false});
            matcher_end_load(c->m, true);
        } else {
            upsert(c->m,
                   &(spec_t){id, false, "a", {"client/*", "client/created"}, {NULL}, 0, false});
        }
    }
    c->stop = 1;
    return NULL;
}

static void test_concurrent_writer(void **state)
{
    (void)state;
    conc_t c = {matcher_new(), 0};
    upsert(c.m, &(spec_t){"keep", false, "a", {"*"}, {NULL}, 0, false});
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &c), 0);
    matcher_result_t r = {0};
    event_t ev = make_event("client/created", "a", NULL, NULL);
    long rounds = 0;
    while (!c.stop) {
        size_t n = matcher_match(c.m, &ev, &r);
        assert_true(n >= 1 && n <= 51);
        for (size_t i = 0; i < n; i++)
            assert_true(r.hits[i].sub_id[0] != '\0');
        rounds++;
    }
    pthread_join(t, NULL);
    assert_true(rounds > 0);
    matcher_result_free(&r);
    matcher_free(c.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_scope),
        cmocka_unit_test(test_directory_scope),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_pattern_normalisation),
        cmocka_unit_test(test_status_filter),
        cmocka_unit_test(test_inactive_and_changes),
        cmocka_unit_test(test_full_load_swaps),
        cmocka_unit_test(test_randomised_against_reference),
        cmocka_unit_test(test_concurrent_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
