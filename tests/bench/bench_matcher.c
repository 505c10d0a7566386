/* Matcher benchmark: 100,000 subscriptions over 10,000 accounts (plus some
 * directory subscriptions), events of random accounts and types, one thread
 * pinned to one core. Prints one line with matches (events matched) per
 * second.  Usage: bench_matcher [events] [subscriptions] [accounts] */
#include "matcher.h"

#include "hookd/util.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_EVENTS_POOL 16384

static const char *types[] = {
    "client/created",      "client/updated",      "client/deleted",    "appointment/created",
    "appointment/updated", "appointment/deleted", "payment/created",   "payment/paid",
    "invoice/issued",      "meeting/created",     "meeting/cancelled", "event/created",
    "event/cancelled",     "event/updated",       "user/joined",       "coupon/created",
    "coupon/updated",      "customer/created",    "service/updated",   "registration/created",
};
static const char *entities[] = {"client", "appointment", "payment", "event", "coupon"};
static const char *statuses[] = {"confirmed", "paid", "pending", "cancelled"};

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
#define RND(n) ((int)(next_rand() % (uint64_t)(n)))

int main(int argc, char **argv)
{
    long n_events = argc > 1 ? atol(argv[1]) : 5000000;
    int n_subs = argc > 2 ? atoi(argv[2]) : 100000;
    int n_accounts = argc > 3 ? atoi(argv[3]) : 10000;
    int n_dirs = n_accounts / 20 > 0 ? n_accounts / 20 : 1;

    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) perror("sched_setaffinity");

    matcher_t *m = matcher_new();
    int64_t t0 = hookd_mono_us();
    matcher_begin_load(m);
    for (int i = 0; i < n_subs; i++) {
        char id[32], owner[32], ep[40], wild[64];
        const char *pats[3], *sts[2];
        sub_record_t r;
        memset(&r, 0, sizeof(r));
        snprintf(id, sizeof(id), "%024x", i);
        bool dir = i % 50 == 0; /* 2% directory subscriptions */
        if (dir)
            snprintf(owner, sizeof(owner), "dir_%d", RND(n_dirs));
        else
            snprintf(owner, sizeof(owner), "acct_%d", i % n_accounts);
        snprintf(ep, sizeof(ep), "ep_%024x", i);
        int np = 1 + (RND(10) == 0) + (RND(20) == 0); /* mostly one pattern */
        for (int k = 0; k < np; k++) {
            int roll = RND(100);
            if (roll < 8) {
                snprintf(wild, sizeof(wild), "%s/*", entities[RND(HOOKD_ARRAY_LEN(entities))]);
                pats[k] = wild;
            } else if (roll < 10) {
                pats[k] = "*";
            } else {
                pats[k] = types[RND(HOOKD_ARRAY_LEN(types))];
            }
        }
        int ns = RND(5) == 0 ? 2 : 0; /* 20% with a status filter */
        sts[0] = "confirmed";
        sts[1] = "paid";
        r.id = id;
        r.directory = dir;
        r.owner_id = owner;
        r.event_types = pats;
        r.n_event_types = np;
        r.statuses = ns ? sts : NULL;
        r.n_statuses = ns;
        r.payload_mode = i % 3;
        r.active = RND(50) != 0;
        r.endpoint_id = ep;
        r.target_url = "https://example.com/hook";
        r.secret = "whsec_x";
        matcher_upsert(m, &r);
    }
    matcher_end_load(m, true);
    int64_t t_load = hookd_mono_us() - t0;

    event_t *pool = calloc(N_EVENTS_POOL, sizeof(event_t));
    if (!pool) return 1;
    for (int i = 0; i < N_EVENTS_POOL; i++) {
        event_t *ev = &pool[i];
        snprintf(ev->id, sizeof(ev->id), "evt_%d", i);
        snprintf(ev->type, sizeof(ev->type), "%s", types[RND(HOOKD_ARRAY_LEN(types))]);
        snprintf(ev->account, sizeof(ev->account), "acct_%d", RND(n_accounts));
        if (RND(4) == 0) snprintf(ev->directory, sizeof(ev->directory), "dir_%d", RND(n_dirs));
        if (RND(2) == 0)
            snprintf(ev->status, sizeof(ev->status), "%s",
                     statuses[RND(HOOKD_ARRAY_LEN(statuses))]);
    }

    matcher_result_t res = {0};
    long hits = 0, matched = 0;
    for (int i = 0; i < N_EVENTS_POOL; i++)
        matcher_match(m, &pool[i], &res); /* warm up */
    t0 = hookd_mono_us();
    for (long i = 0; i < n_events; i++) {
        size_t n = matcher_match(m, &pool[i & (N_EVENTS_POOL - 1)], &res);
        hits += (long)n;
        matched += n > 0;
    }
    int64_t us = hookd_mono_us() - t0;
    double secs = (double)us / 1e6;
    printf("bench_matcher subscriptions=%zu accounts=%d events=%ld seconds=%.3f "
           "matches_per_s=%.0f hits_per_s=%.0f events_with_hits_pct=%.1f load_ms=%.0f\n",
           matcher_count(m), n_accounts, n_events, secs, (double)n_events / secs,
           (double)hits / secs, 100.0 * (double)matched / (double)n_events,
           (double)t_load / 1000.0);
    matcher_result_free(&res);
    free(pool);
    matcher_free(m);
    return 0;
}
