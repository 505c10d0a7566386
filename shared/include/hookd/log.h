/* Logging: one line per event of interest, level-gated, text or JSON, to
 * stderr. Messages are "event_name key=value key=\"quoted value\"": the JSON
 * format turns each key into a field. Registered secrets are masked. */
#ifndef HOOKD_LOG_H
#define HOOKD_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum { HOOKD_LOG_DEBUG, HOOKD_LOG_INFO, HOOKD_LOG_WARN, HOOKD_LOG_ERROR };

extern int hookd_log_level; /* lines below this level are skipped */

/* Sets the service name, minimum level and format (0 text, 1 json). May be
 * called again (after config is loaded). Not thread-safe against writers. */
void hookd_log_init(const char *service, int level, int json);

/* Registers a value that must never appear in a log line (a token, a password);
 * occurrences are replaced by "***". Values shorter than 4 bytes are ignored.
 * The string is copied. */
void hookd_log_add_secret(const char *secret);

/* Writes one line to stderr atomically. Use the macros below. */
void hookd_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats "message" into 'out' as the line hookd_log_write would print
 * (without the trailing newline); used by tests. Returns the length. */
size_t hookd_log_format_line(char *out, size_t out_size, int level, const char *message);

/* Frees registered secrets (at exit). */
void hookd_log_shutdown(void);

#define HOOKD_LOG_AT(lvl, ...)                                                                     \
    do {                                                                                           \
        if ((lvl) >= hookd_log_level) hookd_log_write((lvl), __VA_ARGS__);                         \
    } while (0)
#define log_debug(...) HOOKD_LOG_AT(HOOKD_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) HOOKD_LOG_AT(HOOKD_LOG_INFO, __VA_ARGS__)
#define log_warn(...) HOOKD_LOG_AT(HOOKD_LOG_WARN, __VA_ARGS__)
#define log_error(...) HOOKD_LOG_AT(HOOKD_LOG_ERROR, __VA_ARGS__)

#endif
