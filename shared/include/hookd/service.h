/* Start-up and shutdown plumbing common to hookd services: configuration with
 * exit code 2 on bad input, --help/--version, logging, secret registration,
 * and SIGTERM/SIGINT handling on a libevent loop. */
#ifndef HOOKD_SERVICE_H
#define HOOKD_SERVICE_H

#include "hookd/config.h"
#include "hookd/health.h"
#include "hookd/httpd.h"

#include <event2/event.h>
#include <stdbool.h>

/* Loads the configuration for 'service' (HOOKD_SVC_*). Prints help or the
 * version, or one error line naming the variable, and returns the exit code
 * the process should end with (0 or 2); returns -1 when the service should
 * run. On -1 the log is initialised and secrets are registered for masking. */
int hookd_service_setup(const char *name, unsigned service, int argc, char **argv,
                        const hookd_cli_opt_t *opts, hookd_config_t *cfg);

/* Version line: "<name> <version> (librdkafka x, libpq y, libcurl z, ...)". */
void hookd_service_print_version(const char *name);

/* True once SIGTERM or SIGINT has arrived (from hookd_service_setup on),
 * even before the event loop runs: start-up waits poll it. Async-signal
 * safe to read. */
bool hookd_shutdown_requested(void);

/* HOOKD_PROBE_ADDR: starts the probe listener (httpd_probe_start) for the
 * loop 'base', with 'health' for /readyz, into *out (NULL when the variable
 * is empty). Returns 0, or -1 after logging why it cannot listen. */
int hookd_service_probes(const hookd_config_t *cfg, struct event_base *base, health_t *health,
                         httpd_probe_t **out);

typedef struct hookd_signals hookd_signals_t;

/* Installs SIGTERM/SIGINT handlers on 'base'. The first signal calls
 * 'on_stop(ud)' (begin a graceful shutdown); a second one calls 'on_force'
 * (may be NULL: then the process exits with status 1 at once). SIGPIPE is
 * ignored. Free with hookd_signals_free. */
hookd_signals_t *hookd_signals_new(struct event_base *base, void (*on_stop)(void *ud),
                                   void (*on_force)(void *ud), void *ud);
void hookd_signals_free(hookd_signals_t *s);

#endif
