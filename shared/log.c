/* Level-gated text/JSON log lines on stderr with secret masking. */
#include "hookd/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192
#define LOG_MAX_SECRETS 64

int hookd_log_level = HOOKD_LOG_INFO;
static int log_json;
static char log_service[64] = "hookd";
static char *secrets[LOG_MAX_SECRETS];
static int secrets_len;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void hookd_log_init(const char *service, int level, int json)
{
    snprintf(log_service, sizeof(log_service), "%s", service);
    hookd_log_level = level;
    log_json = json;
}

void hookd_log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4) return;
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < secrets_len; i++) {
        if (strcmp(secrets[i], secret) == 0) {
            pthread_mutex_unlock(&secrets_lock);
            return;
        }
    }
    if (secrets_len < LOG_MAX_SECRETS) secrets[secrets_len++] = strdup(secret);
    pthread_mutex_unlock(&secrets_lock);
}

void hookd_log_shutdown(void)
{
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < secrets_len; i++) free(secrets[i]);
    secrets_len = 0;
    pthread_mutex_unlock(&secrets_lock);
}

/* Replaces every registered secret in 's' (in place) by "***". */
static void mask_secrets(char *s)
{
    pthread_mutex_lock(&secrets_lock);
    for (int i = 0; i < secrets_len; i++) {
        size_t n = strlen(secrets[i]);
        char *hit;
        while ((hit = strstr(s, secrets[i])) != NULL) {
            memcpy(hit, "***", 3);
            memmove(hit + 3, hit + n, strlen(hit + n) + 1);
        }
    }
    pthread_mutex_unlock(&secrets_lock);
}

typedef struct {
    char *buf;
    size_t size, len;
} outbuf_t;

static void out_c(outbuf_t *o, char c)
{
    if (o->len + 1 < o->size) o->buf[o->len++] = c;
}

static void out_s(outbuf_t *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) out_c(o, s[i]);
}

static void out_json_str(outbuf_t *o, const char *s, size_t n)
{
    out_c(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out_c(o, '\\');
            out_c(o, (char)c);
        } else if (c == '\n') {
            out_s(o, "\\n", 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            out_s(o, esc, 6);
        } else {
            out_c(o, (char)c);
        }
    }
    out_c(o, '"');
}

static void timestamp(char *out, size_t out_size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, out_size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, out_size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Reads one value starting at *p: bare up to a space, or "quoted" with \"
 * escapes (unescaped into 'val'). Advances *p. */
static size_t read_value(const char **p, char *val, size_t val_size)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '"') {
        s++;
        while (*s && *s != '"') {
            if (*s == '\\' && s[1]) s++;
            if (n + 1 < val_size) val[n++] = *s;
            s++;
        }
        if (*s == '"') s++;
    } else {
        while (*s && *s != ' ') {
            if (n + 1 < val_size) val[n++] = *s;
            s++;
        }
    }
    val[n] = '\0';
    *p = s;
    return n;
}

static void format_json(outbuf_t *o, const char *ts, int level, const char *msg)
{
    out_s(o, "{\"ts\":\"", 7);
    out_s(o, ts, strlen(ts));
    out_s(o, "\",\"level\":\"", 11);
    out_s(o, level_names[level], strlen(level_names[level]));
    out_s(o, "\",\"service\":", 12);
    out_json_str(o, log_service, strlen(log_service));
    const char *p = msg;
    size_t ev = strcspn(p, " ");
    out_s(o, ",\"msg\":", 7);
    out_json_str(o, p, ev);
    p += ev;
    while (*p == ' ') p++;
    while (*p) {
        size_t klen = strcspn(p, "= ");
        if (p[klen] != '=' || klen == 0) {
            /* free text: keep the rest as "detail" */
            out_s(o, ",\"detail\":", 10);
            out_json_str(o, p, strlen(p));
            break;
        }
        out_c(o, ',');
        out_json_str(o, p, klen);
        out_c(o, ':');
        p += klen + 1;
        char local[LOG_LINE_MAX];
        size_t vlen = read_value(&p, local, sizeof(local));
        out_json_str(o, local, vlen);
        while (*p == ' ') p++;
    }
    out_c(o, '}');
}

size_t hookd_log_format_line(char *out, size_t out_size, int level, const char *message)
{
    char ts[40];
    outbuf_t o = {out, out_size, 0};
    if (level < HOOKD_LOG_DEBUG || level > HOOKD_LOG_ERROR) level = HOOKD_LOG_ERROR;
    timestamp(ts, sizeof(ts));
    if (log_json) {
        format_json(&o, ts, level, message);
    } else {
        char head[160];
        int n = snprintf(head, sizeof(head), "%s %-5s %s ", ts, level_names[level], log_service);
        out_s(&o, head, (size_t)n);
        for (const char *p = message; *p; p++) out_c(&o, *p == '\n' ? ' ' : *p);
    }
    out[o.len] = '\0';
    return o.len;
}

void hookd_log_write(int level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    char line[LOG_LINE_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mask_secrets(msg);
    size_t n = hookd_log_format_line(line, sizeof(line) - 1, level, msg);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
