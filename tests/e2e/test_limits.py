"""Request limits: URI (414), header block size and count (431), unknown
and unsupported methods (400/501), unsupported versions (505)."""

import unittest

import keeltest
from keeltest import ServerCase, build_request, check_problem


class LimitMixin:
    def raw(self, data, timeout=5):
        with self.srv.connect() as c:
            c.send(data)
            return c.read_response(timeout=timeout)

    def still_serving(self):
        self.assertEqual(self.srv.request("GET", "/health/live").status, 200)


class DefaultLimits(LimitMixin, ServerCase):
    def test_uri_too_long(self):
        path = "/health/live?q=" + "a" * (8192 - len("/health/live?q=") + 1)
        self.assertEqual(len(path), 8193)
        check_problem(self, self.srv.request("GET", path), 414)
        self.still_serving()

    def test_uri_at_limit(self):
        path = "/health/live?q=" + "a" * (8192 - len("/health/live?q="))
        self.assertEqual(len(path), 8192)
        self.assertEqual(self.srv.request("GET", path).status, 200)

    def test_uri_huge(self):
        # far over every limit: answered (414 or 431), never a crash
        with self.srv.connect() as c:
            c.try_send(build_request("GET", "/" + "a" * 100000))
            r = c.read_response()
        check_problem(self, r, 414)
        self.still_serving()

    def test_header_block_too_large(self):
        r = self.srv.request("GET", "/health/live", {"X-Big": "a" * 17000})
        check_problem(self, r, 431)
        self.still_serving()

    def test_header_block_too_large_many_headers(self):
        hs = [("X-Pad-%d" % i, "b" * 400) for i in range(45)]  # ~19 KB in 45 headers
        check_problem(self, self.srv.request("GET", "/health/live", hs), 431)

    def test_header_block_under_limit(self):
        r = self.srv.request("GET", "/health/live", {"X-Big": "a" * 15000})
        self.assertEqual(r.status, 200)

    def test_too_many_headers(self):
        hs = [("X-H-%d" % i, "v") for i in range(100)]  # + Host = 101
        check_problem(self, self.srv.request("GET", "/health/live", hs), 431)
        self.still_serving()

    def test_many_headers_under_limit(self):
        hs = [("X-H-%d" % i, "v") for i in range(98)]  # + Host = 99
        self.assertEqual(self.srv.request("GET", "/health/live", hs).status, 200)

    def test_garbage_method(self):
        for m in (b"FOO", b"GETT", b"get"):
            with self.subTest(method=m):
                with self.srv.connect() as c:
                    c.send(m + b" /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                    try:
                        r = c.read_response()
                    except keeltest.ConnectionClosed:
                        self.fail("%s: closed without a response" % m)
                    self.assertIn(r.status, (400, 501), r)

    def test_known_unsupported_methods(self):
        for m in ("PROPFIND", "TRACE", "MKCOL", "LOCK", "PURGE"):
            with self.subTest(method=m):
                r = self.srv.request(m, "/health/live")
                check_problem(self, r, 501)
        self.still_serving()

    def test_connect_method(self):
        with self.srv.connect() as c:
            c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            check_problem(self, c.read_response(), 501)

    def test_supported_methods_not_501(self):
        for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            with self.subTest(method=m):
                r = self.srv.request(m, "/nope-%s" % m.lower())
                self.assertEqual(r.status, 404, r)

    def test_http2_version(self):
        for v in (b"HTTP/2.0", b"HTTP/3.1"):
            with self.subTest(version=v):
                with self.srv.connect() as c:
                    c.send(b"GET /health/live " + v + b"\r\nHost: x\r\n\r\n")
                    try:
                        r = c.read_response()
                    except keeltest.ConnectionClosed:
                        self.fail("%s: closed without a response" % v)
                    self.assertEqual(r.status, 505, r)
                    self.assertTrue(c.wait_closed(3))
        self.still_serving()

    def test_limit_errors_close_or_recover(self):
        # after a 431 the connection is closed or still usable, never confused
        with self.srv.connect() as c:
            c.send(build_request("GET", "/health/live", {"X-Big": "a" * 17000}) +
                   build_request("GET", "/health/live", {"X-Request-ID": "after-431"}))
            r = c.read_response()
            self.assertEqual(r.status, 431)
            data, _ = c.read_until_close(1.0)
        self.assertLessEqual(data.count(b"HTTP/1.1 "), 1)


class ConfiguredLimits(LimitMixin, ServerCase):
    ENV = {"KEEL_MAX_URI_BYTES": "256", "KEEL_MAX_HEADER_BYTES": "2048", "KEEL_MAX_HEADERS": "10"}

    def test_uri(self):
        self.assertEqual(self.srv.request("GET", "/health/live?" + "a" * 200).status, 200)
        check_problem(self, self.srv.request("GET", "/health/live?" + "a" * 300), 414)

    def test_header_bytes(self):
        self.assertEqual(self.srv.request("GET", "/health/live", {"X-A": "a" * 1500}).status, 200)
        check_problem(self, self.srv.request("GET", "/health/live", {"X-A": "a" * 2500}), 431)

    def test_header_count(self):
        ok = [("X-%d" % i, "v") for i in range(8)]  # + Host = 9
        self.assertEqual(self.srv.request("GET", "/health/live", ok).status, 200)
        bad = [("X-%d" % i, "v") for i in range(12)]  # + Host = 13
        check_problem(self, self.srv.request("GET", "/health/live", bad), 431)


if __name__ == "__main__":
    keeltest.main()
