/* eventstore.c - PLACEHOLDER being written. */
#include "keel/core.h"

int keel__placeholder_eventstore(void);
int keel__placeholder_eventstore(void) { return 0; }
