/* Line transports of the control interface: stdin and a Unix stream socket,
 * served by one poll() loop that hands each line to control_exec(). */
#ifndef HOOKD_KAFKA_EMBEDDED_SERVER_H
#define HOOKD_KAFKA_EMBEDDED_SERVER_H

#include <stddef.h>

#include "control.h"

typedef struct server server_t;

/* Creates a server for 'cc' (not owned; must outlive the server). When
 * 'sock_path' is non-NULL it listens there (a stale socket file is
 * replaced; anything else at that path is an error). When 'use_stdin' it
 * reads commands from fd 0 and writes their replies to fd 1, and simply
 * stops reading at EOF. Returns NULL and fills 'errstr' on failure. */
server_t *server_new(control_cluster_t *cc, const char *sock_path, int use_stdin, char *errstr,
                     size_t errstr_size);

/* Serves clients until 'stop_fd' becomes readable (the caller drains it).
 * Returns 0, or -1 (reason logged on stderr) if poll() itself fails. */
int server_run(server_t *srv, int stop_fd);

/* Closes every connection, removes the socket file and frees 'srv'.
 * NULL is a no-op. */
void server_destroy(server_t *srv);

#endif
