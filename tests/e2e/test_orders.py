"""Orders end to end on the embedded SQLite store (issue 5; SPEC section 3
"Orders", "Errors" and the idempotency paragraph; docs/internals/orders.md):
the real server, real users, products made through the catalog API when it
is there (else inserted into the database directly), the database read
directly to check what the API cannot show (stock, events, outbox).

  Create         the 201 shape, Location, exact integer money (3 x 1999 +
                 2 x 5 = 6007), duplicates merged, a client price and other
                 bad bodies 400, unknown product 400, mixed currencies 400,
                 out of stock 409 with nothing changed (stock, events,
                 outbox, read model), one outbox row per event.
  Oversell       50 concurrent orders of 1 unit, stock 10: exactly 10 x 201,
                 40 x 409 out-of-stock, stock 0, exactly 10 OrderCreated.
  Idempotency    replay (same status and body, Idempotent-Replayed, one
                 order, stock taken once), 422 mismatch, parallel duplicates
                 (one order), per-user scope, the quoted form, bad keys 400,
                 a 4xx kept and replayed, expired keys absent again, a stale
                 'running' claim taken over, a fresh one 409.
  StateMachine   pay then ship; ship of pending 409; cancel restocks; cancel
                 of shipped 409; pay twice 409; payment_failed is final;
                 the events endpoint: the gapless stream with metadata
                 (request id, user id, traceparent's trace-id).
  Access         another user's order is 404 on GET, events and cancel;
                 viewer cannot create; anonymous 401; lists: own for users
                 (403 for someone else's user_id), all for managers with
                 ?user_id= and ?status= filters, pagination; a manager may
                 ship but not cancel others' orders (403); admin cancels
                 anyone's; the debug pay route is 404 without debug routes.
  Rebuild        1,000 random commands (seeded, 8 client threads), then
                 invariants (stock conserved, versions = streams, one outbox
                 row per event), a snapshot of the read model (database and
                 API), the read model damaged on purpose, `keel projections
                 rebuild orders` run while the server serves, and the
                 rebuilt model identical to the snapshot.
"""

import hashlib
import json
import os
import random
import sqlite3
import sys
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keeltest  # noqa: E402
from keeltest import Server, run_cli, check_problem  # noqa: E402

PASSWORD = "correct-horse-battery-staple"
FAST = {"KEEL_PASSWORD_MEMORY": "1024", "KEEL_PASSWORD_ITERATIONS": "1"}
TIMEOUT = 20  # per request: generous under ASan with 50 requests in flight
ORDER_KEYS = {"id", "user_id", "status", "items", "total_cents", "currency", "created_at",
              "updated_at"}
LINE_KEYS = {"product_id", "name", "unit_price_cents", "quantity", "line_total_cents"}
EVENT_KEYS = {"stream_id", "version", "type", "data", "metadata", "created_at"}

ORDERS_SNAPSHOT = ("SELECT id, user_id, status, total_cents, currency, version, created_us,"
                   " updated_us FROM orders ORDER BY id")
ITEMS_SNAPSHOT = ("SELECT order_id, line, product_id, name, unit_price_cents, quantity"
                  " FROM order_items ORDER BY order_id, line")

_seq = [0]
_seq_lock = threading.Lock()


def uniq(prefix="u"):
    with _seq_lock:
        _seq[0] += 1
        n = _seq[0]
    return "%s%d-%s" % (prefix, n, uuid.uuid4().hex[:8])


# --------------------------------------------------------------------------
# HTTP

def call(srv, method, path, body=None, token=None, headers=None, raw=None, timeout=TIMEOUT):
    """One request on a fresh connection. body: JSON; raw: bytes as given."""
    hs = []
    if token is not None:
        hs.append(("Authorization", "Bearer " + token))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
    elif raw is not None:
        data = raw if isinstance(raw, bytes) else raw.encode()
    if data is not None:
        hs.append(("Content-Type", "application/json"))
    hs.extend(list(headers.items()) if isinstance(headers, dict) else list(headers or []))
    return srv.request(method, path, hs, data, timeout=timeout)


def js(resp):
    try:
        return json.loads(resp.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def cli_env(srv):
    return {k: v for k, v in srv.env.items() if k.startswith("KEEL_")}


def login(tc, srv, email):
    r = call(srv, "POST", "/auth/login", {"email": email, "password": PASSWORD})
    tc.assertEqual(r.status, 200, r)
    return js(r)["access_token"]


def create_admin(tc, srv):
    email = uniq("admin") + "@example.com"
    p = run_cli(["users", "create-admin", "--email", email], env=cli_env(srv),
                input=PASSWORD + "\n", cwd=srv.tmpdir, timeout=60)
    tc.assertEqual(p.returncode, 0, p.stdout + p.stderr)
    rec = [keeltest.parse_json_line(l) for l in p.stdout.splitlines()]
    rec = [r for r in rec if r and r.get("role") == "admin"][0]
    return {"id": rec["id"], "email": email, "token": login(tc, srv, email), "role": "admin"}


def new_user(tc, srv, admin=None, role="user"):
    email = uniq(role) + "@example.com"
    r = call(srv, "POST", "/auth/register", {"email": email, "password": PASSWORD, "name": "U"})
    tc.assertEqual(r.status, 201, r)
    uid = js(r)["id"]
    if role != "user":
        r = call(srv, "PATCH", "/api/v1/users/" + uid, {"role": role}, token=admin["token"])
        tc.assertEqual(r.status, 200, r)
    return {"id": uid, "email": email, "token": login(tc, srv, email), "role": role}


def order(srv, user, lines, headers=None, raw=None):
    """POST /api/v1/orders; lines: [(product_id, quantity)]."""
    if raw is not None:
        return call(srv, "POST", "/api/v1/orders", raw=raw, token=user["token"], headers=headers)
    body = {"items": [{"product_id": p, "quantity": q} for p, q in lines]}
    return call(srv, "POST", "/api/v1/orders", body, token=user["token"], headers=headers)


def act(srv, who, oid, action):
    return call(srv, "POST", "/api/v1/orders/%s/%s" % (oid, action), token=who["token"])


def pay(srv, oid, succeeded=True):
    return call(srv, "POST", "/debug/orders/%s/pay" % oid, {"succeeded": succeeded})


# --------------------------------------------------------------------------
# the database, read and written directly

class SqliteStore:
    """The server's SQLite file (WAL: safe to read and write beside it)."""

    def __init__(self, srv):
        self.path = os.path.join(srv.tmpdir, "var", "keel.db")

    def query(self, sql):
        con = sqlite3.connect(self.path, timeout=30)
        try:
            rows = con.execute(sql).fetchall()
        finally:
            con.close()
        return [tuple("" if v is None else str(v) for v in r) for r in rows]

    def execute(self, sql):
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute(sql)
            con.commit()
        finally:
            con.close()


class Catalog:
    """Products: through POST /api/v1/products when the catalog module
    serves it, else inserted into the products table directly."""

    def __init__(self, tc, srv, store, admin):
        self.tc, self.srv, self.store, self.admin = tc, srv, store, admin
        self.api = None

    def make(self, price, stock, currency="EUR", name=None):
        name = name or uniq("Product ")
        if self.api is not False:
            r = call(self.srv, "POST", "/api/v1/products",
                     {"sku": uniq("SKU-"), "name": name, "price_cents": price,
                      "currency": currency, "stock": stock}, token=self.admin["token"])
            if r.status == 201:
                self.api = True
                return js(r)["id"]
            self.tc.assertIn(r.status, (404, 405), r)
            self.api = False
        pid = str(uuid.uuid4())
        now = int(time.time() * 1e6)
        self.store.execute(
            "INSERT INTO products (id, sku, name, description, price_cents, currency, category,"
            " stock, version, created_us, updated_us) VALUES ('%s', '%s', '%s', '', %d, '%s', '',"
            " %d, 1, %d, %d)" % (pid, uniq("SKU-"), name, price, currency, stock, now, now))
        return pid

    def stock(self, pid):
        return int(self.store.query("SELECT stock FROM products WHERE id = '%s'" % pid)[0][0])

    def set_stock(self, pid, stock):
        self.store.execute("UPDATE products SET stock = %d WHERE id = '%s'" % (stock, pid))

    def api_stock(self, pid):
        """The stock the catalog API shows (None without a catalog API):
        proves the orders module invalidated the product's cache entry."""
        if not self.api:
            return None
        r = call(self.srv, "GET", "/api/v1/products/" + pid)
        self.tc.assertEqual(r.status, 200, r)
        return js(r).get("stock")


def count(store, sql):
    return int(store.query(sql)[0][0])


def events_of(store, oid):
    return store.query("SELECT version, type FROM events WHERE stream_id = '%s' ORDER BY version"
                       % oid)


def parallel(fns, timeout=120):
    """Runs the callables at once (one thread each); returns their results
    (an exception object where one raised)."""
    out = [None] * len(fns)
    start = threading.Barrier(len(fns))

    def run(i):
        try:
            start.wait(timeout=30)
            out[i] = fns[i]()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out[i] = e
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
    return out


# --------------------------------------------------------------------------
# scenarios shared with test_orders_pg.py

def check_oversell(tc, srvs, store, catalog, users):
    """50 concurrent one-unit orders for a product with stock 10, spread
    over the servers in srvs and the given users."""
    pid = catalog.make(price=250, stock=10)
    fns = [(lambda i=i: order(srvs[i % len(srvs)], users[i % len(users)], [(pid, 1)]))
           for i in range(50)]
    res = parallel(fns)
    for r in res:
        tc.assertNotIsInstance(r, Exception, r)
    statuses = sorted(r.status for r in res)
    tc.assertEqual(statuses.count(201), 10, statuses)
    tc.assertEqual(statuses.count(409), 40, statuses)
    for r in res:
        if r.status == 409:
            tc.assertEqual(js(r)["type"], "/problems/out-of-stock", r)
    tc.assertEqual(catalog.stock(pid), 0)
    created = [js(r)["id"] for r in res if r.status == 201]
    n = count(store, "SELECT COUNT(*) FROM events e JOIN order_items i ON i.order_id = e.stream_id"
                     " WHERE e.type = 'OrderCreated' AND i.product_id = '%s'" % pid)
    tc.assertEqual(n, 10)
    tc.assertEqual(count(store, "SELECT COUNT(*) FROM order_items WHERE product_id = '%s'" % pid),
                   10)
    for oid in created:
        tc.assertEqual(events_of(store, oid), [("1", "OrderCreated")])
    api = catalog.api_stock(pid)
    if api is not None:
        tc.assertEqual(api, 0)


def check_concurrent_idempotency(tc, srvs, store, catalog, user, n=8):
    """n parallel requests with one key: exactly one order; every answer is
    that order's 201 (replayed or not) or 409 idempotency-key-in-use."""
    pid = catalog.make(price=100, stock=100)
    key = uniq("par-")
    fns = [(lambda i=i: order(srvs[i % len(srvs)], user, [(pid, 2)],
                              headers={"Idempotency-Key": key})) for i in range(n)]
    res = parallel(fns)
    firsts, replays, in_use = [], [], []
    for r in res:
        tc.assertNotIsInstance(r, Exception, r)
        if r.status == 201 and r.header("idempotent-replayed") == "true":
            replays.append(r)
        elif r.status == 201:
            firsts.append(r)
        else:
            tc.assertEqual(r.status, 409, r)
            tc.assertEqual(js(r)["type"], "/problems/idempotency-key-in-use", r)
            in_use.append(r)
    tc.assertEqual(len(firsts), 1, [r.status for r in res])
    for r in replays:
        tc.assertEqual(r.body, firsts[0].body)
    tc.assertEqual(count(store, "SELECT COUNT(*) FROM order_items WHERE product_id = '%s'" % pid),
                   1)
    tc.assertEqual(catalog.stock(pid), 98)


class Workload:
    """A seeded random mix of create / pay / fail-pay / ship / cancel
    commands issued by `workers` threads over srvs."""

    def __init__(self, tc, srvs, users, admin, manager, products, seed):
        self.tc, self.srvs, self.users = tc, srvs, users
        self.admin, self.manager, self.products, self.seed = admin, manager, products, seed
        self.orders = []  # (order id, owner index)
        self.lock = threading.Lock()
        self.results = {}
        self.errors = []

    def note(self, kind, status):
        with self.lock:
            self.results[(kind, status)] = self.results.get((kind, status), 0) + 1

    def pick_order(self, rng):
        with self.lock:
            return rng.choice(self.orders) if self.orders else None

    def step(self, rng, srv):
        kind = rng.choices(["create", "pay", "fail", "ship", "cancel", "cancel_admin"],
                           [45, 20, 4, 12, 15, 4])[0]
        if kind == "create" or not self.orders:
            who = rng.randrange(len(self.users))
            lines = [(rng.choice(self.products), rng.randint(1, 3))
                     for _ in range(rng.randint(1, 3))]
            r = order(srv, self.users[who], lines)
            self.note("create", r.status)
            if r.status == 201:
                with self.lock:
                    self.orders.append((js(r)["id"], who))
            elif r.status != 409:
                self.errors.append(("create", r))
            return
        oid, who = self.pick_order(rng)
        if kind in ("pay", "fail"):
            r = pay(srv, oid, kind == "pay")
        elif kind == "ship":
            r = act(srv, self.manager, oid, "ship")
        elif kind == "cancel":
            r = act(srv, self.users[who], oid, "cancel")
        else:
            r = act(srv, self.admin, oid, "cancel")
        self.note(kind, r.status)
        if r.status not in (200, 409):
            self.errors.append((kind, r))

    def run(self, total, workers=8):
        per = total // workers

        def worker(w):
            rng = random.Random(self.seed * 1000 + w)
            for i in range(per):
                try:
                    self.step(rng, self.srvs[(w + i) % len(self.srvs)])
                except Exception as e:  # noqa: BLE001 - collected and asserted
                    self.errors.append(("exception", e))
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        self.tc.assertEqual(self.errors[:5], [])
        return sum(self.results.values())


def check_invariants(tc, store, stock0):
    """What must hold between the event store, the read model, the outbox
    and the catalog after any mix of commands."""
    # every order's version is its stream's last version, streams gapless
    bad = store.query("SELECT o.id FROM orders o WHERE o.version <>"
                      " (SELECT MAX(version) FROM events e WHERE e.stream_id = o.id)"
                      " OR o.version <> (SELECT COUNT(*) FROM events e WHERE e.stream_id = o.id)")
    tc.assertEqual(bad, [])
    tc.assertEqual(count(store, "SELECT COUNT(DISTINCT stream_id) FROM events"),
                   count(store, "SELECT COUNT(*) FROM orders"))
    # one outbox row per event, keyed by the stream
    tc.assertEqual(count(store, "SELECT COUNT(*) FROM outbox"),
                   count(store, "SELECT COUNT(*) FROM events"))
    # stock conserved: what is left plus what live orders hold
    for pid, initial in stock0.items():
        held = count(store, "SELECT COALESCE(SUM(i.quantity), 0) FROM order_items i"
                            " JOIN orders o ON o.id = i.order_id WHERE o.status <> 'cancelled'"
                            " AND i.product_id = '%s'" % pid)
        left = count(store, "SELECT stock FROM products WHERE id = '%s'" % pid)
        tc.assertEqual(left + held, initial, pid)
    # the statuses the events imply
    last = store.query("SELECT e.stream_id, e.type FROM events e WHERE e.version ="
                       " (SELECT MAX(version) FROM events f WHERE f.stream_id = e.stream_id)")
    status_of = {"OrderCreated": "pending", "PaymentSucceeded": "paid",
                 "PaymentFailed": "payment_failed", "OrderShipped": "shipped",
                 "OrderCancelled": "cancelled"}
    rm = dict((r[0], r[2]) for r in store.query(ORDERS_SNAPSHOT))
    for sid, typ in last:
        tc.assertEqual(rm[sid], status_of[typ], sid)


def api_snapshot(tc, srv, admin):
    """Every order as the API lists it to an admin (all pages)."""
    out, cursor = [], None
    while True:
        path = "/api/v1/orders?limit=100" + ("&cursor=" + cursor if cursor else "")
        r = call(srv, "GET", path, token=admin["token"])
        tc.assertEqual(r.status, 200, r)
        d = js(r)
        out.extend(d["items"])
        cursor = d["next_cursor"]
        if not cursor:
            return out


def run_rebuild(tc, srv):
    p = run_cli(["projections", "rebuild", "orders"], env=cli_env(srv), cwd=srv.tmpdir,
                timeout=120)
    tc.assertEqual(p.returncode, 0, p.stdout + p.stderr)
    recs = [keeltest.parse_json_line(l) for l in p.stdout.splitlines()]
    recs = [r for r in recs if r and r.get("projection") == "orders" and "msg" not in r]
    tc.assertEqual(len(recs), 1, p.stdout)
    return recs[0]


def check_rebuild(tc, srv, store, admin):
    before = (store.query(ORDERS_SNAPSHOT), store.query(ITEMS_SNAPSHOT))
    api_before = api_snapshot(tc, srv, admin)
    tc.assertEqual(len(api_before), len(before[0]))
    nevents = count(store, "SELECT COUNT(*) FROM events")
    # Damage the read model: the rebuild must repair it from the events alone.
    store.execute("DELETE FROM order_items WHERE line = 2")
    store.execute("UPDATE orders SET status = 'bogus', version = 99 WHERE status = 'paid'")
    store.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 5)")
    tc.assertNotEqual((store.query(ORDERS_SNAPSHOT), store.query(ITEMS_SNAPSHOT)), before)
    stats = run_rebuild(tc, srv)
    tc.assertEqual(stats["events"], nevents)
    tc.assertEqual(stats["orders"], len(before[0]))
    tc.assertEqual(stats["items"], len(before[1]))
    after = (store.query(ORDERS_SNAPSHOT), store.query(ITEMS_SNAPSHOT))
    tc.assertEqual(after[0], before[0])
    tc.assertEqual(after[1], before[1])
    tc.assertEqual(api_snapshot(tc, srv, admin), api_before)


# --------------------------------------------------------------------------

class OrdersCase(unittest.TestCase):
    """One server (SQLite, debug routes on) and its people for the class."""

    srv = None

    @classmethod
    def setUpClass(cls):
        tc = unittest.TestCase()  # assertions while setting up the class
        cls.srv = Server(env=FAST, threads=2)
        cls.srv.start()
        try:
            cls.store = SqliteStore(cls.srv)
            cls.admin = create_admin(tc, cls.srv)
            cls.manager = new_user(tc, cls.srv, cls.admin, "manager")
            cls.viewer = new_user(tc, cls.srv, cls.admin, "viewer")
            cls.alice = new_user(tc, cls.srv)
            cls.bob = new_user(tc, cls.srv)
            cls.catalog = Catalog(tc, cls.srv, cls.store, cls.admin)
        except BaseException:
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            cls.srv.stop_and_check()

    def setUp(self):
        if not self.srv.alive():
            self.fail("keel serve died:\n" + "\n".join(self.srv.err_lines[-30:]))

    def make(self, price=1000, stock=100, currency="EUR", name=None):
        return self.catalog.make(price, stock, currency, name)

    def new_order(self, user=None, lines=None):
        user = user or self.alice
        lines = lines or [(self.make(), 1)]
        r = order(self.srv, user, lines)
        self.assertEqual(r.status, 201, r)
        return js(r)["id"]


class Create(OrdersCase):

    def test_money_and_shape(self):
        a = self.make(price=1999, stock=10, name="Widget")
        b = self.make(price=5, stock=10, name="Bolt")
        r = order(self.srv, self.alice, [(a, 3), (b, 2)])
        self.assertEqual(r.status, 201, r)
        d = keeltest.get_json(self, r)
        self.assertEqual(set(d), ORDER_KEYS)
        self.assertTrue(keeltest.UUID7_RE.match(d["id"]), d["id"])
        self.assertEqual(r.header("location"), "/api/v1/orders/" + d["id"])
        self.assertEqual(d["status"], "pending")
        self.assertEqual(d["user_id"], self.alice["id"])
        self.assertEqual(d["total_cents"], 6007)
        self.assertIsInstance(d["total_cents"], int)
        self.assertEqual(d["currency"], "EUR")
        self.assertEqual([set(l) for l in d["items"]], [LINE_KEYS, LINE_KEYS])
        self.assertEqual([(l["product_id"], l["name"], l["unit_price_cents"], l["quantity"],
                           l["line_total_cents"]) for l in d["items"]],
                         [(a, "Widget", 1999, 3, 5997), (b, "Bolt", 5, 2, 10)])
        self.assertRegex(d["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(b)), (7, 8))
        # the same document from the read model
        g = call(self.srv, "GET", "/api/v1/orders/" + d["id"], token=self.alice["token"])
        self.assertEqual(g.status, 200, g)
        self.assertEqual(js(g), d)
        # the stream and the outbox
        self.assertEqual(events_of(self.store, d["id"]), [("1", "OrderCreated")])
        ob = self.store.query("SELECT topic, key, payload FROM outbox WHERE key = '%s'" % d["id"])
        self.assertEqual(len(ob), 1)
        self.assertEqual(ob[0][:2], ("orders", d["id"]))
        payload = json.loads(ob[0][2])
        self.assertEqual(set(payload), EVENT_KEYS)
        self.assertEqual((payload["type"], payload["version"]), ("OrderCreated", 1))
        self.assertEqual(payload["data"]["total_cents"], 6007)

    def test_prices_come_from_the_catalog(self):
        a = self.make(price=1999, stock=10)
        for extra in ({"price_cents": 1}, {"unit_price_cents": 1}, {"name": "x"}):
            item = {"product_id": a, "quantity": 1}
            item.update(extra)
            r = call(self.srv, "POST", "/api/v1/orders", {"items": [item]},
                     token=self.alice["token"])
            d = check_problem(self, r, 400, "validation-error")
            self.assertEqual(d["errors"][0]["field"], "items[0].%s" % list(extra)[0], d)
        for top in ({"total_cents": 1}, {"currency": "USD"}, {"status": "paid"},
                    {"user_id": self.bob["id"]}, {"discount": 5}):
            body = {"items": [{"product_id": a, "quantity": 1}]}
            body.update(top)
            r = call(self.srv, "POST", "/api/v1/orders", body, token=self.alice["token"])
            check_problem(self, r, 400, "validation-error")
        self.assertEqual(self.catalog.stock(a), 10)

    def test_bad_bodies(self):
        a = self.make()
        cases = [
            ({}, "items"),
            ({"items": []}, "items"),
            ({"items": [{"product_id": a, "quantity": 1}] * 51}, "items"),
            ({"items": [{"product_id": a, "quantity": 0}]}, "items[0].quantity"),
            ({"items": [{"product_id": a, "quantity": 1001}]}, "items[0].quantity"),
            ({"items": [{"product_id": a, "quantity": 1.5}]}, "items[0].quantity"),
            ({"items": [{"product_id": a, "quantity": "1"}]}, "items[0].quantity"),
            ({"items": [{"product_id": "nope", "quantity": 1}]}, "items[0].product_id"),
            ({"items": [{"quantity": 1}]}, "items[0].product_id"),
            ({"items": [a]}, "items[0]"),
            ({"items": [{"product_id": a, "quantity": 600},
                        {"product_id": a.upper(), "quantity": 600}]}, "items[1].quantity"),
        ]
        for body, field in cases:
            with self.subTest(body=str(body)[:80]):
                r = call(self.srv, "POST", "/api/v1/orders", body, token=self.alice["token"])
                d = check_problem(self, r, 400, "validation-error")
                self.assertIn(field, [e["field"] for e in d.get("errors", [])], d)
        r = call(self.srv, "POST", "/api/v1/orders", raw=b"{", token=self.alice["token"])
        self.assertEqual(r.status, 400, r)
        r = self.srv.request("POST", "/api/v1/orders",
                             [("Authorization", "Bearer " + self.alice["token"]),
                              ("Content-Type", "text/plain")], b"{}")
        self.assertEqual(r.status, 415, r)
        self.assertEqual(self.catalog.stock(a), 100)

    def test_duplicates_merged(self):
        a, b = self.make(price=300, stock=10), self.make(price=7, stock=10)
        r = order(self.srv, self.alice, [(a, 2), (b, 1), (a.upper(), 3)])
        self.assertEqual(r.status, 201, r)
        d = js(r)
        self.assertEqual([(l["product_id"], l["quantity"]) for l in d["items"]], [(a, 5), (b, 1)])
        self.assertEqual(d["total_cents"], 1507)
        self.assertEqual(self.catalog.stock(a), 5)

    def test_unknown_product_and_currencies(self):
        a = self.make(price=100, stock=5)
        ghost = str(uuid.uuid4())
        r = order(self.srv, self.alice, [(a, 1), (ghost, 1)])
        d = check_problem(self, r, 400, "validation-error")
        self.assertEqual(d["errors"], [{"field": "items[1].product_id",
                                        "message": "does not name a product"}])
        usd = self.make(price=100, stock=5, currency="USD")
        r = order(self.srv, self.alice, [(a, 1), (usd, 1)])
        d = check_problem(self, r, 400, "validation-error")
        self.assertEqual(d["errors"][0]["field"], "items", d)
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(usd)), (5, 5))

    def test_out_of_stock_changes_nothing(self):
        a, b = self.make(stock=5), self.make(stock=1)
        counts = [count(self.store, "SELECT COUNT(*) FROM %s" % t)
                  for t in ("events", "outbox", "orders", "order_items")]
        r = order(self.srv, self.alice, [(a, 2), (b, 2)])
        d = check_problem(self, r, 409, "out-of-stock")
        self.assertIn(b, d["detail"])
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(b)), (5, 1))
        self.assertEqual([count(self.store, "SELECT COUNT(*) FROM %s" % t)
                          for t in ("events", "outbox", "orders", "order_items")], counts)
        r = order(self.srv, self.alice, [(a, 5), (b, 1)])
        self.assertEqual(r.status, 201, r)
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(b)), (0, 0))

    def test_oversell(self):
        users = [self.alice, self.bob] + [new_user(self, self.srv) for _ in range(3)]
        check_oversell(self, [self.srv], self.store, self.catalog, users)


class Idempotency(OrdersCase):

    def test_replay(self):
        a = self.make(price=1250, stock=10)
        body = json.dumps({"items": [{"product_id": a, "quantity": 2}]}).encode()
        h = {"Idempotency-Key": "replay-" + uniq()}
        r1 = order(self.srv, self.alice, None, headers=h, raw=body)
        self.assertEqual(r1.status, 201, r1)
        self.assertIsNone(r1.header("idempotent-replayed"))
        for _ in range(2):
            r2 = order(self.srv, self.alice, None, headers=h, raw=body)
            self.assertEqual(r2.status, 201, r2)
            self.assertEqual(r2.header("idempotent-replayed"), "true")
            self.assertEqual(r2.body, r1.body)
            self.assertEqual(r2.header("location"), r1.header("location"))
            self.assertEqual(r2.header("content-type"), "application/json")
        self.assertEqual(self.catalog.stock(a), 8)
        self.assertEqual(count(self.store, "SELECT COUNT(*) FROM order_items"
                                           " WHERE product_id = '%s'" % a), 1)
        # the quoted (Structured Field) form names the same key
        q = {"Idempotency-Key": '"%s"' % h["Idempotency-Key"]}
        r3 = order(self.srv, self.alice, None, headers=q, raw=body)
        self.assertEqual((r3.status, r3.header("idempotent-replayed")), (201, "true"))
        # a different body with the key: 422, nothing happens
        r4 = order(self.srv, self.alice, [(a, 3)], headers=h)
        check_problem(self, r4, 422, "idempotency-key-mismatch")
        self.assertEqual(self.catalog.stock(a), 8)

    def test_per_user_scope(self):
        a = self.make(stock=10)
        h = {"Idempotency-Key": "shared-" + uniq()}
        r1 = order(self.srv, self.alice, [(a, 1)], headers=h)
        r2 = order(self.srv, self.bob, [(a, 1)], headers=h)
        self.assertEqual((r1.status, r2.status), (201, 201))
        self.assertIsNone(r2.header("idempotent-replayed"))
        self.assertNotEqual(js(r1)["id"], js(r2)["id"])
        self.assertEqual(js(r2)["user_id"], self.bob["id"])
        self.assertEqual(self.catalog.stock(a), 8)

    def test_concurrent_duplicates(self):
        check_concurrent_idempotency(self, [self.srv], self.store, self.catalog, self.alice)

    def test_bad_keys(self):
        a = self.make(stock=10)
        for key in ("", "x" * 256, '"unterminated', '"a"b"'):
            with self.subTest(key=key[:20]):
                r = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": key})
                check_problem(self, r, 400)
        r = order(self.srv, self.alice, [(a, 1)],
                  headers=[("Idempotency-Key", "one"), ("Idempotency-Key", "two")])
        check_problem(self, r, 400)
        r = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": "k" * 255})
        self.assertEqual(r.status, 201, r)
        r = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": "caf\xe9"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.catalog.stock(a), 9)

    def test_client_error_is_kept(self):
        a = self.make(stock=0)
        h = {"Idempotency-Key": "oos-" + uniq()}
        r1 = order(self.srv, self.alice, [(a, 1)], headers=h)
        d1 = check_problem(self, r1, 409, "out-of-stock")
        self.catalog.set_stock(a, 5)
        r2 = order(self.srv, self.alice, [(a, 1)], headers=h)
        self.assertEqual((r2.status, r2.header("idempotent-replayed")), (409, "true"))
        self.assertEqual(r2.header("content-type"), "application/problem+json")
        self.assertEqual(js(r2), d1)
        self.assertEqual(self.catalog.stock(a), 5)
        # a fresh key orders
        r3 = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": uniq()})
        self.assertEqual(r3.status, 201, r3)

    def test_server_error_releases_key(self):
        a = self.make(stock=10)
        key = "fail-" + uniq()
        # an injected storage failure inside the order's transaction
        self.store.execute("CREATE TRIGGER orders_e2e_fail BEFORE INSERT ON events"
                           " BEGIN SELECT RAISE(ABORT, 'injected'); END")
        try:
            r1 = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": key})
            check_problem(self, r1, 500, "internal-error")
            self.assertNotIn("injected", r1.body.decode())
        finally:
            self.store.execute("DROP TRIGGER orders_e2e_fail")
        self.assertEqual(self.catalog.stock(a), 10)
        self.assertEqual(self.store.query("SELECT state FROM idempotency_keys WHERE key = '%s'"
                                          % key), [])
        # the key is free again: the retry runs (it is no replay of the 500)
        r2 = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": key})
        self.assertEqual(r2.status, 201, r2)
        self.assertIsNone(r2.header("idempotent-replayed"))
        self.assertEqual(self.catalog.stock(a), 9)

    def test_expired_key_is_absent(self):
        a = self.make(stock=10)
        key = "exp-" + uniq()
        r1 = order(self.srv, self.alice, [(a, 1)], headers={"Idempotency-Key": key})
        self.assertEqual(r1.status, 201, r1)
        self.store.execute("UPDATE idempotency_keys SET expires_ms = 1 WHERE key = '%s'" % key)
        r2 = order(self.srv, self.alice, [(a, 2)], headers={"Idempotency-Key": key})
        self.assertEqual(r2.status, 201, r2)
        self.assertIsNone(r2.header("idempotent-replayed"))
        self.assertNotEqual(js(r1)["id"], js(r2)["id"])
        self.assertEqual(self.catalog.stock(a), 7)

    def test_running_claims(self):
        a = self.make(stock=10)
        body = json.dumps({"items": [{"product_id": a, "quantity": 1}]}).encode()
        digest = hashlib.sha256(body).hexdigest()
        now = int(time.time() * 1000)
        rows = (("fresh", now), ("stale", now - 61000))
        for name, locked in rows:
            self.store.execute(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, state, lock_id,"
                " locked_ms, created_ms, expires_ms) VALUES ('%s', '%s', '%s', 'running',"
                " 'crashed-owner', %d, %d, %d)"
                % (self.alice["id"], name, digest, locked, locked, now + 86400000))
        r = order(self.srv, self.alice, None, headers={"Idempotency-Key": "fresh"}, raw=body)
        check_problem(self, r, 409, "idempotency-key-in-use")
        # a claim older than 60 s belongs to a request that died: taken over
        r = order(self.srv, self.alice, None, headers={"Idempotency-Key": "stale"}, raw=body)
        self.assertEqual(r.status, 201, r)
        st = self.store.query("SELECT state, status, lock_id FROM idempotency_keys"
                              " WHERE key = 'stale'")
        self.assertEqual(st, [("done", "201", "")])
        self.assertEqual(self.catalog.stock(a), 9)


class StateMachine(OrdersCase):

    def test_pay_then_ship(self):
        oid = self.new_order()
        check_problem(self, act(self.srv, self.manager, oid, "ship"), 409, "conflict")
        r = pay(self.srv, oid)
        self.assertEqual((r.status, js(r)["status"]), (200, "paid"), r)
        check_problem(self, pay(self.srv, oid), 409, "conflict")
        r = act(self.srv, self.manager, oid, "ship")
        self.assertEqual((r.status, js(r)["status"]), (200, "shipped"), r)
        check_problem(self, act(self.srv, self.alice, oid, "cancel"), 409, "conflict")
        check_problem(self, act(self.srv, self.admin, oid, "cancel"), 409, "conflict")
        check_problem(self, act(self.srv, self.manager, oid, "ship"), 409, "conflict")
        self.assertEqual(events_of(self.store, oid),
                         [("1", "OrderCreated"), ("2", "PaymentSucceeded"),
                          ("3", "OrderShipped")])

    def test_cancel_restocks(self):
        a, b = self.make(price=400, stock=10), self.make(price=50, stock=3)
        r = order(self.srv, self.alice, [(a, 4), (b, 3)])
        oid = js(r)["id"]
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(b)), (6, 0))
        r = act(self.srv, self.alice, oid, "cancel")
        self.assertEqual((r.status, js(r)["status"]), (200, "cancelled"), r)
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(b)), (10, 3))
        if self.catalog.api:
            self.assertEqual(self.catalog.api_stock(b), 3)
        check_problem(self, act(self.srv, self.alice, oid, "cancel"), 409, "conflict")
        check_problem(self, pay(self.srv, oid), 409, "conflict")
        self.assertEqual((self.catalog.stock(a), self.catalog.stock(b)), (10, 3))
        ev = js(call(self.srv, "GET", "/api/v1/orders/%s/events" % oid,
                     token=self.alice["token"]))["items"]
        self.assertEqual(ev[1]["data"], {"previous_status": "pending", "refund": None,
                                         "restocked": [{"product_id": a, "quantity": 4},
                                                       {"product_id": b, "quantity": 3}]})

    def test_cancel_paid_notes_refund(self):
        a = self.make(price=999, stock=10)
        oid = self.new_order(lines=[(a, 2)])
        self.assertEqual(pay(self.srv, oid).status, 200)
        r = act(self.srv, self.alice, oid, "cancel")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.catalog.stock(a), 10)
        ev = js(call(self.srv, "GET", "/api/v1/orders/%s/events" % oid,
                     token=self.alice["token"]))["items"]
        self.assertEqual([e["type"] for e in ev],
                         ["OrderCreated", "PaymentSucceeded", "OrderCancelled"])
        self.assertEqual(ev[2]["data"]["refund"], {"amount_cents": 1998, "currency": "EUR"})
        self.assertEqual(ev[2]["data"]["previous_status"], "paid")

    def test_payment_failed_is_final(self):
        oid = self.new_order()
        r = pay(self.srv, oid, False)
        self.assertEqual((r.status, js(r)["status"]), (200, "payment_failed"), r)
        for r in (pay(self.srv, oid), act(self.srv, self.alice, oid, "cancel"),
                  act(self.srv, self.manager, oid, "ship")):
            check_problem(self, r, 409, "conflict")
        r = pay(self.srv, str(uuid.uuid4()))
        check_problem(self, r, 404)
        r = call(self.srv, "POST", "/debug/orders/%s/pay" % oid, {"succeeded": "yes"})
        check_problem(self, r, 400, "validation-error")

    def test_events_stream(self):
        a = self.make(price=100, stock=10)
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        h = {"X-Request-ID": "orders-e2e-create-1",
             "traceparent": "00-%s-00f067aa0ba902b7-01" % trace}
        r = order(self.srv, self.alice, [(a, 2)], headers=h)
        oid = js(r)["id"]
        self.assertEqual(pay(self.srv, oid).status, 200)
        r = call(self.srv, "POST", "/api/v1/orders/%s/cancel" % oid, token=self.alice["token"],
                 headers={"X-Request-ID": "orders-e2e-cancel-1",
                          "traceparent": "00-%s-00f067aa0ba902b7-01" % trace.upper()})
        self.assertEqual(r.status, 200, r)
        r = call(self.srv, "GET", "/api/v1/orders/%s/events" % oid, token=self.alice["token"])
        self.assertEqual(r.status, 200, r)
        ev = keeltest.get_json(self, r)["items"]
        self.assertEqual([(e["stream_id"], e["version"], e["type"]) for e in ev],
                         [(oid, 1, "OrderCreated"), (oid, 2, "PaymentSucceeded"),
                          (oid, 3, "OrderCancelled")])
        for e in ev:
            self.assertEqual(set(e), EVENT_KEYS)
            self.assertEqual(set(e["metadata"]), {"request_id", "user_id", "trace_id"})
        self.assertEqual(ev[0]["metadata"], {"request_id": "orders-e2e-create-1",
                                             "user_id": self.alice["id"], "trace_id": trace})
        self.assertEqual(ev[0]["data"]["total_cents"], 200)
        self.assertEqual(ev[0]["data"]["user_id"], self.alice["id"])
        self.assertIsNone(ev[1]["metadata"]["user_id"])  # the anonymous debug route
        # an uppercase trace-id is not a valid traceparent: no trace id
        self.assertEqual(ev[2]["metadata"], {"request_id": "orders-e2e-cancel-1",
                                             "user_id": self.alice["id"], "trace_id": None})
        times = [e["created_at"] for e in ev]
        self.assertEqual(times, sorted(times))
        # visible to managers and admins, not to others
        for who in (self.manager, self.admin):
            r = call(self.srv, "GET", "/api/v1/orders/%s/events" % oid, token=who["token"])
            self.assertEqual(js(r)["items"], ev)
        check_problem(self, call(self.srv, "GET", "/api/v1/orders/%s/events" % oid,
                                 token=self.bob["token"]), 404)
        check_problem(self, call(self.srv, "GET", "/api/v1/orders/%s/events" % uuid.uuid4(),
                                 token=self.admin["token"]), 404)


class Access(OrdersCase):

    def test_bola(self):
        oid = self.new_order(self.alice)
        for path in ("/api/v1/orders/" + oid, "/api/v1/orders/%s/events" % oid):
            d = check_problem(self, call(self.srv, "GET", path, token=self.bob["token"]), 404)
            ghost = check_problem(self, call(self.srv, "GET", path.replace(oid, str(uuid.uuid4())),
                                             token=self.bob["token"]), 404)
            self.assertEqual(d["detail"], ghost["detail"])
            self.assertEqual(call(self.srv, "GET", path, token=self.alice["token"]).status, 200)
            self.assertEqual(call(self.srv, "GET", path, token=self.manager["token"]).status, 200)
            check_problem(self, call(self.srv, "GET", path), 401)
        check_problem(self, act(self.srv, self.bob, oid, "cancel"), 404)
        check_problem(self, act(self.srv, self.bob, oid, "ship"), 403)
        # a manager sees every order but cancels only their own
        check_problem(self, act(self.srv, self.manager, oid, "cancel"), 403)
        check_problem(self, act(self.srv, self.viewer, oid, "cancel"), 403)
        r = call(self.srv, "GET", "/api/v1/orders/" + oid, token=self.alice["token"])
        self.assertEqual(js(r)["status"], "pending")
        # an admin cancels anyone's
        r = act(self.srv, self.admin, oid, "cancel")
        self.assertEqual((r.status, js(r)["status"]), (200, "cancelled"), r)

    def test_roles(self):
        a = self.make(stock=10)
        check_problem(self, order(self.srv, self.viewer, [(a, 1)]), 403)
        check_problem(self, order(self.srv, {"token": "garbage"}, [(a, 1)]), 401)
        r = order(self.srv, self.manager, [(a, 1)])
        self.assertEqual(r.status, 201, r)
        r = order(self.srv, self.admin, [(a, 1)])
        self.assertEqual(r.status, 201, r)
        r = call(self.srv, "GET", "/api/v1/orders", token=self.viewer["token"])
        self.assertEqual((r.status, js(r)), (200, {"items": [], "next_cursor": None}))

    def test_lists(self):
        carol, dave = new_user(self, self.srv), new_user(self, self.srv)
        mine = [self.new_order(carol) for _ in range(5)]
        theirs = [self.new_order(dave) for _ in range(2)]
        self.assertEqual(pay(self.srv, mine[1]).status, 200)
        r = call(self.srv, "GET", "/api/v1/orders", token=carol["token"])
        d = keeltest.get_json(self, r)
        self.assertEqual([o["id"] for o in d["items"]], mine)
        self.assertIsNone(d["next_cursor"])
        # pages of 2
        seen, cursor = [], None
        for _ in range(5):
            path = "/api/v1/orders?limit=2" + ("&cursor=" + cursor if cursor else "")
            d = js(call(self.srv, "GET", path, token=carol["token"]))
            seen += [o["id"] for o in d["items"]]
            cursor = d["next_cursor"]
            if not cursor:
                break
        self.assertEqual(seen, mine)
        r = call(self.srv, "GET", "/api/v1/orders?status=paid", token=carol["token"])
        self.assertEqual([o["id"] for o in js(r)["items"]], [mine[1]])
        # a user asking for someone else's orders
        r = call(self.srv, "GET", "/api/v1/orders?user_id=" + dave["id"], token=carol["token"])
        check_problem(self, r, 403)
        r = call(self.srv, "GET", "/api/v1/orders?user_id=" + carol["id"], token=carol["token"])
        self.assertEqual([o["id"] for o in js(r)["items"]], mine)
        # managers and admins: everything, filtered by user and status
        for who in (self.manager, self.admin):
            r = call(self.srv, "GET", "/api/v1/orders?limit=100&user_id=" + dave["id"],
                     token=who["token"])
            self.assertEqual([o["id"] for o in js(r)["items"]], theirs)
            r = call(self.srv, "GET", "/api/v1/orders?status=paid&user_id=" + carol["id"],
                     token=who["token"])
            self.assertEqual([o["id"] for o in js(r)["items"]], [mine[1]])
        allids = [o["id"] for o in api_snapshot(self, self.srv, self.manager)]
        self.assertTrue(set(mine + theirs) <= set(allids))
        self.assertEqual(allids, sorted(allids))
        for q in ("limit=0", "limit=101", "limit=x", "cursor=zzz", "status=lost",
                  "user_id=nope"):
            with self.subTest(q=q):
                check_problem(self, call(self.srv, "GET", "/api/v1/orders?" + q,
                                         token=carol["token"]), 400, "validation-error")

    def test_debug_pay_needs_debug_routes(self):
        with Server(env=FAST, debug_routes=False) as srv:
            r = call(srv, "POST", "/debug/orders/%s/pay" % uuid.uuid4(), {"succeeded": True})
            check_problem(self, r, 404)
            r = call(srv, "POST", "/debug/orders/%s/pay" % uuid.uuid4(), raw=b"garbage")
            self.assertEqual(r.status, 404, r)


class Rebuild(OrdersCase):

    def test_rebuild_equals_live(self):
        users = [self.alice, self.bob] + [new_user(self, self.srv) for _ in range(4)]
        stock0 = {}
        for price, stock in ((199, 400), (1250, 400), (5, 600), (9999, 40), (1, 15)):
            stock0[self.make(price=price, stock=stock)] = stock
        # orders from the other tests of the class hold stock of their own products
        w = Workload(self, [self.srv], users, self.admin, self.manager, list(stock0), seed=5)
        t0 = time.monotonic()
        n = w.run(1000, workers=8)
        self.assertEqual(n, 1000)
        took = time.monotonic() - t0
        created = w.results.get(("create", 201), 0)
        self.assertGreater(created, 200, w.results)
        self.assertGreater(w.results.get(("create", 409), 0), 0, w.results)
        for kind in ("pay", "ship", "cancel", "cancel_admin"):
            self.assertGreater(w.results.get((kind, 200), 0), 0, (kind, w.results))
        check_invariants(self, self.store, stock0)
        check_rebuild(self, self.srv, self.store, self.admin)
        # the server goes on after the rebuild
        oid = self.new_order(self.alice)
        self.assertEqual(pay(self.srv, oid).status, 200)
        check_invariants(self, self.store, stock0)
        sys.stderr.write("  workload: 1000 commands in %.1f s: %r\n" % (took, sorted(w.results.items())))


if __name__ == "__main__":
    keeltest.main()
