"""Catalog and inventory end to end on SQLite (issue 5; SPEC section 3
"Catalog and inventory"; docs/internals/catalog.md): the real server, real
users of every role, real concurrency.

CatalogCore holds the behaviour that must hold on both databases; it runs
here on SQLite and in test_catalog_pg.py on PostgreSQL:

  test_crud              create (201, Location, ETag), read, patch, delete,
                         404s after the delete.
  test_duplicate_sku     409 on create and on a patch to a taken sku.
  test_etag_if_none_match
                         ETag "v<version>", Cache-Control, 304 (weak and
                         strong forms, lists, *), a new ETag after a change.
  test_if_match          412 precondition-failed on a mismatch (nothing
                         changes), success on the current tag, *, lists;
                         weak tags never match; 404 beats 412.
  test_stock             adjustments, version bumps, 409 out-of-stock and
                         the upper bound, 404.
  test_stock_concurrent  50 concurrent -1 on stock 10: exactly 10 succeed,
                         40 get 409, stock ends at 0.
  test_pagination        every sort: 3 pages, no duplicates, no gaps, the
                         order; a row added while paging does not shift
                         pages; cursors from another sort or filter, and
                         forged ones, are 400.
  test_filters           category, min_price, max_price, combined.
  test_search            full-text search on name and description.
  test_search_hostile    quotes, FTS operators, parentheses, column filters,
                         emoji...: 200, never 500; bad encodings 400.

SQLite only:

  Validation             every field's bad values on POST, PATCH and /stock
                         -> 400 naming the field; unknown and read-only
                         fields; bad query parameters.
  Permissions            anonymous, viewer, user, manager, admin x every
                         route: 401 / 403 / allowed.
  Seed                   `keel seed`: 500 products then listed, --if-empty
                         idempotent, deterministic, extends, usage errors.
"""

import base64
import json
import os
import sqlite3
import sys
import threading
import unittest
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keeltest  # noqa: E402
from keeltest import Server, run_cli, check_problem  # noqa: E402
import test_auth as ta  # noqa: E402

FAST = dict(ta.FAST)
TIMEOUT = 20  # per request: generous under ASan
PRODUCT_KEYS = {"id", "sku", "name", "description", "price_cents", "currency", "category",
                "stock", "version", "created_at", "updated_at"}
SORTS = ("created_at", "-created_at", "price", "-price", "name")
PATH = "/api/v1/products"

_seq = [0]
_seq_lock = threading.Lock()


def uniq(prefix="x"):
    with _seq_lock:
        _seq[0] += 1
        n = _seq[0]
    return "%s-%d-%s" % (prefix, n, uuid.uuid4().hex[:8])


def call(srv, method, path, body=None, token=None, headers=None, raw=None):
    return ta.call(srv, method, path, body=body, token=token, headers=headers, raw=raw,
                   timeout=TIMEOUT)


def doc(resp):
    return ta.doc(resp)


def field_errors(d):
    return ta.field_errors(d)


def product_body(**kw):
    b = {"sku": uniq("SKU"), "name": "Widget", "description": "A widget.", "price_cents": 1999,
         "currency": "EUR", "category": "widgets", "stock": 10}
    for k, v in kw.items():
        if v is DROP:
            b.pop(k, None)
        else:
            b[k] = v
    return b


DROP = object()


def qs(**params):
    return PATH + ("?" + urllib.parse.urlencode(params) if params else "")


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def setup_users(tc, srv):
    """An admin (CLI), and a manager, user and viewer; returns {role: token}."""
    email = ta.unique_email("admin")
    ta.create_admin(tc, srv, email)
    admin = ta.login(tc, srv, email)["access_token"]
    tokens = {"admin": admin}
    for role in ("manager", "user", "viewer"):
        tokens[role] = ta.new_user(tc, srv, role, admin_token=admin)["access"]
    return tokens


# --------------------------------------------------------------------------

class CatalogCore:
    """Tests that hold on every database. The class using it sets cls.srv
    and cls.tok ({role: access token})."""

    srv = None
    tok = None

    # -- helpers ---------------------------------------------------------
    def create(self, role="manager", **kw):
        r = call(self.srv, "POST", PATH, product_body(**kw), token=self.tok[role])
        self.assertEqual(r.status, 201, r)
        return doc(r)

    def get_one(self, pid, headers=None):
        return call(self.srv, "GET", PATH + "/" + pid, headers=headers)

    def page_all(self, limit, **params):
        """Follows next_cursor to the end; returns the list of pages."""
        pages = []
        cursor = None
        for _ in range(100):
            p = dict(params, limit=limit)
            if cursor:
                p["cursor"] = cursor
            r = call(self.srv, "GET", qs(**p))
            self.assertEqual(r.status, 200, r)
            d = keeltest.get_json(self, r)
            self.assertEqual(set(d), {"items", "next_cursor"}, d)
            pages.append(d["items"])
            cursor = d["next_cursor"]
            if cursor is None:
                return pages
        self.fail("more than 100 pages")

    def stock(self, pid, delta, role="manager"):
        return call(self.srv, "POST", PATH + "/" + pid + "/stock", {"delta": delta},
                    token=self.tok[role])

    # -- CRUD --------------------------------------------------------------
    def test_crud(self):
        body = product_body(name="Blue Mug", description="Stoneware, 350 ml.", price_cents=1250,
                            currency="USD", category="kitchen", stock=7)
        r = call(self.srv, "POST", PATH, body, token=self.tok["manager"])
        self.assertEqual(r.status, 201, r)
        p = keeltest.get_json(self, r)
        self.assertEqual(set(p), PRODUCT_KEYS, p)
        self.assertRegex(p["id"], keeltest.UUID7_RE)
        for k in ("sku", "name", "description", "price_cents", "currency", "category", "stock"):
            self.assertEqual(p[k], body[k], k)
        self.assertEqual(p["version"], 1)
        self.assertRegex(p["created_at"], ta.ISO_Z_RE)
        self.assertEqual(p["created_at"], p["updated_at"])
        self.assertEqual(r.header("location"), PATH + "/" + p["id"])
        self.assertEqual(r.header("etag"), '"v1"')

        # defaults: description "", category "", stock 0
        q = self.create(description=DROP, category=DROP, stock=DROP)
        self.assertEqual((q["description"], q["category"], q["stock"]), ("", "", 0), q)

        g = self.get_one(p["id"])
        self.assertEqual(g.status, 200, g)
        self.assertEqual(doc(g), p)
        self.assertEqual(g.header("etag"), '"v1"')
        self.assertEqual(g.header("cache-control"), "public, max-age=60")
        # uppercase spelling of the id names the same product
        self.assertEqual(doc(self.get_one(p["id"].upper())), p)
        # HEAD: same headers, no body
        h = self.srv.request("HEAD", PATH + "/" + p["id"])
        self.assertEqual((h.status, h.body, h.header("etag")), (200, b"", '"v1"'))

        r = call(self.srv, "PATCH", PATH + "/" + p["id"], {"name": "Red Mug", "price_cents": 1300},
                 token=self.tok["manager"])
        self.assertEqual(r.status, 200, r)
        u = doc(r)
        self.assertEqual((u["name"], u["price_cents"], u["version"]), ("Red Mug", 1300, 2))
        self.assertEqual((u["sku"], u["description"], u["stock"]),
                         (p["sku"], p["description"], p["stock"]))
        self.assertEqual(u["created_at"], p["created_at"])
        self.assertGreaterEqual(u["updated_at"], p["updated_at"])
        self.assertEqual(r.header("etag"), '"v2"')
        self.assertEqual(doc(self.get_one(p["id"])), u)
        # clearing optional text
        r = call(self.srv, "PATCH", PATH + "/" + p["id"], {"description": "", "category": ""},
                 token=self.tok["admin"])
        self.assertEqual((doc(r)["description"], doc(r)["category"], doc(r)["version"]),
                         ("", "", 3))

        r = call(self.srv, "DELETE", PATH + "/" + p["id"], token=self.tok["admin"])
        self.assertEqual((r.status, r.body), (204, b""), r)
        check_problem(self, self.get_one(p["id"]), 404, "not-found")
        check_problem(self, call(self.srv, "DELETE", PATH + "/" + p["id"], token=self.tok["admin"]),
                      404, "not-found")
        check_problem(self, call(self.srv, "PATCH", PATH + "/" + p["id"], {"name": "x"},
                                 token=self.tok["admin"]), 404, "not-found")
        check_problem(self, self.stock(p["id"], 1), 404, "not-found")
        # not a UUID: the router answers 404
        self.assertEqual(call(self.srv, "GET", PATH + "/not-a-uuid").status, 404)

    def test_duplicate_sku(self):
        sku = uniq("DUP")
        a = self.create(sku=sku)
        r = call(self.srv, "POST", PATH, product_body(sku=sku), token=self.tok["manager"])
        check_problem(self, r, 409, "conflict")
        b = self.create()
        r = call(self.srv, "PATCH", PATH + "/" + b["id"], {"sku": sku}, token=self.tok["manager"])
        check_problem(self, r, 409, "conflict")
        self.assertEqual(doc(self.get_one(b["id"])), b, "a refused patch changes nothing")
        self.assertEqual(doc(self.get_one(a["id"])), a)
        # SKUs are case-sensitive
        self.create(sku=sku.lower())

    # -- conditional requests ------------------------------------------------
    def test_etag_if_none_match(self):
        p = self.create()
        pid = p["id"]
        for inm in ('"v1"', 'W/"v1"', '*', '"v7", "v1"', '"x", W/"v1"'):
            with self.subTest(if_none_match=inm):
                r = self.get_one(pid, headers={"If-None-Match": inm})
                self.assertEqual(r.status, 304, r)
                self.assertEqual(r.body, b"")
                self.assertEqual(r.header("etag"), '"v1"')
                self.assertEqual(r.header("cache-control"), "public, max-age=60")
        for inm in ('"v2"', '"1"', 'v1', '""', 'W/"v10"'):
            with self.subTest(if_none_match=inm):
                r = self.get_one(pid, headers={"If-None-Match": inm})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(doc(r), p)
        self.stock(pid, 5)
        r = self.get_one(pid, headers={"If-None-Match": '"v1"'})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("etag"), '"v2"')
        self.assertEqual(doc(r)["stock"], p["stock"] + 5)
        self.assertEqual(self.get_one(pid, headers={"If-None-Match": '"v2"'}).status, 304)
        # 404 stays 404 whatever the condition
        self.assertEqual(self.get_one(str(uuid.uuid4()), headers={"If-None-Match": "*"}).status,
                         404)

    def test_if_match(self):
        p = self.create()
        url = PATH + "/" + p["id"]
        tok = self.tok["manager"]
        for im in ('"v2"', 'W/"v1"', '"1"', 'garbage', '""'):
            with self.subTest(if_match=im):
                r = call(self.srv, "PATCH", url, {"name": "changed"}, token=tok,
                         headers={"If-Match": im})
                check_problem(self, r, 412, "precondition-failed")
        self.assertEqual(doc(self.get_one(p["id"])), p, "a 412 changes nothing")
        r = call(self.srv, "PATCH", url, {"name": "v2 name"}, token=tok, headers={"If-Match": '"v1"'})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((doc(r)["version"], r.header("etag")), (2, '"v2"'))
        # the old tag no longer matches; a list with the current one does
        r = call(self.srv, "PATCH", url, {"name": "again"}, token=tok, headers={"If-Match": '"v1"'})
        check_problem(self, r, 412, "precondition-failed")
        r = call(self.srv, "PATCH", url, {"name": "v3 name"}, token=tok,
                 headers={"If-Match": '"v9", "v2"'})
        self.assertEqual(doc(r)["version"], 3, r)
        r = call(self.srv, "PATCH", url, {"name": "v4 name"}, token=tok, headers={"If-Match": "*"})
        self.assertEqual(doc(r)["version"], 4, r)
        # absent: 404, not 412
        r = call(self.srv, "PATCH", PATH + "/" + str(uuid.uuid4()), {"name": "x"}, token=tok,
                 headers={"If-Match": '"v1"'})
        check_problem(self, r, 404, "not-found")

    def test_concurrent_if_match(self):
        """Ten patches with the same If-Match at once: exactly one wins."""
        p = self.create()
        url = PATH + "/" + p["id"]
        results = []
        lock = threading.Lock()

        def one(i):
            r = call(self.srv, "PATCH", url, {"name": "racer %d" % i}, token=self.tok["manager"],
                     headers={"If-Match": '"v1"'})
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [200] + [412] * 9, results)
        self.assertEqual(doc(self.get_one(p["id"]))["version"], 2)

    # -- stock ---------------------------------------------------------------
    def test_stock(self):
        p = self.create(stock=3)
        r = self.stock(p["id"], 5)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(doc(r), {"id": p["id"], "stock": 8, "version": 2})
        self.assertEqual(r.header("etag"), '"v2"')
        r = self.stock(p["id"], -8, role="admin")
        self.assertEqual(doc(r), {"id": p["id"], "stock": 0, "version": 3})
        d = check_problem(self, self.stock(p["id"], -1), 409, "out-of-stock")
        self.assertIn("stock", d["detail"])
        r = self.stock(p["id"], 10 ** 9)
        self.assertEqual(doc(r)["stock"], 10 ** 9)
        check_problem(self, self.stock(p["id"], 1), 409, "conflict")
        g = doc(self.get_one(p["id"]))
        self.assertEqual((g["stock"], g["version"]), (10 ** 9, 4), "refused changes change nothing")

    def test_stock_concurrent(self):
        p = self.create(stock=10)
        url = PATH + "/" + p["id"] + "/stock"
        statuses = []
        lock = threading.Lock()
        barrier = threading.Barrier(50)

        def one():
            with self.srv.connect(timeout=TIMEOUT) as c:
                barrier.wait()
                r = ta.call(c, "POST", url, {"delta": -1}, token=self.tok["manager"],
                            timeout=TIMEOUT)
            with lock:
                statuses.append((r.status, (doc(r) or {}).get("type")))

        threads = [threading.Thread(target=one) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [s for s in statuses if s[0] == 200]
        refused = [s for s in statuses if s[0] == 409]
        self.assertEqual((len(ok), len(refused)), (10, 40), statuses)
        self.assertTrue(all(t == "/problems/out-of-stock" for _, t in refused), refused)
        g = doc(self.get_one(p["id"]))
        self.assertEqual((g["stock"], g["version"]), (0, 11), g)

    # -- lists -----------------------------------------------------------------
    def make_set(self, n=25):
        """n products in a fresh category, with repeated prices and names
        (ties are broken by id); returns (category, {id: product})."""
        cat = uniq("cat")
        made = {}
        for i in range(n):
            p = self.create(category=cat, price_cents=(i % 7) * 100, name="Name %02d" % (i % 9))
            made[p["id"]] = p
        return cat, made

    @staticmethod
    def sort_key(sort, item):
        field = sort.lstrip("-")
        if field == "price":
            return (item["price_cents"], item["id"])
        return (item[field], item["id"])

    def test_pagination(self):
        cat, made = self.make_set(25)
        for sort in SORTS:
            with self.subTest(sort=sort):
                pages = self.page_all(10, category=cat, sort=sort)
                self.assertEqual([len(p) for p in pages], [10, 10, 5])
                items = [i for p in pages for i in p]
                ids = [i["id"] for i in items]
                self.assertEqual(len(ids), len(set(ids)), "duplicates across pages")
                self.assertEqual(set(ids), set(made), "gaps across pages")
                keys = [self.sort_key(sort, i) for i in items]
                self.assertEqual(keys, sorted(keys, reverse=sort.startswith("-")))
                for i in items:
                    self.assertEqual(i, made[i["id"]])
        # the default sort is -created_at, the default limit 20
        d = doc(call(self.srv, "GET", qs(category=cat)))
        self.assertEqual([i["id"] for i in d["items"]],
                         [i["id"] for p in self.page_all(20, category=cat, sort="-created_at")
                          for i in p][:20])
        # a product added mid-way does not shift the pages of the others
        r = call(self.srv, "GET", qs(category=cat, sort="-created_at", limit=10))
        first = doc(r)
        self.create(category=cat)
        rest = self.page_all(10, category=cat, sort="-created_at", cursor=first["next_cursor"])
        ids = [i["id"] for i in first["items"]] + [i["id"] for p in rest for i in p]
        self.assertEqual(sorted(ids), sorted(made))

    def test_cursor_errors(self):
        cat, _ = self.make_set(3)
        cur = doc(call(self.srv, "GET", qs(category=cat, sort="price", limit=1)))["next_cursor"]
        self.assertIsNotNone(cur)
        # another limit is fine
        self.assertEqual(call(self.srv, "GET", qs(category=cat, sort="price", limit=2,
                                                  cursor=cur)).status, 200)
        raw = b64u_dec(cur)
        bad = {
            "other sort": qs(category=cat, sort="name", cursor=cur),
            "default sort": qs(category=cat, cursor=cur),
            "other category": qs(category=cat + "x", sort="price", cursor=cur),
            "no category": qs(sort="price", cursor=cur),
            "other min_price": qs(category=cat, sort="price", min_price=0, cursor=cur),
            "other q": qs(category=cat, sort="price", q="widget", cursor=cur),
            "garbage": qs(category=cat, sort="price", cursor="!!!"),
            "short": qs(category=cat, sort="price", cursor="YWJj"),
            "empty": qs(category=cat, sort="price", cursor=""),
            "bad id": qs(category=cat, sort="price", cursor=b64u(raw[:17] + b"x" * 36 + raw[53:])),
            "bad key": qs(category=cat, sort="price", cursor=b64u(raw[:53] + b"12a")),
            "no key": qs(category=cat, sort="price", cursor=b64u(raw[:53])),
            "huge": qs(category=cat, sort="price", cursor="A" * 5000),
        }
        for name, url in bad.items():
            with self.subTest(case=name):
                d = check_problem(self, call(self.srv, "GET", url), 400, "validation-error")
                self.assertIn("cursor", field_errors(d), d)

    def test_filters(self):
        cat, made = self.make_set(14)
        prices = sorted(p["price_cents"] for p in made.values())

        def ids(**params):
            return {i["id"] for p in self.page_all(100, category=cat, **params) for i in p}

        self.assertEqual(ids(), set(made))
        self.assertEqual(ids(min_price=300), {k for k, p in made.items() if p["price_cents"] >= 300})
        self.assertEqual(ids(max_price=200), {k for k, p in made.items() if p["price_cents"] <= 200})
        self.assertEqual(ids(min_price=200, max_price=400),
                         {k for k, p in made.items() if 200 <= p["price_cents"] <= 400})
        self.assertEqual(ids(min_price=prices[-1] + 1), set())
        self.assertEqual(ids(min_price=100, max_price=100),
                         {k for k, p in made.items() if p["price_cents"] == 100})
        # filters with pagination and a non-default sort
        pages = self.page_all(2, category=cat, sort="-price", min_price=100)
        got = [i["id"] for p in pages for i in p]
        self.assertEqual(set(got), {k for k, p in made.items() if p["price_cents"] >= 100})
        self.assertEqual(len(got), len(set(got)))
        # an unknown category is an empty list, not an error
        self.assertEqual(doc(call(self.srv, "GET", qs(category=uniq("none")))),
                         {"items": [], "next_cursor": None})

    def test_large_page(self):
        """A page bigger than a cache value (long descriptions that escape
        to six bytes a character) is still answered, whole."""
        cat = uniq("big")
        desc = "\u0001" * 5000
        made = {self.create(category=cat, description=desc)["id"] for _ in range(60)}
        r = call(self.srv, "GET", qs(category=cat, limit=100))
        self.assertEqual(r.status, 200, r)
        self.assertGreater(len(r.body), 1 << 20)
        d = doc(r)
        self.assertEqual({i["id"] for i in d["items"]}, made)
        self.assertTrue(all(i["description"] == desc for i in d["items"]))
        one = self.get_one(d["items"][0]["id"])
        self.assertEqual(doc(one)["description"], desc)

    # -- search ----------------------------------------------------------------
    def test_search(self):
        cat = uniq("search")
        tea = self.create(category=cat, name="Zanzibar Teapot",
                          description="Hand-thrown stoneware from the coast.")
        ket = self.create(category=cat, name="Enamel Kettle",
                          description="Deep zanzibar blue, holds 1.7 litres.")
        self.create(category=cat, name="Plain Cup", description="Nothing special.")

        def found(q, **extra):
            r = call(self.srv, "GET", qs(category=cat, q=q, **extra))
            self.assertEqual(r.status, 200, r)
            return {i["id"] for i in doc(r)["items"]}

        self.assertEqual(found("zanzibar"), {tea["id"], ket["id"]})   # name and description
        self.assertEqual(found("ZANZIBAR"), {tea["id"], ket["id"]})   # case-insensitive
        self.assertEqual(found("teapot zanzibar"), {tea["id"]})       # every word
        self.assertEqual(found("stoneware"), {tea["id"]})
        self.assertEqual(found("kettle"), {ket["id"]})
        self.assertEqual(found("zanzibar nosuchword"), set())
        self.assertEqual(found("zanz"), set())                        # words, not prefixes
        self.assertEqual(found('"zanzibar"'), {tea["id"], ket["id"]})  # quotes are not syntax
        self.assertEqual(found("  zanzibar  "), {tea["id"], ket["id"]})
        self.assertEqual(len(found("")), 3, "an empty q is no filter")
        self.assertEqual(found("***"), set(), "no word: nothing matches")
        # search with sorts and pages
        pages = self.page_all(1, category=cat, q="zanzibar", sort="price")
        self.assertEqual({i["id"] for p in pages for i in p}, {tea["id"], ket["id"]})
        # the index follows changes
        call(self.srv, "PATCH", PATH + "/" + tea["id"], {"name": "Mombasa Teapot"},
             token=self.tok["manager"])
        self.assertEqual(found("mombasa"), {tea["id"]})
        self.assertEqual(found("zanzibar"), {ket["id"]})
        call(self.srv, "DELETE", PATH + "/" + ket["id"], token=self.tok["admin"])
        self.assertEqual(found("zanzibar"), set())

    HOSTILE = [
        '"', '""', '"""', "'", "''", "NEAR(a b)", "NEAR", "a NEAR/2 b", "AND", "OR", "NOT",
        "a AND b", "a OR", "NOT a", "*", "a*", "*a", "(", ")", "(a OR b)", ")(", "^a", "a:b",
        "name:widget", "description : x", "{name description}: widget", "-a", "+a", "a -b",
        "\\", "%", "a\"b", "\U0001F600", "\u00e9t\u00e9", "\u201cquoted\u201d", "NEAR/", ":",
        "!@#$%^&*()_+=[]{}|;':,./<>?", "a & b", "a | b", "!a", "a <-> b", "a:*", "'a' & 'b'",
        "x" * 200, "word " * 40, "\t\ttab", "rowid", "products_fts", "1=1; DROP TABLE products",
        "$1", "NULL", "\x01\x02",
    ]

    def test_search_hostile(self):
        for q in self.HOSTILE:
            with self.subTest(q=q):
                r = call(self.srv, "GET", qs(q=q, limit=5))
                self.assertEqual(r.status, 200, r)
                d = keeltest.get_json(self, r)
                self.assertIsInstance(d["items"], list)
                for sort in ("name", "-price"):
                    self.assertEqual(call(self.srv, "GET", qs(q=q, limit=2, sort=sort)).status, 200)
        for raw_q, field in (("%FF", "q"), ("%00", "q"), ("%C3%28", "q"), ("%ZZ", "q"),
                             ("x" * 201, "q")):
            with self.subTest(raw=raw_q[:10]):
                r = call(self.srv, "GET", PATH + "?q=" + raw_q)
                d = check_problem(self, r, 400, "validation-error")
                self.assertIn(field, field_errors(d), d)
        self.assertTrue(self.srv.alive())


# --------------------------------------------------------------------------

class CatalogSqlite(CatalogCore, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env=FAST)
        cls.srv.start()
        try:
            cls.tok = setup_users(unittest.TestCase(), cls.srv)
        except BaseException:
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_and_check()


class Validation(unittest.TestCase):
    srv = None
    tok = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env=FAST)
        cls.srv.start()
        try:
            cls.tok = setup_users(unittest.TestCase(), cls.srv)
        except BaseException:
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_and_check()

    BAD = {
        "sku": ["", "x" * 65, "has space", "sl/ash", "\u00fcml", "a,b", 5, None, True, [], {}],
        "name": ["", "x" * 201, "   ", 5, None, False, ["a"]],
        "description": ["x" * 5001, 5, None, {"a": 1}],
        "price_cents": [-1, 10 ** 12 + 1, 2 ** 63, -(2 ** 63), "100", 1.5, 1.0, True, None],
        "currency": ["eur", "EURO", "EU", "E1R", "", "\u00c9UR", 978, None],
        "category": ["x" * 65, 5, None, True],
    }
    BAD_STOCK = [-1, 10 ** 9 + 1, "5", 2.5, None, False]

    def bad_post(self, body, field, msg=None, path=PATH, method="POST"):
        r = call(self.srv, method, path, body, token=self.tok["admin"])
        d = check_problem(self, r, 400, "validation-error")
        errs = field_errors(d)
        self.assertIn(field, errs, d)
        if msg:
            self.assertEqual(errs[field], msg, d)
        return d

    def test_create_bad_fields(self):
        for field, values in dict(self.BAD, stock=self.BAD_STOCK).items():
            for v in values:
                with self.subTest(field=field, value=repr(v)[:30]):
                    self.bad_post(product_body(**{field: v}), field)
        for field in ("sku", "name", "price_cents", "currency"):
            with self.subTest(missing=field):
                self.bad_post(product_body(**{field: DROP}), field, "is required")
        # exact messages for a few
        self.bad_post(product_body(sku="a b"), "sku",
                      "must contain only letters, digits, '.', '_' and '-'")
        self.bad_post(product_body(name=" \t"), "name", "must not be blank")
        self.bad_post(product_body(currency="usd"), "currency", "must be a three-letter currency code")
        self.bad_post(product_body(price_cents=-5), "price_cents", "must be at least 0")
        # the bounds themselves are fine
        for edge in ({"sku": "A" * 32 + uuid.uuid4().hex}, {"sku": "a.b_c-D9" + uuid.uuid4().hex},
                     {"name": "n" * 200},
                     {"name": "\U0001F600" * 200}, {"description": "d" * 5000},
                     {"price_cents": 0}, {"price_cents": 10 ** 12}, {"category": "c" * 64},
                     {"stock": 0}, {"stock": 10 ** 9}):
            with self.subTest(edge=repr(edge)[:40]):
                b = product_body(**edge)
                r = call(self.srv, "POST", PATH, b, token=self.tok["admin"])
                self.assertEqual(r.status, 201, r)

    def test_unknown_read_only_and_shape(self):
        for extra, msg in (({"color": "red"}, "is not allowed"), ({"SKU": "x"}, "is not allowed"),
                           ({"id": str(uuid.uuid4())}, "is read-only"), ({"version": 9}, "is read-only"),
                           ({"created_at": "2020-01-01T00:00:00Z"}, "is read-only"),
                           ({"updated_at": "x"}, "is read-only")):
            with self.subTest(extra=extra):
                self.bad_post(dict(product_body(), **extra), list(extra)[0], msg)
        for raw in (b"[]", b"null", b'"x"', b"42"):
            with self.subTest(raw=raw):
                r = call(self.srv, "POST", PATH, raw=raw, token=self.tok["admin"])
                self.assertEqual(r.status, 400, r)
        r = call(self.srv, "POST", PATH, raw=b"{bad json", token=self.tok["admin"])
        self.assertEqual(r.status, 400, r)
        r = ta.call(self.srv, "POST", PATH, raw=json.dumps(product_body()), ctype="text/plain",
                    token=self.tok["admin"])
        self.assertEqual(r.status, 415, r)
        # several problems are reported together
        d = self.bad_post(product_body(sku="", name="", price_cents=-1, color=1), "sku")
        self.assertTrue({"sku", "name", "price_cents", "color"} <= set(field_errors(d)), d)

    def test_patch_bad_fields(self):
        p = doc(call(self.srv, "POST", PATH, product_body(), token=self.tok["admin"]))
        url = PATH + "/" + p["id"]
        for field, values in self.BAD.items():
            for v in values:
                with self.subTest(field=field, value=repr(v)[:30]):
                    self.bad_post({field: v}, field, path=url, method="PATCH")
        self.bad_post({"stock": 5}, "stock", "is read-only", path=url, method="PATCH")
        self.bad_post({"name": "ok", "stock": 5}, "stock", "is read-only", path=url, method="PATCH")
        for ro in ("id", "version", "created_at", "updated_at"):
            self.bad_post({ro: "x", "name": "ok"}, ro, "is read-only", path=url, method="PATCH")
        self.bad_post({"name": "ok", "nope": 1}, "nope", "is not allowed", path=url, method="PATCH")
        d = check_problem(self, call(self.srv, "PATCH", url, {}, token=self.tok["admin"]), 400,
                          "validation-error")
        self.assertIn("", field_errors(d), d)
        g = doc(call(self.srv, "GET", url))
        self.assertEqual(g, p, "refused patches change nothing")

    def test_stock_bad_fields(self):
        p = doc(call(self.srv, "POST", PATH, product_body(), token=self.tok["admin"]))
        url = PATH + "/" + p["id"] + "/stock"
        for v in (0, "1", 1.5, None, True, 10 ** 9 + 1, -(10 ** 9) - 1, [1]):
            with self.subTest(delta=v):
                self.bad_post({"delta": v}, "delta", path=url)
        self.bad_post({}, "delta", "is required", path=url)
        self.bad_post({"delta": 1, "reason": "x"}, "reason", "is not allowed", path=url)
        self.bad_post({"delta": 0}, "delta", "must not be 0", path=url)
        self.assertEqual(doc(call(self.srv, "GET", PATH + "/" + p["id"]))["stock"], p["stock"])

    def test_bad_query_parameters(self):
        cases = {
            "limit": ["0", "101", "-1", "abc", "", "1.5", "+5", " 5", "99999999999999999999"],
            "sort": ["", "price ", "PRICE", "-name", "id", "created"],
            "min_price": ["-1", "abc", "", "1e3", "1000000000001", "0x10", "+1"],
            "max_price": ["-5", "x"],
            "category": ["", "c" * 65, "%FF"],
        }
        for name, values in cases.items():
            for v in values:
                with self.subTest(param=name, value=v):
                    raw = v if v.startswith("%") else urllib.parse.quote(v, safe="")
                    r = call(self.srv, "GET", PATH + "?%s=%s" % (name, raw))
                    d = check_problem(self, r, 400, "validation-error")
                    self.assertIn(name, field_errors(d), d)
        d = check_problem(self, call(self.srv, "GET", qs(min_price=500, max_price=100)), 400,
                          "validation-error")
        self.assertIn("max_price", field_errors(d))
        d = check_problem(self, call(self.srv, "GET", qs(limit=0, sort="x", min_price=-1)), 400,
                          "validation-error")
        self.assertEqual(set(field_errors(d)), {"limit", "sort", "min_price"}, d)
        for ok in ({"limit": 1}, {"limit": 100}, {"category": "c" * 64}, {"min_price": 0},
                   {"max_price": 10 ** 12}, {"q": "x" * 200}, {"unknown": "ignored"}):
            with self.subTest(ok=repr(ok)[:30]):
                self.assertEqual(call(self.srv, "GET", qs(**ok)).status, 200)


class Permissions(unittest.TestCase):
    """Every route x anonymous and every role."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env=FAST)
        cls.srv.start()
        try:
            cls.tok = setup_users(unittest.TestCase(), cls.srv)
        except BaseException:
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop_and_check()

    ROLES = (None, "viewer", "user", "manager", "admin")
    # route -> the roles allowed (anonymous: None)
    ALLOWED = {
        "list": set(ROLES),
        "get": set(ROLES),
        "create": {"manager", "admin"},
        "patch": {"manager", "admin"},
        "stock": {"manager", "admin"},
        "delete": {"admin"},
    }
    OK = {"list": 200, "get": 200, "create": 201, "patch": 200, "stock": 200, "delete": 204}

    def fresh(self):
        r = call(self.srv, "POST", PATH, product_body(stock=100), token=self.tok["admin"])
        self.assertEqual(r.status, 201, r)
        return doc(r)["id"]

    def request(self, route, role, pid):
        token = self.tok[role] if role else None
        if route == "list":
            return call(self.srv, "GET", PATH, token=token)
        if route == "get":
            return call(self.srv, "GET", PATH + "/" + pid, token=token)
        if route == "create":
            return call(self.srv, "POST", PATH, product_body(), token=token)
        if route == "patch":
            return call(self.srv, "PATCH", PATH + "/" + pid, {"name": "p"}, token=token)
        if route == "stock":
            return call(self.srv, "POST", PATH + "/" + pid + "/stock", {"delta": 1}, token=token)
        return call(self.srv, "DELETE", PATH + "/" + pid, token=token)

    def test_matrix(self):
        for route, allowed in self.ALLOWED.items():
            for role in self.ROLES:
                with self.subTest(route=route, role=role or "anonymous"):
                    pid = self.fresh()
                    r = self.request(route, role, pid)
                    if role in allowed:
                        self.assertEqual(r.status, self.OK[route], r)
                    elif role is None:
                        ta.check_401(self, r)
                    else:
                        ta.check_403(self, r)
                    if route == "delete" and role not in allowed:
                        self.assertEqual(call(self.srv, "GET", PATH + "/" + pid).status, 200,
                                         "a refused delete deletes nothing")

    def test_refused_before_validation(self):
        """Authorization runs before the body is validated: a viewer's bad
        body is 403, an anonymous one 401 (nothing about the schema leaks)."""
        pid = self.fresh()
        ta.check_403(self, call(self.srv, "POST", PATH, {"bogus": 1}, token=self.tok["viewer"]))
        ta.check_401(self, call(self.srv, "PATCH", PATH + "/" + pid, {"stock": 1}))
        ta.check_403(self, call(self.srv, "DELETE", PATH + "/" + pid, token=self.tok["manager"]))

    def test_public_reads_ignore_tokens(self):
        pid = self.fresh()
        for headers in ({"Authorization": "Bearer garbage"}, {"Authorization": "Basic eDp5"}):
            with self.subTest(headers=headers):
                r = call(self.srv, "GET", PATH + "/" + pid, headers=headers)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("cache-control"), "public, max-age=60")
                self.assertEqual(call(self.srv, "GET", PATH, headers=headers).status, 200)


class Seed(unittest.TestCase):
    """`keel seed` against a fresh data directory per test."""

    def seed(self, srv, *args, code=0):
        p = run_cli(["seed"] + list(args), env=ta.cli_env(srv), cwd=srv.tmpdir, timeout=120)
        self.assertEqual(p.returncode, code, p.stdout + p.stderr)
        for line in reversed(p.stdout.splitlines()):
            rec = keeltest.parse_json_line(line)
            if rec and "requested" in rec and "inserted" in rec and "msg" not in rec:
                return rec
        if code == 0:
            self.fail("no result line: %r" % p.stdout)
        return p

    def db_rows(self, srv):
        c = sqlite3.connect(os.path.join(srv.tmpdir, "var", "keel.db"))
        try:
            return c.execute("SELECT sku, name, description, price_cents, currency, category,"
                             " stock FROM products ORDER BY sku").fetchall()
        finally:
            c.close()

    def test_seed_then_list(self):
        srv = Server(env=FAST)
        try:
            self.assertEqual(self.seed(srv, "--products", "500"),
                             {"requested": 500, "inserted": 500, "skipped": None})
            self.assertEqual(self.seed(srv, "--products", "500", "--if-empty")["inserted"], 0)
            self.assertEqual(self.seed(srv, "--products", "500")["inserted"], 0,
                             "the same products again: nothing new")
            srv.start()
            items = []
            cursor = None
            while True:
                url = qs(limit=100, **({"cursor": cursor} if cursor else {}))
                d = doc(call(srv, "GET", url))
                items += d["items"]
                cursor = d["next_cursor"]
                if not cursor:
                    break
            self.assertEqual(len(items), 500)
            self.assertEqual(len({i["sku"] for i in items}), 500)
            cats = {i["category"] for i in items}
            self.assertTrue(8 <= len(cats) <= 12, cats)
            for i in items:
                self.assertEqual(set(i), PRODUCT_KEYS)
                self.assertEqual(i["currency"], "EUR")
                self.assertTrue(0 <= i["stock"] <= 500, i)
                self.assertTrue(0 < i["price_cents"] <= 10 ** 12, i)
                self.assertTrue(i["sku"].startswith("DEMO-"), i)
                self.assertTrue(i["name"] and i["description"], i)
            self.assertTrue(any(i["stock"] == 0 for i in items), "some products are sold out")
            # seeded products are searchable
            word = items[0]["name"].split()[-1]
            r = doc(call(srv, "GET", qs(q=word, limit=100)))
            self.assertTrue(r["items"], word)
            # a larger run adds the rest; --if-empty still does nothing
            self.assertEqual(self.seed(srv, "--products", "600")["inserted"], 100)
            self.assertEqual(self.seed(srv, "--products", "5", "--if-empty")["skipped"] is not None,
                             True)
            self.assertEqual(len(self.db_rows(srv)), 600)
            srv.stop_and_check()
        finally:
            srv.cleanup()

    def test_deterministic(self):
        a, b = Server(env=FAST), Server(env=FAST)
        try:
            self.seed(a, "--products", "50", "--if-empty")
            self.seed(b, "--products", "30")
            self.seed(b, "--products", "50")
            self.assertEqual(self.db_rows(a), self.db_rows(b))
        finally:
            a.cleanup()
            b.cleanup()

    def test_usage(self):
        srv = Server(env=FAST)
        try:
            for args in ([], ["--products"], ["--products", "0"], ["--products", "abc"],
                         ["--products", "-5"], ["--products", "1000001"], ["--products", "5x"],
                         ["--bogus"]):
                with self.subTest(args=args):
                    self.seed(srv, *args, code=64)
            p = run_cli(["seed", "--help"], env=ta.cli_env(srv), cwd=srv.tmpdir)
            self.assertEqual(p.returncode, 0)
            self.assertIn("--products", p.stdout)
            self.assertIn("--if-empty", p.stdout)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    keeltest.main()
