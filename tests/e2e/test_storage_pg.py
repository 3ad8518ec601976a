"""Storage end to end on real PostgreSQL and Redis servers, started by the
harness on loopback in temporary directories (tests/lib/servers.py; SPEC
section 7, issue 3 "Tests"):

  PgRouting        primary + 1 streaming replica: writes go to the primary,
                   anonymous reads to the replica, read-your-writes while
                   replay is paused, the replica stopped and restarted,
                   readiness and storage metrics.
  PgPrimaryRestart the primary killed and restarted under write load: no
                   acknowledged (2xx) write lost, 503 + Retry-After while
                   down, readiness 503, recovery by itself.
  PgFailover       a two-host URL (target_session_attrs=read-write): the
                   primary dies, the replica is promoted, writes resume.
  RedisBreaker     Redis stopped under load: every request still 200, the
                   breaker opens, and closes again after Redis returns.
  PgMigrations     fresh, repeated, two racing `keel migrate up`, a
                   tampered migration refused, production refusal and
                   `serve --migrate`.

The whole file is skipped when the PostgreSQL 15 or redis-server binaries
are missing.
"""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import keeltest  # noqa: E402
from keeltest import Server, run_cli, base_env, KEEL_BIN  # noqa: E402
import servers  # noqa: E402
from test_storage import (kv_put, kv_get, body, ready, metrics_text, metric_value,  # noqa: E402
                          check_service_unavailable, serve_until_exit, count_applied_logs,
                          production_env, STORAGE_METRICS)


def setUpModule():
    if not servers.have_postgres():
        raise unittest.SkipTest("PostgreSQL 15 binaries not found in %s" % servers.PG_BIN)
    if not servers.have_redis():
        raise unittest.SkipTest("redis-server not found")


def poll(fn, timeout, interval=0.05):
    """Calls fn until it returns a truthy value or timeout passes; returns
    the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def safe(fn, *a, **kw):
    """fn(*a) or the exception it raised (for loops under failure)."""
    try:
        return fn(*a, **kw)
    except (OSError, keeltest.ConnectionClosed, keeltest.ProtocolError) as e:
        return e


# --------------------------------------------------------------------------

class PgRouting(unittest.TestCase):
    """Primary + 1 replica. Tests run in name order and leave the cluster
    as they found it (replay resumed, replica running)."""

    pg = None
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.pg = servers.PgCluster(replicas=1).start()
        try:
            cls.srv = Server(env={
                "KEEL_DATABASE_URL": cls.pg.url,
                "KEEL_DATABASE_REPLICAS": cls.pg.replica_urls[0],
                "KEEL_DATABASE_POOL_SIZE": "4",
            })
            cls.srv.start()
        except BaseException:
            if cls.srv:
                cls.srv.cleanup()
            cls.pg.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.srv:
                cls.srv.stop_and_check()
        finally:
            cls.pg.close()

    def setUp(self):
        if not self.srv.alive():
            self.fail("keel serve died (exit %r):\n%s" % (self.srv.proc.returncode,
                                                           "\n".join(self.srv.err_lines[-30:])))

    # -- helpers ---------------------------------------------------------
    def put_ok(self, key, value, user=None):
        r = kv_put(self.srv, key, value, user=user)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(body(r), {"key": key, "value": value})

    def get_doc(self, key, user=None):
        r = kv_get(self.srv, key, user=user)
        return r.status, body(r)

    def wait_source(self, key, source, user=None, timeout=5):
        """Polls GET until it answers from `source`; returns the last doc."""
        last = [None]

        def once():
            st, doc = self.get_doc(key, user)
            last[0] = (st, doc)
            return st == 200 and doc.get("source") == source
        poll(once, timeout)
        return last[0]

    def primary_value(self, key):
        return self.pg.psql("SELECT value FROM debug_kv WHERE key = '%s'" % key.replace("'", "''"))

    # -- tests -----------------------------------------------------------
    def test_1_writes_go_to_primary_reads_to_replica(self):
        self.put_ok("route-1", "v1")
        self.assertEqual(self.primary_value("route-1"), "v1")
        self.pg.wait_replica_caught_up(0)
        self.assertEqual(self.pg.psql("SELECT value FROM debug_kv WHERE key = 'route-1'", replica=0), "v1")
        st, doc = self.wait_source("route-1", "replica")
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc, {"key": "route-1", "value": "v1", "source": "replica"},
                         "an anonymous read of replicated data should come from the replica")
        # and it stays there (round robin over one healthy replica)
        for _ in range(10):
            self.assertEqual(self.get_doc("route-1"), (200, doc))

    def test_2_read_your_writes_while_replay_paused(self):
        self.put_ok("ryw", "old")
        self.put_ok("ryw-b", "b-old", user="user-b")
        self.pg.wait_replica_caught_up(0)
        # user-b's session is satisfied once the replica has replayed past
        # its write; wait until its reads are on the replica again
        st, doc = self.wait_source("ryw", "replica", user="user-b")
        self.assertEqual(doc.get("source"), "replica", doc)
        self.pg.pause_replay(0)
        try:
            t0 = time.monotonic()
            self.put_ok("ryw", "new", user="user-a")
            self.put_ok("ryw-fresh", "only-on-primary", user="user-a")
            self.assertEqual(self.primary_value("ryw"), "new")
            # the replica really lags
            self.assertEqual(self.pg.psql("SELECT value FROM debug_kv WHERE key = 'ryw'", replica=0), "old")

            with self.subTest(check="writer reads its own write from the primary"):
                for _ in range(5):
                    self.assertEqual(self.get_doc("ryw", "user-a"),
                                     (200, {"key": "ryw", "value": "new", "source": "primary"}))
                    self.assertEqual(self.get_doc("ryw-fresh", "user-a"),
                                     (200, {"key": "ryw-fresh", "value": "only-on-primary",
                                            "source": "primary"}))
            for other in ("user-b", "user-c"):  # b wrote earlier (replayed), c never wrote
                with self.subTest(check="a user who did not write reads the replica", user=other):
                    st, doc = self.get_doc("ryw", other)
                    self.assertEqual((st, doc), (200, {"key": "ryw", "value": "old", "source": "replica"}))
                    st, doc = self.get_doc("ryw-fresh", other)
                    self.assertEqual(st, 404, "%s read a row only the primary has: %r" % (other, doc))
            with self.subTest(check="an anonymous read goes to the replica"):
                st, doc = self.get_doc("ryw")
                self.assertEqual((st, doc), (200, {"key": "ryw", "value": "old", "source": "replica"}))
            # all of this within the lag bound (10 s) that would take the
            # replica out
            self.assertLess(time.monotonic() - t0, 8, "test too slow for the replica lag bound")
        finally:
            self.pg.resume_replay(0)
        self.pg.wait_replica_caught_up(0)
        st, doc = self.wait_source("ryw", "replica", user="user-a", timeout=5)
        self.assertEqual((st, doc), (200, {"key": "ryw", "value": "new", "source": "replica"}),
                         "after replay resumed, the writer's reads should go back to the replica")

    def test_3_readiness_and_metrics(self):
        status, doc = ready(self.srv)
        self.assertEqual(status, 200, doc)
        checks = doc.get("checks", {})
        for name in ("database", "replica-1"):
            with self.subTest(check=name):
                self.assertIn(name, checks, doc)
                self.assertEqual(checks[name].get("status"), "ok", doc)
                self.assertIn("latency", checks[name], doc)
        self.assertEqual(doc.get("status"), "ok", doc)
        text = metrics_text(self.srv)
        for name in STORAGE_METRICS + ("keel_db_replica_lag_seconds",):
            with self.subTest(metric=name):
                self.assertRegex(text, r"(?m)^(# TYPE )?%s(_bucket|_count|_sum)?(\{| )" % name)
        lag = metric_value(text, "keel_db_replica_lag_seconds", {"replica": "replica-1"})
        self.assertIsNotNone(lag, "no keel_db_replica_lag_seconds{replica=\"replica-1\"}")
        self.assertGreaterEqual(lag, 0)
        self.assertLess(lag, 10)

    def test_4_replica_stopped_and_restarted(self):
        self.put_ok("rep-stop", "v")
        self.pg.wait_replica_caught_up(0)
        self.wait_source("rep-stop", "replica")
        self.pg.stop_replica(0)
        try:
            statuses = []
            sources = []
            for _ in range(40):
                r = safe(kv_get, self.srv, "rep-stop")
                statuses.append(getattr(r, "status", repr(r)))
                d = body(r) if hasattr(r, "body") else None
                sources.append(d.get("source") if d else None)
                time.sleep(0.02)
            with self.subTest(check="every read succeeds while the replica is down"):
                bad = [s for s in statuses if s != 200]
                self.assertEqual(bad, [], "reads right after the replica stopped: %r" % statuses)
            self.assertEqual(sources[-1], "primary", sources)

            def degraded():
                st, doc = ready(self.srv)
                return (st, doc) if doc and doc.get("checks", {}).get("replica-1", {}).get("status") != "ok" else None
            got = poll(degraded, 5)
            self.assertIsNotNone(got, "readiness never showed the stopped replica")
            st, doc = got
            self.assertEqual(st, 200, "a replica being down must not make readiness 503: %r" % (doc,))
            self.assertIn(doc["checks"]["replica-1"]["status"], ("error", "degraded"), doc)
            self.assertEqual(doc["checks"]["database"]["status"], "ok", doc)
            self.assertEqual(doc.get("status"), "degraded", doc)
            # writes still work
            self.put_ok("rep-stop", "v2")
        finally:
            self.pg.start_replica(0)
        self.pg.wait_replica_caught_up(0)
        t0 = time.monotonic()
        st, doc = self.wait_source("rep-stop", "replica", timeout=10)
        dt = time.monotonic() - t0
        self.assertEqual((st, doc), (200, {"key": "rep-stop", "value": "v2", "source": "replica"}),
                         "the restarted replica was not used again within 10 s")
        self.assertLess(dt, 5, "the restarted replica took %.1fs to be used again" % dt)
        statuses = [getattr(safe(kv_get, self.srv, "rep-stop"), "status", None) for _ in range(20)]
        with self.subTest(check="reads succeed after the replica came back"):
            self.assertEqual([s for s in statuses if s != 200], [], statuses)
        st, doc = poll(lambda: (lambda r: r if r[1] and r[1].get("status") == "ok" else None)(ready(self.srv)), 5) \
            or ready(self.srv)
        self.assertEqual((st, doc.get("status")), (200, "ok"), doc)


    def test_5_lagging_replica_taken_out(self):
        """Replay paused long enough to pass the lag bound (10 s): the
        replica is taken out (anonymous reads go to the primary and see the
        new value), readiness degrades but stays 200, the lag metric shows
        it; replay resumed: the replica is used again."""
        self.put_ok("lag", "before")
        self.pg.wait_replica_caught_up(0)
        self.wait_source("lag", "replica")
        self.pg.pause_replay(0)
        try:
            self.put_ok("lag", "after")
            t0 = time.monotonic()
            st, doc = self.get_doc("lag")
            self.assertEqual((st, doc), (200, {"key": "lag", "value": "before", "source": "replica"}),
                             "within the bound, a lagging replica still serves anonymous reads")

            def out():
                st, doc = ready(self.srv)
                return (st, doc) if doc and doc.get("checks", {}).get("replica-1", {}).get("status") != "ok" \
                    else None
            got = poll(out, 16, 0.2)
            dt = time.monotonic() - t0
            self.assertIsNotNone(got, "the replica was not taken out after %.1fs of lag" % dt)
            print("\n# lagging replica taken out after %.1fs" % dt, flush=True)
            self.assertGreater(dt, 5, "taken out after only %.1fs (bound 10 s)" % dt)
            self.assertEqual(got[0], 200, got)
            self.assertEqual(got[1].get("status"), "degraded", got)
            st, doc = self.get_doc("lag")
            self.assertEqual((st, doc), (200, {"key": "lag", "value": "after", "source": "primary"}),
                             "with the replica out, reads go to the primary")
            lag = metric_value(metrics_text(self.srv), "keel_db_replica_lag_seconds", {"replica": "replica-1"})
            self.assertIsNotNone(lag)
            self.assertGreaterEqual(lag, 9, "keel_db_replica_lag_seconds while replay is paused")
        finally:
            self.pg.resume_replay(0)
        self.pg.wait_replica_caught_up(0)
        t0 = time.monotonic()
        st, doc = self.wait_source("lag", "replica", timeout=10)
        self.assertEqual((st, doc), (200, {"key": "lag", "value": "after", "source": "replica"}),
                         "the caught-up replica was not used again")
        self.assertLess(time.monotonic() - t0, 5)


# --------------------------------------------------------------------------

class PgPool(unittest.TestCase):
    def test_small_pool_many_clients(self):
        """KEEL_DATABASE_POOL_SIZE=1 (primary and replica) and 16 clients
        mixing session writes and reads: no deadlock, every request 200
        and every session reads its own last write."""
        with servers.PgCluster(replicas=1) as pg:
            srv = Server(env={"KEEL_DATABASE_URL": pg.url, "KEEL_DATABASE_REPLICAS": pg.replica_urls[0],
                              "KEEL_DATABASE_POOL_SIZE": "1"})
            with srv:
                errors = []

                def client(n):
                    user = "pool-user-%d" % n
                    for i in range(15):
                        r = safe(kv_put, srv, "pool-%d" % n, "v%d" % i, user=user, timeout=15)
                        if getattr(r, "status", None) != 200:
                            errors.append(("put", n, i, getattr(r, "status", r)))
                            continue
                        r = safe(kv_get, srv, "pool-%d" % n, user=user, timeout=15)
                        d = body(r) if hasattr(r, "body") else None
                        if getattr(r, "status", None) != 200 or not d or d.get("value") != "v%d" % i:
                            errors.append(("get", n, i, getattr(r, "status", r), d))
                threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=120)
                self.assertEqual(errors[:10], [], "%d failures (read-your-writes or pool)" % len(errors))
                text = metrics_text(srv)
                self.assertEqual(metric_value(text, "keel_db_pool_size", {"pool": "primary"}), 1)


# --------------------------------------------------------------------------

class PgPrimaryRestart(unittest.TestCase):
    WRITERS = 4

    def test_primary_restart_under_load(self):
        with servers.PgCluster(replicas=0) as pg:
            srv = Server(env={"KEEL_DATABASE_URL": pg.url, "KEEL_DATABASE_POOL_SIZE": "4"})
            with srv:
                self._run(pg, srv)

    def _run(self, pg, srv):
        results = []            # (key, value, status or exception, time, retry-after, body)
        lock = threading.Lock()
        stop = threading.Event()
        t_up = [None]
        recovered = [threading.Event() for _ in range(self.WRITERS)]

        def writer(w):
            i = 0
            while not stop.is_set():
                key, value = "load-%d-%d" % (w, i), "value-%d-%d" % (w, i)
                t = time.monotonic()
                r = safe(kv_put, srv, key, value, timeout=15)
                st = getattr(r, "status", r)
                with lock:
                    results.append((key, value, st, t, r.header("retry-after") if hasattr(r, "header") else None,
                                    r if hasattr(r, "status") else None))
                if st == 200 and t_up[0] is not None and t > t_up[0]:
                    recovered[w].set()
                i += 1

        threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(self.WRITERS)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            t_down = time.monotonic()
            pg.stop_primary(mode="immediate")
            # readiness while the primary is down
            ready_down = []
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                r = safe(ready, srv, timeout=8)
                ready_down.append(r[0] if isinstance(r, tuple) else repr(r))
                time.sleep(0.1)
            pg.start_primary()
            t_up[0] = time.monotonic()
            for ev in recovered:
                ev.wait(timeout=20)
            t_rec = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

        statuses = {}
        for _, _, st, _, _, _ in results:
            k = st if isinstance(st, int) else type(st).__name__
            statuses[k] = statuses.get(k, 0) + 1
        acked = {k: v for k, v, st, _, _, _ in results if st == 200}
        print("\n# primary restart: %d writes %r, readiness while down %r, recovery %.1fs after start"
              % (len(results), statuses, ready_down, t_rec - t_up[0]), flush=True)

        with self.subTest(check="readiness 503 while the primary is down"):
            self.assertTrue(ready_down, "no readiness probe while down")
            self.assertEqual([s for s in ready_down if s != 503], [],
                             "readiness while the primary was down: %r" % ready_down)

        with self.subTest(check="only 200 or 503 + Retry-After"):
            odd = [(k, st) for k, _, st, _, _, _ in results if st not in (200, 503)]
            self.assertEqual(odd, [], "writes answered neither 200 nor 503 (status or exception): %r"
                             % odd[:20])
            for k, _, st, _, ra, resp in results:
                if st == 503:
                    self.assertIsNotNone(ra, "503 without Retry-After for %s" % k)
                    self.assertEqual(body(resp).get("type"), "/problems/service-unavailable", resp)

        with self.subTest(check="some writes failed while down"):
            self.assertGreater(statuses.get(503, 0), 0, "no 503 at all: was the primary really down?")

        with self.subTest(check="recovers by itself"):
            not_rec = [w for w, ev in enumerate(recovered) if not ev.is_set()]
            self.assertEqual(not_rec, [], "writers with no 2xx within 20 s of the primary's restart")
            self.assertLess(t_rec - t_up[0], 10, "recovery took %.1fs" % (t_rec - t_up[0]))

        # no acknowledged write lost
        rows = pg.psql("SELECT key || '=' || value FROM debug_kv WHERE key LIKE 'load-%'")
        stored = dict(line.split("=", 1) for line in rows.splitlines() if "=" in line)
        lost = sorted(k for k in acked if stored.get(k) != acked[k])
        self.assertGreater(len(acked), 0)
        self.assertEqual(lost, [], "%d acknowledged (200) writes are missing or wrong after the restart, "
                         "e.g. %r" % (len(lost), [(k, stored.get(k)) for k in lost[:10]]))
        # and through the server too
        for k in sorted(acked)[:: max(1, len(acked) // 20)]:
            r = kv_get(srv, k)
            self.assertEqual((r.status, body(r).get("value")), (200, acked[k]), k)
        st, doc = poll(lambda: (lambda r: r if r[0] == 200 else None)(ready(srv)), 5) or ready(srv)
        self.assertEqual(st, 200, doc)
        with self.subTest(check="keel_db_errors_total counts the outage"):
            text = metrics_text(srv)
            total = sum(metric_value(text, "keel_db_errors_total", {"kind": k}) or 0
                        for k in ("unavailable", "timeout", "db"))
            self.assertGreater(total, 0, "no keel_db_errors_total sample after %d failed writes"
                               % statuses.get(503, 0))

    def test_hung_primary_is_bounded(self):
        """The primary's processes SIGSTOPped: sockets stay open (loopback
        ACKs) but nothing answers. With the pool warm (connections already
        open), 10 reads and a write in flight, then readiness: each must
        answer 503 within the statement timeout (5 s) plus slack - never
        hang, and never starve the thread pool so that readiness cannot
        answer. After SIGCONT the server recovers."""
        with servers.PgCluster(replicas=0) as pg:
            srv = Server(env={"KEEL_DATABASE_URL": pg.url})
            with srv:
                self.assertEqual(kv_put(srv, "hung-a", "1").status, 200)
                warm = [threading.Thread(target=lambda: [kv_get(srv, "hung-a") for _ in range(20)])
                        for _ in range(12)]
                for t in warm:
                    t.start()
                for t in warm:
                    t.join()
                res = {}
                lock = threading.Lock()

                def probe(name, fn):
                    t = time.monotonic()
                    r = safe(fn)
                    st = r[0] if isinstance(r, tuple) else getattr(r, "status", r)
                    with lock:
                        res.setdefault(name, []).append(
                            (st if isinstance(st, int) else type(st).__name__, round(time.monotonic() - t, 1)))

                pg.freeze_primary()
                try:
                    ts = [threading.Thread(target=probe, args=("GET /debug/kv", lambda: kv_get(srv, "hung-a", timeout=12)))
                          for _ in range(10)]
                    ts.append(threading.Thread(target=probe, args=("PUT /debug/kv",
                                                                   lambda: kv_put(srv, "hung-b", "2", timeout=12))))
                    for t in ts:
                        t.start()
                    time.sleep(1.0)
                    probe("GET /health/ready", lambda: ready(srv, timeout=12))
                    probe("GET /health/live", lambda: srv.request("GET", "/health/live", timeout=5))
                    for t in ts:
                        t.join()
                finally:
                    pg.thaw_primary()
                print("\n# hung primary: %r" % res, flush=True)
                for name, want in (("GET /debug/kv", 503), ("PUT /debug/kv", 503), ("GET /health/ready", 503),
                                   ("GET /health/live", 200)):
                    with self.subTest(request=name):
                        got = res.get(name, [])
                        bad = [(st, dt) for st, dt in got if st != want or dt >= 8]
                        self.assertEqual(bad, [], "%s with the primary hung: expected %d within 8 s "
                                         "(5 s statement timeout + slack); got (status, seconds) %r"
                                         % (name, want, got))
                got = poll(lambda: getattr(safe(kv_put, srv, "hung-c", "3"), "status", None) == 200, 15, 0.1)
                self.assertTrue(got, "no successful write within 15 s after the primary resumed")
                self.assertEqual(body(kv_get(srv, "hung-c")).get("value"), "3")


# --------------------------------------------------------------------------

class PgFailover(unittest.TestCase):
    """KEEL_DATABASE_URL with both hosts and target_session_attrs=read-write:
    the primary dies, the replica is promoted, and Keel writes to the new
    primary by itself (issue 3 "Primary failover")."""

    def test_failover_to_promoted_replica(self):
        with servers.PgCluster(replicas=1) as pg:
            srv = Server(env={"KEEL_DATABASE_URL": pg.multi_host_url(), "KEEL_DATABASE_POOL_SIZE": "4"})
            with srv:
                for i in range(20):
                    r = kv_put(srv, "before-%d" % i, "b%d" % i)
                    self.assertEqual(r.status, 200, r)
                pg.wait_replica_caught_up(0)
                pg.stop_primary(mode="immediate")
                # while no server accepts writes: 503, never 2xx
                r = safe(kv_put, srv, "during", "x")
                self.assertEqual(getattr(r, "status", r), 503, r)
                check_service_unavailable(self, r)
                pg.promote_replica(0)
                t0 = time.monotonic()
                got = poll(lambda: getattr(safe(kv_put, srv, "after", "a"), "status", None) == 200, 15, 0.1)
                dt = time.monotonic() - t0
                self.assertTrue(got, "no successful write within 15 s of the promotion")
                print("\n# failover: writes succeed %.1fs after promotion" % dt, flush=True)
                self.assertLess(dt, 10)
                self.assertEqual(pg.psql("SELECT value FROM debug_kv WHERE key = 'after'", replica=0), "a")
                for i in range(20):
                    r = kv_get(srv, "before-%d" % i)
                    self.assertEqual((r.status, body(r).get("value")), (200, "b%d" % i))
                st, doc = poll(lambda: (lambda r: r if r[0] == 200 else None)(ready(srv)), 5) or ready(srv)
                self.assertEqual(st, 200, doc)


# --------------------------------------------------------------------------

class RedisBreaker(unittest.TestCase):
    """KEEL_REDIS_URL with a small breaker (MIN_CALLS 5, OPEN 1 s); the
    database is the embedded SQLite (the database path must keep working
    with Redis down)."""

    def test_redis_down_under_load(self):
        with servers.Redis() as rd:
            srv = Server(env={"KEEL_REDIS_URL": rd.url, "KEEL_BREAKER_MIN_CALLS": "5",
                              "KEEL_BREAKER_OPEN": "1", "KEEL_BREAKER_WINDOW": "5",
                              "KEEL_BREAKER_HALF_OPEN_CALLS": "3"})
            with srv:
                self._run(rd, srv)

    def redis_doc(self, srv):
        r = srv.request("GET", "/debug/redis", timeout=10)
        return r.status, body(r)

    BREAKER_STATES = ("closed", "open", "half-open")

    def wait_closed(self, srv, timeout):
        """Polls /debug/redis until redis ok + breaker closed; every answer
        must be 200 with a contract breaker state. Returns the states seen."""
        seen = []
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = safe(self.redis_doc, srv)
            self.assertIsInstance(last, tuple, last)
            self.assertEqual(last[0], 200, last)
            state = (last[1].get("redis"), last[1].get("breaker"))
            if not seen or seen[-1] != state:
                seen.append(state)
            if state == ("ok", "closed"):
                break
            time.sleep(0.1)
        with self.subTest(check="breaker states are closed/open/half-open"):
            self.assertEqual([b for _, b in seen if b not in self.BREAKER_STATES], [],
                             "breaker states seen while Redis came back: %r" % seen)
        self.assertEqual(seen[-1] if seen else None, ("ok", "closed"),
                         "the breaker did not close within %ss of Redis returning; states %r" % (timeout, seen))
        return seen

    def test_redis_hung(self):
        """redis-server SIGSTOPped: connects and commands hang, so only the
        client's own timeouts help. Every request still 200, each bounded;
        the breaker opens and then fails fast; after SIGCONT it closes."""
        with servers.Redis() as rd:
            srv = Server(env={"KEEL_REDIS_URL": rd.url, "KEEL_BREAKER_MIN_CALLS": "5",
                              "KEEL_BREAKER_OPEN": "1", "KEEL_BREAKER_WINDOW": "5"})
            with srv:
                got = poll(lambda: (lambda r: r if r[1] and r[1].get("redis") == "ok" else None)(
                    self.redis_doc(srv)), 5)
                self.assertIsNotNone(got)
                rd.freeze()
                try:
                    results = []
                    t_end = time.monotonic() + 8
                    while time.monotonic() < t_end:
                        t = time.monotonic()
                        r = safe(self.redis_doc, srv)
                        results.append((time.monotonic() - t, r))
                        if isinstance(r, tuple) and r[1] and r[1].get("breaker") == "open" and \
                                sum(1 for _, x in results if isinstance(x, tuple) and x[1]
                                    and x[1].get("breaker") == "open") >= 5:
                            break
                    st, doc = ready(srv)
                finally:
                    rd.thaw()
                slow = max(dt for dt, _ in results)
                bad = [r for _, r in results if not (isinstance(r, tuple) and r[0] == 200)]
                print("\n# redis hung: %d requests, slowest %.2fs, answers %r" % (
                    len(results), slow, sorted({(r[1].get("redis"), r[1].get("breaker"))
                                                for _, r in results if isinstance(r, tuple) and r[1]})),
                      flush=True)
                self.assertEqual(bad, [], "requests failed while Redis hung")
                self.assertLess(slow, 3, "a request waited %.1fs on a hung Redis" % slow)
                opened = [dt for dt, r in results if r[1].get("breaker") == "open" and r[1].get("redis") != "ok"]
                self.assertTrue(opened, "the breaker never opened while Redis hung")
                self.assertLess(sorted(opened)[len(opened) // 2], 0.1,
                                "with the breaker open, calls should fail fast")
                self.assertIn(doc["checks"]["redis"]["status"], ("degraded",), doc)
                self.assertEqual(st, 200, doc)
                self.wait_closed(srv, 10)

    def _run(self, rd, srv):
        got = poll(lambda: (lambda r: r if r[0] == 200 and r[1] and r[1].get("redis") == "ok" else None)(
            self.redis_doc(srv)), 5)
        self.assertIsNotNone(got, "Redis never reported ok: %r" % (self.redis_doc(srv),))
        self.assertEqual(got[1], {"redis": "ok", "breaker": "closed", "database": "ok"})
        st, doc = ready(srv)
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc.get("checks", {}).get("redis", {}).get("status"), "ok", doc)
        text = metrics_text(srv)
        closed_value = metric_value(text, "keel_circuit_breaker_state", {"name": "redis"})
        self.assertIsNotNone(closed_value, "no keel_circuit_breaker_state{name=\"redis\"}")

        # Redis down, under load
        results = []
        lock = threading.Lock()
        stop = threading.Event()

        def loader():
            while not stop.is_set():
                t = time.monotonic()
                r = safe(self.redis_doc, srv)
                with lock:
                    results.append((t, time.monotonic() - t, r))

        rd.stop()
        t_stop = time.monotonic()
        threads = [threading.Thread(target=loader, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            def opened():
                with lock:
                    return any(isinstance(r, tuple) and r[1] and r[1].get("breaker") == "open"
                               for _, _, r in results)
            saw_open = poll(opened, 8)
            t_open = time.monotonic() - t_stop
            ready_down = safe(ready, srv)
            metrics_down = safe(metrics_text, srv)
            kv = safe(kv_put, srv, "with-redis-down", "db-ok")
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

        bad = [r for _, _, r in results if not (isinstance(r, tuple) and r[0] == 200)]
        states = {}
        for _, _, r in results:
            if isinstance(r, tuple) and r[1]:
                key = (r[1].get("redis"), r[1].get("breaker"), r[1].get("database"))
                states[key] = states.get(key, 0) + 1
        open_lat = sorted(dt for _, dt, r in results
                          if isinstance(r, tuple) and r[1] and r[1].get("breaker") == "open")
        print("\n# redis down: %d requests, states %r, open after %.2fs, median latency when open %s"
              % (len(results), states, t_open,
                 "%.1fms" % (open_lat[len(open_lat) // 2] * 1000) if open_lat else "-"), flush=True)

        with self.subTest(check="every request 200 while Redis is down"):
            self.assertEqual(bad[:10], [], "%d of %d requests failed" % (len(bad), len(results)))
        with self.subTest(check="database path works with Redis down"):
            self.assertEqual([k for k in states if k[2] != "ok"], [], states)
            self.assertEqual(getattr(kv, "status", kv), 200, kv)
        with self.subTest(check="redis reported as not ok"):
            self.assertTrue(any(k[0] in ("unavailable", "timeout") for k in states), states)
            self.assertEqual([k for k in states if k[0] not in ("ok", "unavailable", "timeout")], [], states)
        with self.subTest(check="breaker opens"):
            self.assertTrue(saw_open, "breaker never reported open within 8 s; states %r" % states)
            self.assertEqual([k for k in states if k[1] not in self.BREAKER_STATES], [], states)
        with self.subTest(check="readiness degraded, not 503"):
            self.assertIsInstance(ready_down, tuple, ready_down)
            st, doc = ready_down
            self.assertEqual(st, 200, doc)
            self.assertEqual(doc.get("status"), "degraded", doc)
            self.assertEqual(doc["checks"]["redis"]["status"], "degraded", doc)
            self.assertEqual(doc["checks"]["database"]["status"], "ok", doc)
        with self.subTest(check="breaker metric changes"):
            self.assertIsInstance(metrics_down, str)
            v = metric_value(metrics_down, "keel_circuit_breaker_state", {"name": "redis"})
            self.assertIsNotNone(v)
            self.assertNotEqual(v, closed_value, "keel_circuit_breaker_state{name=\"redis\"} did not change "
                                "while the breaker was open")

        # Redis back: the breaker closes again
        rd.start()
        t0 = time.monotonic()
        seen = self.wait_closed(srv, 10)
        print("# breaker closed %.1fs after Redis returned; states on the way %r"
              % (time.monotonic() - t0, seen), flush=True)
        st, doc = poll(lambda: (lambda r: r if r[1] and r[1].get("status") == "ok" else None)(ready(srv)), 5) \
            or ready(srv)
        self.assertEqual((st, doc.get("status")), (200, "ok"), doc)
        text = metrics_text(srv)
        self.assertEqual(metric_value(text, "keel_circuit_breaker_state", {"name": "redis"}), closed_value)
        with self.subTest(check="breaker state changes are logged"):
            recs = [r for r in srv.logs() if "breaker" in (r.get("msg", "") + " " + " ".join(r.keys())).lower()]
            self.assertTrue(recs, "no log record about the breaker")


# --------------------------------------------------------------------------

class PgMigrations(unittest.TestCase):
    pg = None

    @classmethod
    def setUpClass(cls):
        cls.pg = servers.PgCluster(replicas=0).start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def newdb(self, name):
        return self.pg.create_database(name)

    def migrate(self, url, *args, env=None):
        e = {"KEEL_DATABASE_URL": url}
        e.update(env or {})
        return run_cli(["migrate"] + list(args), env=e, timeout=60)

    def history(self, db):
        """schema_migrations as 'version:checksum:applied_at' lines; [] when
        the table does not exist."""
        if self.pg.psql("SELECT to_regclass('schema_migrations') IS NOT NULL", db=db) != "t":
            return []
        return self.pg.psql("SELECT version || ':' || checksum || ':' || applied_at FROM schema_migrations "
                            "ORDER BY version", db=db).splitlines()

    def test_fresh_then_repeated(self):
        url = self.newdb("mig_fresh")
        p = self.migrate(url, "up")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        first = self.history("mig_fresh")
        self.assertGreaterEqual(len(first), 1, "no migration recorded")
        self.assertEqual([int(l.split(":")[0]) for l in first], list(range(1, len(first) + 1)))
        self.assertEqual(count_applied_logs(p.stdout + p.stderr), len(first), p.stdout)
        p = self.migrate(url, "up")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.history("mig_fresh"), first, "a repeated `migrate up` changed schema_migrations")
        self.assertEqual(count_applied_logs(p.stdout + p.stderr), 0, p.stdout)
        p = self.migrate(url, "status")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_two_racing_instances(self):
        n = None
        for round_ in range(3):
            db = "mig_race_%d" % round_
            url = self.newdb(db)
            env = base_env({"KEEL_DATABASE_URL": url, "KEEL_DATA_DIR": "/nonexistent-keel-data"})
            procs = [subprocess.Popen([KEEL_BIN, "migrate", "up"], env=env, cwd="/tmp",
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
            outs = []
            for p in procs:
                out, err = p.communicate(timeout=60)
                outs.append((p.returncode, out + err))
            for i, (rc, out) in enumerate(outs):
                self.assertEqual(rc, 0, "racing migrator %d (round %d) exited %d:\n%s" % (i, round_, rc, out[-3000:]))
            dup = self.pg.psql("SELECT version FROM schema_migrations GROUP BY version HAVING count(*) > 1", db=db)
            self.assertEqual(dup, "")
            rows = self.history(db)
            n = n or len(rows)
            self.assertEqual(len(rows), n)
            applied = sum(count_applied_logs(out) for _, out in outs)
            self.assertEqual(applied, len(rows),
                             "each migration must be applied exactly once across both instances "
                             "(round %d: %d 'migration applied' lines for %d versions)" % (round_, applied, len(rows)))

    def test_tampered_migration_refused(self):
        url = self.newdb("mig_tamper")
        p = self.migrate(url, "up")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.pg.psql("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1", db="mig_tamper")
        p = self.migrate(url, "up")
        self.assertEqual(p.returncode, 1, "migrate up on a tampered database:\n" + p.stdout + p.stderr)
        p = self.migrate(url, "status")
        self.assertEqual(p.returncode, 1, "migrate status on a tampered database:\n" + p.stdout + p.stderr)
        for label, env, args in (("development", {"KEEL_DATABASE_URL": url}, ()),
                                 ("production --migrate", production_env({"KEEL_DATABASE_URL": url}),
                                  ("--migrate",))):
            with self.subTest(serve=label):
                rc, out = serve_until_exit(env, args, timeout=15)
                self.assertIsNotNone(rc, "keel serve (%s) started on a tampered database:\n%s" % (label, out[-2000:]))
                self.assertNotEqual(rc, 0, out[-2000:])
                self.assertNotIn('"msg":"listening"', out.replace(" ", ""))

    def test_development_serve_migrates(self):
        url = self.newdb("mig_dev")
        with Server(env={"KEEL_DATABASE_URL": url}) as srv:
            srv.wait_ready()
            self.assertGreaterEqual(len(self.history("mig_dev")), 1,
                                    "schema_migrations empty or missing after `keel serve` in development")

    def test_production_refuses_pending_then_migrate_flag(self):
        url = self.newdb("mig_prod")
        env = production_env({"KEEL_DATABASE_URL": url})
        rc, out = serve_until_exit(env, timeout=15)
        self.assertIsNotNone(rc, "keel serve started in production with pending migrations:\n" + out[-2000:])
        self.assertEqual(rc, 1, out[-2000:])
        self.assertIn("migrat", out.lower(), "no clear message about migrations:\n" + out[-2000:])
        self.assertEqual(self.history("mig_prod"), [], "production serve applied migrations without --migrate")
        srv = Server(env=env, debug_routes=False, args=["--migrate"])
        with srv:
            srv.wait_ready()
            self.assertGreaterEqual(len(self.history("mig_prod")), 1)
        with Server(env=env, debug_routes=False) as srv:
            srv.wait_ready()


if __name__ == "__main__":
    servers.install_sigterm_cleanup()
    keeltest.main()
