"""KEEL_MAX_CONNECTIONS: beyond the limit new connections are refused
cleanly and promptly, existing ones keep working, capacity comes back when
connections close. Memory per idle connection is small."""

import resource
import socket
import time
import unittest

import keeltest
from keeltest import ServerCase, Server, build_request

MAX = 8


class MaxConnections(ServerCase):
    THREADS = 2
    ENV = {"KEEL_MAX_CONNECTIONS": str(MAX), "KEEL_KEEPALIVE_TIMEOUT": "60",
           "KEEL_HEADER_TIMEOUT": "60"}

    def refused(self, c, timeout=3.0):
        """True when the server closes c (optionally after a 503) without
        serving the request sent on it."""
        c.try_send(build_request("GET", "/health/live", {"X-Request-ID": "over-limit"}))
        data, closed = c.read_until_close(timeout=timeout)
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 503 "), "over-limit connection got %r" % data[:200])
        return closed

    def open_full(self):
        conns = []
        for i in range(MAX):
            c = self.srv.connect()
            r = c.request("GET", "/health/live", {"X-Request-ID": "hold-%d" % i})
            self.assertEqual(r.status, 200)
            conns.append(c)
        return conns

    def test_limit(self):
        conns = self.open_full()
        try:
            try:
                extra = self.srv.connect(timeout=3)
            except (ConnectionRefusedError, socket.timeout):
                extra = None
            if extra is not None:
                with extra:
                    self.assertTrue(self.refused(extra),
                                    "connection %d was neither served nor closed within 3 s" % (MAX + 1))
            # every existing connection still works
            for i, c in enumerate(conns):
                r = c.request("GET", "/health/live", {"X-Request-ID": "again-%d" % i})
                self.assertEqual((r.status, r.header("x-request-id")), (200, "again-%d" % i))
            # free two slots: new connections are accepted again
            conns.pop().close()
            conns.pop().close()
            deadline = time.monotonic() + 3
            ok = False
            while time.monotonic() < deadline and not ok:
                try:
                    with self.srv.connect(timeout=2) as c:
                        r = c.request("GET", "/health/live", timeout=2)
                        ok = r.status == 200
                except (OSError, keeltest.ConnectionClosed):
                    time.sleep(0.1)
            self.assertTrue(ok, "no new connection accepted after two closed")
        finally:
            for c in conns:
                c.close()

    def test_many_refused_then_recovers(self):
        conns = self.open_full()
        try:
            for i in range(20):
                try:
                    extra = self.srv.connect(timeout=3)
                except (ConnectionRefusedError, socket.timeout):
                    continue
                with extra:
                    self.assertTrue(self.refused(extra))
        finally:
            for c in conns:
                c.close()
        time.sleep(0.3)
        for i in range(MAX):
            self.assertEqual(self.srv.request("GET", "/health/live").status, 200)
        self.assertEqual(self.srv.request_logs("over-limit"), [])


class IdleConnectionMemory(unittest.TestCase):
    N = 2000

    def test_idle_keepalive_memory(self):
        # both ends need a descriptor per connection; the server inherits our limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2 * self.N + 200
        if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        elif soft < want:
            self.skipTest("RLIMIT_NOFILE hard limit %d is too low for %d connections" % (hard, self.N))
        env = {"KEEL_MAX_CONNECTIONS": "10000", "KEEL_KEEPALIVE_TIMEOUT": "60"}
        with Server(env=env, threads=2) as srv:
            # warm up allocator and lazily created state
            for _ in range(50):
                srv.request("GET", "/health/live")
            time.sleep(0.2)
            base = srv.rss_kb()
            conns = []
            try:
                req = build_request("GET", "/health/live")
                for i in range(self.N):
                    c = srv.connect(timeout=10)
                    c.send(req)
                    conns.append(c)
                for c in conns:
                    self.assertEqual(c.read_response().status, 200)
                time.sleep(0.2)
                grown_kb = srv.rss_kb() - base
                self.assertTrue(srv.alive())
                # the bar: 10,000 idle connections add <= 40 MB (4 KB each);
                # 8 KB each leaves room for allocator slack
                self.assertLess(grown_kb / self.N, 8.0,
                                "%.1f KB per idle keep-alive connection" % (grown_kb / self.N))
                self.assertEqual(conns[0].request("GET", "/health/live").status, 200)
            finally:
                for c in conns:
                    c.close()


if __name__ == "__main__":
    keeltest.main()
