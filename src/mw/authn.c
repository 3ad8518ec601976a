/* authn.c - placeholder, being written. */
#include "keel/http.h"

const struct keel_middleware keel_mw_authn = {"authn", NULL, KEEL_PHASE_ACCESS, NULL, NULL, NULL};
