/* repo.c - PLACEHOLDER being written. */
#include "keel/core.h"

int keel__placeholder_repo(void);
int keel__placeholder_repo(void) { return 0; }
