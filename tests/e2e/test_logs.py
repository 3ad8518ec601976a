"""JSON logs on stdout (SPEC section 6): one "request" line per request with
method, route pattern, status, duration_ms and request_id; lifecycle lines;
nothing secret; every stdout line is a JSON object."""

import json
import time
import unittest
import uuid

import keeltest
from keeltest import ServerCase, build_request


class RequestLogs(ServerCase):
    def line_for(self, rid, timeout=3):
        rec = self.srv.wait_log(lambda r: r.get("msg") == "request" and r.get("request_id") == rid,
                                timeout=timeout)
        self.assertIsNotNone(rec, "no request log line with request_id %r" % rid)
        return rec

    def test_request_line_fields(self):
        r = self.get("/health/live", {"X-Request-ID": "log-live-1"})
        rec = self.line_for("log-live-1")
        self.assertEqual(rec["method"], "GET")
        self.assertEqual(rec["route"], "/health/live")
        self.assertEqual(rec["status"], 200)
        self.assertIsInstance(rec["duration_ms"], (int, float))
        self.assertGreaterEqual(rec["duration_ms"], 0)
        self.assertLess(rec["duration_ms"], 5000)
        self.assertIn("ts", rec)
        self.assertIn("level", rec)
        self.assertEqual(rec["request_id"], r.header("x-request-id"))

    def test_lines_inside_a_request_name_it(self):
        # "request failed" is written by the error filter without a
        # request_id field of its own: the request's log context adds it
        self.get("/debug/error", {"X-Request-ID": "log-ctx-1"})
        rec = self.srv.wait_log(lambda r: r.get("msg") == "request failed"
                                and r.get("request_id") == "log-ctx-1")
        self.assertIsNotNone(rec, "no 'request failed' line naming the request")
        self.assertEqual(list(rec).count("request_id"), 1)
        # and no line outside a request names one
        for r in self.srv.logs():
            if r.get("msg") in ("start", "config", "listening", "cache ready"):
                self.assertNotIn("request_id", r, r)

    def test_generated_request_id_logged(self):
        r = self.get("/health/live")
        self.line_for(r.header("x-request-id"))

    def test_route_is_pattern(self):
        u = str(uuid.uuid4())
        self.get("/debug/items/" + u, {"X-Request-ID": "log-item"})
        rec = self.line_for("log-item")
        self.assertEqual(rec["route"], "/debug/items/{id}")
        self.assertEqual(rec["status"], 200)

    def test_not_found_logged(self):
        raw = "/no-route-" + uuid.uuid4().hex
        self.get(raw, {"X-Request-ID": "log-404"})
        rec = self.line_for("log-404")
        self.assertEqual(rec["status"], 404)
        self.assertNotEqual(rec.get("route"), raw)

    def test_status_and_method(self):
        self.srv.request("POST", "/debug/echo", {"X-Request-ID": "log-post",
                                                 "Content-Type": "application/json"}, b'{"a":1}')
        rec = self.line_for("log-post")
        self.assertEqual((rec["method"], rec["route"], rec["status"]), ("POST", "/debug/echo", 200))
        self.srv.request("DELETE", "/health/live", {"X-Request-ID": "log-405"})
        self.assertEqual(self.line_for("log-405")["status"], 405)
        self.get("/debug/error", {"X-Request-ID": "log-500"})
        self.assertEqual(self.line_for("log-500")["status"], 500)
        self.srv.request("POST", "/debug/echo", {"X-Request-ID": "log-415", "Content-Type": "text/plain"}, b"x")
        self.assertEqual(self.line_for("log-415")["status"], 415)

    def test_slow_request_duration(self):
        self.get("/debug/sleep?ms=300", {"X-Request-ID": "log-slow"})
        rec = self.line_for("log-slow")
        self.assertGreaterEqual(rec["duration_ms"], 290)

    def test_exactly_one_line_per_request(self):
        ids = ["once-%d" % i for i in range(12)]
        with self.srv.connect() as c:
            c.send(b"".join(build_request("GET", "/health/live", {"X-Request-ID": i}) for i in ids))
            for _ in ids:
                c.read_response()
        self.line_for(ids[-1])
        time.sleep(0.2)
        for rid in ids:
            self.assertEqual(len(self.srv.request_logs(rid)), 1, rid)

    def test_head_and_keepalive_requests_logged(self):
        with self.srv.connect() as c:
            c.request("HEAD", "/health/live", {"X-Request-ID": "log-head"})
            c.request("GET", "/health/live", {"X-Request-ID": "log-ka-2"})
        self.assertEqual(self.line_for("log-head")["method"], "HEAD")
        self.line_for("log-ka-2")

    def test_secrets_not_logged(self):
        token = "eyJhbGciOiJIUzI1NiJ9.tok-" + uuid.uuid4().hex
        cookie = "cookie-" + uuid.uuid4().hex
        body_secret = "pw-" + uuid.uuid4().hex
        self.srv.request("POST", "/debug/echo", {
            "X-Request-ID": "log-secret", "Authorization": "Bearer " + token,
            "Cookie": "refresh=" + cookie, "Content-Type": "application/json"},
            json.dumps({"password": body_secret}).encode())
        self.line_for("log-secret")
        out = self.srv.all_output()
        self.assertNotIn(token, out)
        self.assertNotIn(cookie, out)
        self.assertNotIn(body_secret, out)

    def test_every_stdout_line_is_json(self):
        self.get("/health/live")
        self.get("/nope")
        time.sleep(0.1)
        for line in list(self.srv.lines):
            if not line.strip():
                continue
            rec = keeltest.parse_json_line(line)
            self.assertIsNotNone(rec, "stdout line is not a JSON object: %r" % line)
            self.assertIn("ts", rec, line)
            self.assertIn("level", rec, line)
            self.assertIn("msg", rec, line)

    def test_lifecycle_lines(self):
        msgs = [r.get("msg") for r in self.srv.logs()]
        self.assertIn("config", msgs)
        self.assertIn("listening", msgs)

    def test_bad_request_logged_without_crash(self):
        # a parse error still produces one request log line (or none), never garbage
        with self.srv.connect() as c:
            c.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: log-bad\r\nX: a\x00b\r\n\r\n")
            self.assertEqual(c.read_response().status, 400)
        time.sleep(0.2)
        self.assertLessEqual(len(self.srv.request_logs("log-bad")), 1)
        self.test_every_stdout_line_is_json()


if __name__ == "__main__":
    keeltest.main()
