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

wjob_t *wjob_new(const char *msg, size_t len, const job_t *d)
{
    size_t elen = strlen(d->event_id), tlen = strlen(d->type);
    size_t bytes = sizeof(wjob_t) + len + 1 + elen + 1 + tlen + 1;
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
    char *p = j->data;
    memcpy(p, msg, len);
    p[len] = '\0';
    p += len + 1;
    memcpy(p, d->event_id, elen + 1);
    j->event_id = p;
    p += elen + 1;
    memcpy(p, d->type, tlen + 1);
    j->type = p;
    return j;
}

void wjob_free(wjob_t *j)
{
    free(j);
}

size_t wjob_size(const wjob_t *j)
{
    return j->bytes;
}
