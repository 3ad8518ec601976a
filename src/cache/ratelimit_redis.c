/*
 * ratelimit_redis.c - the rate limiter's script replies
 * (keel/ratelimit_redis.h): a Redis reply becomes the script's four
 * integers, which the core turns into a decision.
 */
#include "keel/ratelimit_redis.h"

#include <string.h>

bool keel_ratelimit_reply_is_noscript(const struct keel_redis_reply *r)
{
    return r && r->type == KEEL_REDIS_ERROR && r->str && r->len >= 8 &&
           memcmp(r->str, "NOSCRIPT", 8) == 0;
}

keel_status keel_ratelimit_parse_reply(const struct keel_redis_reply *r,
                                       const struct keel_config_rate *rate,
                                       struct keel_ratelimit_result *out)
{
    long long v[4];
    size_t i;

    if (keel_ratelimit_interval_us(rate) == 0)
        return KEEL_E_INVALID;
    if (!r || r->type != KEEL_REDIS_ARRAY || r->elements != 4 || !r->element)
        return KEEL_E_INTERNAL;
    for (i = 0; i < 4; i++) {
        if (r->element[i].type != KEEL_REDIS_INTEGER)
            return KEEL_E_INTERNAL;
        v[i] = r->element[i].integer;
    }
    return keel_ratelimit_from_script(v, rate, out);
}
