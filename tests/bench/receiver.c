/* A fast loopback HTTP/1.1 receiver for benchmarks and isolation tests:
 * keep-alive, answers every request with a fixed status (204 by default),
 * never answers paths under --hang-prefix (a dead endpoint), counts
 * requests and body bytes. Not a general HTTP server.
 *
 *   receiver --port N [--addr 127.0.0.1] [--status 204] [--hang-prefix /hang]
 *            [--count-file PATH] [--threads N]
 *
 * With --port 0 the first stdout line is "port=<n>". On SIGTERM/SIGINT it
 * prints "requests=<n> bytes=<n>" (bytes = request body bytes) and exits 0.
 * --count-file is rewritten (atomically) every 100 ms with the request count.
 * --latency-file PATH: for every "t_us":<microseconds since the epoch> found in
 * a request body (the benchmark stamps events with their send time), records
 * now - t_us; on exit writes one latency in microseconds per line. A marker
 * split across two reads is missed (rare; bodies are small). */
#include <time.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MAX (64 * 1024) /* one read() */
#define HEAD_MAX (32 * 1024) /* largest request head (or chunk-size line) kept across reads */
#define MAX_THREADS 16

typedef struct opts {
    const char *addr;
    int port;
    int status;
    const char *hang_prefix;
    size_t hang_len;
    const char *count_file;
    const char *latency_file;
    int threads;
} opts_t;

static opts_t O = {.addr = "127.0.0.1", .port = 0, .status = 204, .threads = 1};

/* Per thread: its own loop and listener (SO_REUSEPORT when threads > 1). */
typedef struct worker {
    struct event_base *base;
    struct evconnlistener *lis;
    pthread_t tid;
    _Atomic unsigned long long requests, bytes, hung;
    char *scratch; /* HEAD_MAX + READ_MAX: reads land here, connections keep only leftovers */
    long long *lat; /* --latency-file samples (us), owned by this thread */
    size_t n_lat, cap_lat;
} worker_t;

static worker_t workers[MAX_THREADS];
static char response[128];
static size_t response_len;

/* Body framing of the request being read. */
enum { BODY_NONE, BODY_LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_CRLF, CHUNK_TRAILER };

typedef struct conn {
    worker_t *w;
    int fd;
    struct event rev, wev;
    int state;          /* BODY_* / CHUNK_*: what the next bytes are */
    size_t remaining;   /* body or chunk bytes still to skip */
    bool hung;          /* a request was left unanswered: discard the rest */
    bool close_after;   /* "Connection: close" or HTTP/1.0 */
    char *pending;      /* an incomplete head from the previous read (malloc'd) */
    size_t pending_len; /* bytes in 'pending' */
    size_t out_len;     /* unsent bytes in 'out' */
    size_t out_cap;
    char *out;
} conn_t;

static void conn_close(conn_t *c)
{
    event_del(&c->rev);
    event_del(&c->wev);
    close(c->fd);
    free(c->out);
    free(c->pending);
    free(c);
}

static void queue_out(conn_t *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 256;
        while (cap < c->out_len + n)
            cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o) abort();
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* Writes what is queued. Returns -1 if the connection broke. */
static int flush_out(conn_t *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -1;
        }
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (c->out_len)
        event_add(&c->wev, NULL);
    else
        event_del(&c->wev);
    return 0;
}

static bool header_is(const char *line, size_t len, const char *name, size_t name_len)
{
    return len > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0;
}

static const char *skip_sp(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Parses one request head [p, p+len) (ending in CRLFCRLF). Returns -1 on a
 * request we cannot serve. */
static int parse_head(conn_t *c, const char *p, size_t len)
{
    const char *end = p + len, *eol = memchr(p, '\n', len);
    if (!eol) return -1;
    /* request line: METHOD SP PATH SP VERSION */
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1) return -1;
    const char *path = sp1 + 1;
    const char *sp2 = memchr(path, ' ', (size_t)(eol - path));
    if (!sp2) return -1;
    if (O.hang_prefix && (size_t)(sp2 - path) >= O.hang_len &&
        memcmp(path, O.hang_prefix, O.hang_len) == 0)
        c->hung = true;
    c->close_after = (size_t)(eol - sp2) >= 9 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0;
    c->state = BODY_NONE;
    c->remaining = 0;
    bool expect = false;
    for (const char *line = eol + 1; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) break;
        size_t ll = (size_t)(nl - line);
        if (ll && line[ll - 1] == '\r') ll--;
        if (ll == 0) break;
        const char *v = NULL;
        if (header_is(line, ll, "content-length", 14)) {
            v = skip_sp(line + 15, line + ll);
            c->remaining = strtoull(v, NULL, 10);
            if (c->remaining) c->state = BODY_LENGTH;
        } else if (header_is(line, ll, "transfer-encoding", 17)) {
            v = skip_sp(line + 18, line + ll);
            if ((size_t)(line + ll - v) >= 7 && strncasecmp(v, "chunked", 7) == 0)
                c->state = CHUNK_SIZE;
        } else if (header_is(line, ll, "connection", 10)) {
            v = skip_sp(line + 11, line + ll);
            if ((size_t)(line + ll - v) >= 5 && strncasecmp(v, "close", 5) == 0)
                c->close_after = true;
            else if ((size_t)(line + ll - v) >= 10 && strncasecmp(v, "keep-alive", 10) == 0)
                c->close_after = false;
        } else if (header_is(line, ll, "expect", 6)) {
            v = skip_sp(line + 7, line + ll);
            expect = (size_t)(line + ll - v) >= 12 && strncasecmp(v, "100-continue", 12) == 0;
        }
        line = nl + 1;
    }
    if (expect && c->state != BODY_NONE && !c->hung)
        queue_out(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

/* The request is complete: answer it (or not, for a hung path). */
static void finish_request(conn_t *c)
{
    atomic_fetch_add_explicit(&c->w->requests, 1, memory_order_relaxed);
    if (c->hung) {
        atomic_fetch_add_explicit(&c->w->hung, 1, memory_order_relaxed);
        return;
    }
    queue_out(c, response, response_len);
}

/* Records now - t_us for every "t_us":<digits> in body[0..len). */
static void scan_latency(worker_t *w, const char *body, size_t len)
{
    static const char marker[] = "\"t_us\":";
    const char *p = body, *end = body + len;
    struct timespec ts;
    long long now = -1;
    while ((p = memmem(p, (size_t)(end - p), marker, sizeof(marker) - 1)) != NULL) {
        p += sizeof(marker) - 1;
        long long t = 0;
        const char *d = p;
        while (d < end && *d >= '0' && *d <= '9') t = t * 10 + (*d++ - '0');
        if (d == p || d == end) continue;
        if (now < 0) {
            clock_gettime(CLOCK_REALTIME, &ts);
            now = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        }
        if (w->n_lat == w->cap_lat) {
            w->cap_lat = w->cap_lat ? w->cap_lat * 2 : 65536;
            w->lat = realloc(w->lat, w->cap_lat * sizeof(*w->lat));
            if (!w->lat) abort();
        }
        w->lat[w->n_lat++] = now - t;
    }
}

/* Consumes in[0..len). Returns how many bytes were used (the rest is an
 * incomplete head or line), or -1 to close the connection. */
static long process(conn_t *c, char *in, size_t len)
{
    size_t pos = 0;
    unsigned long long body = 0;
    while (pos < len && !c->hung) {
        char *p = in + pos;
        size_t avail = len - pos;
        if (c->state == BODY_LENGTH || c->state == CHUNK_DATA) {
            size_t take = avail < c->remaining ? avail : c->remaining;
            if (O.latency_file) scan_latency(c->w, p, take);
            pos += take;
            body += take;
            c->remaining -= take;
            if (c->remaining == 0) {
                if (c->state == BODY_LENGTH) {
                    c->state = BODY_NONE;
                    finish_request(c);
                } else {
                    c->state = CHUNK_DATA_CRLF;
                }
            }
            continue;
        }
        if (c->state == CHUNK_SIZE || c->state == CHUNK_DATA_CRLF || c->state == CHUNK_TRAILER) {
            char *nl = memchr(p, '\n', avail);
            if (!nl) break;
            size_t ll = (size_t)(nl - p);
            pos += ll + 1;
            if (c->state == CHUNK_DATA_CRLF) {
                c->state = CHUNK_SIZE;
            } else if (c->state == CHUNK_SIZE) {
                c->remaining = strtoull(p, NULL, 16);
                c->state = c->remaining ? CHUNK_DATA : CHUNK_TRAILER;
            } else if (ll == 0 || (ll == 1 && p[0] == '\r')) { /* end of trailers */
                c->state = BODY_NONE;
                finish_request(c);
            }
            continue;
        }
        /* a request head */
        char *end = memmem(p, avail, "\r\n\r\n", 4);
        if (!end) {
            if (avail > HEAD_MAX) return -1;
            break;
        }
        size_t head_len = (size_t)(end - p) + 4;
        if (parse_head(c, p, head_len) < 0) return -1;
        pos += head_len;
        if (c->hung) {
            finish_request(c);
            break;
        }
        if (c->state == BODY_NONE) finish_request(c);
        if (c->close_after && c->state == BODY_NONE) break;
    }
    if (c->hung) pos = len; /* discard everything after an unanswered request */
    if (body) atomic_fetch_add_explicit(&c->w->bytes, body, memory_order_relaxed);
    return (long)pos;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    if (flush_out(c) < 0 || (c->close_after && c->out_len == 0 && c->state == BODY_NONE))
        conn_close(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    conn_t *c = arg;
    char *buf = c->w->scratch;
    size_t have = c->pending_len;
    if (have) memcpy(buf, c->pending, have);
    ssize_t n = read(fd, buf + have, READ_MAX);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0) return;
    have += (size_t)n;
    long used = process(c, buf, have);
    if (used < 0 || have - (size_t)used > HEAD_MAX) {
        conn_close(c);
        return;
    }
    size_t left = have - (size_t)used;
    if (left != c->pending_len) {
        free(c->pending);
        c->pending = left ? malloc(left) : NULL;
        if (left && !c->pending) abort();
    }
    if (left) memcpy(c->pending, buf + used, left);
    c->pending_len = left;
    if (c->out_len && flush_out(c) < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after && c->out_len == 0 && c->state == BODY_NONE && !c->hung) conn_close(c);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    worker_t *w = arg;
    conn_t *c = malloc(sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    if (event_add(&c->rev, NULL) < 0) conn_close(c);
}

static unsigned long long total(size_t field)
{
    unsigned long long t = 0;
    for (int i = 0; i < O.threads; i++) {
        const _Atomic unsigned long long *p =
            (const _Atomic unsigned long long *)((const char *)&workers[i] + field);
        t += atomic_load_explicit(p, memory_order_relaxed);
    }
    return t;
}

static void write_count_file(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", O.count_file);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%llu\n", total(offsetof(worker_t, requests)));
    if (fclose(f) == 0) rename(tmp, O.count_file);
}

static void on_count_timer(evutil_socket_t fd, short what, void *arg)
{
    write_count_file();
}

static void write_latency_file(void)
{
    FILE *f = fopen(O.latency_file, "w");
    if (!f) return;
    for (int i = 0; i < O.threads; i++)
        for (size_t k = 0; k < workers[i].n_lat; k++) fprintf(f, "%lld\n", workers[i].lat[k]);
    fclose(f);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    if (O.count_file) write_count_file();
    if (O.latency_file) write_latency_file(); /* other threads may still append: benchmarks stop sending first */
    printf("requests=%llu bytes=%llu\n", total(offsetof(worker_t, requests)),
           total(offsetof(worker_t, bytes)));
    fprintf(stderr, "receiver: hung=%llu\n", total(offsetof(worker_t, hung)));
    fflush(stdout);
    _exit(0);
}

static void *thread_main(void *arg)
{
    worker_t *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: receiver --port N [--addr 127.0.0.1] [--status 204] "
                    "[--hang-prefix /hang] [--count-file PATH] [--latency-file PATH] [--threads N]\n");
    exit(2);
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 410:
        return "Gone";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage();
        if (!v) usage();
        if (strcmp(a, "--port") == 0)
            O.port = atoi(v);
        else if (strcmp(a, "--addr") == 0)
            O.addr = v;
        else if (strcmp(a, "--status") == 0)
            O.status = atoi(v);
        else if (strcmp(a, "--hang-prefix") == 0)
            O.hang_prefix = v;
        else if (strcmp(a, "--count-file") == 0)
            O.count_file = v;
        else if (strcmp(a, "--latency-file") == 0)
            O.latency_file = v;
        else if (strcmp(a, "--threads") == 0)
            O.threads = atoi(v);
        else
            usage();
    }
    if (O.port < 0 || O.port > 65535 || O.status < 100 || O.status > 999 || O.threads < 1 ||
        O.threads > MAX_THREADS)
        usage();
    if (O.hang_prefix) O.hang_len = strlen(O.hang_prefix);
    if (O.status == 204 || O.status == 304)
        response_len = (size_t)snprintf(response, sizeof(response), "HTTP/1.1 %d %s\r\n\r\n",
                                        O.status, reason(O.status));
    else
        response_len = (size_t)snprintf(response, sizeof(response),
                                        "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", O.status,
                                        reason(O.status));

    struct sockaddr_storage ss;
    int ss_len = sizeof(ss);
    char spec[300];
    snprintf(spec, sizeof(spec), strchr(O.addr, ':') ? "[%s]" : "%s", O.addr);
    if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &ss_len) < 0) {
        fprintf(stderr, "receiver: bad address %s\n", O.addr);
        return 2;
    }
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)O.port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)O.port);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    signal(SIGPIPE, SIG_IGN);

    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE;
    if (O.threads > 1) flags |= LEV_OPT_REUSEABLE_PORT;
    for (int i = 0; i < O.threads; i++) {
        worker_t *w = &workers[i];
        w->base = event_base_new();
        w->scratch = malloc(HEAD_MAX + READ_MAX);
        if (!w->base || !w->scratch) return 1;
        w->lis = evconnlistener_new_bind(w->base, on_accept, w, flags, 1024, (struct sockaddr *)&ss,
                                         ss_len);
        if (!w->lis) {
            fprintf(stderr, "receiver: cannot listen on %s: %s\n", spec, strerror(errno));
            return 1;
        }
        if (i == 0) { /* the others bind the port the first one got */
            socklen_t l = sizeof(ss);
            getsockname(evconnlistener_get_fd(w->lis), (struct sockaddr *)&ss, &l);
            ss_len = (int)l;
            int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                      : ((struct sockaddr_in *)&ss)->sin_port);
            if (O.port == 0) {
                printf("port=%d\n", port);
                fflush(stdout);
            }
        }
    }
    /* only the main thread (workers[0]) takes signals */
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 1; i < O.threads; i++)
        if (pthread_create(&workers[i].tid, NULL, thread_main, &workers[i]) != 0) return 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct event *sigterm = evsignal_new(workers[0].base, SIGTERM, on_signal, NULL);
    struct event *sigint = evsignal_new(workers[0].base, SIGINT, on_signal, NULL);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    if (O.count_file) {
        struct event *t = event_new(workers[0].base, -1, EV_PERSIST, on_count_timer, NULL);
        struct timeval tv = {0, 100 * 1000};
        event_add(t, &tv);
        write_count_file();
    }
    event_base_dispatch(workers[0].base);
    return 0;
}
