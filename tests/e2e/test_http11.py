"""HTTP/1.1 connection semantics: keep-alive, pipelining (responses in
request order), HTTP/1.0, Connection: close, Host rules."""

import json
import unittest

import keeltest
from keeltest import ServerCase, build_request, check_problem


class KeepAlive(ServerCase):
    def test_sequential_requests(self):
        with self.srv.connect() as c:
            for i in range(20):
                r = c.request("GET", "/health/live", {"X-Request-ID": "ka-%d" % i})
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("x-request-id"), "ka-%d" % i)
                self.assertFalse(r.closes, r.headers)
            self.assertTrue(c.is_open(0.1))

    def test_mixed_statuses_keep_connection(self):
        with self.srv.connect() as c:
            self.assertEqual(c.request("GET", "/nope").status, 404)
            self.assertEqual(c.request("DELETE", "/health/live").status, 405)
            self.assertEqual(c.request("POST", "/debug/echo", {"Content-Type": "application/json"},
                                       b"{bad").status, 400)
            self.assertEqual(c.request("GET", "/debug/error").status, 500)
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_large_responses_on_one_connection(self):
        with self.srv.connect(timeout=15) as c:
            for n in (200000, 1, 1500000, 0, 70000):
                r = c.request("GET", "/debug/bytes?n=%d" % n)
                self.assertEqual(r.status, 200)
                self.assertEqual(len(r.body), n)


class Pipelining(ServerCase):
    def test_pipelined_in_order(self):
        reqs = []
        expect = []
        for i in range(16):
            rid = "pipe-%02d" % i
            if i % 4 == 0:
                reqs.append(build_request("GET", "/health/live", {"X-Request-ID": rid}))
                expect.append((rid, 200, "GET"))
            elif i % 4 == 1:
                reqs.append(build_request("GET", "/no-such-%d" % i, {"X-Request-ID": rid}))
                expect.append((rid, 404, "GET"))
            elif i % 4 == 2:
                reqs.append(build_request("HEAD", "/debug/bytes?n=%d" % (i * 10), {"X-Request-ID": rid}))
                expect.append((rid, 200, "HEAD"))
            else:
                body = json.dumps({"i": i}).encode()
                reqs.append(build_request("POST", "/debug/echo",
                                          {"X-Request-ID": rid, "Content-Type": "application/json"}, body))
                expect.append((rid, 200, "POST"))
        with self.srv.connect() as c:
            c.send(b"".join(reqs))
            for rid, status, method in expect:
                r = c.read_response(method=method)
                self.assertEqual(r.header("x-request-id"), rid)
                self.assertEqual(r.status, status)
                if method == "POST":
                    self.assertEqual(r.json(), {"i": int(rid[-2:])})
            self.assertTrue(c.is_open(0.1))

    def test_pipelined_slow_first(self):
        # a slow (thread-pool) request first: later responses must wait for it
        data = (build_request("GET", "/debug/sleep?ms=300", {"X-Request-ID": "slow"}) +
                build_request("GET", "/health/live", {"X-Request-ID": "fast-1"}) +
                build_request("GET", "/debug/sleep?ms=10", {"X-Request-ID": "slow-2"}) +
                build_request("GET", "/health/live", {"X-Request-ID": "fast-2"}))
        with self.srv.connect() as c:
            c.send(data)
            ids = [c.read_response().header("x-request-id") for _ in range(4)]
        self.assertEqual(ids, ["slow", "fast-1", "slow-2", "fast-2"])

    def test_many_pipelined(self):
        n = 300
        data = b"".join(build_request("GET", "/health/live", {"X-Request-ID": "m%d" % i})
                        for i in range(n))
        with self.srv.connect(timeout=15) as c:
            c.send(data)
            for i in range(n):
                r = c.read_response()
                self.assertEqual((r.status, r.header("x-request-id")), (200, "m%d" % i))

    def test_pipelined_byte_by_byte(self):
        data = (build_request("GET", "/health/live", {"X-Request-ID": "b1"}) +
                build_request("POST", "/debug/echo", {"X-Request-ID": "b2", "Content-Type": "application/json"},
                              b'{"z":[1,2,3]}') +
                build_request("GET", "/health/live", {"X-Request-ID": "b3"}))
        with self.srv.connect() as c:
            self.assertTrue(c.send_slowly(data, 1, 0))
            got = [c.read_response() for _ in range(3)]
        self.assertEqual([r.header("x-request-id") for r in got], ["b1", "b2", "b3"])
        self.assertEqual(got[1].json(), {"z": [1, 2, 3]})


class Http10(ServerCase):
    def test_http10_closes(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.closes, r.headers)
            self.assertTrue(c.wait_closed(3), "HTTP/1.0 connection not closed")

    def test_http10_keep_alive(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertFalse(r.closes, r.headers)
            self.assertIn("keep-alive", r.tokens("connection"))
            c.send(b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\nX-Request-ID: ten-2\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("x-request-id"), "ten-2")

    def test_http10_no_chunked(self):
        with self.srv.connect() as c:
            c.send(b"GET /debug/bytes?n=5000 HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.tokens("transfer-encoding"), [], "no chunked encoding to a 1.0 client")
            self.assertEqual(len(r.body), 5000)

    def test_http10_gzip_no_chunked(self):
        with self.srv.connect() as c:
            c.send(b"GET /debug/bytes?n=50000 HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.tokens("transfer-encoding"), [])

    def test_http10_without_host_is_fine(self):
        r = self.srv.request("GET", "/health/live", version="1.0", host=False)
        self.assertEqual(r.status, 200)


class ConnectionClose(ServerCase):
    def test_close_honored(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/health/live", {"Connection": "close"}))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIn("close", r.tokens("connection"))
            self.assertTrue(c.wait_closed(3))

    def test_close_on_error_response(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/nope", {"Connection": "close"}))
            r = c.read_response()
            self.assertEqual(r.status, 404)
            self.assertIn("close", r.tokens("connection"))
            self.assertTrue(c.wait_closed(3))

    def test_nothing_after_close_is_served(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/health/live", {"Connection": "close", "X-Request-ID": "first"}) +
                   build_request("GET", "/health/live", {"X-Request-ID": "after-close"}))
            r = c.read_response()
            self.assertEqual(r.header("x-request-id"), "first")
            data, closed = c.read_until_close(3)
            self.assertTrue(closed)
            self.assertEqual(data, b"")
        self.assertEqual(self.srv.request_logs("after-close"), [])

    def test_close_with_trailing_whitespace(self):
        # field values are trimmed of OWS: "close\t" is close
        for value in ("close\t", "close ", " close"):
            with self.subTest(value=value):
                with self.srv.connect() as c:
                    c.send(build_request("GET", "/health/live", {"Connection": value, "X-Request-ID": "ows"}) +
                           build_request("GET", "/health/live", {"X-Request-ID": "after-ows-close"}))
                    r = c.read_response()
                    self.assertEqual(r.header("x-request-id"), "ows")
                    self.assertIn("close", r.tokens("connection"))
                    data, closed = c.read_until_close(2)
                    self.assertEqual(data, b"")
                    self.assertTrue(closed)

    def test_close_token_in_list(self):
        with self.srv.connect() as c:
            c.send(build_request("GET", "/health/live", {"Connection": "foo, Close"}))
            r = c.read_response()
            self.assertIn("close", r.tokens("connection"))
            self.assertTrue(c.wait_closed(3))


class HostHeader(ServerCase):
    def test_missing_host(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.1\r\n\r\n")
            check_problem(self, c.read_response(), 400)

    def test_two_host_headers(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            check_problem(self, c.read_response(), 400)

    def test_two_identical_host_headers(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n")
            check_problem(self, c.read_response(), 400)

    def test_head_error_has_no_body(self):
        # a 400 to a HEAD request has no body either (RFC 9110 9.3.2)
        with self.srv.connect() as c:
            c.send(b"HEAD /health/live HTTP/1.1\r\n\r\n")
            r = c.read_response(method="HEAD")
            self.assertEqual(r.status, 400)
            data, closed = c.read_until_close(2)
        self.assertEqual(data, b"", "body bytes after a HEAD response")

    def test_absolute_form(self):
        # RFC 9112 3.2.2: a server MUST accept the absolute-form
        with self.srv.connect() as c:
            c.send(b"GET http://127.0.0.1/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)

    def test_host_with_port(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)


if __name__ == "__main__":
    keeltest.main()
