"""GET /metrics: Prometheus text 0.0.4 that passes `promtool check metrics`,
request counters by method/route pattern/status (aggregated over every
event-loop thread), the latency histogram, in-flight requests, open
connections, build info and process metrics."""

import re
import shutil
import subprocess
import time
import unittest
import uuid

import keeltest
from keeltest import ServerCase, build_request

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {labels}, float value)] for every sample line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("unparsable sample line %r" % line)
        labels = dict(LABEL_RE.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def value(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == v2 for k, v2 in labels.items())]
    return sum(vals) if vals else None


class Metrics(ServerCase):
    THREADS = 2

    def scrape(self):
        r = self.get("/metrics")
        self.assertEqual(r.status, 200)
        return r

    def samples(self):
        return parse_metrics(self.scrape().body.decode())

    def test_content_type(self):
        r = self.scrape()
        ct = r.header("content-type").replace(" ", "").lower()
        self.assertTrue(ct.startswith("text/plain;version=0.0.4"), ct)

    def test_promtool(self):
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed")
        # make every metric family have samples first
        self.get("/health/live")
        self.get("/nope")
        self.get("/debug/items/" + str(uuid.uuid4()))
        body = self.scrape().body
        p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, "promtool check metrics:\n%s%s" % (
            p.stdout.decode(), p.stderr.decode()))

    def test_required_families(self):
        self.get("/health/live")
        text = self.scrape().body.decode()
        for name, typ in (("keel_http_requests_total", "counter"),
                          ("keel_http_request_duration_seconds", "histogram"),
                          ("keel_http_requests_in_flight", "gauge"),
                          ("keel_http_connections", "gauge"),
                          ("keel_build_info", "gauge"),
                          ("process_resident_memory_bytes", "gauge")):
            with self.subTest(metric=name):
                fam = name[:-len("_total")] if name.endswith("_total") else name
                self.assertTrue(re.search(r"^# TYPE (%s|%s) %s$" % (re.escape(name), re.escape(fam), typ),
                                          text, re.M), "no TYPE line for %s (%s)" % (name, typ))
                self.assertTrue(re.search(r"^%s[ {]" % re.escape(name + ("_bucket" if typ == "histogram" else "")),
                                          text, re.M), "no samples for %s" % name)

    def test_request_counter_exact_and_route_pattern(self):
        def count():
            return value(self.samples(), "keel_http_requests_total", method="GET",
                         route="/health/live", status="200") or 0
        before = count()
        for _ in range(7):
            self.assertEqual(self.get("/health/live").status, 200)
        deadline = time.monotonic() + 2
        after = count()
        while after - before < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
            after = count()
        self.assertEqual(after - before, 7)

    def test_route_label_is_pattern(self):
        u = str(uuid.uuid4())
        self.assertEqual(self.get("/debug/items/" + u).status, 200)
        raw = "/no-such-path-" + uuid.uuid4().hex
        self.assertEqual(self.get(raw).status, 404)
        time.sleep(0.1)
        r = self.scrape()
        text = r.body.decode()
        samples = parse_metrics(text)
        self.assertIsNotNone(value(samples, "keel_http_requests_total", route="/debug/items/{id}",
                                   status="200"), "no counter with route=\"/debug/items/{id}\"")
        self.assertNotIn(u, text, "a raw path parameter leaked into metric labels")
        self.assertNotIn(raw, text, "an unmatched raw path became a label (unbounded cardinality)")
        self.assertIsNotNone(value(samples, "keel_http_requests_total", status="404"))

    def test_histogram_consistent(self):
        for _ in range(3):
            self.get("/health/live")
        time.sleep(0.1)
        samples = self.samples()
        buckets = [(l, v) for n, l, v in samples if n == "keel_http_request_duration_seconds_bucket"
                   and l.get("route") == "/health/live" and l.get("method") == "GET"
                   and l.get("status", "200") == "200"]
        self.assertTrue(buckets, "no histogram buckets for GET /health/live")
        # group by label set without le
        groups = {}
        for l, v in buckets:
            key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
            groups.setdefault(key, []).append((float("inf") if l["le"] == "+Inf" else float(l["le"]), v))
        for key, bs in groups.items():
            bs.sort()
            self.assertEqual(bs[-1][0], float("inf"), "no +Inf bucket")
            counts = [v for _, v in bs]
            self.assertEqual(counts, sorted(counts), "buckets not cumulative")
            labels = dict(key)
            cnt = value(samples, "keel_http_request_duration_seconds_count", **labels)
            self.assertEqual(cnt, counts[-1], "_count != +Inf bucket")
            self.assertIsNotNone(value(samples, "keel_http_request_duration_seconds_sum", **labels))
            self.assertGreaterEqual(counts[-1], 3)

    def test_in_flight(self):
        with self.srv.connect(timeout=5) as c:
            c.send(build_request("GET", "/debug/sleep?ms=800"))
            time.sleep(0.2)
            inflight = value(self.samples(), "keel_http_requests_in_flight")
            self.assertEqual(c.read_response().status, 200)
        self.assertGreaterEqual(inflight, 1, "the sleeping request is not counted in flight")

    def test_connections_gauge(self):
        conns = [self.srv.connect() for _ in range(6)]
        try:
            for c in conns:
                self.assertEqual(c.request("GET", "/health/live").status, 200)
            n = value(self.samples(), "keel_http_connections")
            self.assertGreaterEqual(n, 6)
        finally:
            for c in conns:
                c.close()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            m = value(self.samples(), "keel_http_connections")
            if m <= n - 6:
                break
            time.sleep(0.05)
        self.assertLessEqual(m, n - 6, "closed connections still counted")

    def test_build_info(self):
        samples = self.samples()
        info = [(l, v) for n, l, v in samples if n == "keel_build_info"]
        self.assertEqual(len(info), 1)
        self.assertEqual(info[0][1], 1)
        self.assertRegex(info[0][0].get("version", ""), r"\d+\.\d+\.\d+")

    def test_process_rss(self):
        rss = value(self.samples(), "process_resident_memory_bytes")
        real = self.srv.rss_kb() * 1024
        self.assertGreater(rss, 0)
        self.assertLess(abs(rss - real), real * 0.5 + 4 * 1024 * 1024, (rss, real))


if __name__ == "__main__":
    keeltest.main()
