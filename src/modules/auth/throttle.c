/* throttle.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_throttle(void);
int keel__auth_placeholder_throttle(void) { return 0; }
