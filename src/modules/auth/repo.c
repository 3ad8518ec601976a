/* repo.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_repo(void);
int keel__auth_placeholder_repo(void) { return 0; }
