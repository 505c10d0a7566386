/* Grey-list decisions and arithmetic over the cached endpoint state. */
#include "greylist.h"

greylist_verdict_t greylist_verdict(const greylist_state_t *s, int threshold, bool from_parked)
{
    if (s->until_ms != 0 || s->probing || (s->draining && !from_parked)) return GL_PARK;
    if (s->pending_failures > 0 && s->failures + s->pending_failures >= threshold) return GL_HOLD;
    return GL_SEND;
}

bool greylist_apply_row(greylist_state_t *s, const greylist_row_t *row)
{
    bool was_grey = s->until_ms != 0;
    if (!row->found) {
        s->failures = 0;
        s->level = 0;
        s->until_ms = 0;
        s->draining = s->draining && s->park_ops > 0;
        return false;
    }
    s->failures = row->failures;
    s->level = row->level;
    s->until_ms = row->until_ms;
    if (s->until_ms != 0)
        s->draining = false; /* parking anyway */
    else
        s->draining = row->has_parked || (s->draining && s->park_ops > 0);
    return !was_grey && s->until_ms != 0;
}

bool greylist_idle(const greylist_state_t *s)
{
    return s->failures == 0 && s->until_ms == 0 && s->pending_failures == 0 && !s->draining &&
           !s->probing && s->park_ops == 0;
}

int64_t greylist_period_s(int level, int64_t base_s, int64_t max_s)
{
    if (level < 1) level = 1;
    int64_t p = base_s;
    for (int i = 1; i < level && p < max_s; i++)
        p *= 2;
    return p < max_s ? p : max_s;
}
