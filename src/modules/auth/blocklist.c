/* blocklist.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_blocklist(void);
int keel__auth_placeholder_blocklist(void) { return 0; }
