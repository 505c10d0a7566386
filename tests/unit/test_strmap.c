/* Unit tests for the string-keyed hash map behind the matcher and catalog:
 * randomised inserts and deletions against a plain array model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_basic(void **state)
{
    (void)state;
    strmap_t m;
    strmap_init(&m);
    int a = 1, b = 2;
    assert_null(strmap_get(&m, "x", 1, strmap_hash("x", 1)));
    assert_null(strmap_del(&m, "x", 1, strmap_hash("x", 1)));
    assert_null(strmap_put(&m, "x", 1, strmap_hash("x", 1), &a));
    assert_ptr_equal(strmap_put(&m, "x", 1, strmap_hash("x", 1), &b), &a);
    assert_ptr_equal(strmap_get(&m, "x", 1, strmap_hash("x", 1)), &b);
    assert_null(strmap_get(&m, "xy", 2, strmap_hash("xy", 2)));
    assert_int_equal(m.len, 1);
    assert_ptr_equal(strmap_del(&m, "x", 1, strmap_hash("x", 1)), &b);
    assert_int_equal(m.len, 0);
    assert_true(strmap_hash("", 0) != 0);
    strmap_free(&m);
}

static void test_randomised(void **state)
{
    (void)state;
    enum { KEYS = 3000 };
    static char keys[KEYS][16];
    static int present[KEYS];
    strmap_t m;
    strmap_init(&m);
    for (int i = 0; i < KEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
    srand(99);
    size_t live = 0;
    for (int round = 0; round < 200000; round++) {
        int i = rand() % KEYS;
        size_t len = strlen(keys[i]);
        uint64_t h = strmap_hash(keys[i], len);
        if (rand() % 2) {
            void *old = strmap_put(&m, keys[i], len, h, keys[i]);
            assert_true(present[i] ? old == keys[i] : old == NULL);
            if (!present[i]) live++;
            present[i] = 1;
        } else {
            void *old = strmap_del(&m, keys[i], len, h);
            assert_true(present[i] ? old == keys[i] : old == NULL);
            if (present[i]) live--;
            present[i] = 0;
        }
        assert_int_equal(m.len, live);
        if (round % 10000 == 0)
            for (int k = 0; k < KEYS; k++) {
                void *v =
                    strmap_get(&m, keys[k], strlen(keys[k]), strmap_hash(keys[k], strlen(keys[k])));
                assert_true(present[k] ? v == keys[k] : v == NULL);
            }
    }
    strmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_randomised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
