/* hookd-worker's shared context: what main.c creates and the concerns
 * (consumer, batcher, sender, grey-list, scheduler) use, and the in-memory
 * job that travels between them. */
#ifndef HOOKD_WORKER_H
#define HOOKD_WORKER_H

#include "hookd/config.h"
#include "hookd/event.h"
#include "hookd/health.h"
#include "hookd/httpd.h"
#include "hookd/pg.h"
#include "hookd/sign.h"
#include "hookd/subsync.h"

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

/* Where a job held in memory came from. */
typedef enum {
    WJOB_KAFKA,  /* consumed from the jobs topic; done = its offset may be committed */
    WJOB_PARKED, /* claimed (leased) from parked_jobs by the scheduler */
} wjob_source_t;

#define WJOB_SUB_ID_MAX 64
#define WJOB_EP_ID_MAX 64

/* One job held in memory, from consumption (or claim) until its outcome is
 * durable. Allocated in one block with the job message behind it. Owned by
 * the delivery module; the other modules link it into their lists. */
typedef struct wjob {
    struct wjob *next;  /* endpoint queue, request, waiting list, or a store operation's list */
    struct wjob *hnext; /* chain of the held-jobs table (dedup.c) */
    char id[SIGN_JOB_ID_LEN + 1];
    char sub_id[WJOB_SUB_ID_MAX + 1];
    char ep_id[WJOB_EP_ID_MAX + 1]; /* the subscription's endpoint at dispatch time */
    uint8_t source;                 /* wjob_source_t */
    bool probe;                     /* the one grey-list probe of its endpoint */
    bool solo;                      /* can share a request with nothing (batch=false, vik...) */

    int32_t partition;              /* WJOB_KAFKA: partition, tracker generation and */
    uint64_t gen;                   /* sequence number in the offset tracker */
    uint64_t seq;
    uint64_t fetch_no;    /* the subscription read it waits for (0: none) */
    uint64_t fetch_since; /* subcache_seq() when that read was asked */
    int64_t parked_seq; /* WJOB_PARKED: parked_jobs.seq (order of release) */
    int attempt;        /* delivery attempts already made (parked_jobs.attempt) */
    int64_t arrival_ms; /* monotonic time it was queued at its endpoint */
    int64_t occurred_at_ms, ingested_at_ms;
    /* the decoded fields, NUL-terminated inside data[] (no second decode) */
    const char *event_id, *type, *account, *directory, *status, *user;
    uint32_t payload_off, payload_len; /* the payload's span in the message */
    uint32_t len;                      /* of the job message */
    uint32_t bytes;                    /* of the whole allocation */
    char data[]; /* job message, NUL, then the decoded strings, each NUL-terminated */
} wjob_t;

/* Copies a decoded job message into a new wjob. Never fails (aborts on OOM). */
wjob_t *wjob_new(const char *msg, size_t len, const job_t *decoded);
/* Fills 'out' from the wjob as job_decode would have (id = the wjob's id;
 * the payload points into the wjob). Only the fields the worker uses. */
void wjob_job(const wjob_t *j, job_t *out);
void wjob_free(wjob_t *j);
/* Bytes a wjob occupies (for the memory bound). */
size_t wjob_size(const wjob_t *j);

struct consumer;
struct subcache;
struct store;
struct dedup;
struct batcher;
struct scheduler;
struct sender;
struct delivery;

typedef struct worker {
    hookd_config_t cfg;
    struct event_base *base; /* main thread: consumer, sender, batcher, health, metrics */
    httpd_t *httpd;
    health_t *health;
    PGconn *pg;            /* main-thread connection (start-up checks) */
    rd_kafka_t *consumer;  /* jobs topic consumer (owned by consumer.c) */
    volatile int stopping; /* set on the first SIGTERM/SIGINT */
    char instance_id[128]; /* lease owner name of this process: host-pid-random */
    struct consumer *cons;
    struct subcache *subs;
    subsync_t *subsync;
    struct store *store;
    struct dedup *dedup;
    struct scheduler *sched;
    struct sender *sender;
    struct delivery *dlv;
} worker_t;

#endif
