"""Rate limits end to end (issue 4; SPEC sections 2 and 3): the per-IP limit
of src/mw/ratelimit.c through the real server.

  IpLimit          KEEL_RATE_LIMIT_IP=5/min: five answers counting down
                   RateLimit r=4..0, then 429 rate-limited with Retry-After,
                   RateLimit-Policy and RateLimit; unmatched paths count too;
                   probes and /metrics are never limited; the metrics.
  ForwardedFor     X-Forwarded-For is ignored unless the peer is a trusted
                   proxy (KEEL_TRUSTED_PROXIES); when it is, each client in
                   the header has its own budget, keyed on the rightmost
                   untrusted entry, IPv6 by /64.
  SharedRedis      two instances on one KEEL_REDIS_URL share one budget; with
                   Redis stopped the limits go on in-process (no 5xx) and
                   keel_ratelimit_fallback_total grows; after Redis returns
                   the decisions go back to it. Skipped without redis-server.

The auth scope (KEEL_ROUTE_AUTH_LIMIT) and the per-user limit need the
/auth routes and real logins, and are tested with them.
"""

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import keeltest  # noqa: E402
from keeltest import Server  # noqa: E402
import servers  # noqa: E402
from test_storage import metrics_text, metric_value  # noqa: E402

STATE_RE = re.compile(r'^"([a-z]+)";r=(\d+);t=(\d+)$')


def state(resp):
    """(policy, r, t) of the RateLimit header, or None when there is none."""
    v = resp.header("ratelimit")
    if v is None:
        return None
    m = STATE_RE.match(v)
    assert m, "malformed RateLimit %r" % v
    return m.group(1), int(m.group(2)), int(m.group(3))


def limited_env(rate, **extra):
    env = {"KEEL_RATE_LIMIT_IP": rate}
    env.update(extra)
    return env


def echo(srv_or_conn, headers=None):
    hs = {"Content-Type": "application/json"}
    hs.update(headers or {})
    return srv_or_conn.request("POST", "/debug/echo-small", hs, b'{"a":1}')


def get(srv, path, xff=None):
    """GET path; xff: one X-Forwarded-For value, or a list of header lines."""
    if xff is None:
        headers = None
    elif isinstance(xff, str):
        headers = [("X-Forwarded-For", xff)]
    else:
        headers = [("X-Forwarded-For", v) for v in xff]
    return srv.request("GET", path, headers)


# --------------------------------------------------------------------------

class IpLimit(unittest.TestCase):

    def check_denied(self, resp, policy="ip", q=5, w=60):
        keeltest.check_problem(self, resp, 429, "rate-limited")
        ra = resp.header("retry-after")
        self.assertIsNotNone(ra, resp.headers)
        self.assertRegex(ra, r"^\d+$")
        self.assertGreaterEqual(int(ra), 1)
        self.assertLessEqual(int(ra), math.ceil(w / q), "Retry-After beyond one emission interval")
        self.assertEqual(resp.header("ratelimit-policy"), '"%s";q=%d;w=%d' % (policy, q, w))
        st = state(resp)
        self.assertIsNotNone(st, resp.headers)
        self.assertEqual(st[:2], (policy, 0))
        self.assertTrue(1 <= st[2] <= w, st)
        self.assertFalse(resp.closes, "a 429 need not close the connection")

    def test_sixth_request_denied(self):
        with Server(env=limited_env("5/min")) as srv:
            seen = []
            with srv.connect() as c:
                # a keep-alive connection, a fresh one, routes and 404s alike
                for i in range(5):
                    r = echo(c) if i % 2 == 0 else get(srv, "/no/such/path")
                    self.assertEqual(r.status, 200 if i % 2 == 0 else 404, r)
                    self.assertEqual(r.header("ratelimit-policy"), '"ip";q=5;w=60', r.headers)
                    seen.append(state(r))
                self.assertEqual([s[:2] for s in seen], [("ip", n) for n in (4, 3, 2, 1, 0)], seen)
                for k, s in enumerate(seen, 1):  # T = 12 s: the budget refills 12 s per request
                    self.assertTrue(12 * k - 2 <= s[2] <= 12 * k, seen)
                r = echo(c)
                self.check_denied(r)
                # the same connection goes on being served (and limited)
                self.check_denied(echo(c))
            self.check_denied(get(srv, "/no/such/path"))
            self.check_denied(srv.request("GET", "/debug/items/not-a-uuid"))

            # probes and metrics are never limited and carry no RateLimit fields
            for _ in range(10):
                for path in ("/health/live", "/health/ready", "/metrics"):
                    r = get(srv, path)
                    self.assertEqual(r.status, 200, (path, r))
                    self.assertIsNone(r.header("ratelimit"), (path, r.headers))
                    self.assertIsNone(r.header("ratelimit-policy"), (path, r.headers))

            text = metrics_text(srv)
            self.assertEqual(metric_value(text, "keel_ratelimit_decisions_total",
                                          {"scope": "ip", "result": "allowed"}), 5)
            self.assertEqual(metric_value(text, "keel_ratelimit_decisions_total",
                                          {"scope": "ip", "result": "denied"}), 4)
            self.assertEqual(metric_value(text, "keel_rate_limited_total", {"scope": "ip"}), 4)
            self.assertEqual(metric_value(text, "keel_ratelimit_fallback_total") or 0, 0)
            promtool = shutil.which("promtool")
            if promtool:
                p = subprocess.run([promtool, "check", "metrics"], input=text,
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

            recs = [x for x in srv.request_logs() if x.get("status") == 429]
            self.assertEqual(len(recs), 4, recs)

    def test_budget_refills(self):
        # 2/s: T = 500 ms; a denied client is allowed again once
        # Retry-After (0.5 s, rounded up to 1) has passed
        with Server(env=limited_env("2/s")) as srv:
            self.assertEqual([state(get(srv, "/x"))[1] for _ in range(2)], [1, 0])
            r = get(srv, "/x")
            self.check_denied(r, q=2, w=1)
            time.sleep(int(r.header("retry-after")) + 0.05)
            r = get(srv, "/x")
            self.assertEqual(r.status, 404, r)
            self.assertIn(state(r)[:2], (("ip", 0), ("ip", 1)))

    def test_default_limits_do_not_throttle_the_suites(self):
        # keeltest's defaults lift every limit; the headers are still sent
        with Server() as srv:
            for _ in range(50):
                r = get(srv, "/x")
                self.assertEqual(r.status, 404, r)
            self.assertEqual(r.header("ratelimit-policy"), '"ip";q=1000000000;w=1')
            self.assertGreater(state(r)[1], 1000)


# --------------------------------------------------------------------------

class ForwardedFor(unittest.TestCase):

    def test_ignored_without_trusted_proxies(self):
        with Server(env=limited_env("3/min")) as srv:
            rs = [get(srv, "/x", "203.0.113.%d" % i) for i in range(1, 4)]
            self.assertEqual([state(r)[1] for r in rs], [2, 1, 0])
            # a new forged address does not buy a new budget
            r = get(srv, "/x", "198.51.100.200")
            keeltest.check_problem(self, r, 429, "rate-limited")
            self.assertEqual(get(srv, "/x").status, 429)

    def test_honoured_from_trusted_proxy(self):
        env = limited_env("3/min", KEEL_TRUSTED_PROXIES="127.0.0.1")
        with Server(env=env) as srv:
            def remaining(xff):
                r = get(srv, "/x", xff)
                self.assertIn(r.status, (404, 429), r)
                return state(r)[1] if r.status == 404 else "429"

            a = "203.0.113.1"
            self.assertEqual([remaining(a) for _ in range(4)], [2, 1, 0, "429"])
            # another client behind the proxy: its own budget
            self.assertEqual(remaining("203.0.113.2"), 2)
            # the rightmost untrusted entry counts, whatever is left of it
            self.assertEqual(remaining("198.51.100.9, " + a), "429")
            self.assertEqual(remaining(a + ", 198.51.100.7"), 2)
            # a trusted hop on the right is stepped over
            self.assertEqual(remaining(a + ", 127.0.0.1"), "429")
            # several header lines form one list
            self.assertEqual(remaining(["198.51.100.50", a]), "429")
            self.assertEqual(remaining([a, "198.51.100.51"]), 2)
            # no header: the proxy itself is the client
            self.assertEqual(remaining(None), 2)
            # garbage stops the walk: the peer again, never a new budget
            self.assertEqual(remaining("unknown"), 1)
            self.assertEqual(remaining("1.2.3.4, _hidden"), 0)
            # IPv6 clients are limited per /64
            self.assertEqual(remaining("2001:db8:1:2::1"), 2)
            self.assertEqual(remaining("2001:db8:1:2::ffff"), 1)
            self.assertEqual(remaining("[2001:db8:1:2:aaaa::1]:443"), 0)
            self.assertEqual(remaining("2001:db8:1:2::2"), "429")
            self.assertEqual(remaining("2001:db8:1:3::1"), 2)
            # an IPv4-mapped address is the IPv4 client
            self.assertEqual(remaining("::ffff:203.0.113.2"), 1)


# --------------------------------------------------------------------------

def redis_cmd(port, *args, timeout=5):
    """One command over RESP on a fresh connection; returns the decoded
    reply (str, int, list, None), raising on an error reply."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)


def _resp(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("short RESP reply %r" % line)
    t, v = line[:1], line[1:-2]
    if t == b"+":
        return v.decode()
    if t == b"-":
        raise RuntimeError(v.decode())
    if t == b":":
        return int(v)
    if t == b"$":
        n = int(v)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if t == b"*":
        n = int(v)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise OSError("unknown RESP type %r" % line)


@unittest.skipUnless(servers.have_redis(), "redis-server not found")
class SharedRedis(unittest.TestCase):

    def test_two_instances_share_one_budget(self):
        with servers.Redis() as rd:
            env = limited_env("6/min", KEEL_REDIS_URL=rd.url)
            with Server(env=env) as a, Server(env=env) as b:
                got = []
                for srv in (a, a, a, b, b, b):
                    r = get(srv, "/x")
                    self.assertEqual(r.status, 404, r)
                    got.append(state(r)[1])
                self.assertEqual(got, [5, 4, 3, 2, 1, 0])
                for srv in (a, b):
                    r = get(srv, "/x")
                    keeltest.check_problem(self, r, 429, "rate-limited")
                    self.assertEqual(r.header("ratelimit-policy"), '"ip";q=6;w=60')
                    self.assertEqual(state(r)[:2], ("ip", 0))
                    self.assertTrue(1 <= int(r.header("retry-after")) <= 10, r.headers)
                # the decisions were Redis's: one key, expiring with the window
                self.assertEqual(redis_cmd(rd.port, "KEYS", "keel:rl:*"), ["keel:rl:ip:127.0.0.1"])
                pttl = redis_cmd(rd.port, "PTTL", "keel:rl:ip:127.0.0.1")
                self.assertTrue(50000 < pttl <= 60000, pttl)
                # a flushed script cache is reloaded with EVAL, not a fallback
                self.assertEqual(redis_cmd(rd.port, "SCRIPT", "FLUSH"), "OK")
                self.assertEqual(get(a, "/x").status, 429)
                for srv in (a, b):
                    text = metrics_text(srv)
                    self.assertEqual(metric_value(text, "keel_ratelimit_fallback_total") or 0, 0)
                    self.assertGreaterEqual(metric_value(text, "keel_ratelimit_decisions_total",
                                                         {"scope": "ip", "result": "denied"}), 1)

    def test_ipv6_key_is_the_slash_64(self):
        with servers.Redis() as rd:
            env = limited_env("6/min", KEEL_REDIS_URL=rd.url, KEEL_TRUSTED_PROXIES="127.0.0.1")
            with Server(env=env) as srv:
                self.assertEqual(state(get(srv, "/x", "2001:db8:1:2:3:4:5:6"))[1], 5)
                self.assertEqual(state(get(srv, "/x", "2001:db8:1:2::9"))[1], 4)
                self.assertEqual(sorted(redis_cmd(rd.port, "KEYS", "keel:rl:*")),
                                 ["keel:rl:ip:2001:db8:1:2::/64"])

    def test_redis_down_falls_back_to_local_limits(self):
        with servers.Redis() as rd:
            env = limited_env("5/min", KEEL_REDIS_URL=rd.url, KEEL_BREAKER_OPEN="1",
                              KEEL_BREAKER_MIN_CALLS="5")
            with Server(env=env) as srv:
                self.assertEqual([state(get(srv, "/x"))[1] for _ in range(2)], [4, 3])
                self.assertEqual(len(redis_cmd(rd.port, "KEYS", "keel:rl:*")), 1)
                before = metric_value(metrics_text(srv), "keel_ratelimit_fallback_total") or 0
                rd.stop()

                # the in-process store has recorded nothing yet: a whole
                # budget, then denials - limited, never unlimited, never 5xx
                statuses, left = [], []
                for _ in range(8):
                    t = time.monotonic()
                    r = get(srv, "/x")
                    self.assertLess(time.monotonic() - t, 3, "a request waited on a dead Redis")
                    statuses.append(r.status)
                    self.assertIsNotNone(state(r), r.headers)
                    left.append(state(r)[1])
                self.assertEqual(statuses, [404] * 5 + [429] * 3, (statuses, left))
                self.assertEqual(left, [4, 3, 2, 1, 0, 0, 0, 0])
                self.assertEqual(get(srv, "/health/live").status, 200)
                after = metric_value(metrics_text(srv), "keel_ratelimit_fallback_total") or 0
                self.assertGreaterEqual(after - before, 8, (before, after))

                # Redis back (empty): decisions return to it once the
                # breaker lets them through
                rd.start()
                deadline = time.monotonic() + 15
                keys = []
                while time.monotonic() < deadline and not keys:
                    r = get(srv, "/x")
                    self.assertIn(r.status, (404, 429), r)
                    keys = redis_cmd(rd.port, "KEYS", "keel:rl:*")
                    time.sleep(0.1)
                self.assertEqual(keys, ["keel:rl:ip:127.0.0.1"], "decisions never returned to Redis")


if __name__ == "__main__":
    servers.install_sigterm_cleanup()
    keeltest.main()
