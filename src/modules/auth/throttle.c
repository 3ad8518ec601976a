/*
 * throttle.c - login throttling decisions (SPEC section 3, "Brute force"):
 * failures are counted per account+IP, per account and per IP; past a
 * threshold each attempt must wait twice as long as the one before, up to
 * a cap. Pure functions; the state lives in the login_throttle table
 * (repo.c) so every instance shares it.
 *
 * Why it never locks the owner out for good: every delay is capped, and
 * the count forgets a key THROTTLE_WINDOW_MS after its last failure. The
 * per-account cap (what an attacker elsewhere can impose on the owner) is
 * the shortest, 60 s; the owner's own address has its own, separate
 * account+IP counter, and a success clears both account counters.
 */
#include "auth_int.h"

struct rule {
    int64_t threshold; /* failures before delays start */
    int64_t cap_ms;    /* longest delay */
};

static const struct rule rules[THROTTLE_KINDS] = {
    [THROTTLE_ACCOUNT_IP] = {5, 15 * 60 * 1000},
    [THROTTLE_ACCOUNT] = {10, 60 * 1000},
    [THROTTLE_IP] = {50, 15 * 60 * 1000},
};

int64_t auth_throttle_wait(const struct throttle_state *s, int64_t now_ms)
{
    return s->blocked_ms > now_ms ? s->blocked_ms - now_ms : 0;
}

bool auth_throttle_fail(enum throttle_kind k, struct throttle_state *s, int64_t now_ms)
{
    const struct rule *r = &rules[k];
    int64_t over, delay;

    /* window_ms is the last failure: the count slides with the attacker. */
    if (now_ms - s->window_ms > THROTTLE_WINDOW_MS)
        s->failures = 0;
    s->failures++;
    s->window_ms = now_ms;
    if (s->failures < r->threshold)
        return false;
    over = s->failures - r->threshold;
    delay = over >= 20 ? r->cap_ms : (int64_t)1000 << over;
    if (delay > r->cap_ms)
        delay = r->cap_ms;
    s->blocked_ms = now_ms + delay;
    return true;
}
