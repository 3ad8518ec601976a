#!/usr/bin/env python3
"""The integration suite (SPEC section 7: real servers, no mocks).

Starts a PostgreSQL primary (tests/lib/servers.py PgCluster, no replica) and
a Redis server on loopback in temporary directories, then runs:

  itest_db     against SQLite   (KEEL_TEST_DATABASE_URL=sqlite:<tmp>/t.db)
  itest_db     against PostgreSQL (KEEL_TEST_DATABASE_URL=postgres://...)
  test_db_pg   the PostgreSQL driver's unit tests (KEEL_TEST_PG_URL)
  itest_redis  the Redis client (KEEL_TEST_REDIS_URL)

Binary paths come from the environment (tests/integration/meson.build sets
them): ITEST_DB, ITEST_REDIS, TEST_DB_PG. Without meson, they default to
build-dev. Prints one line per sub-run and exits 1 when any failed, 77 (skip)
when the PostgreSQL or Redis server binaries are missing.

Run by hand:  python3 tests/integration/run.py [-v] [NAME...]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import servers  # noqa: E402

BUILD = os.path.join(REPO, "build-dev")
SKIP = 77
SUB_TIMEOUT = 240


def binary(env_name, default):
    return os.environ.get(env_name) or os.path.join(BUILD, default)


def run_one(name, path, env_extra, verbose):
    if not os.path.exists(path):
        print("integration %-14s FAIL  binary %s not found" % (name, path), flush=True)
        return False
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEEL_") and not k.startswith("OTEL_")}
    env.update(env_extra)
    t0 = time.monotonic()
    try:
        p = subprocess.run([path], env=env, capture_output=True, text=True,
                           timeout=SUB_TIMEOUT, stdin=subprocess.DEVNULL)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = None
        out = "%s%s\n(timed out after %ds)" % (e.stdout or "", e.stderr or "", SUB_TIMEOUT)
        if isinstance(out, bytes):
            out = out.decode("utf-8", "replace")
    dt = time.monotonic() - t0
    if rc == 0:
        verdict = "PASS"
    elif rc == SKIP:
        verdict = "SKIP"
    else:
        verdict = "FAIL"
    print("integration %-14s %s  (exit %s, %.1fs)" % (name, verdict, rc, dt), flush=True)
    if verdict != "PASS" or verbose:
        for line in out.rstrip().splitlines()[-200:]:
            print("    " + line)
        sys.stdout.flush()
    # An expected environment variable was set: a skip here means the test
    # binary did not run its tests, which counts as a failure.
    return verdict == "PASS"


def main(argv):
    verbose = "-v" in argv
    only = [a for a in argv if not a.startswith("-")]
    servers.install_sigterm_cleanup()
    if not servers.have_postgres() or not servers.have_redis():
        print("integration: SKIP (PostgreSQL 15 or redis-server binaries missing)")
        return SKIP
    itest_db = binary("ITEST_DB", "tests/integration/itest_db")
    itest_redis = binary("ITEST_REDIS", "tests/integration/itest_redis")
    test_db_pg = binary("TEST_DB_PG", "tests/test_db_pg")

    tmp = tempfile.mkdtemp(prefix="keel-itest-")
    results = []
    try:
        t0 = time.monotonic()
        with servers.PgCluster(replicas=0) as pg, servers.Redis() as rd:
            print("integration: PostgreSQL at %s, Redis at %s (up in %.1fs)" % (
                pg.url, rd.url, time.monotonic() - t0), flush=True)
            # One database per sub-run, so the suites cannot see each
            # other's tables.
            runs = [
                ("db-sqlite", itest_db,
                 {"KEEL_TEST_DATABASE_URL": "sqlite:" + os.path.join(tmp, "t.db")}),
                ("db-postgres", itest_db,
                 {"KEEL_TEST_DATABASE_URL": pg.create_database("itest_db")}),
                ("db_pg-unit", test_db_pg,
                 {"KEEL_TEST_PG_URL": pg.create_database("test_db_pg")}),
                ("redis", itest_redis, {"KEEL_TEST_REDIS_URL": rd.url}),
            ]
            for name, path, env in runs:
                if only and name not in only:
                    continue
                results.append((name, run_one(name, path, env, verbose)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [n for n, ok in results if not ok]
    print("integration: %s (%d run, %d failed%s)" % (
        "FAIL" if failed else "PASS", len(results), len(failed),
        (": " + ", ".join(failed)) if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
