/* routes_users.c - being written. */
#include "keel/core.h"

int keel__auth_placeholder_routes_users(void);
int keel__auth_placeholder_routes_users(void) { return 0; }
