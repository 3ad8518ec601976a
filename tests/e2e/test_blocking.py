"""Blocking work runs off the event loop: with one event-loop thread, a
request doing 500 ms of blocking work does not delay /health/live. Also:
a client that goes away while its blocking work runs does no harm."""

import time
import unittest

import keeltest
from keeltest import ServerCase, build_request


class Blocking(ServerCase):
    THREADS = 1

    def test_sleep_route(self):
        r = self.srv.request("GET", "/debug/sleep?ms=50")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"slept_ms": 50})

    def test_live_not_delayed_by_blocking_work(self):
        # warm up both paths (first-use allocations, thread pool start)
        self.srv.request("GET", "/debug/sleep?ms=1")
        with self.srv.connect() as warm:
            warm.request("GET", "/health/live")
        with self.srv.connect(timeout=5) as slow, self.srv.connect(timeout=5) as fast:
            t_slow = time.monotonic()
            slow.send(build_request("GET", "/debug/sleep?ms=500"))
            time.sleep(0.05)  # the sleep is now running
            t0 = time.monotonic()
            fast.send(build_request("GET", "/health/live"))
            r = fast.read_response()
            live_ms = (time.monotonic() - t0) * 1000
            s = slow.read_response()
            slow_ms = (time.monotonic() - t_slow) * 1000
        self.assertEqual(r.status, 200)
        self.assertEqual(s.status, 200)
        self.assertEqual(s.json(), {"slept_ms": 500})
        self.assertGreaterEqual(slow_ms, 450, "the sleep route did not sleep")
        self.assertLess(live_ms, 250, "/health/live took %.0f ms while a 500 ms blocking request "
                                      "ran: the event loop is blocked" % live_ms)

    def test_several_blocking_requests_and_live(self):
        conns = [self.srv.connect(timeout=10) for _ in range(3)]
        try:
            for c in conns:
                c.send(build_request("GET", "/debug/sleep?ms=400"))
            time.sleep(0.05)
            t0 = time.monotonic()
            self.assertEqual(self.srv.request("GET", "/health/live").status, 200)
            live_ms = (time.monotonic() - t0) * 1000
            for c in conns:
                self.assertEqual(c.read_response().status, 200)
        finally:
            for c in conns:
                c.close()
        self.assertLess(live_ms, 250)

    def test_client_gone_during_blocking_work(self):
        for i in range(10):
            c = self.srv.connect()
            c.send(build_request("GET", "/debug/sleep?ms=%d" % (100 + 20 * i)))
            time.sleep(0.01)
            c.close()
        # pipelined behind a blocking request, then gone
        c = self.srv.connect()
        c.send(build_request("GET", "/debug/sleep?ms=200") * 3)
        c.close()
        time.sleep(0.6)
        self.assertTrue(self.srv.alive())
        for _ in range(5):
            self.assertEqual(self.srv.request("GET", "/health/live").status, 200)

    def test_client_half_closes_during_blocking_work(self):
        # a client may send its request and shut down writing: the answer still comes
        with self.srv.connect() as c:
            c.send(build_request("GET", "/debug/sleep?ms=200"))
            c.shutdown_write()
            r = c.read_response()
            self.assertEqual(r.status, 200)


if __name__ == "__main__":
    keeltest.main()
