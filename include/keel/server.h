/*
 * server.h - the HTTP server: a service of the loop runtime
 * (keel/runtime.h) with one SO_REUSEPORT listener per loop (SPEC
 * sections 1, 2 and 7).
 */
#ifndef KEEL_SERVER_H
#define KEEL_SERVER_H

#include "keel/core.h"

struct keel_config;
struct keel_router;

/* Adds the HTTP server to the runtime, for the next keel_runtime_run: it
 * binds cfg->listen once per loop before the loops start (a bind failure
 * fails the start with KEEL_E_UNAVAILABLE), accepts connections on every
 * loop, logs "listening" once ready, and on shutdown closes its listeners
 * and idle connections, lets in-flight requests finish with
 * Connection: close, and cuts the rest at the deadline. The router must
 * be complete and is shared read-only by every loop. Also registers the
 * keel_http_connections and keel_http_requests_in_flight gauges. Main
 * thread. */
keel_status keel_server_add(const struct keel_config *cfg, struct keel_router *router);

#endif
