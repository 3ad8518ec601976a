/*
 * test_clientip.c - unit tests for src/core/clientip.c.
 *
 * The trusted-proxy list parser (valid forms, CIDR boundaries, every
 * rejection with its message), then client resolution: the spoofing cases
 * an attacker would try first (XFF from an untrusted peer, garbage to hide
 * the left part of the chain, lists long enough to cost us work), multiple
 * header lines, IPv6 and IPv4-mapped folding, ports, and the rate-limit key.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "keel/clientip.h"

#include "test.h"

static struct keel_proxies px;

static void parse_ok(const char *list)
{
    char err[256];

    assert_int_equal(keel_proxies_parse(list, &px, err, sizeof(err)), KEEL_OK);
    assert_string_equal(err, "");
}

static struct sockaddr_storage sa(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
    }
    return ss;
}

static bool is_trusted(const char *text)
{
    struct sockaddr_storage ss = sa(text);

    return keel_proxies_trusted(&px, (const struct sockaddr *)&ss);
}

/* Resolves with up to 4 XFF header lines (NULL-terminated) and checks the
 * text and whether the result came from the header. */
static void check(const char *peer,
                  const char *expect,
                  bool forwarded,
                  const char *l1,
                  const char *l2,
                  const char *l3)
{
    const char *lines[] = {l1, l2, l3};
    struct keel_str xff[3];
    struct keel_clientip ip;
    struct sockaddr_storage ss = sa(peer);
    unsigned n = 0;

    while (n < 3 && lines[n]) {
        xff[n] = (struct keel_str){lines[n], strlen(lines[n])};
        n++;
    }
    assert_int_equal(keel_clientip_resolve(&px, &ss, n ? xff : NULL, n, &ip), KEEL_OK);
    assert_string_equal(ip.text, expect);
    assert_int_equal(ip.forwarded, forwarded);
}

/* ------------------------------------------------------------------------ */
/* keel_proxies_parse                                                       */
/* ------------------------------------------------------------------------ */

static void test_parse_valid(void **state)
{
    (void)state;
    parse_ok("10.0.0.0/8, 127.0.0.1, ::1, fd00::/8");
    assert_int_equal(px.n, 4);
    assert_int_equal(px.e[0].family, AF_INET);
    assert_int_equal(px.e[0].prefix, 8);
    assert_int_equal(px.e[1].prefix, 32);
    assert_int_equal(px.e[2].family, AF_INET6);
    assert_int_equal(px.e[2].prefix, 128);
    assert_int_equal(px.e[3].prefix, 8);

    parse_ok(" \t10.0.0.1\r\n,\n  192.168.0.0/16  \n");
    assert_int_equal(px.n, 2);
    parse_ok(NULL);
    assert_int_equal(px.n, 0);
    parse_ok("");
    assert_int_equal(px.n, 0);
    parse_ok("  \t\n ");
    assert_int_equal(px.n, 0);
    assert_false(is_trusted("127.0.0.1"));

    /* An IPv4-mapped range becomes the IPv4 range it covers. */
    parse_ok("::ffff:10.0.0.0/104, ::ffff:192.0.2.7");
    assert_int_equal(px.e[0].family, AF_INET);
    assert_int_equal(px.e[0].prefix, 8);
    assert_int_equal(px.e[1].family, AF_INET);
    assert_int_equal(px.e[1].prefix, 32);
    assert_true(is_trusted("10.9.8.7"));
    assert_true(is_trusted("::ffff:10.9.8.7"));
    assert_true(is_trusted("192.0.2.7"));
    assert_false(is_trusted("11.0.0.0"));
}

static void test_parse_max_entries(void **state)
{
    char list[64 * 16 + 32], err[256];
    size_t off = 0;
    int i;

    (void)state;
    for (i = 0; i < KEEL_PROXIES_MAX; i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s10.0.%d.1", i ? "," : "", i);
    parse_ok(list);
    assert_int_equal(px.n, KEEL_PROXIES_MAX);
    assert_true(is_trusted("10.0.63.1"));

    snprintf(list + off, sizeof(list) - off, ",10.0.64.1");
    assert_int_equal(keel_proxies_parse(list, &px, err, sizeof(err)), KEEL_E_INVALID);
    assert_int_equal(px.n, 0);
    assert_non_null(strstr(err, "\"10.0.64.1\""));
    assert_non_null(strstr(err, "too many entries"));
}

static void test_parse_invalid(void **state)
{
    static const struct {
        const char *list;
        const char *entry; /* quoted in the message */
        const char *why;
    } bad[] = {
        {"foo", "\"foo\"", "not an IP address"},
        {"10.0.0.1, localhost", "\"localhost\"", "not an IP address"},
        {"1.2.3", "\"1.2.3\"", "not an IP address"},
        {"1.2.3.4.5", "\"1.2.3.4.5\"", "not an IP address"},
        {"1.2.3.04", "\"1.2.3.04\"", "not an IP address"},
        {"fe80::1%eth0", "\"fe80::1%eth0\"", "not an IP address"},
        {"1.2.3.4 5.6.7.8", "\"1.2.3.4 5.6.7.8\"", "not an IP address"},
        {"[::1]", "\"[::1]\"", "not an IP address"},
        {"/8", "\"/8\"", "not an IP address"},
        {"10.0.0.0/33", "\"10.0.0.0/33\"", "bad prefix length"},
        {"::/129", "\"::/129\"", "bad prefix length"},
        {"10.0.0.0/", "\"10.0.0.0/\"", "bad prefix length"},
        {"10.0.0.0/08", "\"10.0.0.0/08\"", "bad prefix length"},
        {"10.0.0.0/+8", "\"10.0.0.0/+8\"", "bad prefix length"},
        {"10.0.0.0/-1", "\"10.0.0.0/-1\"", "bad prefix length"},
        {"10.0.0.0/ 8", "\"10.0.0.0/ 8\"", "bad prefix length"},
        {"10.0.0.0/8/8", "\"10.0.0.0/8/8\"", "bad prefix length"},
        {"10.0.0.0/0008", "\"10.0.0.0/0008\"", "bad prefix length"},
        {"10.0.0.1/8", "\"10.0.0.1/8\"", "host bits set"},
        {"fd00::1/8", "\"fd00::1/8\"", "host bits set"},
        {"10.0.0.0/7", "\"10.0.0.0/7\"", NULL}, /* 10 = 0000 1010: valid */
        {"::ffff:10.0.0.0/8", "\"::ffff:10.0.0.0/8\"", "IPv4-mapped range"},
        {"1.2.3.4,,5.6.7.8", "\"\"", "empty entry"},
        {"1.2.3.4,", "\"\"", "empty entry"},
        {",1.2.3.4", "\"\"", "empty entry"},
        {"1.2.3.4, \n ,", "\"\"", "empty entry"},
        {"10.0.0.1\x01", "\"10.0.0.1?\"", "not an IP address"},
    };
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < KEEL_ARRAY_LEN(bad); i++) {
        keel_status rc = keel_proxies_parse(bad[i].list, &px, err, sizeof(err));

        if (!bad[i].why) {
            assert_int_equal(rc, KEEL_OK);
            continue;
        }
        if (rc != KEEL_E_INVALID || !strstr(err, bad[i].entry) || !strstr(err, bad[i].why))
            fail_msg("list \"%s\": rc %d, err \"%s\"", bad[i].list, rc, err);
        assert_int_equal(px.n, 0);
    }

    /* A tiny or absent error buffer is fine; a long entry is truncated. */
    assert_int_equal(keel_proxies_parse("nope", &px, NULL, 0), KEEL_E_INVALID);
    assert_int_equal(keel_proxies_parse("nope", &px, err, 1), KEEL_E_INVALID);
    assert_string_equal(err, "");
    memset(err, 'x', sizeof(err));
    assert_int_equal(keel_proxies_parse("nope", &px, err, 8), KEEL_E_INVALID);
    assert_int_equal(strlen(err), 7);
    {
        char longent[300];

        memset(longent, 'a', sizeof(longent) - 1);
        longent[sizeof(longent) - 1] = '\0';
        assert_int_equal(keel_proxies_parse(longent, &px, err, sizeof(err)), KEEL_E_INVALID);
        assert_non_null(strstr(err, "...\""));
        assert_true(strlen(err) < 150);
    }
}

/* ------------------------------------------------------------------------ */
/* CIDR matching                                                            */
/* ------------------------------------------------------------------------ */

static void test_cidr_boundaries(void **state)
{
    (void)state;
    parse_ok("0.0.0.0/0");
    assert_true(is_trusted("0.0.0.0"));
    assert_true(is_trusted("255.255.255.255"));
    assert_true(is_trusted("::ffff:8.8.8.8"));
    assert_false(is_trusted("::1"));
    assert_false(is_trusted("2001:db8::1"));

    parse_ok("::/0");
    assert_true(is_trusted("::"));
    assert_true(is_trusted("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(is_trusted("8.8.8.8"));
    assert_false(is_trusted("::ffff:8.8.8.8")); /* folded to IPv4 first */

    parse_ok("192.0.2.7/32");
    assert_true(is_trusted("192.0.2.7"));
    assert_false(is_trusted("192.0.2.6"));
    assert_false(is_trusted("192.0.2.8"));
    assert_false(is_trusted("::ffff:192.0.2.8"));
    assert_true(is_trusted("::ffff:192.0.2.7"));

    parse_ok("2001:db8::7/128");
    assert_true(is_trusted("2001:db8::7"));
    assert_false(is_trusted("2001:db8::6"));
    assert_false(is_trusted("2001:db8::8"));

    parse_ok("fc00::/7");
    assert_true(is_trusted("fc00::"));
    assert_true(is_trusted("fd12:3456::1"));
    assert_true(is_trusted("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(is_trusted("fe00::"));
    assert_false(is_trusted("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));

    parse_ok("10.0.0.0/7");
    assert_true(is_trusted("10.0.0.0"));
    assert_true(is_trusted("11.255.255.255"));
    assert_false(is_trusted("9.255.255.255"));
    assert_false(is_trusted("12.0.0.0"));

    parse_ok("172.16.0.0/12, 2001:db8:1::/48");
    assert_true(is_trusted("172.31.255.255"));
    assert_false(is_trusted("172.32.0.0"));
    assert_false(is_trusted("172.15.255.255"));
    assert_true(is_trusted("2001:db8:1:ffff::1"));
    assert_false(is_trusted("2001:db8:2::1"));
}

static void test_trusted_edge_cases(void **state)
{
    struct sockaddr_un un;
    struct sockaddr_storage ss = sa("10.0.0.1");

    (void)state;
    parse_ok("0.0.0.0/0, ::/0");
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    assert_false(keel_proxies_trusted(&px, (const struct sockaddr *)&un));
    assert_false(keel_proxies_trusted(&px, NULL));
    assert_false(keel_proxies_trusted(NULL, (const struct sockaddr *)&ss));
    assert_true(keel_proxies_trusted(&px, (const struct sockaddr *)&ss));
}

/* ------------------------------------------------------------------------ */
/* keel_clientip_resolve                                                    */
/* ------------------------------------------------------------------------ */

static void test_untrusted_peer_ignores_xff(void **state)
{
    (void)state;
    parse_ok("10.0.0.0/8");
    check("203.0.113.9", "203.0.113.9", false, "1.2.3.4", NULL, NULL);
    check("203.0.113.9", "203.0.113.9", false, "1.2.3.4, 10.0.0.1", "10.0.0.2", NULL);
    check("203.0.113.9", "203.0.113.9", false, "unknown", NULL, NULL);
    /* No list at all trusts nobody, not even loopback. */
    parse_ok("");
    check("127.0.0.1", "127.0.0.1", false, "1.2.3.4", NULL, NULL);
    {
        struct keel_str v = KEEL_STR("1.2.3.4");
        struct sockaddr_storage ss = sa("127.0.0.1");
        struct keel_clientip ip;

        assert_int_equal(keel_clientip_resolve(NULL, &ss, &v, 1, &ip), KEEL_OK);
        assert_string_equal(ip.text, "127.0.0.1");
    }
}

static void test_trusted_chain(void **state)
{
    (void)state;
    parse_ok("10.0.0.0/8");
    /* proxy1 (peer) appended proxy2; proxy2 appended the client. */
    check("10.0.0.1", "198.51.100.7", true, "198.51.100.7, 10.0.0.2", NULL, NULL);
    /* The client forged a left part: only the rightmost untrusted counts. */
    check("10.0.0.1", "198.51.100.7", true, "6.6.6.6, 198.51.100.7, 10.0.0.2", NULL, NULL);
    check("10.0.0.1", "198.51.100.7", true, "6.6.6.6,198.51.100.7", NULL, NULL);
    /* Empty or missing header: the peer. */
    check("10.0.0.1", "10.0.0.1", false, NULL, NULL, NULL);
    check("10.0.0.1", "10.0.0.1", false, "", NULL, NULL);
    check("10.0.0.1", "10.0.0.1", false, " , ,\t,", NULL, NULL);
    /* Empty elements are ignored, not walls. */
    check("10.0.0.1", "198.51.100.7", true, "198.51.100.7,, ,10.0.0.2 ,", NULL, NULL);
}

static void test_multiple_headers(void **state)
{
    (void)state;
    parse_ok("10.0.0.0/8");
    check("10.0.0.1", "3.3.3.3", true, "1.1.1.1, 2.2.2.2", "3.3.3.3", NULL);
    check("10.0.0.1", "2.2.2.2", true, "1.1.1.1, 2.2.2.2", "10.0.0.3", NULL);
    check("10.0.0.1", "1.1.1.1", true, "1.1.1.1", "10.0.0.2", "10.0.0.3, 10.0.0.4");
    check("10.0.0.1", "1.1.1.1", true, "1.1.1.1", "", "10.0.0.4");
    check("10.0.0.1", "10.0.0.2", true, "10.0.0.2", "", "");
    /* Garbage on the right of the last line hides earlier lines too. */
    check("10.0.0.1", "10.0.0.1", false, "1.1.1.1", "10.0.0.2", "unknown");
    check("10.0.0.1", "10.0.0.2", true, "1.1.1.1", "junk, 10.0.0.2", "10.0.0.3");
}

static void test_all_trusted(void **state)
{
    (void)state;
    parse_ok("10.0.0.0/8, 192.168.0.0/16");
    /* An internal client behind the proxies: the leftmost entry. */
    check("10.0.0.1", "192.168.1.5", true, "192.168.1.5, 10.0.0.9", NULL, NULL);
    check("10.0.0.1", "10.0.0.9", true, "10.0.0.9", NULL, NULL);
}

static void test_garbage_stops_walk(void **state)
{
    static const char *const junk[] = {
        "unknown",        "_hidden",     "_SEVKISEK",       "example.com", "1.2.3",
        "1.2.3.4.5",      "1.2.3.04",    "fe80::1%eth0",    "\"1.2.3.4\"", "1.2.3.4:",
        "1.2.3.4:123456", "1.2.3.4:80a", "[1.2.3.4]:80",    "[::1",        "[::1]80",
        "[::1]:",         "::1]",        "1.2.3.4 5.6.7.8", "for=1.2.3.4", "1.2.3.4;x",
        "0x7f.1",         "\xff\xfe",    "1.2.3.4/8",
    };
    char line[256];
    size_t i;

    (void)state;
    parse_ok("10.0.0.0/8");
    for (i = 0; i < KEEL_ARRAY_LEN(junk); i++) {
        /* Garbage rightmost: nothing believable, the peer. */
        check("10.0.0.1", "10.0.0.1", false, junk[i], NULL, NULL);
        /* Garbage in the middle: the last valid address, never the left. */
        snprintf(line, sizeof(line), "6.6.6.6, %s, 10.0.0.2", junk[i]);
        check("10.0.0.1", "10.0.0.2", true, line, NULL, NULL);
        snprintf(line, sizeof(line), "6.6.6.6, %s", junk[i]);
        check("10.0.0.1", "10.0.0.7", true, line, "10.0.0.7 ,", NULL);
    }
    /* The walk stops at the first untrusted address before any garbage. */
    check("10.0.0.1", "198.51.100.7", true, "unknown, 198.51.100.7, 10.0.0.2", NULL, NULL);
}

static void test_ipv6_and_mapped(void **state)
{
    struct keel_clientip ip;
    struct sockaddr_storage ss;
    struct keel_str v;

    (void)state;
    parse_ok("::1, fd00::/8, 10.0.0.0/8");
    check("::1", "2001:db8::1", true, "2001:DB8:0:0::1", NULL, NULL);
    check("::1", "2001:db8::1", true, "2001:db8::1, fd00::5", NULL, NULL);
    check("::1", "192.0.2.1", true, "192.0.2.1, fd00::5", NULL, NULL);
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d. */
    check("::ffff:10.1.1.1", "192.0.2.1", true, "192.0.2.1", NULL, NULL);
    check("::ffff:203.0.113.9", "203.0.113.9", false, "192.0.2.1", NULL, NULL);
    /* Mapped addresses in the header fold too, both for trust and output. */
    check("::1", "192.0.2.1", true, "192.0.2.1, ::ffff:10.0.0.5", NULL, NULL);
    check("::1", "192.0.2.1", true, "::ffff:192.0.2.1", NULL, NULL);
    /* With no colon-port form for bare IPv6, a trailing group is address. */
    check("::1", "2001:db8::1:80", true, "2001:db8::1:80", NULL, NULL);

    ss = sa("::ffff:203.0.113.9");
    assert_int_equal(keel_clientip_resolve(&px, &ss, NULL, 0, &ip), KEEL_OK);
    assert_int_equal(ip.family, AF_INET);
    assert_memory_equal(ip.addr, "\xcb\x00\x71\x09\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    assert_false(ip.forwarded);

    ss = sa("::1");
    v = KEEL_STR("[2001:db8::abcd]:443");
    assert_int_equal(keel_clientip_resolve(&px, &ss, &v, 1, &ip), KEEL_OK);
    assert_int_equal(ip.family, AF_INET6);
    assert_string_equal(ip.text, "2001:db8::abcd");
    assert_true(ip.forwarded);
}

static void test_ports_stripped(void **state)
{
    (void)state;
    parse_ok("10.0.0.0/8, fd00::/8");
    check("10.0.0.1", "1.2.3.4", true, "1.2.3.4:5678", NULL, NULL);
    check("10.0.0.1", "1.2.3.4", true, " 1.2.3.4:0 ", NULL, NULL);
    check("10.0.0.1", "2001:db8::1", true, "[2001:db8::1]:80", NULL, NULL);
    check("10.0.0.1", "2001:db8::1", true, "[2001:db8::1]", NULL, NULL);
    check("10.0.0.1", "::1", true, "[::1]:80", NULL, NULL);
    check("10.0.0.1", "1.2.3.4", true, "[::ffff:1.2.3.4]:80", NULL, NULL);
    /* Trusted hops written with ports are still trusted. */
    check("10.0.0.1", "1.2.3.4", true, "1.2.3.4, 10.0.0.2:443, [fd00::9]:8080", NULL, NULL);
}

static void test_unsupported_peer(void **state)
{
    struct sockaddr_storage ss;
    struct keel_clientip ip;

    (void)state;
    parse_ok("10.0.0.0/8");
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    memset(&ip, 0x55, sizeof(ip));
    assert_int_equal(keel_clientip_resolve(&px, &ss, NULL, 0, &ip), KEEL_E_INVALID);
    assert_int_equal(ip.family, 0);
    assert_string_equal(ip.text, "");
}

/* ------------------------------------------------------------------------ */
/* Bounds                                                                   */
/* ------------------------------------------------------------------------ */

/* "6.6.6.6" then n trusted hops, in one line. */
static char *chain(unsigned n)
{
    char *s = malloc(16 + (size_t)n * 16);
    size_t off;
    unsigned i;

    assert_non_null(s);
    off = (size_t)sprintf(s, "6.6.6.6");
    for (i = 0; i < n; i++)
        off += (size_t)sprintf(s + off, ", 10.0.%u.%u", (i / 250) % 250, i % 250 + 1);
    return s;
}

static void test_element_budget(void **state)
{
    char *s;

    (void)state;
    parse_ok("10.0.0.0/8");
    /* 31 hops + the client = 32 elements: reached. */
    s = chain(KEEL_XFF_MAX_ELEMENTS - 1);
    check("10.0.0.1", "6.6.6.6", true, s, NULL, NULL);
    free(s);
    /* One more and the client is out of reach: the leftmost hop examined. */
    s = chain(KEEL_XFF_MAX_ELEMENTS);
    check("10.0.0.1", "10.0.0.1", true, s, NULL, NULL);
    free(s);
    s = chain(100000);
    check("10.0.0.1", "10.0.149.219", true, s, NULL, NULL);
    free(s);
}

static void test_long_headers_bounded(void **state)
{
    size_t big = 1 << 20;
    char *s = malloc(big + 64);
    struct keel_str *lines;
    struct sockaddr_storage ss = sa("10.0.0.1");
    struct keel_clientip ip;
    unsigned i, nlines = 100000;

    (void)state;
    assert_non_null(s);
    parse_ok("10.0.0.0/8");
    /* A megabyte of whitespace is one over-long element: stop, the peer. */
    memcpy(s, "6.6.6.6,", 8);
    memset(s + 8, ' ', big);
    memcpy(s + 8 + big, "10.0.0.2", 9);
    check("10.0.0.1", "10.0.0.1", false, s, NULL, NULL);
    /* A megabyte of commas: 32 empty elements, then the budget is spent. */
    memset(s + 8, ',', big);
    check("10.0.0.1", "10.0.0.2", true, s, NULL, NULL);
    /* One element of garbage far longer than any address. */
    memset(s, 'a', big);
    s[big] = '\0';
    check("10.0.0.1", "10.0.0.1", false, s, NULL, NULL);

    /* Element length: padding up to KEEL_XFF_MAX_ELEMENT_LEN is fine. */
    memset(s, ' ', KEEL_XFF_MAX_ELEMENT_LEN);
    memcpy(s, "1.2.3.4", 7);
    s[KEEL_XFF_MAX_ELEMENT_LEN] = '\0';
    check("10.0.0.1", "1.2.3.4", true, s, NULL, NULL);
    s[KEEL_XFF_MAX_ELEMENT_LEN] = ' ';
    s[KEEL_XFF_MAX_ELEMENT_LEN + 1] = '\0';
    check("10.0.0.1", "10.0.0.1", false, s, NULL, NULL);

    /* Many empty header lines count against the same budget. */
    lines = calloc(nlines, sizeof(*lines));
    assert_non_null(lines);
    lines[0] = KEEL_STR("6.6.6.6");
    for (i = 1; i < nlines; i++)
        lines[i] = KEEL_STR("");
    assert_int_equal(keel_clientip_resolve(&px, &ss, lines, nlines, &ip), KEEL_OK);
    assert_string_equal(ip.text, "10.0.0.1");
    assert_false(ip.forwarded);
    free(lines);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* keel_clientip_key                                                        */
/* ------------------------------------------------------------------------ */

static struct keel_clientip resolved(const char *peer)
{
    struct keel_clientip ip;
    struct sockaddr_storage ss = sa(peer);

    assert_int_equal(keel_clientip_resolve(NULL, &ss, NULL, 0, &ip), KEEL_OK);
    return ip;
}

static void test_key(void **state)
{
    unsigned char k1[KEEL_CLIENTIP_KEY_LEN], k2[KEEL_CLIENTIP_KEY_LEN];
    struct keel_clientip a, b;

    (void)state;
    a = resolved("192.0.2.1");
    b = resolved("::ffff:192.0.2.1");
    assert_int_equal(keel_clientip_key(&a, 64, k1), KEEL_CLIENTIP_KEY_LEN);
    keel_clientip_key(&b, 64, k2);
    assert_memory_equal(k1, k2, sizeof(k1));
    assert_memory_equal(k1, "\x04\xc0\x00\x02\x01\0\0\0\0\0\0\0\0\0\0\0\0", sizeof(k1));
    keel_clientip_key(&a, 0, k2); /* IPv4 is never masked */
    assert_memory_equal(k1, k2, sizeof(k1));

    /* Same /64, different hosts: one key at 64, two at 128. */
    a = resolved("2001:db8:1:2::1");
    b = resolved("2001:db8:1:2:ffff::9");
    keel_clientip_key(&a, 64, k1);
    keel_clientip_key(&b, 64, k2);
    assert_memory_equal(k1, k2, sizeof(k1));
    assert_int_equal(k1[0], 6);
    keel_clientip_key(&a, 128, k1);
    keel_clientip_key(&b, 999, k2);
    assert_memory_not_equal(k1, k2, sizeof(k1));
    /* An IPv6 key never equals an IPv4 key with the same leading bytes. */
    a = resolved("::");
    b = resolved("0.0.0.0");
    keel_clientip_key(&a, 128, k1);
    keel_clientip_key(&b, 128, k2);
    assert_memory_not_equal(k1, k2, sizeof(k1));
    /* Masking at an odd boundary. */
    a = resolved("2001:db8:ffff::");
    keel_clientip_key(&a, 33, k1);
    assert_memory_equal(k1 + 1, "\x20\x01\x0d\xb8\x80\0\0\0\0\0\0\0\0\0\0\0", 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_max_entries),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_cidr_boundaries),
        cmocka_unit_test(test_trusted_edge_cases),
        cmocka_unit_test(test_untrusted_peer_ignores_xff),
        cmocka_unit_test(test_trusted_chain),
        cmocka_unit_test(test_multiple_headers),
        cmocka_unit_test(test_all_trusted),
        cmocka_unit_test(test_garbage_stops_walk),
        cmocka_unit_test(test_ipv6_and_mapped),
        cmocka_unit_test(test_ports_stripped),
        cmocka_unit_test(test_unsupported_peer),
        cmocka_unit_test(test_element_budget),
        cmocka_unit_test(test_long_headers_bounded),
        cmocka_unit_test(test_key),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
