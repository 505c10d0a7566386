/* Unit tests for migration naming and ordering (the runner itself is
 * exercised against a real PostgreSQL by the e2e suite). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/pg.h"

#include <string.h>

static void test_versions(void **state)
{
    (void)state;
    assert_int_equal(pg_migration_version("0001_init.sql"), 1);
    assert_int_equal(pg_migration_version("0042_add_x.sql"), 42);
    assert_int_equal(pg_migration_version("001_init.sql"), -1);
    assert_int_equal(pg_migration_version("0001init.sql"), -1);
    assert_int_equal(pg_migration_version("0001_init.txt"), -1);
    assert_int_equal(pg_migration_version("abcd_init.sql"), -1);
    assert_int_equal(pg_migration_version(NULL), -1);
}

static void test_ordering(void **state)
{
    (void)state;
    char err[256];
    pg_migration_t good[] = {{"0001_a.sql", ""}, {"0002_b.sql", ""}, {"0010_c.sql", ""}, {0, 0}};
    assert_int_equal(pg_migrations_check(good, err, sizeof(err)), 0);
    pg_migration_t dup[] = {{"0001_a.sql", ""}, {"0001_b.sql", ""}, {0, 0}};
    assert_int_equal(pg_migrations_check(dup, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "0001_b.sql"));
    pg_migration_t backwards[] = {{"0002_a.sql", ""}, {"0001_b.sql", ""}, {0, 0}};
    assert_int_equal(pg_migrations_check(backwards, err, sizeof(err)), -1);
    pg_migration_t zero[] = {{"0000_a.sql", ""}, {0, 0}};
    assert_int_equal(pg_migrations_check(zero, err, sizeof(err)), -1);
}

static void test_embedded_schema(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(pg_migrations_check(hookd_migrations, err, sizeof(err)), 0);
    assert_non_null(hookd_migrations[0].name);
    assert_string_equal(hookd_migrations[0].name, "0001_init.sql");
    assert_non_null(strstr(hookd_migrations[0].sql, "CREATE TABLE subscriptions"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_ordering),
        cmocka_unit_test(test_embedded_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
