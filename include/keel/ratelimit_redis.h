/*
 * ratelimit_redis.h - the Redis side of the rate limiter (keel/ratelimit.h
 * has the algorithm and the script): reading the script's reply.
 */
#ifndef KEEL_RATELIMIT_REDIS_H
#define KEEL_RATELIMIT_REDIS_H

#include <stdbool.h>

#include "keel/ratelimit.h"
#include "keel/redis.h"

/*
 * Fills *out from the script's reply `r` for `rate`
 * (keel_ratelimit_from_script). Returns KEEL_OK, KEEL_E_INVALID for an
 * unusable rate, or KEEL_E_INTERNAL when r is NULL, an error reply, or not
 * the script's shape (four non-negative integers, checked as
 * keel_ratelimit_from_script does); *out is then untouched. The caller
 * decides what a failed decision means (the middleware fails open to the
 * in-process store).
 */
keel_status keel_ratelimit_parse_reply(const struct keel_redis_reply *r,
                                       const struct keel_config_rate *rate,
                                       struct keel_ratelimit_result *out);

/* True when r is Redis's NOSCRIPT error: retry the call with EVAL. */
bool keel_ratelimit_reply_is_noscript(const struct keel_redis_reply *r);

#endif
