/* authz.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_authz(void);
int keel__auth_placeholder_authz(void) { return 0; }
