/* validate.c - placeholder, being written. */
#include "keel/http.h"

const struct keel_middleware keel_mw_validate = {"validate", NULL, KEEL_PHASE_VALIDATE,
                                                 NULL, NULL, NULL};
