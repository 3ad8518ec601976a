"""Request bodies and the access phases: a route that streams its body to a
sink (KEEL_BODY_STREAM) gets every byte in order while memory stays flat
and the sink's backpressure pauses reading; the access phases (rate
limits, authentication) run when the head is in, so a refused
upload-sized request is answered without its body being read and without
a 100 Continue; a body cut half-way leaves the server healthy."""

import hashlib
import socket
import time
import unittest

import keeltest
from keeltest import Server, ServerCase, check_problem

MB = 1024 * 1024


def payload(n):
    """n bytes that are not all alike (a pattern a lost or doubled chunk breaks)."""
    block = bytes(range(256)) * 64 + b"keel"
    out = bytearray()
    i = 0
    while len(out) < n:
        out += block[i % 251:] + block[:i % 251]
        i += 1
    return bytes(out[:n])


def put_head(path, length, extra=b""):
    return (b"PUT " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n" % length + extra + b"\r\n")


def send_all(conn, data, chunk=256 * 1024):
    for i in range(0, len(data), chunk):
        conn.send(data[i:i + chunk], timeout=30)


class Streamed(ServerCase):
    THREADS = 1

    def upload(self, data):
        with self.srv.connect(timeout=30) as c:
            c.send(put_head("/debug/sink", len(data)))
            send_all(c, data)
            return c.read_response(method="PUT", timeout=30)

    def test_every_byte_in_order(self):
        data = payload(3 * MB + 12345)  # crosses the sink's busy points three times
        r = self.upload(data)
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body["bytes"], len(data))
        self.assertEqual(body["sha256"], hashlib.sha256(data).hexdigest())

    def test_20mb_memory_stays_flat(self):
        self.assertEqual(self.upload(payload(2 * MB)).status, 200)  # warm up the allocator
        before = self.srv.rss_kb()
        data = payload(20 * MB)
        r = self.upload(data)
        after = self.srv.rss_kb()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["sha256"], hashlib.sha256(data).hexdigest())
        self.assertLessEqual(after - before, 2048,
                             "RSS grew by %d KiB for a 20 MB streamed body" % (after - before))

    def test_chunked(self):
        data = payload(2 * MB + 7)
        framed = b""
        for i in range(0, len(data), 100000):
            part = data[i:i + 100000]
            framed += b"%x\r\n" % len(part) + part + b"\r\n"
        framed += b"0\r\n\r\n"
        with self.srv.connect(timeout=30) as c:
            c.send(b"PUT /debug/sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            send_all(c, framed)
            r = c.read_response(method="PUT", timeout=30)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["bytes"], len(data))
        self.assertEqual(r.json()["sha256"], hashlib.sha256(data).hexdigest())

    def test_expect_continue_then_body(self):
        data = payload(MB + 1)
        with self.srv.connect(timeout=30) as c:
            c.send(put_head("/debug/sink", len(data), b"Expect: 100-continue\r\n"))
            interim = c.read_response(method="PUT", timeout=5)
            self.assertEqual(interim.status, 100, interim)
            send_all(c, data)
            r = c.read_response(method="PUT", timeout=30)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["bytes"], len(data))

    def test_too_large_refused_at_the_head(self):
        with self.srv.connect() as c:
            c.send(put_head("/debug/sink", 65 * MB))
            r = c.read_response(method="PUT", timeout=5)
        check_problem(self, r, 413, "payload-too-large")

    def test_cut_half_way(self):
        with self.srv.connect(timeout=30) as c:
            c.send(put_head("/debug/sink", 8 * MB))
            send_all(c, payload(3 * MB))
        # the server dropped that request and serves the next one
        deadline = time.time() + 5
        r = self.srv.request("GET", "/health/live")
        self.assertEqual(r.status, 200)
        while time.time() < deadline:
            m = self.srv.request("GET", "/metrics").body.decode()
            line = [l for l in m.splitlines() if l.startswith("keel_http_connections ")]
            if line and float(line[0].split()[1]) <= 1:  # the scrape's own connection
                break
            time.sleep(0.05)
        else:
            self.fail("the cut connection was not released: %s" % line)


class RefusedAtTheHead(unittest.TestCase):
    """The access phases answer before the body is read: no 100 Continue,
    and the answer comes while the client has sent nothing of its body."""

    def assert_refused_unread(self, srv, path, status, slug, headers=b""):
        with srv.connect(timeout=5) as c:
            started = time.time()
            c.send(put_head(path, 50 * MB, b"Expect: 100-continue\r\n" + headers))
            r = c.read_response(method="PUT", timeout=5)  # the first response on the wire
            took = time.time() - started
            check_problem(self, r, status, slug)
            self.assertLess(took, 2.0, "answered only after %.1fs (the body timeout?)" % took)
            self.assertTrue(r.closes, "the unread body cannot stay on the connection")
            self.assertTrue(c.wait_closed(timeout=5), "the connection stayed open")

    def test_unauthenticated_upload_401(self):
        with Server(threads=1) as srv:
            self.assert_refused_unread(srv, "/debug/sink/private", 401, "unauthorized")
            # without Expect the client sends its body at once; the answer
            # still comes after the head and the connection closes
            with srv.connect(timeout=5) as c:
                c.send(put_head("/debug/sink/private", 50 * MB))
                c.send(payload(64 * 1024))
                r = c.read_response(method="PUT", timeout=5)
                check_problem(self, r, 401, "unauthorized")
                self.assertTrue(r.closes)

    def test_rate_limited_upload_429(self):
        with Server(threads=1, env={"KEEL_RATE_LIMIT_IP": "1/min"}) as srv:
            self.assertEqual(srv.request("GET", "/no/such/path").status, 404)  # the budget
            self.assert_refused_unread(srv, "/debug/sink", 429, "rate-limited")

    def test_small_refused_body_keeps_the_connection(self):
        with Server(threads=1) as srv, srv.connect() as c:
            body = b"x" * 1000
            c.send(put_head("/debug/sink/private", len(body)) + body)
            r = c.read_response(method="PUT")
            check_problem(self, r, 401, "unauthorized")
            self.assertFalse(r.closes)
            c.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)


if __name__ == "__main__":
    keeltest.main()
