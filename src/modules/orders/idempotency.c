/* idempotency.c - PLACEHOLDER being written. */
#include "keel/core.h"

int keel__placeholder_idempotency(void);
int keel__placeholder_idempotency(void) { return 0; }
