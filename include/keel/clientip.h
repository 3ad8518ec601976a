/*
 * clientip.h - which address a request comes from: the socket peer, or the
 * X-Forwarded-For chain when (and only as far as) the peer is a trusted
 * proxy.
 *
 * An attacker controls every byte of X-Forwarded-For that reaches us, so the
 * header is believed only from hops we trust: the peer must be in the
 * configured proxy list, and the chain is read from the right, each step
 * through a trusted proxy buying one more step to the left. The details and
 * the reasons are in docs/internals/clientip.md.
 *
 * Everything here is pure and thread-safe: no allocation, no global state,
 * no logging. Work per request is bounded by KEEL_XFF_MAX_ELEMENTS and
 * KEEL_XFF_MAX_ELEMENT_LEN, whatever the header length.
 */
#ifndef KEEL_CLIENTIP_H
#define KEEL_CLIENTIP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "keel/core.h"

/* Most entries a trusted-proxy list may hold. */
#define KEEL_PROXIES_MAX 64
/* Most X-Forwarded-For list elements (empty ones included) examined per
 * request, counted from the right. */
#define KEEL_XFF_MAX_ELEMENTS 32
/* Longest X-Forwarded-For element, surrounding whitespace included; a
 * longer one is malformed. "[v6]:port" needs 54 bytes. */
#define KEEL_XFF_MAX_ELEMENT_LEN 128
/* Size of keel_clientip.text: the longest inet_ntop output plus NUL. */
#define KEEL_CLIENTIP_TEXT_LEN INET6_ADDRSTRLEN
/* Size of the key keel_clientip_key writes: one family byte, 16 address bytes. */
#define KEEL_CLIENTIP_KEY_LEN 17

/* One trusted range. IPv4 ranges (including those written as IPv4-mapped
 * IPv6, ::ffff:a.b.c.d/96+) are stored as AF_INET with addr[0..4); host bits
 * beyond prefix are always zero. */
struct keel_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned prefix;        /* 0..32 or 0..128 */
    unsigned char addr[16]; /* network byte order */
};

/* A parsed trusted-proxy list; plain data, copy it freely. n == 0 trusts
 * nobody. */
struct keel_proxies {
    unsigned n;
    struct keel_cidr e[KEEL_PROXIES_MAX];
};

/* The resolved client. An IPv4-mapped IPv6 address is reported as AF_INET,
 * so one client has one identity whichever socket family it came in on. */
struct keel_clientip {
    int family;                        /* AF_INET or AF_INET6 */
    unsigned char addr[16];            /* addr[0..4) for AF_INET, rest zero */
    char text[KEEL_CLIENTIP_TEXT_LEN]; /* inet_ntop form, NUL-terminated */
    bool forwarded;                    /* taken from X-Forwarded-For, not the socket */
};

/*
 * Parses a trusted-proxy list: comma-separated IPv4 or IPv6 addresses and
 * CIDR ranges ("10.0.0.0/8, 127.0.0.1, ::1, fd00::/8"). Whitespace (SP, TAB,
 * CR, LF) around entries is ignored; NULL, "" or all-whitespace gives an
 * empty list. Rejected, each with KEEL_E_INVALID: an empty entry ("a,,b",
 * trailing comma), anything inet_pton refuses (names, zone ids, "1.2.3"),
 * a prefix that is not 1-3 plain decimal digits or exceeds the family's
 * width, host bits set beyond the prefix ("10.0.0.1/8": say 10.0.0.0/8 or
 * 10.0.0.1/32), an IPv4-mapped range shorter than /96, and more than
 * KEEL_PROXIES_MAX entries.
 *
 * On success returns KEEL_OK and fills *out. On failure *out is empty
 * (n == 0, so a caller that ignores the error trusts nobody) and, when err
 * is non-NULL and errlen > 0, err holds a NUL-terminated message naming the
 * offending entry (truncated to fit). out must not be NULL.
 */
keel_status
keel_proxies_parse(const char *list, struct keel_proxies *out, char *err, size_t errlen);

/*
 * True when sa (AF_INET or AF_INET6; IPv4-mapped IPv6 is matched as IPv4)
 * falls in one of p's ranges. False for NULL p or sa, an empty list, and
 * any other address family (AF_UNIX peers are never "trusted proxies" here:
 * the caller decides what a local socket means).
 */
bool keel_proxies_trusted(const struct keel_proxies *p, const struct sockaddr *sa);

/*
 * Resolves the client address of one request.
 *
 * p is the trusted-proxy list (NULL = trust nobody). peer is the socket
 * peer address. xff holds the field values of the request's X-Forwarded-For
 * header lines in the order received (nxff of them; xff may be NULL when
 * nxff is 0); several lines concatenate into one list (RFC 9110 5.3).
 *
 * If the peer is not trusted, the result is the peer and xff is not read.
 * Otherwise the list is walked from the right: empty elements are skipped,
 * trusted addresses are stepped over, and the first untrusted address is
 * the result. When the walk ends without one - the list ran out, an element
 * is malformed, or KEEL_XFF_MAX_ELEMENTS were examined - the result is the
 * last address the walk accepted (the leftmost one reached, nearest to us
 * of anything not yet examined), or the peer when there was none. Nothing
 * left of a malformed element is ever read.
 *
 * An element is an IPv4 address, an IPv6 address, "a.b.c.d:port" or
 * "[v6]:port"/"[v6]" (the port, 1-5 digits, is dropped), with optional
 * SP/TAB around it. Anything else ("unknown", "_hidden", names, zone ids,
 * quoted strings) is malformed.
 *
 * Returns KEEL_OK and fills *out, or KEEL_E_INVALID when peer is not
 * AF_INET/AF_INET6 (out is then zeroed). peer and out must not be NULL.
 */
keel_status keel_clientip_resolve(const struct keel_proxies *p,
                                  const struct sockaddr_storage *peer,
                                  const struct keel_str *xff,
                                  unsigned nxff,
                                  struct keel_clientip *out);

/*
 * Writes a fixed-size rate-limit key for ip into key: a family byte (4 or
 * 6) then the 16 address bytes, with IPv6 addresses masked to v6_prefix
 * bits (0..128; values above 128 mean 128). One IPv6 host usually owns a
 * whole /64, so per-client limits should pass 64: with 128 an attacker
 * rotates through 2^64 keys. IPv4 is never masked. Always returns
 * KEEL_CLIENTIP_KEY_LEN.
 */
size_t keel_clientip_key(const struct keel_clientip *ip,
                         unsigned v6_prefix,
                         unsigned char key[KEEL_CLIENTIP_KEY_LEN]);

#endif
