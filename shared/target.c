/* Target URL validation and SSRF address rules. */
#include "hookd/target.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int target_parse(const char *url, bool require_https, target_url_t *out, char *err,
                 size_t err_size)
{
    size_t len = strlen(url);
    const char *p;
    memset(out, 0, sizeof(*out));
    if (len == 0) {
        snprintf(err, err_size, "target_url is empty");
        return -1;
    }
    if (len > TARGET_URL_MAX) {
        snprintf(err, err_size, "target_url longer than %d characters", TARGET_URL_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, err_size, "target_url contains whitespace or control characters");
            return -1;
        }
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        out->https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        if (require_https) {
            snprintf(err, err_size, "target_url must use https");
            return -1;
        }
        p = url + 7;
    } else {
        snprintf(err, err_size, require_https ? "target_url must use https"
                                              : "target_url must be an http or https URL");
        return -1;
    }
    size_t auth_len = strcspn(p, "/?#");
    if (memchr(p, '@', auth_len)) {
        snprintf(err, err_size, "target_url must not contain credentials (user@host)");
        return -1;
    }
    if (auth_len == 0) {
        snprintf(err, err_size, "target_url has no host");
        return -1;
    }
    const char *host = p, *port_s = NULL;
    size_t host_len;
    if (*p == '[') {
        const char *close = memchr(p, ']', auth_len);
        if (!close) {
            snprintf(err, err_size, "target_url has a malformed IPv6 address");
            return -1;
        }
        host = p + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < p + auth_len) {
            if (close[1] != ':') {
                snprintf(err, err_size, "target_url has a malformed host");
                return -1;
            }
            port_s = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', auth_len);
        host_len = colon ? (size_t)(colon - p) : auth_len;
        if (colon) port_s = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof(out->host)) {
        snprintf(err, err_size, "target_url has an invalid host");
        return -1;
    }
    for (size_t i = 0; i < host_len; i++) {
        char c = host[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '.' || c == ':' || c == '_')) {
            snprintf(err, err_size, "target_url has an invalid host");
            return -1;
        }
        out->host[i] = (char)tolower((unsigned char)c);
    }
    out->host[host_len] = '\0';
    out->port = out->https ? 443 : 80;
    if (port_s) {
        const char *end = p + auth_len;
        if (port_s == end || end - port_s > 5) {
            snprintf(err, err_size, "target_url has an invalid port");
            return -1;
        }
        int port = 0;
        for (const char *c = port_s; c < end; c++) {
            if (*c < '0' || *c > '9') {
                snprintf(err, err_size, "target_url has an invalid port");
                return -1;
            }
            port = port * 10 + (*c - '0');
        }
        if (port < 1 || port > 65535) {
            snprintf(err, err_size, "target_url has an invalid port");
            return -1;
        }
        out->port = port;
    }
    return 0;
}

static bool v4_refused(uint32_t a) /* host byte order */
{
    uint8_t b0 = a >> 24, b1 = (a >> 16) & 0xff;
    if (b0 == 0 || b0 == 10 || b0 == 127) return true;                /* this, private, loopback */
    if (b0 == 100 && (b1 & 0xc0) == 64) return true;                  /* CGNAT 100.64/10 */
    if (b0 == 169 && b1 == 254) return true;                          /* link-local, metadata */
    if (b0 == 172 && (b1 & 0xf0) == 16) return true;                  /* 172.16/12 */
    if (b0 == 192 && b1 == 168) return true;                          /* 192.168/16 */
    if (b0 == 192 && b1 == 0 && ((a >> 8) & 0xff) == 0) return true;  /* 192.0.0/24 */
    if (b0 == 192 && b1 == 0 && ((a >> 8) & 0xff) == 2) return true;  /* TEST-NET-1 */
    if (b0 == 198 && (b1 & 0xfe) == 18) return true;                  /* benchmarking */
    if (b0 == 198 && b1 == 51 && ((a >> 8) & 0xff) == 100) return true;
    if (b0 == 203 && b1 == 0 && ((a >> 8) & 0xff) == 113) return true;
    if (b0 >= 224) return true; /* multicast, reserved, broadcast */
    return false;
}

static bool v6_refused(const struct in6_addr *a)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t zero[16] = {0};
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) return true; /* :: and ::1 */
    /* IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d */
    if (memcmp(b, zero, 10) == 0 && ((b[10] == 0xff && b[11] == 0xff) || (b[10] == 0 && b[11] == 0)))
        return v4_refused((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 |
                          b[15]);
    /* NAT64 64:ff9b::/96 embeds IPv4 */
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b &&
        memcmp(b + 4, zero, 8) == 0)
        return v4_refused((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 |
                          b[15]);
    /* 6to4 2002::/16 embeds IPv4 in bytes 2..5 */
    if (b[0] == 0x20 && b[1] == 0x02)
        return v4_refused((uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5]);
    if ((b[0] & 0xfe) == 0xfc) return true;                /* ULA fc00::/7 (incl. fd00:ec2::254) */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true; /* link-local fe80::/10 */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return true; /* site-local fec0::/10 */
    if (b[0] == 0xff) return true;                          /* multicast */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return true; /* docs */
    if (b[0] == 0x01 && b[1] == 0x00 && memcmp(b + 2, zero, 6) == 0) return true;  /* discard */
    return false;
}

bool target_addr_allowed(const struct sockaddr *sa, bool allow_private)
{
    if (allow_private) return true;
    if (sa->sa_family == AF_INET)
        return !v4_refused(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return !v6_refused(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

void target_addr_text(const struct sockaddr *sa, char *out, size_t out_size)
{
    const void *a = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)out_size)) snprintf(out, out_size, "?");
}

/* A getaddrinfo on a thread of its own, which the caller waits for until
 * its deadline. One given up then finishes on its own and frees itself. */
typedef struct lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, abandoned;
    int rc;
    struct addrinfo *res;
    char host[256], port[8];
} lookup_t;

static void lookup_free(lookup_t *l)
{
    if (l->res) freeaddrinfo(l->res);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void *lookup_run(void *arg)
{
    lookup_t *l = arg;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(l->host, l->port, &hints, &res);
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->res = rc == 0 ? res : NULL;
    l->done = true;
    bool abandoned = l->abandoned;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (abandoned) lookup_free(l);
    return NULL;
}

/* getaddrinfo that gives up after 'timeout_ms' (a slow or silent name
 * server would otherwise hold the caller for the resolver's whole retry
 * schedule: timeout x attempts x search domains). Returns getaddrinfo's
 * code, or EAI_AGAIN with *timed_out set. */
static int lookup(const char *host, const char *port, int timeout_ms, struct addrinfo **res,
                  bool *timed_out)
{
    *timed_out = false;
    if (strlen(host) >= sizeof(((lookup_t *)0)->host)) return EAI_NONAME; /* DNS names: 253 */
    lookup_t *l = calloc(1, sizeof(*l));
    if (!l) abort();
    snprintf(l->host, sizeof(l->host), "%s", host);
    snprintf(l->port, sizeof(l->port), "%s", port);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&l->mu, NULL);
    pthread_attr_t ta;
    pthread_t t;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    int started = pthread_create(&t, &ta, lookup_run, l);
    pthread_attr_destroy(&ta);
    if (started != 0) {
        lookup_free(l);
        return EAI_SYSTEM;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->mu);
    while (!l->done && pthread_cond_timedwait(&l->cv, &l->mu, &deadline) != ETIMEDOUT) {
    }
    if (!l->done) { /* the thread frees it when it ends */
        l->abandoned = true;
        pthread_mutex_unlock(&l->mu);
        *timed_out = true;
        return EAI_AGAIN;
    }
    pthread_mutex_unlock(&l->mu);
    int rc = l->rc;
    *res = l->res;
    l->res = NULL;
    lookup_free(l);
    return rc;
}

int target_resolve(const char *host, int port, bool allow_private, int timeout_ms,
                   struct sockaddr_storage *out, int max_out, char *err, size_t err_size)
{
    struct addrinfo *res = NULL;
    char port_s[8];
    bool timed_out;
    snprintf(port_s, sizeof(port_s), "%d", port);
    int rc = lookup(host, port_s, timeout_ms, &res, &timed_out);
    if (timed_out) {
        snprintf(err, err_size, "cannot resolve host %s: no answer within %d ms", host, timeout_ms);
        return -1;
    }
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve host %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (!target_addr_allowed(ai->ai_addr, allow_private)) {
            char txt[INET6_ADDRSTRLEN];
            target_addr_text(ai->ai_addr, txt, sizeof(txt));
            snprintf(err, err_size,
                     "target host %s resolves to %s, a private, loopback, link-local or "
                     "metadata address",
                     host, txt);
            freeaddrinfo(res);
            return -1;
        }
        bool dup = false;
        for (int i = 0; out && i < n; i++)
            if (memcmp(&out[i], ai->ai_addr, ai->ai_addrlen) == 0) dup = true;
        if (out && !dup && n < max_out) {
            memset(&out[n], 0, sizeof(out[n]));
            memcpy(&out[n], ai->ai_addr, ai->ai_addrlen);
            n++;
        } else if (!out) {
            n++;
        }
    }
    freeaddrinfo(res);
    if (n == 0) {
        snprintf(err, err_size, "host %s has no usable address", host);
        return -1;
    }
    return n;
}
