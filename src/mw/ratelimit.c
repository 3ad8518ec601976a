/* ratelimit.c - placeholder, being written. */
#include "keel/http.h"

const struct keel_middleware keel_mw_ratelimit_ip = {"ratelimit_ip", NULL, KEEL_PHASE_ACCESS,
                                                     NULL, NULL, NULL};
const struct keel_middleware keel_mw_ratelimit_user = {"ratelimit_user", NULL, KEEL_PHASE_ACCESS,
                                                       NULL, NULL, NULL};
