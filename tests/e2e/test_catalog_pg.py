"""Catalog and inventory end to end on PostgreSQL 15 (issue 5; SPEC section 3
"Catalog and inventory"; docs/internals/catalog.md), started by the harness
on loopback in a temporary directory (tests/lib/servers.py).

CatalogPg runs every test of test_catalog.CatalogCore (CRUD, duplicate sku,
ETag / If-None-Match / If-Match including ten racing patches, stock with 50
concurrent decrements that must never pass zero, pagination over every
sort, filters, tsvector search and hostile search strings) against one
`keel serve` on PostgreSQL, and adds:

  test_two_instances_share_stock
                   the concurrent decrements spread over two instances on
                   the same database: still exactly `stock` successes.
  test_seed        `keel seed` on a fresh PostgreSQL database, then listed
                   and searched.

Skipped when the PostgreSQL 15 binaries are missing (as test_storage_pg.py);
a server that is present but does not start is an error.
"""

import os
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import keeltest  # noqa: E402
from keeltest import Server, run_cli  # noqa: E402
import servers  # noqa: E402
import test_auth as ta  # noqa: E402
from test_catalog import (CatalogCore, FAST, PATH, TIMEOUT, call, doc, qs,  # noqa: E402
                          setup_users)


def setUpModule():
    if not servers.have_postgres():
        raise unittest.SkipTest("PostgreSQL 15 binaries not found in %s" % servers.PG_BIN)


def pg_env(url):
    return dict(FAST, KEEL_DATABASE_URL=url, KEEL_DATABASE_POOL_SIZE="8")


class CatalogPg(CatalogCore, unittest.TestCase):
    pg = None

    @classmethod
    def setUpClass(cls):
        cls.pg = servers.PgCluster(replicas=0).start()
        try:
            cls.srv = Server(env=pg_env(cls.pg.url))
            cls.srv.start()
            cls.srv.wait_ready(timeout=20)
            cls.tok = setup_users(unittest.TestCase(), cls.srv)
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

    def test_schema_is_postgres(self):
        """The products really live in PostgreSQL, with the search column."""
        p = self.create(name="Schema Probe")
        got = self.pg.psql("SELECT name || '|' || (search @@ plainto_tsquery('simple', 'probe'))"
                           " FROM products WHERE id = '%s'" % p["id"])
        self.assertEqual(got, "Schema Probe|true")

    def test_two_instances_share_stock(self):
        other = Server(env=pg_env(self.pg.url))
        other.start()
        try:
            p = self.create(stock=15)
            url = PATH + "/" + p["id"] + "/stock"
            statuses = []
            lock = threading.Lock()
            barrier = threading.Barrier(40)

            def one(srv):
                with srv.connect(timeout=TIMEOUT) as c:
                    barrier.wait()
                    r = ta.call(c, "POST", url, {"delta": -1}, token=self.tok["manager"],
                                timeout=TIMEOUT)
                with lock:
                    statuses.append(r.status)

            threads = [threading.Thread(target=one, args=(self.srv if i % 2 else other,))
                       for i in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual((statuses.count(200), statuses.count(409)), (15, 25), statuses)
            self.assertEqual(self.pg.psql("SELECT stock FROM products WHERE id = '%s'" % p["id"]),
                             "0")
            # either instance reads the result
            self.assertEqual(doc(call(other, "GET", PATH + "/" + p["id"]))["stock"], 0)
            other.stop_and_check()
        finally:
            other.cleanup()

    def test_seed(self):
        self.pg.create_database("seeded")
        srv = Server(env=pg_env(self.pg.url_for("seeded")))
        try:
            p = run_cli(["seed", "--products", "300"], env=ta.cli_env(srv), cwd=srv.tmpdir,
                        timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn('{"requested":300,"inserted":300,"skipped":null}', p.stdout)
            p = run_cli(["seed", "--products", "300", "--if-empty"], env=ta.cli_env(srv),
                        cwd=srv.tmpdir, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn('"inserted":0', p.stdout)
            srv.start()
            seen = set()
            cursor = None
            while True:
                d = doc(call(srv, "GET", qs(limit=100, sort="name",
                                            **({"cursor": cursor} if cursor else {}))))
                seen |= {i["sku"] for i in d["items"]}
                cursor = d["next_cursor"]
                if not cursor:
                    break
            self.assertEqual(len(seen), 300)
            d = doc(call(srv, "GET", qs(q="the", category="books", limit=100)))
            self.assertTrue(d["items"])
            self.assertTrue(all(i["category"] == "books" for i in d["items"]))
            srv.stop_and_check()
        finally:
            srv.cleanup()


if __name__ == "__main__":
    keeltest.main()
