"""Request bodies: JSON echo, 415, strict JSON (400), size limits (413,
refused before the body is read), chunked request bodies and
Expect: 100-continue."""

import json
import time
import unittest

import keeltest
from keeltest import ServerCase, build_request, check_problem, get_json

JSON_CT = {"Content-Type": "application/json"}


def chunked(data, size):
    out = b""
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def nested(depth):
    return b"[" * depth + b"]" * depth


class Echo(ServerCase):
    def post(self, path, body, headers=None, **kw):
        hs = dict(JSON_CT)
        hs.update(headers or {})
        return self.srv.request("POST", path, hs, body, **kw)

    def test_roundtrip(self):
        doc = {"a": 1, "b": [1, 2, {"c": "d"}], "e": None, "f": True, "g": -1.5,
               "s": "quote\" backslash\\ tab\t nl\n unicode \u00e9\u4e2d \U0001F600",
               "max": 9223372036854775807, "min": -9223372036854775808, "big": 9007199254740993}
        r = self.post("/debug/echo", json.dumps(doc).encode())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(get_json(self, r), doc)

    def test_charset_parameter_accepted(self):
        r = self.post("/debug/echo", b'{"x":1}', {"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"x": 1})

    def test_unsupported_media_type(self):
        for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                   "multipart/form-data; boundary=x"):
            with self.subTest(ct=ct):
                r = self.srv.request("POST", "/debug/echo", {"Content-Type": ct}, b'{"x":1}')
                check_problem(self, r, 415, "unsupported-media-type")

    def test_missing_content_type(self):
        r = self.srv.request("POST", "/debug/echo", None, b'{"x":1}')
        check_problem(self, r, 415, "unsupported-media-type")

    def test_malformed(self):
        cases = [b'{"a":', b'{"a":1} x', b"{'a':1}", b'{"a":1,}', b"[1,2", b"nul",
                 b'{"a":NaN}', b'{"a":01}', b'"unterminated', b"", b"   ", b'{"a":1}{"b":2}',
                 b'{"a":"\x01"}']
        for body in cases:
            with self.subTest(body=body):
                check_problem(self, self.post("/debug/echo", body), 400, "malformed-request")

    def test_duplicate_keys(self):
        check_problem(self, self.post("/debug/echo", b'{"a":1,"a":2}'), 400, "malformed-request")
        check_problem(self, self.post("/debug/echo", b'{"x":{"k":1,"k":1}}'), 400, "malformed-request")

    def test_depth_32_accepted(self):
        r = self.post("/debug/echo", nested(32))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body.replace(b" ", b""), nested(32))

    def test_depth_33_rejected(self):
        check_problem(self, self.post("/debug/echo", nested(33)), 400, "malformed-request")
        obj = b'{"a":' * 33 + b"1" + b"}" * 33
        check_problem(self, self.post("/debug/echo", obj), 400, "malformed-request")

    def test_deep_nesting_does_not_crash(self):
        check_problem(self, self.post("/debug/echo", nested(100000)), 400, "malformed-request")
        self.assertEqual(self.srv.request("GET", "/health/live").status, 200)

    def test_body_then_next_request_same_connection(self):
        with self.srv.connect() as c:
            for i in range(3):
                r = c.request("POST", "/debug/echo", JSON_CT, json.dumps({"i": i}).encode())
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json(), {"i": i})
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_415_body_not_parsed_as_request(self):
        # the refused body looks like a request: it must never be served
        inner = build_request("GET", "/health/live", {"X-Request-ID": "smuggled-415"})
        req = build_request("POST", "/debug/echo", {"Content-Type": "text/plain"}, inner)
        nxt = build_request("GET", "/health/live", {"X-Request-ID": "real-next"})
        with self.srv.connect() as c:
            c.send(req + nxt)
            r = c.read_response()
            check_problem(self, r, 415)
            # then either the real next request is answered, or the close
            data, _ = c.read_until_close(timeout=1.0)
        self.assertLessEqual(data.count(b"HTTP/1.1 "), 1, data)
        if data:
            self.assertIn(b"real-next", data)
        self.assertNotIn(b"smuggled-415", data)
        self.assertEqual(self.srv.request_logs("smuggled-415"), [])


class Limits(ServerCase):
    def test_content_length_over_default_refused_before_body(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 1048577\r\n\r\n")
            # no body is sent: the answer must come anyway
            r = c.read_response(timeout=3)
            check_problem(self, r, 413, "payload-too-large")

    def test_refused_body_never_parsed_as_requests(self):
        # 413 before the body: the unread body (which looks like requests)
        # must not be served; the connection is closed or the body skipped
        inner = build_request("GET", "/health/live", {"X-Request-ID": "smuggled-413"}) * 40
        head = (b"POST /debug/echo-small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(inner))
        with self.srv.connect() as c:
            c.try_send(head + inner)
            check_problem(self, c.read_response(timeout=3), 413, "payload-too-large")
            data, _ = c.read_until_close(timeout=1.5)
        self.assertNotIn(b"smuggled-413", data)
        self.assertEqual(self.srv.request_logs("smuggled-413"), [])

    def test_huge_content_length(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 99999999999\r\n\r\n")
            check_problem(self, c.read_response(timeout=3), 413, "payload-too-large")

    def test_at_default_limit_accepted(self):
        s = b'"' + b"a" * (1048576 - 2) + b'"'
        self.assertEqual(len(s), 1048576)
        r = self.srv.request("POST", "/debug/echo", JSON_CT, s, timeout=15)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, s)

    def test_route_limit(self):
        ok = b'"' + b"a" * 1000 + b'"'
        r = self.srv.request("POST", "/debug/echo-small", JSON_CT, ok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), "a" * 1000)
        exact = b'"' + b"a" * 1022 + b'"'
        self.assertEqual(self.srv.request("POST", "/debug/echo-small", JSON_CT, exact).status, 200)
        big = b'"' + b"a" * 1023 + b'"'
        check_problem(self, self.srv.request("POST", "/debug/echo-small", JSON_CT, big),
                      413, "payload-too-large")
        # the same body is fine on the default-limit route
        self.assertEqual(self.srv.request("POST", "/debug/echo", JSON_CT, big).status, 200)

    def test_route_limit_refused_before_body(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo-small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 5000\r\n\r\n")
            check_problem(self, c.read_response(timeout=3), 413, "payload-too-large")

    def test_chunked_over_route_limit(self):
        body = b'"' + b"b" * 2000 + b'"'
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo-small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 100))
            check_problem(self, c.read_response(timeout=3), 413, "payload-too-large")

    def test_chunked_over_default_limit(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
            sent = 0
            chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
            ok = True
            while ok and sent < 1200000:
                ok = c.try_send(chunk)
                sent += 65536
            r = c.read_response(timeout=5)
            check_problem(self, r, 413, "payload-too-large")


class Chunked(ServerCase):
    def test_chunked_echo(self):
        doc = {"items": list(range(200)), "name": "chunked"}
        body = json.dumps(doc).encode()
        for size in (1, 7, 64, len(body)):
            with self.subTest(size=size):
                with self.srv.connect() as c:
                    c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, size))
                    r = c.read_response()
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.json(), doc)
                    self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_chunked_with_extension_and_trailer(self):
        body = b'{"t":true}'
        raw = (b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"4;ext=1\r\n" + body[:4] + b"\r\n" + b"%x\r\n" % (len(body) - 4) + body[4:] +
               b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
        with self.srv.connect() as c:
            c.send(raw)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"t": True})
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_chunked_sent_slowly(self):
        body = json.dumps({"k": "v" * 50}).encode()
        raw = (b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 10))
        with self.srv.connect() as c:
            self.assertTrue(c.send_slowly(raw, 3, 0.001))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"k": "v" * 50})


class ExpectContinue(ServerCase):
    def test_100_continue(self):
        body = b'{"hello":"world"}'
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            r = c.read_response(timeout=3)
            self.assertEqual(r.status, 100, r)
            self.assertTrue(r.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"), r.raw_head)
            c.send(body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"hello": "world"})
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_100_continue_chunked(self):
        body = b'{"c":1}'
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
            r = c.read_response(timeout=3)
            self.assertEqual(r.status, 100, r)
            c.send(chunked(body, 3))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"c": 1})

    def test_too_large_gets_413_without_100(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n")
            r = c.read_response(timeout=3)
            check_problem(self, r, 413, "payload-too-large")

    def test_route_limit_413_without_100(self):
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo-small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Expect: 100-continue\r\nContent-Length: 2000\r\n\r\n")
            check_problem(self, c.read_response(timeout=3), 413, "payload-too-large")

    def test_wrong_media_type_with_expect(self):
        # 415 either at once or after 100 and the body
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                   b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n")
            r = c.read_response(timeout=3)
            if r.status == 100:
                c.send(b"0123456789")
                r = c.read_response(timeout=3)
            check_problem(self, r, 415, "unsupported-media-type")

    def test_body_sent_without_waiting(self):
        # clients may send the body without waiting for 100 (RFC 9110 10.1.1)
        body = b'{"eager":1}'
        with self.srv.connect() as c:
            c.send(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            r = c.read_final_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"eager": 1})
            self.assertEqual(c.request("GET", "/health/live").status, 200)


class ConfiguredBodyLimit(ServerCase):
    ENV = {"KEEL_MAX_BODY_BYTES": "2048"}

    def test_configured_limit(self):
        ok = b'"' + b"a" * 2000 + b'"'
        self.assertEqual(self.srv.request("POST", "/debug/echo", JSON_CT, ok).status, 200)
        big = b'"' + b"a" * 3000 + b'"'
        check_problem(self, self.srv.request("POST", "/debug/echo", JSON_CT, big), 413,
                      "payload-too-large")


if __name__ == "__main__":
    keeltest.main()
