/* Line transports of the control interface: stdin and a Unix stream socket
 * with many concurrent clients, multiplexed by one poll() loop. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SERVER_MAX_CLIENTS 64

/* One line-oriented peer: a socket client, or stdin (in_fd 0, out_fd 1). */
typedef struct client {
    int in_fd;
    int out_fd;                     /* same as in_fd for sockets */
    int discarding;                 /* inside an over-long line: drop bytes up to '\n' */
    size_t len;                     /* bytes buffered in buf */
    char buf[CONTROL_LINE_MAX + 1]; /* a full line plus room to spot overflow */
} client_t;

struct server {
    control_cluster_t *cc;
    char *sock_path;  /* NULL without a control socket; owned */
    int listen_fd;    /* -1 without a control socket */
    client_t *stdin_; /* NULL when stdin is not (or no longer) read */
    client_t *clients[SERVER_MAX_CLIENTS];
    int client_cnt;
};

static client_t *client_new(int in_fd, int out_fd)
{
    client_t *c = calloc(1, sizeof(*c));

    if (c) {
        c->in_fd = in_fd;
        c->out_fd = out_fd;
    }
    return c;
}

/* Frees 'c', closing its fd unless it is stdin. */
static void client_destroy(client_t *c)
{
    if (c->in_fd != STDIN_FILENO) close(c->in_fd);
    free(c);
}

/* Copies 'in' into 'out' for logging: at most out_size-1 bytes, control
 * characters replaced. */
static void log_copy(char *out, size_t out_size, const char *in)
{
    size_t i;

    for (i = 0; in[i] && i + 1 < out_size; i++)
        out[i] = ((unsigned char)in[i] < 0x20 || in[i] == 0x7f) ? '?' : in[i];
    out[i] = '\0';
}

/* Sends 'reply' plus newline. Returns -1 if the peer is gone or not reading
 * (socket buffer full); stdout is written blocking. */
static int client_reply(client_t *c, const char *reply)
{
    char out[CONTROL_REPLY_MAX + 2];
    size_t len = (size_t)snprintf(out, sizeof(out) - 1, "%s", reply);
    size_t off = 0;

    if (len > sizeof(out) - 2) len = sizeof(out) - 2;
    out[len++] = '\n';
    while (off < len) {
        ssize_t n;

        if (c->out_fd == c->in_fd)
            n = send(c->out_fd, out + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            n = write(c->out_fd, out + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    return 0;
}

/* Executes one complete line (NUL-terminated, newline removed) and replies. */
static int client_line(server_t *srv, client_t *c, char *line)
{
    char reply[CONTROL_REPLY_MAX], logline[256], logreply[256];
    size_t len = strlen(line);

    if (len && line[len - 1] == '\r') line[--len] = '\0';
    control_exec(srv->cc, line, reply, sizeof(reply));
    log_copy(logline, sizeof(logline), line);
    log_copy(logreply, sizeof(logreply), reply);
    fprintf(stderr, "hookd-kafka-embedded: control %s: %s -> %s\n",
            c == srv->stdin_ ? "stdin" : "socket", logline, logreply);
    return client_reply(c, reply);
}

/* Reads what is available from 'c' and answers every complete line.
 * Returns 0 to keep the client, -1 when it is finished (EOF, error, or it
 * stopped reading replies). */
static int client_read(server_t *srv, client_t *c)
{
    ssize_t n;
    char *nl;

    do
        n = read(c->in_fd, c->buf + c->len, sizeof(c->buf) - c->len);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        /* A last line without newline still counts. */
        if (c->len > 0 && !c->discarding) {
            c->buf[c->len] = '\0';
            if (c->len <= CONTROL_LINE_MAX) client_line(srv, c, c->buf);
        }
        return -1;
    }
    c->len += (size_t)n;

    while ((nl = memchr(c->buf, '\n', c->len))) {
        size_t used = (size_t)(nl - c->buf) + 1;

        *nl = '\0';
        if (c->discarding)
            c->discarding = 0; /* the long line was answered already */
        else if (client_line(srv, c, c->buf) == -1)
            return -1;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }

    if (c->len == sizeof(c->buf)) {
        /* More than CONTROL_LINE_MAX bytes and no newline: answer now, then
         * drop the rest of that line. */
        c->len = 0;
        if (!c->discarding) {
            char reply[CONTROL_REPLY_MAX];

            c->discarding = 1;
            snprintf(reply, sizeof(reply), "error line longer than %d bytes", CONTROL_LINE_MAX);
            fprintf(stderr, "hookd-kafka-embedded: control: rejected a line over %d bytes\n",
                    CONTROL_LINE_MAX);
            if (client_reply(c, reply) == -1) return -1;
        }
    }
    return 0;
}

/* Binds and listens on 'path', replacing a stale socket file. */
static int listen_unix(const char *path, char *errstr, size_t errstr_size)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    int fd = -1;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(errstr, errstr_size, "control socket path too long (max %zu bytes): %s",
                 sizeof(sun.sun_path) - 1, path);
        goto fail;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(errstr, errstr_size, "%s exists and is not a socket", path);
            goto fail;
        }
        if (unlink(path) == -1) {
            snprintf(errstr, errstr_size, "unlink %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
        snprintf(errstr, errstr_size, "socket: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
        snprintf(errstr, errstr_size, "bind %s: %s", path, strerror(errno));
        goto fail;
    }
    if (listen(fd, 64) == -1) {
        snprintf(errstr, errstr_size, "listen %s: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    return fd;

fail:
    if (fd != -1) close(fd);
    return -1;
}

server_t *server_new(control_cluster_t *cc, const char *sock_path, int use_stdin, char *errstr,
                     size_t errstr_size)
{
    server_t *srv = calloc(1, sizeof(*srv));

    if (!srv) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    srv->cc = cc;
    srv->listen_fd = -1;
    if (use_stdin && !(srv->stdin_ = client_new(STDIN_FILENO, STDOUT_FILENO))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (sock_path) {
        if (!(srv->sock_path = strdup(sock_path))) {
            snprintf(errstr, errstr_size, "out of memory");
            goto fail;
        }
        if ((srv->listen_fd = listen_unix(sock_path, errstr, errstr_size)) == -1) goto fail;
    }
    return srv;

fail:
    free(srv->sock_path);
    srv->sock_path = NULL; /* nothing of ours to unlink */
    server_destroy(srv);
    return NULL;
}

/* Accepts one pending connection; refuses it if the table is full. */
static void server_accept(server_t *srv)
{
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    client_t *c;

    if (fd == -1) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            fprintf(stderr, "hookd-kafka-embedded: control accept: %s\n", strerror(errno));
        return;
    }
    if (srv->client_cnt == SERVER_MAX_CLIENTS || !(c = client_new(fd, fd))) {
        static const char busy[] = "error too many control clients\n";

        if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* nothing more to tell a peer that is gone */
        }
        close(fd);
        return;
    }
    srv->clients[srv->client_cnt++] = c;
}

int server_run(server_t *srv, int stop_fd)
{
    struct pollfd pfds[SERVER_MAX_CLIENTS + 3];
    client_t *polled[SERVER_MAX_CLIENTS + 3];

    for (;;) {
        nfds_t n = 0, i;
        int j;

        pfds[n] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
        polled[n++] = NULL;
        if (srv->listen_fd != -1) {
            pfds[n] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
            polled[n++] = NULL;
        }
        if (srv->stdin_) {
            pfds[n] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
            polled[n++] = srv->stdin_;
        }
        for (j = 0; j < srv->client_cnt; j++) {
            pfds[n] = (struct pollfd){.fd = srv->clients[j]->in_fd, .events = POLLIN};
            polled[n++] = srv->clients[j];
        }

        if (poll(pfds, n, -1) == -1) {
            if (errno == EINTR) continue;
            fprintf(stderr, "hookd-kafka-embedded: poll: %s\n", strerror(errno));
            return -1;
        }
        if (pfds[0].revents) return 0;

        for (i = 1; i < n; i++) {
            client_t *c = polled[i];

            if (!pfds[i].revents) continue;
            if (!c) {
                server_accept(srv);
                continue;
            }
            if (!(pfds[i].revents & POLLNVAL) && client_read(srv, c) == 0) continue;
            /* Client finished: forget it (stdin is only no longer read). */
            if (c == srv->stdin_) {
                srv->stdin_ = NULL;
            } else {
                for (j = 0; j < srv->client_cnt; j++) {
                    if (srv->clients[j] == c) {
                        srv->clients[j] = srv->clients[--srv->client_cnt];
                        break;
                    }
                }
            }
            client_destroy(c);
        }
    }
}

void server_destroy(server_t *srv)
{
    int i;

    if (!srv) return;
    for (i = 0; i < srv->client_cnt; i++)
        client_destroy(srv->clients[i]);
    if (srv->stdin_) client_destroy(srv->stdin_);
    if (srv->listen_fd != -1) close(srv->listen_fd);
    if (srv->sock_path) {
        unlink(srv->sock_path);
        free(srv->sock_path);
    }
    free(srv);
}
