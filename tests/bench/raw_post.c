/* The raw HTTP POST baseline: a plain libcurl multi loop (curl_multi_poll +
 * curl_multi_perform) POSTing N bodies of S bytes round robin to a list of
 * URLs with C requests in flight, reusing connections. What hookd's sender
 * is measured against.
 *
 *   raw_post (--url URL ... | --url-template 'http://127.0.0.1:PORT/ep/%d' --endpoints E)
 *            [--requests 100000] [--body-bytes 256] [--concurrency 64]
 *
 * Prints: raw_post requests=<n> seconds=<s> rps=<r> errors=<e> */
#include "post_args.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    return size * nmemb;
}

static void usage(void)
{
    fprintf(stderr, "usage: raw_post (--url URL ... | --url-template T --endpoints E) "
                    "[--requests N] [--body-bytes S] [--concurrency C]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    post_args_t args;
    post_args_parse(argc, argv, &args, false, usage);
    char **urls = args.urls;
    int n_urls = args.n_urls, concurrency = args.concurrency;
    long requests = args.requests;
    char *body = make_body((size_t)args.body_bytes);
    size_t body_len = strlen(body);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)concurrency * 2);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    CURL **easy = calloc((size_t)concurrency, sizeof(*easy));
    long started = 0, finished = 0, errors = 0;
    double t0 = now_s();
    for (int i = 0; i < concurrency; i++) {
        CURL *e = curl_easy_init();
        easy[i] = e;
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(e, CURLOPT_URL, urls[started++ % n_urls]);
        curl_multi_add_handle(multi, e);
    }
    while (finished < requests) {
        int running = 0, left = 0;
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "raw_post: %s\n", curl_multi_strerror(mc));
            return 1;
        }
        CURLMsg *m;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            CURL *e = m->easy_handle;
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (m->data.result != CURLE_OK || status < 200 || status > 299) errors++;
            finished++;
            curl_multi_remove_handle(multi, e);
            if (started < requests) {
                curl_easy_setopt(e, CURLOPT_URL, urls[started++ % n_urls]);
                curl_multi_add_handle(multi, e);
            }
        }
        if (finished < requests) curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    double secs = now_s() - t0;
    printf("raw_post requests=%ld seconds=%.3f rps=%.0f errors=%ld\n", finished, secs,
           (double)finished / secs, errors);
    for (int i = 0; i < concurrency; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    post_args_free(&args);
    free(body);
    return 0;
}
