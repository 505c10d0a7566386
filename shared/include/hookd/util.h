/* Small pieces every module needs: clocks, a growable byte buffer, hex and
 * base64, and an FNV-1a hash for in-memory tables. */
#ifndef HOOKD_UTIL_H
#define HOOKD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOOKD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall clock in milliseconds since the epoch. */
int64_t hookd_now_ms(void);
/* Monotonic clock in milliseconds / microseconds (for intervals). */
int64_t hookd_mono_ms(void);
int64_t hookd_mono_us(void);
/* Sleeps 'ms' milliseconds (the calling thread). */
void hookd_sleep_ms(int64_t ms);

/* Formats 'ms' since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-23T10:00:00.000Z", always a four-digit year: times outside
 * 0000..9999 are clamped) into 'out' (>= 25 bytes). */
void hookd_format_time(int64_t ms, char *out, size_t out_size);

/* Parses an RFC 3339 timestamp ("2026-11-23T10:00:00Z", fractional seconds and
 * +hh:mm offsets allowed; in UTC it must fall in the years 0000..9999, so
 * hookd_format_time writes it back). Returns 0 and sets *ms, or -1. */
int hookd_parse_time(const char *s, size_t len, int64_t *ms);

/* A growable buffer. Always NUL-terminated after data[len]. On allocation
 * failure the process aborts (hookd treats OOM as fatal). */
typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf_t;

void strbuf_init(strbuf_t *b, size_t cap);
void strbuf_free(strbuf_t *b);
void strbuf_reset(strbuf_t *b);
void strbuf_reserve(strbuf_t *b, size_t extra);
void strbuf_append(strbuf_t *b, const void *data, size_t len);
void strbuf_puts(strbuf_t *b, const char *s);
void strbuf_putc(strbuf_t *b, char c);
void strbuf_printf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Detaches the data (caller frees); the buffer is left empty. */
char *strbuf_steal(strbuf_t *b);

/* Lower-case hex of 'len' bytes into 'out' (2*len+1 bytes). */
void hookd_hex(const unsigned char *in, size_t len, char *out);
/* Standard base64 (with padding) of 'len' bytes into 'out' (4*((len+2)/3)+1). */
size_t hookd_base64(const unsigned char *in, size_t len, char *out);
/* Decodes standard base64; returns the length or -1. 'out' needs len*3/4. */
long hookd_base64_decode(const char *in, size_t len, unsigned char *out);

/* Fills 'buf' with cryptographically strong random bytes. Returns 0 or -1. */
int hookd_random(void *buf, size_t len);

static inline uint64_t hookd_fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Duplicates 'len' bytes into a NUL-terminated heap string. */
char *hookd_strndup(const char *s, size_t len);

#endif
