/* Pushes N POSTs through hookd's sender (services/worker/sender.c) on a
 * libevent loop with C in flight, the way hookd-worker does: a fresh
 * Standard Webhooks header list (format_headers) per request unless
 * --no-sign. Same options and body as raw_post, so the two compare 1:1.
 *
 *   bench_sender (--url URL ... | --url-template T --endpoints E)
 *                [--requests 100000] [--body-bytes 256] [--concurrency 64] [--no-sign]
 *
 * Prints: bench_sender requests=<n> seconds=<s> rps=<r> errors=<e> */
#include "formats.h"
#include "hookd/util.h"
#include "sender.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URLS 100000

typedef struct bench {
    struct event_base *base;
    sender_t *sender;
    char **urls;
    int n_urls;
    long requests, started, finished, errors;
    const char *body;
    size_t body_len;
    bool sign;
    int64_t now_s;
    long classes[SEND__COUNT];
} bench_t;

static const char *SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

static void on_done(const send_result_t *r, void *ctx);

static int start_one(bench_t *b)
{
    struct curl_slist *h;
    long n = b->started;
    if (b->sign) {
        char id[SIGN_JOB_ID_LEN + 1];
        snprintf(id, sizeof(id), "%032lx", n);
        h = format_headers(id, b->now_s, SECRET, NULL, b->body, b->body_len);
    } else {
        h = curl_slist_append(NULL, "Content-Type: application/json");
    }
    if (!h) return -1;
    if (sender_post(b->sender, b->urls[n % b->n_urls], h, b->body, b->body_len, on_done, b) < 0)
        return -1;
    b->started++;
    return 0;
}

static void on_done(const send_result_t *r, void *ctx)
{
    bench_t *b = ctx;
    b->finished++;
    b->classes[r->cls]++;
    if (r->cls != SEND_SUCCESS) b->errors++;
    if (b->started < b->requests && start_one(b) < 0) {
        fprintf(stderr, "bench_sender: sender_post refused\n");
        exit(1);
    }
    if (b->finished == b->requests) event_base_loopbreak(b->base);
}

static char *make_body(size_t n) /* identical to raw_post's */
{
    if (n < 12) n = 12;
    char *b = malloc(n + 1);
    if (!b) abort();
    memcpy(b, "{\"pad\":\"", 8);
    memset(b + 8, 'x', n - 10);
    memcpy(b + n - 2, "\"}", 2);
    b[n] = '\0';
    return b;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_sender (--url URL ... | --url-template T --endpoints E) "
                    "[--requests N] [--body-bytes S] [--concurrency C] [--no-sign]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static char *urls[MAX_URLS];
    int n_urls = 0, endpoints = 1, concurrency = 64;
    long requests = 100000, body_bytes = 256;
    const char *tmpl = NULL;
    bool sign = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-sign") == 0) {
            sign = false;
            continue;
        }
        if (!v) usage();
        if (strcmp(a, "--url") == 0 && n_urls < MAX_URLS)
            urls[n_urls++] = strdup(v);
        else if (strcmp(a, "--url-template") == 0)
            tmpl = v;
        else if (strcmp(a, "--endpoints") == 0)
            endpoints = atoi(v);
        else if (strcmp(a, "--requests") == 0)
            requests = atol(v);
        else if (strcmp(a, "--body-bytes") == 0)
            body_bytes = atol(v);
        else if (strcmp(a, "--concurrency") == 0)
            concurrency = atoi(v);
        else
            usage();
        i++;
    }
    if (tmpl) {
        if (endpoints < 1 || endpoints > MAX_URLS) usage();
        for (int e = 0; e < endpoints && n_urls < MAX_URLS; e++) {
            char u[2048];
            const char *d = strstr(tmpl, "%d");
            if (!d) usage();
            snprintf(u, sizeof(u), "%.*s%d%s", (int)(d - tmpl), tmpl, e, d + 2);
            urls[n_urls++] = strdup(u);
        }
    }
    if (n_urls == 0 || requests < 1 || concurrency < 1 || body_bytes < 0) usage();
    if (concurrency > requests) concurrency = (int)requests;

    bench_t b = {.urls = urls, .n_urls = n_urls, .requests = requests, .sign = sign};
    char *body = make_body((size_t)body_bytes);
    b.body = body;
    b.body_len = strlen(body);
    b.now_s = hookd_now_ms() / 1000;
    b.base = event_base_new();
    sender_opts_t o = {.timeout_ms = 10000,
                       .connect_timeout_ms = 5000,
                       .max_inflight = concurrency,
                       .allow_private = true,
                       .user_agent = "hookd/" HOOKD_VERSION};
    b.sender = sender_new(b.base, &o);
    if (!b.base || !b.sender) return 1;

    int64_t t0 = hookd_mono_us();
    for (int i = 0; i < concurrency; i++) {
        if (start_one(&b) < 0) {
            fprintf(stderr, "bench_sender: sender_post refused %s\n", urls[0]);
            return 1;
        }
    }
    event_base_dispatch(b.base);
    double secs = (double)(hookd_mono_us() - t0) / 1e6;
    printf("bench_sender requests=%ld seconds=%.3f rps=%.0f errors=%ld\n", b.finished, secs,
           (double)b.finished / secs, b.errors);
    for (int c = 0; c < SEND__COUNT; c++)
        if (b.classes[c] && c != SEND_SUCCESS)
            fprintf(stderr, "bench_sender: %s=%ld\n", send_class_name((send_class_t)c),
                    b.classes[c]);
    sender_free(b.sender);
    event_base_free(b.base);
    for (int i = 0; i < n_urls; i++)
        free(urls[i]);
    free(body);
    return 0;
}
