/* routes_auth.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_routes_auth(void);
int keel__auth_placeholder_routes_auth(void) { return 0; }
