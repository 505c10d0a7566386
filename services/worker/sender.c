/* HTTP delivery: libcurl multi handles driven by the worker's libevent loop
 * (socket and timer callbacks), pooled easy handles and connections, and the
 * SSRF rules applied to every address curl is about to connect to.
 *
 * Requests are spread over a few multi handles ("shards") by target URL.
 * libcurl 7.88 walks its whole connection cache each time a transfer is
 * removed from a multi handle (and a host's connection list each time one
 * starts), so one cache holding ~1000 connections costs more than the HTTP
 * exchange itself; shards keep each cache small. A URL always maps to the
 * same shard, so its connections are reused. */
#include "sender.h"

#include "hookd/log.h"
#include "hookd/target.h"
#include "hookd/util.h"

#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SENDER_EXCERPT_MAX 1024
#define SENDER_DNS_CACHE_S 120
#define SENDER_MIN_CONNECTS 32
#define SENDER_RECV_BUFFER 1024  /* per slot (libcurl minimum); only 1 KiB of a response is kept */
#define SENDER_SEND_BUFFER 16384 /* per slot (libcurl minimum), used for bodies over 64 KiB */
#define SENDER_SHARD_INFLIGHT 64 /* in-flight requests per shard, roughly */
#define SENDER_MAX_SHARDS 64

typedef struct shard shard_t;

/* One request slot: an easy handle configured once and reused for every
 * request it carries, in whichever shard the request's URL maps to (curl
 * keeps connections in the multi handle's cache, not in the easy handle, so
 * any slot can reuse any idle connection of that shard). */
typedef struct req {
    sender_t *s;
    shard_t *shard; /* the multi handle carrying the current request */
    CURL *easy;
    struct curl_slist *headers; /* the caller's list while in flight (owned) */
    struct curl_slist *tail;    /* its last node, linked to 'expect' while in flight */
    struct curl_slist expect;   /* "Expect:" appended without allocating */
    struct curl_slist ctype;    /* default Content-Type when the caller gave no headers */
    sender_done_fn done;
    void *ctx;
    int64_t start_us;
    bool refused; /* the opensocket callback refused an address (SSRF) */
    size_t excerpt_len;
    struct req *prev, *next; /* in-flight list; free list uses 'next' only */
    char excerpt[SENDER_EXCERPT_MAX];
    char errbuf[CURL_ERROR_SIZE];
    char expect_str[8];
    char ctype_str[32];
} req_t;

/* The libevent event watching one of curl's sockets (curl_multi_assign). */
typedef struct sock {
    struct event ev;
    sender_t *s;
    shard_t *shard; /* whose multi handle the socket belongs to */
    curl_socket_t fd;
    short kind;       /* EV_READ/EV_WRITE registered */
    bool registered;  /* 'ev' is added */
    bool parked;      /* curl does not watch it now (idle connection), 'ev' still added */
    bool ours;        /* opened by on_opensocket (closed by on_closesocket) */
    bool in_use;      /* else on the free list */
    struct sock *all; /* every sock ever allocated, freed by sender_free */
    struct sock *next_free;
} sock_t;

/* One multi handle with its connection cache and its timer. */
struct shard {
    sender_t *s;
    CURLM *multi;
    struct event timer;
};

struct sender {
    struct event_base *base;
    shard_t *shards;
    int n_shards;
    CURLSH *share; /* TLS session cache shared by all easy handles */
    sender_opts_t opts;
    char *ca_bundle; /* owned copies of the option strings */
    char *user_agent;
    int inflight;
    req_t *busy;      /* in-flight requests (doubly linked) */
    req_t *free_reqs; /* idle slots, usable with any shard */
    sock_t *socks, *free_socks;
    sock_t **by_fd; /* socks of the sockets we opened, by descriptor */
    int by_fd_cap;
    int dispatching;   /* depth of completion dispatch (done callbacks running) */
    bool free_pending; /* sender_free called from inside a done callback */
    bool closing;      /* being destroyed: curl callbacks are ignored */
};

static const char *class_names[SEND__COUNT] = {
    "success", "gone", "http_429", "http_4xx", "http_5xx", "redirect",
    "timeout", "dns",  "connect",  "tls",      "ssrf",     "other",
};

const char *send_class_name(send_class_t c)
{
    return (unsigned)c < SEND__COUNT ? class_names[c] : "other";
}

send_class_t send_classify(int curl_code, int status, bool refused)
{
    switch ((CURLcode)curl_code) {
    case CURLE_OK:
        if (status >= 200 && status < 300) return SEND_SUCCESS;
        if (status == 410) return SEND_GONE;
        if (status == 429) return SEND_HTTP_429;
        if (status >= 300 && status < 400) return SEND_REDIRECT;
        if (status >= 400 && status < 500) return SEND_HTTP_4XX;
        if (status >= 500 && status < 600) return SEND_HTTP_5XX;
        return SEND_OTHER;
    case CURLE_OPERATION_TIMEDOUT:
        return SEND_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return SEND_DNS;
    case CURLE_COULDNT_CONNECT:
        return refused ? SEND_SSRF : SEND_CONNECT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return SEND_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return SEND_TLS;
    default:
        return SEND_OTHER;
    }
}

/* ---- curl -> libevent ----
 *
 * Each socket curl wants watched gets one persistent libevent event. For a
 * keep-alive connection curl says REMOVE when a request finishes and asks
 * for IN again as soon as the next request on it is sent; deleting and
 * re-adding the epoll registration each time costs two syscalls per request.
 * So a socket this sender opened (opensocket/closesocket callbacks, so we
 * see its whole life) stays registered for reading while idle ("parked");
 * if it turns readable while parked (the peer closed it), the registration
 * is dropped then. Sockets curl opens itself (the resolver's wake-up pipe)
 * are unregistered on REMOVE. */

static void dispatch(shard_t *sh);
static void destroy(sender_t *s);

static void sock_unregister(sock_t *sk)
{
    if (sk->registered) event_del(&sk->ev);
    sk->registered = false;
    sk->parked = false;
    sk->kind = 0;
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    sock_t *sk = arg;
    shard_t *sh = sk->shard;
    int running = 0, flags = 0;
    if (sk->parked || !sh) { /* an idle connection closed or spoke: curl checks it on reuse */
        sock_unregister(sk);
        return;
    }
    if (what & EV_READ) flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE) flags |= CURL_CSELECT_OUT;
    CURLMcode rc = curl_multi_socket_action(sh->multi, fd, flags, &running);
    if (rc != CURLM_OK) log_error("sender_socket_action error=\"%s\"", curl_multi_strerror(rc));
    dispatch(sh);
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    shard_t *sh = arg;
    int running = 0;
    CURLMcode rc = curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (rc != CURLM_OK) log_error("sender_socket_action error=\"%s\"", curl_multi_strerror(rc));
    dispatch(sh);
}

/* CURLMOPT_TIMERFUNCTION: one libevent timer per shard; 0 means "as soon
 * as possible", which the loop does on its next pass (never inside
 * sender_post; and a timer, unlike event_active, cannot starve the loop). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    shard_t *sh = userp;
    if (sh->s->closing) return 0;
    if (timeout_ms < 0) {
        evtimer_del(&sh->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(&sh->timer, &tv) == 0 ? 0 : -1;
}

static sock_t *sock_get(sender_t *s, shard_t *sh, curl_socket_t fd, bool ours)
{
    sock_t *sk = s->free_socks;
    if (sk) {
        s->free_socks = sk->next_free;
    } else {
        sk = calloc(1, sizeof(*sk));
        if (!sk) return NULL;
        sk->s = s;
        sk->all = s->socks;
        s->socks = sk;
    }
    sk->in_use = true;
    sk->shard = sh;
    sk->ours = ours;
    sk->fd = fd;
    sk->kind = 0;
    sk->registered = sk->parked = false;
    return sk;
}

static void sock_put(sender_t *s, sock_t *sk)
{
    sock_unregister(sk);
    sk->in_use = false;
    sk->next_free = s->free_socks;
    s->free_socks = sk;
}

/* The sock of a socket this sender opened, or NULL. */
static sock_t *sock_of_fd(sender_t *s, curl_socket_t fd)
{
    return fd >= 0 && fd < s->by_fd_cap ? s->by_fd[fd] : NULL;
}

/* CURLMOPT_SOCKETFUNCTION */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    shard_t *sh = userp;
    sender_t *s = sh->s;
    sock_t *sk = socketp;
    if (s->closing) return 0;
    if (!sk) sk = sock_of_fd(s, fd); /* curl forgets its pointer on REMOVE; we do not */
    if (what == CURL_POLL_REMOVE) {
        if (!sk) return 0;
        if (sk->ours) {
            if (sk->registered && sk->kind == EV_READ)
                sk->parked = true; /* idle keep-alive connection: stay registered */
            else
                sock_unregister(sk);
        } else {
            sock_put(s, sk); /* curl closes it itself */
        }
        return 0;
    }
    short kind =
        (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (!sk && !(sk = sock_get(s, sh, fd, false))) return -1;
    if (!socketp && curl_multi_assign(sh->multi, fd, sk) != CURLM_OK) {
        if (!sk->ours) sock_put(s, sk);
        return -1;
    }
    sk->parked = false;
    if (sk->registered && sk->kind == kind) return 0;
    if (sk->registered) event_del(&sk->ev);
    sk->registered = false;
    sk->kind = kind;
    if (event_assign(&sk->ev, s->base, fd, (short)(kind | EV_PERSIST), on_socket_event, sk) < 0 ||
        event_add(&sk->ev, NULL) < 0)
        return -1;
    sk->registered = true;
    return 0;
}

/* ---- per request callbacks ---- */

/* CURLOPT_OPENSOCKETFUNCTION: the SSRF check on the very address curl is
 * about to connect to, after its own resolution (no TOCTOU, no rebinding). */
static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    req_t *r = clientp;
    sender_t *s = r->s;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (!target_addr_allowed(&addr->addr, s->opts.allow_private)) {
        r->refused = true;
        return CURL_SOCKET_BAD;
    }
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    if (fd >= s->by_fd_cap) {
        int cap = s->by_fd_cap ? s->by_fd_cap : 256;
        while (cap <= fd)
            cap *= 2;
        sock_t **m = realloc(s->by_fd, (size_t)cap * sizeof(*m));
        if (!m) goto fail;
        memset(m + s->by_fd_cap, 0, (size_t)(cap - s->by_fd_cap) * sizeof(*m));
        s->by_fd = m;
        s->by_fd_cap = cap;
    }
    if (s->by_fd[fd]) sock_put(s, s->by_fd[fd]); /* stale: its fd was closed behind our back */
    if (!(s->by_fd[fd] = sock_get(s, r->shard, fd, true))) goto fail;
    return fd;

fail:
    close(fd);
    return CURL_SOCKET_BAD;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl has already said REMOVE for it. */
static int on_closesocket(void *clientp, curl_socket_t fd)
{
    sender_t *s = clientp;
    sock_t *sk = sock_of_fd(s, fd);
    if (sk) {
        s->by_fd[fd] = NULL;
        if (!s->closing) sock_put(s, sk); /* (while closing, destroy frees every sock) */
    }
    return close(fd);
}

/* CURLOPT_WRITEFUNCTION: keeps the first SENDER_EXCERPT_MAX bytes. */
static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    req_t *r = userdata;
    size_t n = size * nmemb, room = SENDER_EXCERPT_MAX - r->excerpt_len;
    if (room) {
        size_t c = n < room ? n : room;
        memcpy(r->excerpt + r->excerpt_len, ptr, c);
        r->excerpt_len += c;
    }
    return n;
}

/* ---- request slots ---- */

#define SETOPT(easy, opt, val)                                                                     \
    do {                                                                                           \
        if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK) goto fail;                         \
    } while (0)

static req_t *req_new(sender_t *s)
{
    req_t *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->s = s;
    memcpy(r->expect_str, "Expect:", 8);
    r->expect.data = r->expect_str;
    snprintf(r->ctype_str, sizeof(r->ctype_str), "Content-Type: application/json");
    r->ctype.data = r->ctype_str;
    if (!(r->easy = curl_easy_init())) goto fail;
    CURL *e = r->easy;
    SETOPT(e, CURLOPT_PRIVATE, r);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    SETOPT(e, CURLOPT_ERRORBUFFER, r->errbuf);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(e, CURLOPT_WRITEDATA, r);
    SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    SETOPT(e, CURLOPT_OPENSOCKETDATA, r);
    SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
    SETOPT(e, CURLOPT_CLOSESOCKETDATA, s);
    SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(e, CURLOPT_POST, 1L);
    SETOPT(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SETOPT(e, CURLOPT_TIMEOUT_MS, (long)s->opts.timeout_ms);
    SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->opts.connect_timeout_ms);
    SETOPT(e, CURLOPT_TCP_NODELAY, 1L);
    SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(e, CURLOPT_DNS_CACHE_TIMEOUT, (long)SENDER_DNS_CACHE_S);
    SETOPT(e, CURLOPT_PROXY, ""); /* never an environment proxy: SSRF rules apply to targets */
    SETOPT(e, CURLOPT_SHARE, s->share);
    SETOPT(e, CURLOPT_BUFFERSIZE, (long)SENDER_RECV_BUFFER);
    SETOPT(e, CURLOPT_UPLOAD_BUFFERSIZE, (long)SENDER_SEND_BUFFER);
    if (s->user_agent) SETOPT(e, CURLOPT_USERAGENT, s->user_agent);
    if (s->ca_bundle) SETOPT(e, CURLOPT_CAINFO, s->ca_bundle);
    return r;

fail:
    if (r->easy) curl_easy_cleanup(r->easy);
    free(r);
    return NULL;
}

static void req_free(req_t *r)
{
    curl_easy_cleanup(r->easy);
    free(r);
}

/* Gives the caller's header list back to curl_slist_free_all. */
static void req_drop_headers(req_t *r)
{
    if (r->tail) r->tail->next = NULL;
    curl_slist_free_all(r->headers);
    r->headers = r->tail = NULL;
}

static void busy_unlink(sender_t *s, req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        s->busy = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Hands a finished request to its 'done' and the slot back to the pool.
 * 'given_up' (sender_cancel): the request did not finish, it is a timeout
 * with that error. */
static void complete(sender_t *s, req_t *r, CURLcode code, const char *given_up)
{
    long status = 0;
    if (given_up || curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    CURLMcode mrc = curl_multi_remove_handle(r->shard->multi, r->easy);
    if (mrc != CURLM_OK) log_error("sender_remove_handle error=\"%s\"", curl_multi_strerror(mrc));
    busy_unlink(s, r);
    s->inflight--;
    req_drop_headers(r);

    send_result_t res;
    res.cls = given_up ? SEND_TIMEOUT : send_classify(code, (int)status, r->refused);
    res.status = (int)status;
    res.latency_us = hookd_mono_us() - r->start_us;
    res.excerpt = r->excerpt;
    res.excerpt_len = r->excerpt_len;
    if (given_up)
        res.error = given_up;
    else if (code == CURLE_OK)
        res.error = "";
    else if (res.cls == SEND_SSRF)
        res.error = "refused by the private address rules (HOOKD_ALLOW_PRIVATE_TARGETS)";
    else
        res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
    sender_done_fn done = r->done;
    void *ctx = r->ctx;
    r->done = NULL;
    r->ctx = NULL;
    done(&res, ctx); /* may post again: inflight was already decremented */

    /* back to the pool only now: 'res' pointed into the slot */
    r->next = s->free_reqs;
    s->free_reqs = r;
}

/* Runs the done callbacks of finished requests. Only ever called from the
 * loop's event callbacks, so never from inside sender_post. */
static void dispatch(shard_t *sh)
{
    sender_t *s = sh->s;
    CURLMsg *m;
    int left;
    s->dispatching++;
    while (!s->free_pending && (m = curl_multi_info_read(sh->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *easy = m->easy_handle;
        CURLcode code = m->data.result;
        char *priv = NULL;
        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) continue;
        complete(s, (req_t *)priv, code, NULL);
    }
    s->dispatching--;
    if (s->free_pending && s->dispatching == 0) destroy(s);
}

/* ---- public ---- */

/* How many connections the caches keep open (in use or idle), all shards
 * together. Requests do not spread evenly over hosts, so more than
 * max_inflight are needed or connections get closed and reopened all the
 * time; idle ones also make the next delivery to a quiet endpoint cheap.
 * Bounded by a quarter of the descriptor limit (twice that with the
 * per-shard slack below, leaving the rest to the process). */
static long idle_connection_cap(int max_inflight)
{
    long cap = 4L * max_inflight;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (long)(rl.rlim_cur / 4) < cap)
        cap = (long)(rl.rlim_cur / 4);
    return cap < SENDER_MIN_CONNECTS ? SENDER_MIN_CONNECTS : cap;
}

sender_t *sender_new(struct event_base *base, const sender_opts_t *opts)
{
    sender_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(s);
        return NULL;
    }
    s->base = base;
    s->opts = *opts;
    if (s->opts.max_inflight < 1) s->opts.max_inflight = 1;
    if (s->opts.timeout_ms <= 0) s->opts.timeout_ms = 10000;
    if (s->opts.connect_timeout_ms <= 0) s->opts.connect_timeout_ms = 5000;
    if (opts->ca_bundle && opts->ca_bundle[0] && !(s->ca_bundle = strdup(opts->ca_bundle)))
        goto fail;
    if (opts->user_agent && opts->user_agent[0] && !(s->user_agent = strdup(opts->user_agent)))
        goto fail;
    s->opts.ca_bundle = s->ca_bundle;
    s->opts.user_agent = s->user_agent;

    if (!(s->share = curl_share_init())) goto fail;
    if (curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        goto fail;
    int n = (s->opts.max_inflight + SENDER_SHARD_INFLIGHT - 1) / SENDER_SHARD_INFLIGHT;
    n = n < 1 ? 1 : n > SENDER_MAX_SHARDS ? SENDER_MAX_SHARDS : n;
    if (!(s->shards = calloc((size_t)n, sizeof(*s->shards)))) goto fail;
    /* Load is not even over shards (those served last in a loop pass run
     * slower, so hold more requests): each may keep twice its share, the
     * sum stays within the descriptor limit. */
    long maxconnects = 2 * idle_connection_cap(s->opts.max_inflight) / n;
    if (maxconnects < SENDER_MIN_CONNECTS) maxconnects = SENDER_MIN_CONNECTS;
    for (; s->n_shards < n; s->n_shards++) {
        shard_t *sh = &s->shards[s->n_shards];
        sh->s = s;
        evtimer_assign(&sh->timer, base, on_timer_event, sh);
        if (!(sh->multi = curl_multi_init())) goto fail;
        if (curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, maxconnects) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK ||
            curl_multi_setopt(sh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L) != CURLM_OK) {
            s->n_shards++; /* destroy cleans this one up too */
            goto fail;
        }
    }
    return s;

fail:
    destroy(s);
    return NULL;
}

int sender_post(sender_t *s, const char *url, struct curl_slist *headers, const char *body,
                size_t body_len, sender_done_fn done, void *ctx)
{
    target_url_t t;
    char why[128];
    req_t *r = NULL;
    if (s->free_pending || s->inflight >= s->opts.max_inflight || !url || !done) goto refuse;
    if (target_parse(url, s->opts.require_https, &t, why, sizeof(why)) < 0) goto refuse;
    shard_t *sh = &s->shards[s->n_shards > 1 ? hookd_fnv1a(url, strlen(url)) % s->n_shards : 0];
    if (s->free_reqs) {
        r = s->free_reqs;
        s->free_reqs = r->next;
        r->next = NULL;
    } else if (!(r = req_new(s))) {
        goto refuse;
    }
    r->shard = sh; /* an easy handle may move between multi handles when not in one */
    r->excerpt_len = 0;
    r->errbuf[0] = '\0';
    r->refused = false;
    r->done = done;
    r->ctx = ctx;
    if (headers) {
        r->headers = headers; /* now owned by the slot */
        headers = NULL;
        for (r->tail = r->headers; r->tail->next; r->tail = r->tail->next) {
        }
        r->tail->next = &r->expect;
        r->expect.next = NULL;
    } else {
        r->ctype.next = &r->expect;
        r->expect.next = NULL;
    }
    CURL *e = r->easy;
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers ? r->headers : &r->ctype) != CURLE_OK)
        goto refuse;
    r->start_us = hookd_mono_us();
    /* Adding only arms curl's timer (timeout 0): the transfer starts, and
     * 'done' runs, from the event loop. */
    if (curl_multi_add_handle(sh->multi, e) != CURLM_OK) goto refuse;
    r->prev = NULL;
    r->next = s->busy;
    if (s->busy) s->busy->prev = r;
    s->busy = r;
    s->inflight++;
    return 0;

refuse:
    curl_slist_free_all(headers);
    if (r) {
        req_drop_headers(r);
        r->done = NULL;
        r->next = s->free_reqs;
        s->free_reqs = r;
    }
    return -1;
}

int sender_cancel(sender_t *s, void *ctx, const char *why)
{
    req_t *r = s->busy;
    while (r && !(r->ctx == ctx && r->done))
        r = r->next;
    if (!r || s->free_pending) return -1;
    s->dispatching++; /* as in dispatch: sender_free from 'done' waits for the return */
    complete(s, r, CURLE_OPERATION_TIMEDOUT, why && why[0] ? why : "given up");
    s->dispatching--;
    if (s->free_pending && s->dispatching == 0) destroy(s);
    return 0;
}

int sender_inflight(const sender_t *s)
{
    return s->inflight;
}

static void destroy(sender_t *s)
{
    /* stop watching curl's sockets while they are still open */
    for (sock_t *sk = s->socks; sk; sk = sk->all)
        sock_unregister(sk);
    for (int i = 0; i < s->n_shards; i++)
        evtimer_del(&s->shards[i].timer);
    s->closing = true; /* curl's socket/timer callbacks below are ignored */
    while (s->busy) {
        req_t *r = s->busy;
        busy_unlink(s, r);
        curl_multi_remove_handle(r->shard->multi, r->easy); /* abandoned: no callback */
        req_drop_headers(r);
        req_free(r);
    }
    s->inflight = 0;
    while (s->free_reqs) {
        req_t *r = s->free_reqs;
        s->free_reqs = r->next;
        req_free(r);
    }
    for (int i = 0; i < s->n_shards; i++)
        if (s->shards[i].multi) curl_multi_cleanup(s->shards[i].multi);
    free(s->shards);
    if (s->share) curl_share_cleanup(s->share);
    while (s->socks) {
        sock_t *sk = s->socks;
        s->socks = sk->all;
        free(sk);
    }
    free(s->by_fd);
    free(s->ca_bundle);
    free(s->user_agent);
    free(s);
    curl_global_cleanup();
}

void sender_free(sender_t *s)
{
    if (!s) return;
    if (s->dispatching) {
        s->free_pending = true; /* finished when the done callback returns */
        return;
    }
    destroy(s);
}
