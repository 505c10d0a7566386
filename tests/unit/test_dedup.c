/* Unit tests for the worker's in-memory dedup: the bounded cache of finished
 * job ids (FIFO eviction, hash index kept consistent) and the held table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dedup.h"

#include "hookd/sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void id_of(int n, char out[SIGN_JOB_ID_LEN + 1])
{
    char ev[32];
    snprintf(ev, sizeof(ev), "evt_%d", n);
    sign_job_id(ev, strlen(ev), "sub", 3, out);
}

static void test_parse_id(void **state)
{
    (void)state;
    unsigned char b[16];
    assert_int_equal(dedup_parse_id("00112233445566778899aabbccddeeff", b), 0);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[15], 0xff);
    assert_int_equal(dedup_parse_id("00112233445566778899AABBCCDDEEFF", b), -1);
    assert_int_equal(dedup_parse_id("0011223344556677", b), -1);
    assert_int_equal(dedup_parse_id("00112233445566778899aabbccddeeff00", b), -1);
}

static void test_finished_cache_evicts_oldest(void **state)
{
    (void)state;
    enum { CAP = 1000, TOTAL = 25000 };
    dedup_t *d = dedup_new(CAP);
    char id[SIGN_JOB_ID_LEN + 1];
    for (int i = 0; i < TOTAL; i++) {
        id_of(i, id);
        assert_false(dedup_is_finished(d, id));
        dedup_add_finished(d, id);
        dedup_add_finished(d, id); /* idempotent */
        assert_true(dedup_is_finished(d, id));
        if (i % 997 == 0) {
            /* every id of the last CAP is there, the one before is not */
            for (int k = i; k >= 0 && k > i - CAP; k--) {
                id_of(k, id);
                assert_true(dedup_is_finished(d, id));
            }
            if (i >= CAP) {
                id_of(i - CAP, id);
                assert_false(dedup_is_finished(d, id));
            }
        }
    }
    assert_int_equal(dedup_finished_count(d), CAP);
    assert_false(dedup_is_finished(d, "not an id"));
    dedup_free(d);
}

static int counted;
static void count(wjob_t *j, void *ud)
{
    (void)j;
    (void)ud;
    counted++;
}

static void test_held_table(void **state)
{
    (void)state;
    enum { N = 5000 };
    dedup_t *d = dedup_new(1024);
    wjob_t **jobs = calloc(N, sizeof(*jobs));
    for (int i = 0; i < N; i++) {
        jobs[i] = calloc(1, sizeof(wjob_t));
        id_of(i, jobs[i]->id);
        dedup_hold(d, jobs[i]);
    }
    assert_int_equal(dedup_held_count(d), N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(dedup_held(d, jobs[i]->id), jobs[i]);
    counted = 0;
    dedup_each_held(d, count, NULL);
    assert_int_equal(counted, N);
    for (int i = 0; i < N; i += 2)
        dedup_unhold(d, jobs[i]);
    dedup_unhold(d, jobs[0]); /* not held any more: no-op */
    assert_int_equal(dedup_held_count(d), N / 2);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(dedup_held(d, jobs[i]->id), i % 2 ? jobs[i] : NULL);
    for (int i = 0; i < N; i++)
        free(jobs[i]);
    free(jobs);
    dedup_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_finished_cache_evicts_oldest),
        cmocka_unit_test(test_held_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
