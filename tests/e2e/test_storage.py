"""Storage end to end on the embedded default (SQLite): the debug kv routes
(KEEL_DEBUG_ROUTES=1) through the real server, persistence across a
restart, readiness and storage metrics, and migrations (`keel migrate
up|status`, development auto-migration, production refusal and --migrate,
a tampered migration refused). Issue 3, SPEC sections 1, 5 and 7.

PostgreSQL (replicas, read-your-writes, failover) and Redis (circuit
breaker) are in test_storage_pg.py. This file also holds the helpers both
use (kv_put, kv_get, ready, metrics, serve_until_exit).
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import keeltest
from keeltest import Server, run_cli, base_env, KEEL_BIN

JWT_SECRET = "storage-e2e-jwt-secret-0123456789abcdefghijkl"  # 46 bytes

STORAGE_METRICS = ("keel_db_pool_size", "keel_db_pool_in_use", "keel_db_pool_waiting",
                   "keel_db_query_duration_seconds", "keel_db_errors_total")


# --------------------------------------------------------------------------
# helpers (also used by test_storage_pg.py)

def kv_put(srv, key, value, user=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if user:
        headers["X-Debug-User"] = user
    return srv.request("PUT", "/debug/kv/" + key, headers, json.dumps({"value": value}).encode(),
                       timeout=timeout)


def kv_get(srv, key, user=None, timeout=10):
    headers = {"X-Debug-User": user} if user else None
    return srv.request("GET", "/debug/kv/" + key, headers, timeout=timeout)


def body(resp):
    try:
        return json.loads(resp.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def ready(srv, timeout=10):
    """(status, body) of GET /health/ready."""
    r = srv.request("GET", "/health/ready", timeout=timeout)
    return r.status, body(r)


def metrics_text(srv):
    r = srv.request("GET", "/metrics")
    assert r.status == 200, r
    return r.body.decode()


def metric_value(text, name, labels=None):
    """The value of the first sample of `name` whose labels include
    `labels` (a dict), or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(3))
    return None


def check_service_unavailable(tc, resp):
    """A 503 for a storage failure: problem+json service-unavailable with
    Retry-After."""
    keeltest.check_problem(tc, resp, 503, "service-unavailable")
    tc.assertIsNotNone(resp.header("retry-after"), "503 without Retry-After: %r" % resp.headers)


def serve_until_exit(env, args=(), timeout=15, cwd=None):
    """Runs `keel serve ARGS` expecting it to refuse to start. Returns
    (returncode, stdout+stderr); returncode is None when it started
    listening instead, or was still running after `timeout` (it is then
    stopped)."""
    full = base_env(dict({"KEEL_LISTEN": "127.0.0.1:0"}, **env))
    tmp = None
    if cwd is None:
        tmp = cwd = tempfile.mkdtemp(prefix="keel-serve-")
    lines = []

    def drain(stream):
        for line in iter(stream.readline, ""):
            lines.append(line)
        stream.close()

    try:
        p = subprocess.Popen([KEEL_BIN, "serve"] + list(args), env=full, cwd=cwd,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        ts = [threading.Thread(target=drain, args=(s,), daemon=True) for s in (p.stdout, p.stderr)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + timeout
        rc = None
        while time.monotonic() < deadline:
            rc = p.poll()
            if rc is not None:
                break
            if any('"msg":"listening"' in l.replace(" ", "") for l in list(lines)):
                break
            time.sleep(0.05)
        if rc is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in ts:
            t.join(timeout=5)
        return rc, "".join(lines)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def log_records(text):
    out = []
    for line in text.splitlines():
        rec = keeltest.parse_json_line(line)
        if rec is not None:
            out.append(rec)
    return out


def count_applied_logs(text):
    return sum(1 for r in log_records(text) if r.get("msg") == "migration applied")


def production_env(extra=None):
    env = {"KEEL_ENV": "production", "KEEL_JWT_SECRET": JWT_SECRET, "KEEL_DEBUG_ROUTES": None}
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------
# kv on SQLite

class SqliteKv(keeltest.ServerCase):
    """The default database (SQLite under KEEL_DATA_DIR) through the kv
    debug routes."""

    def test_put_get_round_trip(self):
        r = kv_put(self.srv, "alpha", "one")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(keeltest.get_json(self, r), {"key": "alpha", "value": "one"})
        r = kv_get(self.srv, "alpha")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(keeltest.get_json(self, r), {"key": "alpha", "value": "one", "source": "primary"})

    def test_overwrite(self):
        self.assertEqual(kv_put(self.srv, "beta", "first").status, 200)
        self.assertEqual(kv_put(self.srv, "beta", "second").status, 200)
        self.assertEqual(body(kv_get(self.srv, "beta"))["value"], "second")

    def test_missing_key_404(self):
        keeltest.check_problem(self, kv_get(self.srv, "no-such-key"), 404)

    def test_values_are_data_not_sql(self):
        values = ["", "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c \U0001F389",
                  "'); DROP TABLE debug_kv; --", "a\"b\\c\nd\te", "$1 $2 ?", "x" * 1000]
        for i, v in enumerate(values):
            with self.subTest(value=v[:30]):
                r = kv_put(self.srv, "val-%d" % i, v)
                self.assertEqual(r.status, 200, r)
                r = kv_get(self.srv, "val-%d" % i)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(body(r)["value"], v)
        # the table is still there
        self.assertEqual(kv_get(self.srv, "val-0").status, 200)

    def test_user_session_on_sqlite(self):
        # No replicas: every read is the primary, with or without a session.
        self.assertEqual(kv_put(self.srv, "gamma", "g", user="user-a").status, 200)
        for user in ("user-a", "user-b", None):
            r = kv_get(self.srv, "gamma", user=user)
            self.assertEqual(body(r), {"key": "gamma", "value": "g", "source": "primary"})

    def test_concurrent_writes(self):
        errors = []

        def writer(t):
            for i in range(25):
                r = kv_put(self.srv, "c-%d-%d" % (t, i), "v-%d-%d" % (t, i))
                if r.status != 200:
                    errors.append((t, i, r.status, r.body[:200]))

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [], "concurrent SQLite writes failed")
        for t in range(6):
            self.assertEqual(body(kv_get(self.srv, "c-%d-24" % t))["value"], "v-%d-24" % t)

    def test_readiness_has_database_check(self):
        status, doc = ready(self.srv)
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc.get("status"), "ok", doc)
        db = doc.get("checks", {}).get("database")
        self.assertIsInstance(db, dict, doc)
        self.assertEqual(db.get("status"), "ok", doc)
        self.assertIn("latency", db, doc)
        self.assertIn("version", doc)
        self.assertIn("uptime", doc)

    def test_storage_metrics(self):
        kv_put(self.srv, "m", "x")
        kv_get(self.srv, "m")
        text = metrics_text(self.srv)
        for name in STORAGE_METRICS:
            with self.subTest(metric=name):
                # a labelled counter has no sample before its first event
                self.assertRegex(text, r"(?m)^(# TYPE )?%s(_bucket|_count|_sum)?(\{| )" % name)
        self.assertGreaterEqual(metric_value(text, "keel_db_query_duration_seconds_count") or 0, 1)
        size = metric_value(text, "keel_db_pool_size")
        self.assertIsNotNone(size)
        self.assertGreaterEqual(size, 1)
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class SqlitePersistence(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-sqlite-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_restart_keeps_data(self):
        env = {"KEEL_DATA_DIR": os.path.join(self.dir, "var")}
        with Server(env=env) as srv:
            for i in range(20):
                self.assertEqual(kv_put(srv, "p%d" % i, "value-%d" % i).status, 200)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "var", "keel.db")),
                        "the default database lives under KEEL_DATA_DIR: %s" % os.listdir(self.dir))
        with Server(env=env) as srv:
            for i in range(20):
                r = kv_get(srv, "p%d" % i)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(body(r)["value"], "value-%d" % i)

    def test_explicit_url(self):
        path = os.path.join(self.dir, "explicit.db")
        with Server(env={"KEEL_DATABASE_URL": "sqlite:" + path}) as srv:
            self.assertEqual(kv_put(srv, "e", "x").status, 200)
        con = sqlite3.connect(path)
        try:
            self.assertEqual(con.execute("SELECT value FROM debug_kv WHERE key = 'e'").fetchall(), [("x",)])
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            self.assertEqual(mode.lower(), "wal", "SQLite runs in WAL mode")
        finally:
            con.close()


# --------------------------------------------------------------------------
# migrations on SQLite

def sqlite_rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


class SqliteMigrations(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keel-mig-")
        self.db = os.path.join(self.dir, "keel.db")
        self.env = {"KEEL_DATABASE_URL": "sqlite:" + self.db,
                    "KEEL_DATA_DIR": os.path.join(self.dir, "var")}

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def migrate(self, *args, env=None):
        return run_cli(["migrate"] + list(args), env=dict(self.env, **(env or {})), timeout=30)

    def history(self):
        """schema_migrations rows; [] when the database or table does not exist."""
        if not os.path.exists(self.db) or not sqlite_rows(
                self.db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"):
            return []
        return sqlite_rows(self.db, "SELECT version, checksum, applied_at FROM schema_migrations "
                                    "ORDER BY version")

    def test_fresh_then_repeated(self):
        p = self.migrate("up")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        first = self.history()
        self.assertGreaterEqual(len(first), 1, "no migration recorded")
        self.assertEqual([v for v, _, _ in first], list(range(1, len(first) + 1)))
        self.assertEqual(count_applied_logs(p.stdout + p.stderr), len(first))
        p = self.migrate("up")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.history(), first, "a repeated `migrate up` changed schema_migrations")
        self.assertEqual(count_applied_logs(p.stdout + p.stderr), 0, p.stdout)
        p = self.migrate("status")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_two_racing_instances(self):
        env = base_env(dict(self.env))
        procs = [subprocess.Popen([KEEL_BIN, "migrate", "up"], env=env, cwd=self.dir,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            outs.append((p.returncode, out + err))
        for i, (rc, out) in enumerate(outs):
            self.assertEqual(rc, 0, "racing migrator %d exited %d:\n%s" % (i, rc, out[-3000:]))
        rows = self.history()
        self.assertGreaterEqual(len(rows), 1)
        self.assertEqual(sum(count_applied_logs(out) for _, out in outs), len(rows),
                         "each migration applied exactly once across both instances")

    def test_status_on_fresh_database(self):
        p = self.migrate("status")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue((p.stdout + p.stderr).strip())

    def test_tampered_migration_refused(self):
        p = self.migrate("up")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        con = sqlite3.connect(self.db)
        con.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        con.commit()
        con.close()
        p = self.migrate("up")
        self.assertEqual(p.returncode, 1, "migrate up on a tampered database: " + p.stdout + p.stderr)
        p = self.migrate("status")
        self.assertEqual(p.returncode, 1, "migrate status on a tampered database: " + p.stdout + p.stderr)
        rc, out = serve_until_exit(self.env, timeout=15)
        self.assertIsNotNone(rc, "keel serve started on a tampered database:\n" + out[-2000:])
        self.assertNotEqual(rc, 0, out[-2000:])
        self.assertNotIn('"msg":"listening"', out.replace(" ", ""))

    def test_development_serve_migrates(self):
        with Server(env=self.env) as srv:
            self.assertEqual(srv.request("GET", "/health/live").status, 200)
            self.assertGreaterEqual(len(self.history()), 1,
                                    "schema_migrations empty or missing after `keel serve` in development")

    def test_production_refuses_pending_then_migrate_flag(self):
        rc, out = serve_until_exit(production_env(self.env), timeout=15)
        self.assertIsNotNone(rc, "keel serve started in production with pending migrations:\n" + out[-2000:])
        self.assertEqual(rc, 1, out[-2000:])
        self.assertIn("migrat", out.lower(), "no clear message about migrations:\n" + out[-2000:])
        self.assertEqual(self.history(), [], "production serve applied migrations without --migrate")
        srv = Server(env=production_env(self.env), debug_routes=False, args=["--migrate"])
        with srv:
            srv.wait_ready()
            self.assertGreaterEqual(len(self.history()), 1)
        # now up to date: production starts without the flag
        srv = Server(env=production_env(self.env), debug_routes=False)
        with srv:
            srv.wait_ready()


if __name__ == "__main__":
    keeltest.main()
