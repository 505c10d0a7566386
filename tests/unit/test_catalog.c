/* Unit tests for the in-memory event type catalog (without PostgreSQL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog.h"

#include <string.h>

static void test_types_and_aliases(void **state)
{
    (void)state;
    catalog_t *c = catalog_new();
    char out[128];
    assert_false(catalog_loaded(c));
    assert_false(catalog_has_type(c, "client/created"));
    assert_false(catalog_resolve_alias(c, "eventAdded", out, sizeof(out)));

    const char *types[] = {"client/created", "event/created", "event/cancelled"};
    const char *names[] = {"eventAdded", "eventCancelled"};
    const char *targets[] = {"event/created", "event/cancelled"};
    catalog_set(c, types, 3, names, targets, 2);
    assert_true(catalog_loaded(c));
    assert_int_equal(catalog_size(c), 3);
    assert_true(catalog_has_type(c, "client/created"));
    assert_false(catalog_has_type(c, "client/create"));
    assert_false(catalog_has_type(c, "client"));
    assert_true(catalog_resolve_alias(c, "eventAdded", out, sizeof(out)));
    assert_string_equal(out, "event/created");
    assert_false(catalog_resolve_alias(c, "eventadded", out, sizeof(out)));
    assert_false(catalog_resolve_alias(c, "eventCancelled", out, 5)); /* does not fit */

    /* a reload replaces everything */
    const char *types2[] = {"payment/paid"};
    catalog_set(c, types2, 1, NULL, NULL, 0);
    assert_false(catalog_has_type(c, "client/created"));
    assert_true(catalog_has_type(c, "payment/paid"));
    assert_false(catalog_resolve_alias(c, "eventAdded", out, sizeof(out)));
    assert_false(catalog_connected(c));
    catalog_free(c);
}

static void test_duplicates(void **state)
{
    (void)state;
    catalog_t *c = catalog_new();
    const char *types[] = {"a/b", "a/b", "c/d"};
    const char *names[] = {"x", "x"};
    const char *targets[] = {"a/b", "c/d"};
    char out[16];
    catalog_set(c, types, 3, names, targets, 2);
    assert_int_equal(catalog_size(c), 2);
    assert_true(catalog_resolve_alias(c, "x", out, sizeof(out)));
    assert_string_equal(out, "a/b");
    catalog_free(c);
}

static void test_names_are_normalised(void **state)
{
    (void)state;
    catalog_t *c = catalog_new();
    const char *types[] = {"pivot/update", "client.created", "custom/hook_create"};
    const char *names[] = {"eventUpdated"};
    const char *targets[] = {"event.updated"};
    char out[64];
    catalog_set(c, types, 3, names, targets, 1);
    assert_true(catalog_has_type(c, "pivot/update"));
    assert_false(catalog_has_type(c, "pivot/updated")); /* catalog names keep their verb */
    assert_true(catalog_has_type(c, "client/created"));
    assert_true(catalog_has_type(c, "custom/hook_create"));
    assert_true(catalog_resolve_alias(c, "eventUpdated", out, sizeof(out)));
    assert_string_equal(out, "event/updated");
    catalog_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_and_aliases),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_names_are_normalised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
