"""Routing, health endpoints, the headers every response carries, request
ids, problem+json errors, HEAD/OPTIONS, CORS, gzip and the debug routes."""

import email.utils
import gzip
import time
import unittest
import uuid

import keeltest
from keeltest import ServerCase, check_problem, get_json, UUID7_RE, SECURITY_HEADERS


def uuid7ish():
    return str(uuid.uuid4())


class Health(ServerCase):
    def test_live(self):
        r = self.get("/health/live")
        self.assertEqual(r.status, 200)
        self.assertEqual(get_json(self, r)["status"], "ok")

    def test_live_with_query(self):
        self.assertEqual(self.get("/health/live?probe=1&x=%20").status, 200)

    def test_ready(self):
        r = self.srv.wait_ready()
        doc = get_json(self, r)
        self.assertEqual(doc["status"], "ok")
        self.assertIsInstance(doc["checks"], dict)
        self.assertIsInstance(doc["version"], str)
        self.assertRegex(doc["version"], r"\d+\.\d+")
        self.assertIsInstance(doc["uptime"], (int, float))
        self.assertGreaterEqual(doc["uptime"], 0)

    def test_startup(self):
        r = self.get("/health/startup")
        self.assertEqual(r.status, 200)
        get_json(self, r)


class CommonHeaders(ServerCase):
    def check_common(self, r):
        date = r.header("date")
        self.assertIsNotNone(date, "Date header")
        parsed = email.utils.parsedate_to_datetime(date)
        self.assertLess(abs(parsed.timestamp() - time.time()), 120, date)
        self.assertRegex(date, r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertEqual(r.header_all("server"), ["keel"], "Server: keel, without a version")
        self.assertIsNotNone(r.header("x-request-id"))
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(r.header(name), value, name)
        self.assertTrue(r.header("content-security-policy"), "Content-Security-Policy")
        # exactly one of each
        for name in ("date", "server", "x-request-id", "content-type", "content-length"):
            self.assertLessEqual(len(r.header_all(name)), 1, name)

    def test_on_200(self):
        self.check_common(self.get("/health/live"))

    def test_on_404(self):
        self.check_common(self.get("/no/such/path"))

    def test_on_405(self):
        self.check_common(self.srv.request("DELETE", "/health/live"))

    def test_on_500(self):
        self.check_common(self.get("/debug/error"))

    def test_on_400(self):
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.1\r\n\r\n")  # no Host
            self.check_common(c.read_response())

    def test_content_length_matches(self):
        r = self.get("/health/live")
        self.assertEqual(int(r.header("content-length")), len(r.body))


class RequestId(ServerCase):
    def test_echo_well_formed(self):
        for rid in ("abc-123_X.y", "a", "A" * 128, "0123456789.-_"):
            with self.subTest(rid=rid):
                r = self.get("/health/live", {"X-Request-ID": rid})
                self.assertEqual(r.header("x-request-id"), rid)

    def test_generated_when_missing(self):
        a = self.get("/health/live").header("x-request-id")
        b = self.get("/health/live").header("x-request-id")
        self.assertRegex(a, UUID7_RE)
        self.assertRegex(b, UUID7_RE)
        self.assertNotEqual(a, b)

    def test_replaced_when_malformed(self):
        for rid in ("A" * 129, "bad id", "a/b", "x;y", "<script>", "é", ""):
            with self.subTest(rid=rid):
                r = self.get("/health/live", {"X-Request-ID": rid.encode("utf-8").decode("latin-1")})
                self.assertEqual(r.status, 200)
                self.assertRegex(r.header("x-request-id"), UUID7_RE)

    def test_in_problem_body(self):
        r = self.get("/nope", {"X-Request-ID": "rid-in-problem"})
        doc = check_problem(self, r, 404)
        self.assertEqual(doc["request_id"], "rid-in-problem")


class Routing(ServerCase):
    def test_not_found(self):
        r = self.get("/definitely/not/here")
        check_problem(self, r, 404, "not-found", instance="/definitely/not/here")

    def test_not_found_root(self):
        check_problem(self, self.get("/"), 404, "not-found")

    def test_method_not_allowed(self):
        r = self.srv.request("POST", "/health/live", {"Content-Type": "application/json"}, b"{}")
        check_problem(self, r, 405, "method-not-allowed")
        allow = [t.upper() for t in r.tokens("allow")]
        self.assertIn("GET", allow)
        self.assertNotIn("POST", allow)

    def test_method_not_allowed_delete(self):
        r = self.srv.request("DELETE", "/debug/echo")
        check_problem(self, r, 405, "method-not-allowed")
        self.assertIn("POST", [t.upper() for t in r.tokens("allow")])

    def test_head(self):
        with self.srv.connect() as c:
            g = c.request("GET", "/debug/bytes?n=3000")
            h = c.request("HEAD", "/debug/bytes?n=3000")
            # a following request on the same connection parses: HEAD sent no body
            g2 = c.request("GET", "/health/live", {"X-Request-ID": "after-head"})
        self.assertEqual(g.status, 200)
        self.assertEqual(len(g.body), 3000)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.header("content-length"), "3000")
        self.assertEqual(h.header("content-type"), g.header("content-type"))
        self.assertEqual(g2.status, 200)
        self.assertEqual(g2.header("x-request-id"), "after-head")

    def test_head_live(self):
        with self.srv.connect() as c:
            g = c.request("GET", "/health/live")
            h = c.request("HEAD", "/health/live")
            self.assertEqual(c.request("GET", "/health/live").status, 200)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("content-length"), str(len(g.body)))

    def test_head_not_found(self):
        with self.srv.connect() as c:
            h = c.request("HEAD", "/nothing-here")
            self.assertEqual(h.status, 404)
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_options(self):
        with self.srv.connect() as c:
            r = c.request("OPTIONS", "/health/live")
            self.assertEqual(r.status, 204)
            self.assertEqual(r.body, b"")
            allow = [t.upper() for t in r.tokens("allow")]
            self.assertIn("GET", allow)
            self.assertIn("OPTIONS", allow)
            self.assertEqual(c.request("GET", "/health/live").status, 200)

    def test_options_post_route(self):
        r = self.srv.request("OPTIONS", "/debug/echo")
        self.assertEqual(r.status, 204)
        self.assertIn("POST", [t.upper() for t in r.tokens("allow")])

    def test_uuid_param(self):
        u = uuid7ish()
        r = self.get("/debug/items/" + u)
        self.assertEqual(r.status, 200)
        self.assertEqual(get_json(self, r)["id"], u)

    def test_uuid_param_rejects_non_uuid(self):
        for bad in ("123", "not-a-uuid", uuid7ish() + "0", uuid7ish()[:-1], "%00"):
            with self.subTest(bad=bad):
                check_problem(self, self.get("/debug/items/" + bad), 404, "not-found")

    def test_trailing_segments(self):
        check_problem(self, self.get("/health/live/extra"), 404, "not-found")
        check_problem(self, self.get("/debug/items/%s/x" % uuid7ish()), 404, "not-found")

    def test_internal_error_sanitized(self):
        r = self.get("/debug/error", {"X-Request-ID": "err-1"})
        doc = check_problem(self, r, 500, "internal-error")
        text = r.body.decode("utf-8", "replace") + r.raw_head.decode("latin-1")
        self.assertNotIn("secret-internal-detail", text)
        self.assertNotIn("/tmp/x.c", text)
        self.assertEqual(doc["request_id"], "err-1")
        # the server keeps serving
        self.assertEqual(self.get("/health/live").status, 200)


class DebugRoutesOff(ServerCase):
    DEBUG_ROUTES = False

    def test_debug_routes_absent(self):
        for path in ("/debug/sleep?ms=1", "/debug/bytes?n=10", "/debug/error"):
            with self.subTest(path=path):
                check_problem(self, self.get(path), 404, "not-found")

    def test_health_still_there(self):
        self.assertEqual(self.get("/health/live").status, 200)


class Gzip(ServerCase):
    def test_gzip_large(self):
        plain = self.get("/debug/bytes?n=5000")
        self.assertEqual(plain.status, 200)
        self.assertIsNone(plain.header("content-encoding"))
        self.assertEqual(len(plain.body), 5000)
        r = self.get("/debug/bytes?n=5000", {"Accept-Encoding": "gzip, deflate"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertIn("accept-encoding", r.tokens("vary"))
        self.assertEqual(gzip.decompress(r.body), plain.body)
        self.assertLess(len(r.body), 5000)
        cl = r.header("content-length")
        if cl is not None:
            self.assertEqual(int(cl), len(r.body))

    def test_gzip_vary_on_plain_too(self):
        plain = self.get("/debug/bytes?n=5000")
        self.assertIn("accept-encoding", plain.tokens("vary"))

    def test_gzip_large_body_decompresses(self):
        plain = self.get("/debug/bytes?n=300000")
        r = self.get("/debug/bytes?n=300000", {"Accept-Encoding": "gzip"})
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(r.body), plain.body)

    def test_small_not_compressed(self):
        r = self.get("/debug/bytes?n=100", {"Accept-Encoding": "gzip"})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("content-encoding"))
        self.assertEqual(len(r.body), 100)

    def test_no_gzip_unless_accepted(self):
        for ae in ("identity", "br", "gzip;q=0"):
            with self.subTest(ae=ae):
                r = self.get("/debug/bytes?n=5000", {"Accept-Encoding": ae})
                self.assertIsNone(r.header("content-encoding"), ae)
                self.assertEqual(len(r.body), 5000)

    def test_head_gzip(self):
        with self.srv.connect() as c:
            g = c.request("GET", "/debug/bytes?n=5000", {"Accept-Encoding": "gzip"})
            h = c.request("HEAD", "/debug/bytes?n=5000", {"Accept-Encoding": "gzip"})
            self.assertEqual(c.request("GET", "/health/live").status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.header("content-encoding"), g.header("content-encoding"))


class CorsOff(ServerCase):
    def test_no_cors_headers(self):
        r = self.get("/health/live", {"Origin": "https://a.example"})
        self.assertEqual(r.status, 200)
        self.assertFalse([n for n, _ in r.headers if n.lower().startswith("access-control-")], r.headers)

    def test_preflight_without_cors(self):
        r = self.srv.request("OPTIONS", "/debug/echo", {"Origin": "https://a.example",
                                                        "Access-Control-Request-Method": "POST"})
        self.assertFalse([n for n, _ in r.headers if n.lower().startswith("access-control-")], r.headers)


class CorsOn(ServerCase):
    ENV = {"KEEL_CORS_ORIGINS": "https://a.example,https://b.example"}

    def test_preflight_allowed(self):
        r = self.srv.request("OPTIONS", "/debug/echo", {
            "Origin": "https://a.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("access-control-allow-origin"), "https://a.example")
        self.assertIn("POST", [t.upper() for t in r.tokens("access-control-allow-methods")])
        self.assertEqual(r.body, b"")

    def test_preflight_second_origin(self):
        r = self.srv.request("OPTIONS", "/health/live", {
            "Origin": "https://b.example", "Access-Control-Request-Method": "GET"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("access-control-allow-origin"), "https://b.example")

    def test_preflight_disallowed_origin(self):
        r = self.srv.request("OPTIONS", "/debug/echo", {
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertIsNone(r.header("access-control-allow-origin"), r.headers)

    def test_simple_request_allowed(self):
        r = self.get("/health/live", {"Origin": "https://a.example"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("access-control-allow-origin"), "https://a.example")

    def test_simple_request_vary_origin(self):
        # the answer depends on Origin: caches must be told (Fetch standard)
        r = self.get("/health/live", {"Origin": "https://a.example"})
        self.assertIn("origin", r.tokens("vary"))

    def test_simple_request_disallowed(self):
        for origin in ("https://evil.example", "https://a.example.evil.com", "null",
                       "http://a.example"):
            with self.subTest(origin=origin):
                r = self.get("/health/live", {"Origin": origin})
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header("access-control-allow-origin"), r.headers)

    def test_no_origin_no_cors(self):
        r = self.get("/health/live")
        self.assertIsNone(r.header("access-control-allow-origin"))


if __name__ == "__main__":
    keeltest.main()
