"""Orders end to end on a real PostgreSQL 15 server (tests/lib/servers.py)
shared by two `keel serve` instances A and B, so that commands race across
processes and connections as they do in production (issue 5; SPEC section
3 "Orders"; docs/internals/orders.md "Concurrency"). Scenarios shared with
test_orders.py run here against PostgreSQL's READ COMMITTED row locking and
unique-constraint races instead of SQLite's single writer:

  test_oversell             50 concurrent one-unit orders over A and B for a
                            stock of 10: exactly 10 x 201 and 40 x 409
                            out-of-stock, stock 0, exactly 10 OrderCreated.
  test_concurrent_cancel    10 cancels of one order at once (owner on A,
                            admin on B): the append race is lost by 9, which
                            retry, find the order cancelled and answer 409;
                            stock put back once, two events.
  test_append_race          the race made certain: appends are held back by
                            a lock while 5 cancels load version 1; the 4
                            losers hit the unique constraint, rerun, and
                            answer 409 (keel_orders_append_conflicts_total
                            counts them).
  test_idempotency          parallel duplicates of one Idempotency-Key over
                            A and B: one order.
  test_rebuild              1,000 random commands over A and B, invariants,
                            then `keel projections rebuild orders` while
                            both serve: the rebuilt read model equals the
                            live one.

Skipped when the PostgreSQL 15 binaries are missing; a server that is
present but does not start is an error.
"""

import os
import secrets
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import keeltest  # noqa: E402
from keeltest import Server, check_problem  # noqa: E402
import servers  # noqa: E402
from test_storage import metric_value, metrics_text  # noqa: E402
from test_orders import (Catalog, Workload, act, check_concurrent_idempotency,  # noqa: E402
                         check_invariants, check_oversell, check_rebuild, create_admin, js,
                         new_user, order, parallel)


def setUpModule():
    if not servers.have_postgres():
        raise unittest.SkipTest("PostgreSQL 15 binaries not found in %s" % servers.PG_BIN)


class PgStore:
    """The database through psql: rows as tuples of strings (NULL = "")."""

    def __init__(self, pg):
        self.pg = pg

    def query(self, sql):
        out = self.pg.psql(sql)
        return [tuple(line.split("|")) for line in out.splitlines()] if out else []

    def execute(self, sql):
        self.pg.psql(sql)


def keel_env(pg):
    return {
        "KEEL_ENV": "development",
        "KEEL_DATABASE_URL": pg.url,
        "KEEL_DATABASE_POOL_SIZE": "8",
        "KEEL_JWT_SECRET": JWT_SECRET,
        "KEEL_PASSWORD_MEMORY": "1024",
        "KEEL_PASSWORD_ITERATIONS": "1",
    }


JWT_SECRET = secrets.token_hex(20)  # common to both instances


class OrdersPg(unittest.TestCase):
    pg = a = b = None

    @classmethod
    def setUpClass(cls):
        servers.install_sigterm_cleanup()
        tc = unittest.TestCase()
        cls.pg = servers.PgCluster(replicas=0)
        try:
            cls.pg.start()
            env = keel_env(cls.pg)
            # A applies the migrations before B starts
            cls.a = Server(env=env)
            cls.a.start()
            cls.a.wait_ready(timeout=20)
            cls.b = Server(env=env)
            cls.b.start()
            cls.b.wait_ready(timeout=20)
            cls.store = PgStore(cls.pg)
            cls.admin = create_admin(tc, cls.a)
            cls.manager = new_user(tc, cls.a, cls.admin, "manager")
            cls.users = [new_user(tc, (cls.a, cls.b)[i % 2]) for i in range(6)]
            cls.catalog = Catalog(tc, cls.a, cls.store, cls.admin)
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        for s in (cls.a, cls.b):
            if s is not None:
                s.cleanup()
        if cls.pg is not None:
            cls.pg.close()

    @classmethod
    def tearDownClass(cls):
        try:
            for s in (cls.a, cls.b):
                s.stop_and_check()
        finally:
            cls.cleanup()

    def setUp(self):
        for s in (self.a, self.b):
            if not s.alive():
                self.fail("keel serve died:\n" + "\n".join(s.err_lines[-30:]))

    def test_oversell(self):
        check_oversell(self, [self.a, self.b], self.store, self.catalog, self.users)

    def test_concurrent_cancel(self):
        pid = self.catalog.make(price=700, stock=20)
        owner = self.users[0]
        r = order(self.a, owner, [(pid, 4)])
        self.assertEqual(r.status, 201, r)
        oid = js(r)["id"]
        self.assertEqual(self.catalog.stock(pid), 16)
        fns = [(lambda i=i: act((self.a, self.b)[i % 2], owner if i % 2 == 0 else self.admin,
                                oid, "cancel")) for i in range(10)]
        res = parallel(fns)
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
        statuses = sorted(r.status for r in res)
        self.assertEqual(statuses, [200] + [409] * 9, statuses)
        for r in res:
            if r.status == 409:
                check_problem(self, r, 409, "conflict")
        self.assertEqual(self.catalog.stock(pid), 20)
        self.assertEqual(self.store.query("SELECT version, type FROM events WHERE stream_id = '%s'"
                                          " ORDER BY version" % oid),
                         [("1", "OrderCreated"), ("2", "OrderCancelled")])
        self.assertEqual(self.store.query("SELECT status, version FROM orders WHERE id = '%s'"
                                          % oid), [("cancelled", "2")])

    def conflicts(self):
        return sum(metric_value(metrics_text(s), "keel_orders_append_conflicts_total") or 0
                   for s in (self.a, self.b))

    def test_append_race(self):
        pid = self.catalog.make(price=300, stock=10)
        owner = self.users[3]
        r = order(self.b, owner, [(pid, 2)])
        self.assertEqual(r.status, 201, r)
        oid = js(r)["id"]
        before = self.conflicts()
        # Readers pass an EXCLUSIVE lock, appends wait: every cancel loads
        # version 1 and decides before the first append can commit.
        holder = threading.Thread(target=self.pg.psql, args=(
            "BEGIN; LOCK TABLE events IN EXCLUSIVE MODE; SELECT pg_sleep(1.5); COMMIT;",))
        holder.start()
        time.sleep(0.3)
        res = parallel([(lambda i=i: act((self.a, self.b)[i % 2],
                                         owner if i % 2 else self.admin, oid, "cancel"))
                        for i in range(5)])
        holder.join(30)
        statuses = sorted(getattr(r, "status", r) for r in res)
        self.assertEqual(statuses, [200, 409, 409, 409, 409], res)
        self.assertGreaterEqual(self.conflicts() - before, 4)
        self.assertEqual(self.catalog.stock(pid), 10)
        self.assertEqual(self.store.query("SELECT version, type FROM events WHERE stream_id = '%s'"
                                          " ORDER BY version" % oid),
                         [("1", "OrderCreated"), ("2", "OrderCancelled")])

    def test_idempotency(self):
        check_concurrent_idempotency(self, [self.a, self.b], self.store, self.catalog,
                                     self.users[1], n=10)

    def test_rebuild(self):
        stock0 = {}
        for price, stock in ((199, 600), (1250, 600), (5, 800), (1, 12)):
            stock0[self.catalog.make(price=price, stock=stock)] = stock
        w = Workload(self, [self.a, self.b], self.users, self.admin, self.manager, list(stock0),
                     seed=11)
        self.assertEqual(w.run(1000, workers=8), 1000)
        self.assertGreater(w.results.get(("create", 201), 0), 200, w.results)
        check_invariants(self, self.store, stock0)
        check_rebuild(self, self.a, self.store, self.admin)
        # both instances serve the rebuilt model
        r = order(self.b, self.users[2], [(list(stock0)[0], 1)])
        self.assertEqual(r.status, 201, r)
        r = act(self.a, self.users[2], js(r)["id"], "cancel")
        self.assertEqual(r.status, 200, r)
        check_invariants(self, self.store, stock0)


if __name__ == "__main__":
    keeltest.main()
