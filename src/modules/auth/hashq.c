/* hashq.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_hashq(void);
int keel__auth_placeholder_hashq(void) { return 0; }
