/* users.c - being written. */
#include "keel/core.h"

int keel__users_placeholder(void);
int keel__users_placeholder(void) { return 0; }
