/* projection.c - PLACEHOLDER being written. */
#include "keel/core.h"

int keel__placeholder_projection(void);
int keel__placeholder_projection(void) { return 0; }
