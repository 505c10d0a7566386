/* Unit tests for target URL validation and the SSRF address rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hookd/target.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int slow_lookups_done;

/* A name server that takes 600 ms for "slow.test" (the real resolver for
 * everything else): the lookups of target_resolve call this one. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real) abort();
    if (node && strcmp(node, "slow.test") == 0) {
        usleep(600 * 1000);
        atomic_fetch_add(&slow_lookups_done, 1);
        return real("127.0.0.1", service, hints, res);
    }
    return real(node, service, hints, res);
}

static bool allowed(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return target_addr_allowed((struct sockaddr *)&ss, false);
}

static void test_addresses(void **state)
{
    (void)state;
    const char *refused[] = {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255",
                             "192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1",
                             "100.127.255.255", "0.0.0.0", "224.0.0.1", "255.255.255.255",
                             "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1",
                             "::ffff:10.1.2.3", "::ffff:169.254.169.254", "64:ff9b::a00:1",
                             "2002:7f00:1::", "ff02::1"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        if (allowed(refused[i])) fail_msg("allowed %s", refused[i]);
    const char *ok[] = {"93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
                        "::ffff:8.8.8.8"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!allowed(ok[i])) fail_msg("refused %s", ok[i]);
}

static void test_parse(void **state)
{
    (void)state;
    target_url_t t;
    char err[256];
    assert_int_equal(target_parse("https://Example.com/hook?x=1", true, &t, err, sizeof(err)), 0);
    assert_true(t.https);
    assert_string_equal(t.host, "example.com");
    assert_int_equal(t.port, 443);
    assert_int_equal(target_parse("https://[2606:4700::1111]:8443/x", true, &t, err, sizeof(err)), 0);
    assert_string_equal(t.host, "2606:4700::1111");
    assert_int_equal(t.port, 8443);
    assert_int_equal(target_parse("http://example.com/", true, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "https"));
    assert_int_equal(target_parse("http://example.com:8080/", false, &t, err, sizeof(err)), 0);
    assert_int_equal(t.port, 8080);
    const char *bad[] = {"", "ftp://x/", "https://", "https:///x", "https://user:pw@x.com/",
                         "https://x.com:0/", "https://x.com:99999/", "https://x.com:ab/",
                         "https://x y.com/", "https://[::1/", "https://x.com/\n", "example.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (target_parse(bad[i], true, &t, err, sizeof(err)) == 0) fail_msg("accepted '%s'", bad[i]);
    char *long_url = malloc(2100);
    memcpy(long_url, "https://x.com/", 14);
    memset(long_url + 14, 'a', 2100 - 15);
    long_url[2099] = '\0';
    assert_int_equal(target_parse(long_url, true, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "2048"));
    free(long_url);
}

static void test_resolve_literals(void **state)
{
    (void)state;
    char err[256];
    struct sockaddr_storage out[4];
    assert_int_equal(target_resolve("127.0.0.1", 80, false, 2000, out, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "127.0.0.1"));
    assert_int_equal(target_resolve("127.0.0.1", 80, true, 2000, out, 4, err, sizeof(err)), 1);
    assert_int_equal(target_resolve("::1", 80, false, 2000, out, 4, err, sizeof(err)), -1);
    assert_int_equal(target_resolve("localhost", 80, false, 2000, out, 4, err, sizeof(err)), -1);
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(target_resolve(long_name, 80, true, 2000, out, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot resolve host aaa"));
}

/* A lookup still running at the deadline is refused as not resolving and
 * left to finish on its own thread, which frees it (LeakSanitizer checks);
 * lookups after it are not held up. */
static void test_resolve_gives_up_at_the_deadline(void **state)
{
    (void)state;
    char err[256];
    struct sockaddr_storage out[4];
    assert_int_equal(target_resolve("slow.test", 80, true, 100, out, 4, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot resolve host slow.test: no answer within 100 ms");
    assert_int_equal(atomic_load(&slow_lookups_done), 0);
    assert_int_equal(target_resolve("127.0.0.1", 80, true, 100, out, 4, err, sizeof(err)), 1);
    /* given time, the same slow name resolves (to 127.0.0.1, refused unless allowed) */
    assert_int_equal(target_resolve("slow.test", 80, true, 5000, out, 4, err, sizeof(err)), 1);
    assert_int_equal(target_resolve("slow.test", 80, false, 5000, out, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "slow.test resolves to 127.0.0.1"));
    for (int i = 0; i < 100 && atomic_load(&slow_lookups_done) < 3; i++)
        usleep(20 * 1000);
    assert_int_equal(atomic_load(&slow_lookups_done), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_resolve_literals),
        cmocka_unit_test(test_resolve_gives_up_at_the_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
