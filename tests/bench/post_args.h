/* Command line and body shared by the two POST benchmarks (raw_post, the
 * libcurl baseline, and bench_sender, hookd's sender), so that both are
 * always measured on the same URLs and bodies:
 *   (--url URL ... | --url-template T --endpoints E) [--requests N]
 *   [--body-bytes S] [--concurrency C] [--no-sign (bench_sender only)] */
#ifndef HOOKD_BENCH_POST_ARGS_H
#define HOOKD_BENCH_POST_ARGS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URLS 100000

typedef struct {
    char **urls; /* MAX_URLS slots */
    int n_urls, concurrency;
    long requests, body_bytes;
    bool sign; /* false with --no-sign */
} post_args_t;

/* Parses argv into 'a'; calls usage() (which exits) on anything wrong.
 * --no-sign is accepted only when 'allow_no_sign'. */
static void post_args_parse(int argc, char **argv, post_args_t *a, bool allow_no_sign,
                            void (*usage)(void))
{
    static char *urls[MAX_URLS];
    int endpoints = 1;
    const char *tmpl = NULL;
    *a = (post_args_t){.urls = urls, .concurrency = 64, .requests = 100000, .body_bytes = 256,
                       .sign = true};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (allow_no_sign && strcmp(k, "--no-sign") == 0) {
            a->sign = false;
            continue;
        }
        if (!v) usage();
        if (strcmp(k, "--url") == 0 && a->n_urls < MAX_URLS)
            urls[a->n_urls++] = strdup(v);
        else if (strcmp(k, "--url-template") == 0)
            tmpl = v;
        else if (strcmp(k, "--endpoints") == 0)
            endpoints = atoi(v);
        else if (strcmp(k, "--requests") == 0)
            a->requests = atol(v);
        else if (strcmp(k, "--body-bytes") == 0)
            a->body_bytes = atol(v);
        else if (strcmp(k, "--concurrency") == 0)
            a->concurrency = atoi(v);
        else
            usage();
        i++;
    }
    if (tmpl) {
        if (endpoints < 1 || endpoints > MAX_URLS) usage();
        const char *d = strstr(tmpl, "%d");
        if (!d) usage();
        for (int e = 0; e < endpoints && a->n_urls < MAX_URLS; e++) {
            char u[2048];
            snprintf(u, sizeof(u), "%.*s%d%s", (int)(d - tmpl), tmpl, e, d + 2);
            urls[a->n_urls++] = strdup(u);
        }
    }
    if (a->n_urls == 0 || a->requests < 1 || a->concurrency < 1 || a->body_bytes < 0) usage();
    if (a->concurrency > a->requests) a->concurrency = (int)a->requests;
}

static void post_args_free(post_args_t *a)
{
    for (int i = 0; i < a->n_urls; i++)
        free(a->urls[i]);
}

/* A JSON body of exactly 'n' bytes (n >= 12): {"pad":"xxx..."} */
static char *make_body(size_t n)
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

#endif
