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
#include "post_args.h"
#include "hookd/util.h"
#include "sender.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


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

static void usage(void)
{
    fprintf(stderr, "usage: bench_sender (--url URL ... | --url-template T --endpoints E) "
                    "[--requests N] [--body-bytes S] [--concurrency C] [--no-sign]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    post_args_t args;
    post_args_parse(argc, argv, &args, true, usage);
    char **urls = args.urls;
    int n_urls = args.n_urls, concurrency = args.concurrency;
    long requests = args.requests;
    bool sign = args.sign;

    bench_t b = {.urls = urls, .n_urls = n_urls, .requests = requests, .sign = sign};
    char *body = make_body((size_t)args.body_bytes);
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
    post_args_free(&args);
    free(body);
    return 0;
}
