/* The in-memory job: one allocation holding the job message and the few
 * decoded fields the worker needs while the job waits. */
#include "worker.h"

#include <stdlib.h>
#include <string.h>

static void copy_id(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size) n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static const char *put(char **p, const char *s)
{
    size_t n = strlen(s) + 1;
    char *at = *p;
    memcpy(at, s, n);
    *p += n;
    return at;
}

wjob_t *wjob_new(const char *msg, size_t len, const job_t *d)
{
    size_t strings = strlen(d->event_id) + strlen(d->type) + strlen(d->account) +
                     strlen(d->directory) + strlen(d->status) + strlen(d->user) + 6;
    size_t bytes = sizeof(wjob_t) + len + 1 + strings;
    wjob_t *j = malloc(bytes);
    if (!j) abort();
    memset(j, 0, sizeof(*j));
    j->bytes = (uint32_t)bytes;
    copy_id(j->id, sizeof(j->id), d->id);
    copy_id(j->sub_id, sizeof(j->sub_id), d->subscription_id);
    copy_id(j->ep_id, sizeof(j->ep_id), d->endpoint_id);
    j->occurred_at_ms = d->occurred_at_ms;
    j->ingested_at_ms = d->ingested_at_ms;
    j->len = (uint32_t)len;
    memcpy(j->data, msg, len);
    j->data[len] = '\0';
    if (d->payload.p >= msg && d->payload.p + d->payload.len <= msg + len) {
        j->payload_off = (uint32_t)(d->payload.p - msg);
        j->payload_len = (uint32_t)d->payload.len;
    }
    char *p = j->data + len + 1;
    j->event_id = put(&p, d->event_id);
    j->type = put(&p, d->type);
    j->account = put(&p, d->account);
    j->directory = put(&p, d->directory);
    j->status = put(&p, d->status);
    j->user = put(&p, d->user);
    return j;
}

static void copy_field(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size) n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void wjob_job(const wjob_t *j, job_t *out)
{
    copy_field(out->id, sizeof(out->id), j->id);
    copy_field(out->event_id, sizeof(out->event_id), j->event_id);
    copy_field(out->subscription_id, sizeof(out->subscription_id), j->sub_id);
    copy_field(out->endpoint_id, sizeof(out->endpoint_id), j->ep_id);
    copy_field(out->type, sizeof(out->type), j->type);
    copy_field(out->account, sizeof(out->account), j->account);
    copy_field(out->directory, sizeof(out->directory), j->directory);
    copy_field(out->status, sizeof(out->status), j->status);
    copy_field(out->user, sizeof(out->user), j->user);
    out->occurred_at_ms = j->occurred_at_ms;
    out->ingested_at_ms = j->ingested_at_ms;
    out->payload.p = j->data + j->payload_off;
    out->payload.len = j->payload_len;
}

void wjob_free(wjob_t *j)
{
    free(j);
}

size_t wjob_size(const wjob_t *j)
{
    return j->bytes;
}
