"""Timeouts: header (armed once for the whole header block: slowloris),
body idle, keep-alive idle, send (clients that stop reading) with bounded
output buffering. All configured to 1 s; assertions keep wide margins."""

import select
import socket
import threading
import time
import unittest

import keeltest
from keeltest import ServerCase, build_request

T = 1.0  # every timeout below


def assert_408_or_nothing(tc, data):
    if data:
        tc.assertTrue(data.startswith(b"HTTP/1.1 408 ") or data.startswith(b"HTTP/1.0 408 "),
                      "only a 408 may be sent on a timeout, got %r" % data[:200])


class Timeouts(ServerCase):
    ENV = {"KEEL_HEADER_TIMEOUT": "1", "KEEL_BODY_TIMEOUT": "1", "KEEL_KEEPALIVE_TIMEOUT": "1",
           "KEEL_SEND_TIMEOUT": "1"}

    def trickle_until_closed(self, c, data, pause, limit):
        """Sends data one byte per `pause` seconds until the server closes;
        returns (elapsed since the first byte or None, bytes received)."""
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < limit:
            if i < len(data):
                if not c.try_send(data[i:i + 1]):
                    break
                i += 1
            r, _, _ = select.select([c.sock], [], [], pause)
            if r:
                break
        else:
            return None, b""
        got, closed = c.read_until_close(timeout=3)
        return (time.monotonic() - t0 if closed else None), got

    def test_slowloris_closed_after_header_timeout(self):
        req = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        with self.srv.connect() as c:
            elapsed, data = self.trickle_until_closed(c, req, 0.3, limit=8)
        self.assertIsNotNone(elapsed, "slowloris connection still open after 8 s: the header "
                                      "timeout must not be re-armed on every byte")
        self.assertGreater(elapsed, 0.8 * T, "closed too early")
        self.assertLess(elapsed, 3.0 * T, "closed too late")
        assert_408_or_nothing(self, data)

    def test_partial_request_line(self):
        with self.srv.connect() as c:
            t0 = time.monotonic()
            c.send(b"GET /heal")
            data, closed = c.read_until_close(timeout=6)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "partial request line: connection never closed")
        self.assertGreater(elapsed, 0.8 * T)
        self.assertLess(elapsed, 3.0 * T)
        assert_408_or_nothing(self, data)

    def test_silent_connection_closed(self):
        with self.srv.connect() as c:
            t0 = time.monotonic()
            data, closed = c.read_until_close(timeout=6)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a connection that never sends stays open")
        self.assertLess(elapsed, 3.0 * T)
        assert_408_or_nothing(self, data)

    def test_body_idle_timeout(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 100\r\n\r\n" + b'{"a":"0123')
            t0 = time.monotonic()
            data, closed = c.read_until_close(timeout=6)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "stalled body: connection never closed")
        self.assertGreater(elapsed, 0.8 * T)
        self.assertLess(elapsed, 3.0 * T)
        assert_408_or_nothing(self, data)

    def test_body_idle_timeout_chunked(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n")
            t0 = time.monotonic()
            data, closed = c.read_until_close(timeout=6)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed)
        self.assertLess(elapsed, 3.0 * T)
        assert_408_or_nothing(self, data)

    def test_slow_but_steady_body_is_fine(self):
        # an idle timeout: progress every 0.15 s keeps the body alive for ~1.7 s
        body = b'{"trickle":"abcdefgh"}'
        with self.srv.connect(timeout=10) as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body))
            for i in range(0, len(body), 2):
                time.sleep(0.15)
                c.send(body[i:i + 2])
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"trickle": "abcdefgh"})

    def test_keepalive_idle_closed(self):
        with self.srv.connect() as c:
            self.assertEqual(c.request("GET", "/health/live").status, 200)
            t0 = time.monotonic()
            data, closed = c.read_until_close(timeout=6)
            elapsed = time.monotonic() - t0
        self.assertTrue(closed, "idle keep-alive connection never closed")
        self.assertEqual(data, b"", "no response is due on an idle keep-alive connection")
        self.assertGreater(elapsed, 0.7 * T)
        self.assertLess(elapsed, 3.0 * T)

    def test_keepalive_rearmed_by_each_request(self):
        with self.srv.connect() as c:
            for i in range(5):
                self.assertEqual(c.request("GET", "/health/live").status, 200)
                time.sleep(0.6 * T)
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_handler_longer_than_timeouts(self):
        # no read timeout runs while a request is being processed
        with self.srv.connect() as c:
            r = c.request("GET", "/debug/sleep?ms=2500", timeout=8)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["slept_ms"], 2500)

    def test_slow_reader_making_progress(self):
        # the send timeout is about progress: a reader that keeps reading,
        # slowly, for much longer than the timeout gets its whole response
        # (8 MB: more than the kernel buffers hold, so the server must wait)
        n = 8000000
        with self.srv.connect(rcvbuf=8192, timeout=15) as c:
            c.send(build_request("GET", "/debug/bytes?n=%d" % n))
            t0 = time.monotonic()
            data = bytearray()
            done = False
            while not done and time.monotonic() - t0 < 20:
                time.sleep(0.1)
                want = len(data) + 256 * 1024
                try:
                    c.sock.settimeout(3)
                    while len(data) < want:
                        chunk = c.sock.recv(65536)
                        if not chunk:
                            done = True
                            break
                        data += chunk
                except (socket.timeout, ConnectionResetError):
                    break
                i = data.find(b"\r\n\r\n")
                if i >= 0 and len(data) - i - 4 >= n:
                    done = True
            elapsed = time.monotonic() - t0
        i = data.find(b"\r\n\r\n")
        self.assertGreater(i, 0, bytes(data[:200]))
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), bytes(data[:100]))
        self.assertGreaterEqual(len(data) - i - 4, n, "response cut short after %.1fs" % elapsed)
        self.assertGreater(elapsed, 1.5 * T, "test did not read slowly enough to matter")

    def test_send_timeout_bounded_buffering(self):
        n = 50000000
        base = self.srv.rss_kb()
        others_ok = []
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], self.srv.rss_kb())
                except OSError:
                    pass
                time.sleep(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        states = []
        try:
            stalled = self.srv.connect(rcvbuf=4096)
            cport = stalled.sock.getsockname()[1]
            stalled.send(build_request("GET", "/debug/bytes?n=%d" % n))
            # never read; watch the server's side of the connection in the
            # kernel, and check other clients are served meanwhile
            t0 = time.monotonic()
            closed_at = None
            while time.monotonic() - t0 < 6 * T:
                st = keeltest.tcp_state(self.srv.port, cport)
                states.append((round(time.monotonic() - t0, 2), st))
                if st != "ESTABLISHED" and closed_at is None:
                    closed_at = time.monotonic() - t0
                others_ok.append(self.srv.request("GET", "/health/live", timeout=3).status)
                if closed_at is not None and time.monotonic() - t0 > closed_at + 0.5:
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            th.join()
        data, closed = stalled.read_until_close(timeout=10, limit=n + 100000)
        stalled.close()
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), data[:100])
        self.assertTrue(others_ok and all(s == 200 for s in others_ok), others_ok)
        self.assertIsNotNone(closed_at, "the server kept a connection whose client stopped reading "
                                        "for 6 s (server-side socket states: %r)" % states[-3:])
        self.assertGreater(closed_at, 0.5 * T, "the server dropped the response at once instead of "
                                               "streaming it (%d body bytes sent): %r" % (len(body), states[:5]))
        self.assertLess(closed_at, 4.0 * T)
        self.assertTrue(closed)
        self.assertGreater(len(body), 0)
        self.assertLess(len(body), n, "the whole body was delivered: no send timeout")
        growth_mb = (peak[0] - base) / 1024.0
        self.assertLess(growth_mb, 20, "RSS grew by %.1f MB while a client stalled on a %d MB "
                                       "response: output is not bounded" % (growth_mb, n // 1000000))
        self.assertEqual(self.srv.request("GET", "/health/live").status, 200)


if __name__ == "__main__":
    keeltest.main()
