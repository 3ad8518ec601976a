/*
 * net.h - listening sockets for the services that run on the loops (the
 * HTTP server, later a worker's health port).
 */
#ifndef KEEL_NET_H
#define KEEL_NET_H

#include <stddef.h>

/* Binds one non-blocking TCP socket to host:*port with SO_REUSEADDR and
 * SO_REUSEPORT, so each loop can bind its own on the same port and the
 * kernel spreads connections across them without a shared accept lock.
 * When *port is 0 the kernel picks one and *port receives it, so the
 * other loops bind the same. The socket is not listening yet (libuv's
 * uv_listen does that after uv_tcp_open). Returns the fd, or -1 with a
 * message for the operator in errbuf. */
int keel_net_bind(const char *host, int *port, char *errbuf, size_t errlen);

#endif
