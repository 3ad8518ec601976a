/* seed.c - PLACEHOLDER being written. */
#include "keel/core.h"

int keel__placeholder_seed(void);
int keel__placeholder_seed(void) { return 0; }
