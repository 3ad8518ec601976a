"""Graceful shutdown on SIGTERM/SIGINT under load: /health/ready turns 503,
listeners close, in-flight requests finish with Connection: close, idle
keep-alive connections are closed, zero failed requests, exit 0 within
KEEL_SHUTDOWN_TIMEOUT, "draining" and "exit" log lines."""

import signal
import socket
import threading
import time
import unittest

import keeltest
from keeltest import Server, build_request, ConnectionClosed

SHUTDOWN_TIMEOUT = 10


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.ok_after_signal = 0
        self.retryable = 0
        self.failures = []
        self.non200 = []

    def add(self, field, value=1):
        with self.lock:
            if isinstance(getattr(self, field), list):
                getattr(self, field).append(value)
            else:
                setattr(self, field, getattr(self, field) + value)


class GracefulShutdown(unittest.TestCase):
    def start(self, **env):
        base = {"KEEL_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT), "KEEL_KEEPALIVE_TIMEOUT": "30"}
        base.update(env)
        srv = Server(env=base, threads=2)
        srv.start()
        self.addCleanup(srv.cleanup)
        srv.wait_ready()
        return srv

    def test_shutdown_under_load(self):
        srv = self.start()
        stats = Stats()
        signalled = threading.Event()
        sig_time = [None]
        stop_all = threading.Event()

        def worker(k):
            c = srv.connect(timeout=5)
            i = 0
            try:
                while not stop_all.is_set():
                    i += 1
                    rid = "load-%d-%d" % (k, i)
                    before = not signalled.is_set()
                    if not c.try_send(build_request("GET", "/health/live", {"X-Request-ID": rid})):
                        stats.add("retryable")   # closed before it could read our request
                        return
                    try:
                        r = c.read_response(timeout=5)
                    except ConnectionClosed as e:
                        if e.partial:
                            stats.add("failures", "%s: partial response %r" % (rid, e.partial[:100]))
                        else:
                            stats.add("retryable")
                        return
                    except (socket.timeout, OSError) as e:
                        stats.add("failures", "%s: %r" % (rid, e))
                        return
                    if r.status == 200 and r.header("x-request-id") == rid:
                        stats.add("ok")
                        if not before:
                            stats.add("ok_after_signal")
                    elif r.status == 503 and not before:
                        stats.add("non200", (rid, r.status))
                    else:
                        stats.add("failures", "%s: %r %r" % (rid, r.status, r.header("x-request-id")))
                    if r.closes:
                        if not signalled.is_set():
                            stats.add("failures", "%s: Connection: close before the signal" % rid)
                            return
                        try:
                            if not c.wait_closed(3):
                                stats.add("failures", "%s: Connection: close but not closed" % rid)
                        except AssertionError as e:
                            stats.add("failures", "%s: %s" % (rid, e))
                        return
            finally:
                c.close()

        ready_after = []

        def ready_poller():
            c = srv.connect(timeout=5)
            try:
                while not stop_all.is_set():
                    sent = time.monotonic()
                    if not c.try_send(build_request("GET", "/health/ready")):
                        return
                    try:
                        r = c.read_response(timeout=5)
                    except (ConnectionClosed, OSError):
                        return
                    if sig_time[0] is not None and sent > sig_time[0] + 0.2:
                        ready_after.append(r.status)
                    if r.closes:
                        return
                    time.sleep(0.01)
            finally:
                c.close()

        workers = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(4)]
        poller = threading.Thread(target=ready_poller, daemon=True)
        idle = srv.connect(timeout=5)
        self.assertEqual(idle.request("GET", "/health/live").status, 200)
        slow = srv.connect(timeout=10)
        for t in workers:
            t.start()
        poller.start()
        time.sleep(0.3)
        slow.send(build_request("GET", "/debug/sleep?ms=1000", {"X-Request-ID": "inflight-sleep"}))
        time.sleep(0.3)
        self.assertTrue(srv.alive())
        ok_before = stats.ok
        self.assertGreater(ok_before, 0, "load generator got no responses before the signal")

        # a request in progress (headers not finished) when the signal comes:
        # if it is answered at all, /health/ready must say 503 by then
        partial = srv.connect(timeout=5)
        partial.send(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n")

        sig_time[0] = time.monotonic()
        signalled.set()
        srv.send_signal(signal.SIGTERM)
        time.sleep(0.15)
        partial.try_send(b"X-Late: 1\r\n\r\n")
        try:
            pr = partial.read_response(timeout=5)
            ready_after.append(pr.status)
        except (ConnectionClosed, OSError):
            pr = None
        partial.close()

        # idle keep-alive connections are closed promptly
        idle_closed = idle.wait_closed(3)
        idle_elapsed = time.monotonic() - sig_time[0]
        idle.close()

        # new connections are not served any more
        time.sleep(0.2)
        try:
            with srv.connect(timeout=2) as late:
                late.try_send(build_request("GET", "/health/live", {"X-Request-ID": "late-conn"}))
                data, _ = late.read_until_close(2)
                self.assertFalse(data.startswith(b"HTTP/1.1 200"), "new connection served while draining")
        except (ConnectionRefusedError, ConnectionResetError):
            pass

        # the in-flight blocking request completes, with Connection: close
        try:
            r = slow.read_response(timeout=5)
        except ConnectionClosed as e:
            self.fail("in-flight request cut off by shutdown (partial %r)" % e.partial[:100])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"slept_ms": 1000})
        self.assertIn("close", r.tokens("connection"))
        self.assertTrue(slow.wait_closed(3))
        slow.close()

        rc = srv.wait(SHUTDOWN_TIMEOUT + 2)
        exit_elapsed = time.monotonic() - sig_time[0]
        stop_all.set()
        for t in workers:
            t.join(10)
        poller.join(10)

        self.assertIsNotNone(rc, "did not exit within KEEL_SHUTDOWN_TIMEOUT")
        self.assertEqual(rc, 0)
        self.assertLess(exit_elapsed, SHUTDOWN_TIMEOUT)
        self.assertTrue(idle_closed, "idle keep-alive connection not closed on SIGTERM")
        self.assertLess(idle_elapsed, 2.0, "idle keep-alive connection closed only after %.1fs" % idle_elapsed)
        self.assertEqual(stats.failures, [], "failed requests during shutdown")
        self.assertTrue(all(s == 503 for s in ready_after),
                        "/health/ready while draining: %r" % ready_after)
        msgs = [rec.get("msg") for rec in srv.logs()]
        self.assertIn("draining", msgs)
        self.assertIn("exit", msgs)
        self.assertLess(msgs.index("draining"), msgs.index("exit"))
        self.assertEqual(srv.request_logs("late-conn"), [])
        self.assertIsNone(keeltest.sanitizer_report("\n".join(srv.err_lines)))
        print("shutdown: %d ok (%d after SIGTERM), %d retryable, %d 503 while draining, "
              "ready-after-signal %r" % (stats.ok, stats.ok_after_signal, stats.retryable,
                                         len(stats.non200), ready_after[:5]))

    def test_sigint(self):
        srv = self.start()
        self.assertEqual(srv.request("GET", "/health/live").status, 200)
        rc = srv.stop(sig=signal.SIGINT, timeout=SHUTDOWN_TIMEOUT)
        self.assertEqual(rc, 0)
        self.assertIn("exit", [rec.get("msg") for rec in srv.logs()])

    def test_idle_connections_do_not_delay_exit(self):
        srv = self.start(KEEL_SHUTDOWN_TIMEOUT="30", KEEL_KEEPALIVE_TIMEOUT="60")
        conns = [srv.connect() for _ in range(5)]
        try:
            for c in conns[:3]:
                self.assertEqual(c.request("GET", "/health/live").status, 200)
            # conns[3:] never sent a byte
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            rc = srv.wait(10)
            elapsed = time.monotonic() - t0
            self.assertEqual(rc, 0)
            self.assertLess(elapsed, 3.0, "idle connections held the shutdown for %.1fs" % elapsed)
            for c in conns:
                self.assertFalse(c.is_open(2), "connection still open after exit")
        finally:
            for c in conns:
                c.close()

    def test_shutdown_timeout_bounds_exit(self):
        srv = self.start(KEEL_SHUTDOWN_TIMEOUT="1")
        c = srv.connect(timeout=10)
        try:
            c.send(build_request("GET", "/debug/sleep?ms=6000"))
            time.sleep(0.2)
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            rc = srv.wait(8)
            elapsed = time.monotonic() - t0
            self.assertIsNotNone(rc, "still running 8 s after SIGTERM with KEEL_SHUTDOWN_TIMEOUT=1")
            self.assertLess(elapsed, 3.0, "exit took %.1fs with KEEL_SHUTDOWN_TIMEOUT=1" % elapsed)
        finally:
            c.close()

    def test_drain_then_exit_logs(self):
        srv = self.start()
        srv.request("GET", "/health/live")
        self.assertEqual(srv.stop(), 0)
        msgs = [rec.get("msg") for rec in srv.logs()]
        for m in ("config", "listening", "draining", "exit"):
            self.assertIn(m, msgs)


if __name__ == "__main__":
    keeltest.main()
