"""Request-smuggling shapes: each gets exactly one 400 and the connection is
closed; the valid request written right after it in the same packet is
never served (no response, no access log line)."""

import unittest

import keeltest
from keeltest import ServerCase, build_request

H = b"Host: x\r\nContent-Type: application/json\r\n"

SHAPES = {
    "cl_and_te": b"POST /debug/echo HTTP/1.1\r\n" + H +
                 b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST /debug/echo HTTP/1.1\r\n" + H +
                 b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate_cl_different": b"POST /debug/echo HTTP/1.1\r\n" + H +
                              b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
    "duplicate_cl_same": b"POST /debug/echo HTTP/1.1\r\n" + H +
                         b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    "cl_list": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length: 2, 2\r\n\r\n{}",
    "cl_plus_sign": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length: +2\r\n\r\n{}",
    "cl_minus_sign": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length: -2\r\n\r\n{}",
    "cl_inner_space": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length: 1 0\r\n\r\n{}",
    "cl_hex": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length: 0x2\r\n\r\n{}",
    "cl_overflow": b"POST /debug/echo HTTP/1.1\r\n" + H +
                   b"Content-Length: 100000000000000000000000\r\n\r\n{}",
    "cl_empty": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n",
    "cl_space_before_colon": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Content-Length : 2\r\n\r\n{}",
    "te_space_before_colon": b"POST /debug/echo HTTP/1.1\r\n" + H +
                             b"Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "te_not_chunked_last": b"POST /debug/echo HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "te_unknown": b"POST /debug/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: pigeons\r\n\r\n{}",
    "te_chunked_twice": b"POST /debug/echo HTTP/1.1\r\n" + H +
                        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "chunk_size_garbage": b"POST /debug/echo HTTP/1.1\r\n" + H +
                          b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "chunk_size_negative": b"POST /debug/echo HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
    "chunk_size_0x": b"POST /debug/echo HTTP/1.1\r\n" + H +
                     b"Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    "chunk_size_space": b"POST /debug/echo HTTP/1.1\r\n" + H +
                        b"Transfer-Encoding: chunked\r\n\r\n2 \r\n{}\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /debug/echo HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff2\r\n{}\r\n0\r\n\r\n",
    "chunk_missing_crlf": b"POST /debug/echo HTTP/1.1\r\n" + H +
                          b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "chunk_bare_lf": b"POST /debug/echo HTTP/1.1\r\n" + H +
                     b"Transfer-Encoding: chunked\r\n\r\n2\n{}\n0\n\n",
    "obs_fold": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
    "obs_fold_tab": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n",
    "leading_space_header": b"GET /health/live HTTP/1.1\r\n Host: x\r\n\r\n",
    "bare_lf_header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n",
    "bare_lf_everywhere": b"GET /health/live HTTP/1.1\nHost: x\n\n",
    "bare_cr_header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n",
    "bare_cr_request_line": b"GET /health/live HTTP/1.1\rHost: x\r\n\r\n",
    "nul_in_value": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "nul_in_name": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-\x00A: ab\r\n\r\n",
    "nul_in_uri": b"GET /health/live\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "space_in_name": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    "te_with_lf_value": b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"X: y\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "space_in_uri": b"GET /health /live HTTP/1.1\r\nHost: x\r\n\r\n",
}

SMUGGLED = build_request("GET", "/health/live", {"X-Request-ID": "smuggled-after-bad"})


class Smuggling(ServerCase):
    def check_shape(self, name, bad):
        with self.srv.connect(timeout=5) as c:
            c.try_send(bad + SMUGGLED)
            try:
                r = c.read_response(timeout=5)
            except keeltest.ConnectionClosed as e:
                self.fail("%s: closed without a 400 (got %r)" % (name, e.partial[:200]))
            self.assertEqual(r.status, 400, "%s: %r" % (name, r))
            self.assertNotEqual(r.header("x-request-id"), "smuggled-after-bad", name)
            data, closed = c.read_until_close(timeout=3)
            self.assertEqual(data, b"", "%s: bytes after the 400: %r" % (name, data[:300]))
            self.assertTrue(closed, "%s: connection not closed after the 400" % name)

    def test_shapes(self):
        for name, bad in SHAPES.items():
            with self.subTest(shape=name):
                self.check_shape(name, bad)
        self.assertEqual(self.srv.request_logs("smuggled-after-bad"), [],
                         "a smuggled request reached the access log")
        self.assertEqual(self.srv.request("GET", "/health/live").status, 200)

    def test_400_announces_close(self):
        # RFC 9112 9.6: a server that closes after a response says so
        for name in ("cl_and_te", "obs_fold"):
            with self.subTest(shape=name):
                with self.srv.connect() as c:
                    c.send(SHAPES[name])
                    r = c.read_response()
                    self.assertEqual(r.status, 400)
                    self.assertIn("close", r.tokens("connection"), r.headers)

    def test_smuggled_body_never_served_byte_by_byte(self):
        # the same shapes arriving one byte at a time
        for name in ("cl_and_te", "duplicate_cl_different", "obs_fold", "bare_lf_header",
                     "chunk_size_garbage", "nul_in_value"):
            with self.subTest(shape=name):
                with self.srv.connect() as c:
                    c.send_slowly(SHAPES[name] + SMUGGLED, 1, 0)
                    try:
                        r = c.read_response()
                    except keeltest.ConnectionClosed as e:
                        self.fail("%s: closed without a 400 (got %r)" % (name, e.partial[:200]))
                    self.assertEqual(r.status, 400, name)
                    data, closed = c.read_until_close(3)
                    self.assertEqual(data, b"", name)
                    self.assertTrue(closed, name)
        self.assertEqual(self.srv.request_logs("smuggled-after-bad"), [])

    def test_valid_body_containing_request(self):
        # a correctly framed body that looks like a request is just a body
        inner = b'"' + SMUGGLED.replace(b"\r\n", b"\\r\\n") + b'"'
        with self.srv.connect() as c:
            c.send(build_request("POST", "/debug/echo", {"Content-Type": "application/json"}, inner) +
                   build_request("GET", "/health/live", {"X-Request-ID": "legit"}))
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(c.read_response().header("x-request-id"), "legit")
            self.assertTrue(c.is_open(0.2))


class Garbage(ServerCase):
    """Bad input never crashes the server: random bytes, and random
    mutations of valid requests, on many connections (fixed seed)."""

    def blast(self, payloads):
        import concurrent.futures

        def one(data):
            try:
                with self.srv.connect(timeout=3) as c:
                    c.try_send(data)
                    c.shutdown_write()
                    c.read_until_close(timeout=3)
            except OSError:
                pass

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            list(ex.map(one, payloads))
        self.assertTrue(self.srv.alive(), "server died on garbage input")
        r = self.srv.request("GET", "/health/live")
        self.assertEqual(r.status, 200)

    def test_random_bytes(self):
        import random
        rnd = random.Random(1234)
        self.blast([bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 600))) for _ in range(300)])

    def test_mutated_requests(self):
        import random
        rnd = random.Random(5678)
        seeds = [
            build_request("GET", "/health/live", {"X-Request-ID": "abc"}),
            build_request("POST", "/debug/echo", {"Content-Type": "application/json"}, b'{"a":[1,2,{"b":null}]}'),
            b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            build_request("GET", "/debug/items/0191d6a4-7b5c-7cc1-9c5e-2d3f4a5b6c7d"),
            build_request("GET", "/debug/bytes?n=3000", {"Accept-Encoding": "gzip"}),
        ]
        payloads = []
        for _ in range(600):
            d = bytearray(rnd.choice(seeds) * rnd.randrange(1, 3))
            for _ in range(rnd.randrange(1, 6)):
                op = rnd.randrange(4)
                i = rnd.randrange(len(d))
                if op == 0:
                    d[i] = rnd.randrange(256)
                elif op == 1:
                    del d[i]
                elif op == 2:
                    d[i:i] = bytes([rnd.choice(b"\r\n :;\x00\t0-9aAzZ\"{}[]%")])
                else:
                    d[i:i] = d[rnd.randrange(len(d)):][:rnd.randrange(1, 40)]
            payloads.append(bytes(d))
        self.blast(payloads)


if __name__ == "__main__":
    keeltest.main()
