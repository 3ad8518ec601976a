"""Identity end to end on real PostgreSQL 15 and Redis servers, started by
the harness on loopback in temporary directories (tests/lib/servers.py),
with several `keel serve` instances sharing them (SPEC section 3 "Auth",
section 5; docs/internals/identity.md, "Blocklist" and "Passwords and
login").

The class starts one PostgreSQL primary, one Redis and two instances A and
B on both; tests that need other settings start their own pair on the same
database:

  test_1  register, duplicate (also racing on A and B), login, /users/me,
          refresh rotation (body and cookie), reuse detection revoking the
          family, logout - all on PostgreSQL, across A and B.
  test_2  logout through A: B refuses the access token on the very next
          request (Redis), even a token B had verified and cached.
  test_3  role change and deletion by an admin through A: the user's old
          token is refused on B at once.
  test_4  no Redis (own pair A', B'): a logout or role change through A' is
          refused by B' within 2.5 s (database poll every second).
  test_5  rate limits shared through Redis (own pair and Redis): user 10/min
          and auth 4/min spread over both instances.
  test_6  Redis stopped: authenticated requests keep working on A and B,
          logout blocks at once on A and within 2.5 s on B; Redis restarted:
          things recover.
  test_7  10 concurrent refreshes of one token over A and B: exactly one
          200, the family revoked afterwards.
  test_8  login throttling shared by A and B (sequential and concurrent
          failures).

Skipped when the PostgreSQL 15 or redis-server binaries are missing (as
test_storage_pg.py); a server that is present but does not start is an
error.
"""

import base64
import json
import os
import secrets
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import keeltest  # noqa: E402
from keeltest import Server, run_cli, check_problem, UUID7_RE  # noqa: E402
import servers  # noqa: E402

JWT_SECRET = secrets.token_hex(20)  # 40 bytes, common to every instance
PASSWORD = "correct horse battery staple"
ADMIN_PASSWORD = "admin-password-0123456789"
REVOKE_BOUND = 2.5  # seconds: database poll every second, plus slack
TIMEOUT = 15        # per request, generous under ASan


def setUpModule():
    if not servers.have_postgres():
        raise unittest.SkipTest("PostgreSQL 15 binaries not found in %s" % servers.PG_BIN)
    if not servers.have_redis():
        raise unittest.SkipTest("redis-server not found")


# --------------------------------------------------------------------------
# helpers

_seq = [0]
_seq_lock = threading.Lock()


def uniq(prefix):
    with _seq_lock:
        _seq[0] += 1
        n = _seq[0]
    return "%s-%d-%s@example.com" % (prefix, n, secrets.token_hex(3))


def keel_env(pg, redis_url=None, **extra):
    env = {
        "KEEL_ENV": "development",
        "KEEL_DATABASE_URL": pg.url,
        "KEEL_DATABASE_POOL_SIZE": "8",
        "KEEL_JWT_SECRET": JWT_SECRET,
        "KEEL_PASSWORD_MEMORY": "1024",
        "KEEL_PASSWORD_ITERATIONS": "1",
        # a small breaker, so Redis coming back is noticed within seconds
        "KEEL_BREAKER_MIN_CALLS": "5",
        "KEEL_BREAKER_OPEN": "1",
        "KEEL_BREAKER_WINDOW": "5",
    }
    if redis_url:
        env["KEEL_REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_pair(env):
    """Starts A, waits until it is ready (it applies the migrations), then
    B. Returns (A, B); on failure nothing is left running."""
    a = Server(env=env)
    b = None
    try:
        a.start()
        a.wait_ready(timeout=20)
        b = Server(env=env)
        b.start()
        b.wait_ready(timeout=20)
    except BaseException:
        a.cleanup()
        if b:
            b.cleanup()
        raise
    return a, b


def body(resp):
    try:
        return json.loads(resp.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


def post(srv, path, obj=None, token=None, headers=None, timeout=TIMEOUT):
    hs = []
    data = None
    if obj is not None:
        hs.append(("Content-Type", "application/json"))
        data = json.dumps(obj).encode()
    if token:
        hs.append(("Authorization", "Bearer " + token))
    hs.extend(headers or [])
    return srv.request("POST", path, hs, data, timeout=timeout)


def send(srv, method, path, obj=None, token=None, timeout=TIMEOUT):
    hs = []
    data = None
    if obj is not None:
        hs.append(("Content-Type", "application/json"))
        data = json.dumps(obj).encode()
    if token:
        hs.append(("Authorization", "Bearer " + token))
    return srv.request(method, path, hs, data, timeout=timeout)


def register(srv, email, password=PASSWORD, name="Test User"):
    return post(srv, "/auth/register", {"email": email, "password": password, "name": name})


def login(srv, email, password=PASSWORD):
    return post(srv, "/auth/login", {"email": email, "password": password})


def refresh(srv, token):
    return post(srv, "/auth/refresh", {"refresh_token": token})


def logout(srv, access, refresh_token=None):
    return post(srv, "/auth/logout", {"refresh_token": refresh_token} if refresh_token else {},
                token=access)


def me(srv, token, timeout=TIMEOUT):
    return srv.request("GET", "/api/v1/users/me", [("Authorization", "Bearer " + token)],
                       timeout=timeout)


def safe(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except (OSError, keeltest.ConnectionClosed, keeltest.ProtocolError) as e:
        return e


def status(r):
    return getattr(r, "status", repr(r))


def claims(token):
    """The payload of a JWT (not verified: only to read jti/sub/role)."""
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def redis_exists(rd, key):
    try:
        return rd.command("EXISTS", key).startswith(b":1")
    except OSError:
        return False


def wait_refused(srv, token, bound, interval=0.05):
    """Polls GET /users/me with token until 401; returns (seconds, statuses
    seen). seconds is None when it was still accepted after `bound`."""
    t0 = time.monotonic()
    seen = []
    while True:
        r = safe(me, srv, token)
        st = status(r)
        if not seen or seen[-1] != st:
            seen.append(st)
        dt = time.monotonic() - t0
        if st == 401:
            return dt, seen
        if dt > bound:
            return None, seen
        time.sleep(interval)


def poll(fn, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------

class AuthPg(unittest.TestCase):
    """PostgreSQL primary + Redis, instances A and B on both."""

    pg = None
    rd = None
    A = None
    B = None
    env = None
    admin_id = None
    admin_email = None

    @classmethod
    def setUpClass(cls):
        cls.pg = servers.PgCluster(replicas=0)
        cls.rd = servers.Redis()
        try:
            cls.pg.start()
            cls.rd.start()
            cls.env = keel_env(cls.pg, cls.rd.url)
            cls.A, cls.B = start_pair(cls.env)
            cls.admin_email = uniq("admin")
            p = run_cli(["users", "create-admin", "--email", cls.admin_email], env=cls.env,
                        input=ADMIN_PASSWORD + "\n", timeout=60)
            if p.returncode != 0:
                raise AssertionError("keel users create-admin exited %d:\n%s\n%s"
                                     % (p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
            for line in p.stdout.splitlines():
                rec = keeltest.parse_json_line(line)
                if rec and rec.get("role") == "admin" and "id" in rec:
                    cls.admin_id = rec["id"]
            if not cls.admin_id:
                raise AssertionError("create-admin printed no {id, role: admin}:\n" + p.stdout)
        except BaseException:
            cls._teardown(check=False)
            raise

    @classmethod
    def _teardown(cls, check=True):
        errors = []
        try:
            for srv in (cls.A, cls.B):
                if srv is None:
                    continue
                if check:
                    try:
                        srv.stop_and_check()
                    except AssertionError as e:
                        errors.append(str(e))
                else:
                    srv.cleanup()
        finally:
            cls.rd.close()
            cls.pg.close()
        if errors:
            raise AssertionError("\n\n".join(errors))

    @classmethod
    def tearDownClass(cls):
        cls._teardown(check=True)

    def setUp(self):
        for name, srv in (("A", self.A), ("B", self.B)):
            if not srv.alive():
                self.fail("instance %s died (exit %r):\n%s" % (name, srv.proc.returncode,
                                                               "\n".join(srv.err_lines[-40:])))
        if not self.rd.ping():
            self.rd.start()

    # -- helpers ---------------------------------------------------------
    def new_user(self, srv=None, prefix="user"):
        """Registers a user; returns (email, id)."""
        email = uniq(prefix)
        r = register(srv or self.A, email)
        self.assertEqual(r.status, 201, r)
        return email, body(r)["id"]

    def session(self, srv, email, password=PASSWORD):
        """Logs in; returns (access, refresh)."""
        r = login(srv, email, password)
        self.assertEqual(r.status, 200, r)
        d = body(r)
        return d["access_token"], d["refresh_token"]

    def admin_token(self, srv=None):
        return self.session(srv or self.A, self.admin_email, ADMIN_PASSWORD)[0]

    def assert_refused(self, resp, what):
        self.assertEqual(resp.status, 401, "%s: %r" % (what, resp))
        check_problem(self, resp, 401, "unauthorized")
        self.assertIn("Bearer", resp.header("www-authenticate") or "", resp.headers)

    def sql(self, q):
        return self.pg.psql(q)

    # -- 1 ----------------------------------------------------------------
    def test_1_flows(self):
        A, B = self.A, self.B
        email = uniq("Flow")
        r = register(A, "  %s  " % email.upper(), name="Flow User")
        self.assertEqual(r.status, 201, r)
        user = keeltest.get_json(self, r)
        uid = user.get("id")
        self.assertRegex(uid or "", UUID7_RE)
        self.assertEqual(user.get("email"), email.lower(), "email must be trimmed and lowercased")
        self.assertEqual(user.get("role"), "user")
        self.assertEqual(user.get("name"), "Flow User")
        self.assertFalse([k for k in user if "password" in k or "hash" in k], user)
        self.assertEqual(r.header("location"), "/api/v1/users/" + uid)
        self.assertEqual(self.sql("SELECT email || '|' || role FROM users WHERE id = '%s'" % uid),
                         email.lower() + "|user")
        email = email.lower()

        with self.subTest(check="duplicate email through the other instance -> 409"):
            r = register(B, email.upper(), password="another password 1", name="Dup")
            check_problem(self, r, 409, "conflict")
            self.assertEqual(self.sql("SELECT count(*) FROM users WHERE email = '%s'" % email), "1")

        with self.subTest(check="racing duplicate registrations on A and B"):
            race = uniq("race")
            res = [None] * 6
            barrier = threading.Barrier(len(res))

            def go(i):
                barrier.wait()
                res[i] = status(safe(register, (A, B)[i % 2], race))
            ts = [threading.Thread(target=go, args=(i,)) for i in range(len(res))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            self.assertEqual(sorted(res, key=str), [201] + [409] * 5,
                             "6 concurrent registrations of one email: %r" % res)
            self.assertEqual(self.sql("SELECT count(*) FROM users WHERE email = '%s'" % race), "1")

        with self.subTest(check="bad credentials -> one generic 401"):
            bad = login(A, email, "wrong password 123")
            unknown = login(B, uniq("nobody"), "wrong password 123")
            d1 = check_problem(self, bad, 401, "unauthorized")
            d2 = check_problem(self, unknown, 401, "unauthorized")
            self.assertEqual((d1["title"], d1["detail"]), (d2["title"], d2["detail"]))

        # login on A
        r = login(A, email)
        self.assertEqual(r.status, 200, r)
        pair = keeltest.get_json(self, r)
        for k in ("access_token", "refresh_token", "token_type", "expires_in"):
            self.assertIn(k, pair, pair)
        self.assertEqual(pair["token_type"], "Bearer")
        self.assertEqual(pair["expires_in"], 900)
        cookie = r.header("set-cookie") or ""
        self.assertTrue(cookie.startswith("refresh=" + pair["refresh_token"]), cookie)
        for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/auth/refresh"):
            self.assertIn(attr, cookie)
        c = claims(pair["access_token"])
        self.assertEqual((c.get("sub"), c.get("role")), (uid, "user"), c)
        access1, r1 = pair["access_token"], pair["refresh_token"]
        self.assertEqual(self.sql("SELECT count(*) FROM refresh_families WHERE user_id = '%s'" % uid), "1")
        self.assertNotIn(r1, self.sql("SELECT string_agg(token_hash, ',') FROM refresh_tokens"),
                         "the refresh token itself must not be stored")

        for name, srv in (("A", A), ("B", B)):
            with self.subTest(check="/users/me", instance=name):
                r = me(srv, access1)
                self.assertEqual(r.status, 200, r)
                d = keeltest.get_json(self, r)
                self.assertEqual((d.get("id"), d.get("email"), d.get("role")), (uid, email, "user"), d)

        # rotation: r1 on B (body), r2 on A (cookie)
        r = refresh(B, r1)
        self.assertEqual(r.status, 200, r)
        p2 = body(r)
        r2 = p2["refresh_token"]
        self.assertNotEqual(r2, r1)
        self.assertNotEqual(p2["access_token"], access1)
        self.assertEqual(me(A, p2["access_token"]).status, 200)
        r = A.request("POST", "/auth/refresh", [("Cookie", "refresh=" + r2)], timeout=TIMEOUT)
        self.assertEqual(r.status, 200, "refresh with the cookie: %r" % r)
        r3 = body(r)["refresh_token"]
        self.assertNotIn(r3, (r1, r2))
        self.assertEqual(self.sql("SELECT count(*) FROM refresh_tokens t JOIN refresh_families f "
                                  "ON f.id = t.family_id WHERE f.user_id = '%s'" % uid), "3",
                         "one family holding the three tokens of the rotation")

        # reuse of a rotated token: 401 and the family is revoked
        r = refresh(A, r1)
        check_problem(self, r, 401, "unauthorized")
        self.assertIsNotNone(A.wait_log(lambda rec: rec.get("security_event") == "refresh_token_reuse", 5),
                             "no security_event=refresh_token_reuse log record")
        r = refresh(B, r3)
        self.assertEqual(r.status, 401, "the newest token of a family revoked by reuse: %r" % r)
        self.assertEqual(self.sql("SELECT count(*) FROM refresh_families WHERE user_id = '%s' "
                                  "AND revoked_ms IS NULL" % uid), "0")

        # logout through B (Bearer + refresh token in the body)
        a_other, r_other = self.session(A, email)  # another session that must survive
        access, rt = self.session(A, email)
        self.assertEqual(me(B, access).status, 200)
        r = logout(B, access, rt)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        cleared = r.header("set-cookie") or ""
        self.assertTrue(cleared.startswith("refresh=;") and "Max-Age=0" in cleared, cleared)
        self.assert_refused(me(B, access), "access token on the instance that logged out")
        self.assert_refused(me(A, access), "access token on the other instance")
        self.assertEqual(refresh(A, rt).status, 401, "the logged-out session's refresh token")
        with self.subTest(check="other sessions survive a logout"):
            self.assertEqual(me(B, a_other).status, 200)
            self.assertEqual(refresh(B, r_other).status, 200)
        with self.subTest(check="logout without a token -> 401"):
            r = post(A, "/auth/logout", {})
            self.assertEqual(r.status, 401, r)

    # -- 2 ----------------------------------------------------------------
    def test_2_logout_on_a_refused_on_b_at_once(self):
        email, _ = self.new_user(self.B)
        for i in range(3):
            with self.subTest(round=i):
                access, rt = self.session((self.A, self.B)[i % 2], email)
                # both instances verify (and cache) the token first
                self.assertEqual(me(self.B, access).status, 200)
                self.assertEqual(me(self.A, access).status, 200)
                r = logout(self.A, access, rt)
                self.assertEqual(r.status, 204, r)
                r = me(self.B, access)  # the very next request, no sleep
                self.assert_refused(r, "B right after a logout through A (Redis)")
                jti = claims(access)["jti"]
                self.assertTrue(redis_exists(self.rd, "keel:bl:jti:" + jti),
                                "no keel:bl:jti:<jti> key in Redis after the logout")
                self.assert_refused(me(self.A, access), "A after its own logout")
                self.assertEqual(self.sql("SELECT count(*) FROM token_blocklist WHERE kind = 'jti' "
                                          "AND subject = '%s'" % jti), "1",
                                 "the revocation must be recorded in token_blocklist")

    # -- 3 ----------------------------------------------------------------
    def test_3_role_change_and_delete_refused_on_b_at_once(self):
        A, B = self.A, self.B
        admin = self.admin_token(A)
        email, uid = self.new_user(A)
        access, rt = self.session(B, email)
        self.assertEqual(me(B, access).status, 200)
        self.assertEqual(me(A, access).status, 200)

        with self.subTest(check="a user cannot change roles"):
            r = send(A, "PATCH", "/api/v1/users/" + uid, {"role": "admin"}, token=access)
            check_problem(self, r, 403, "forbidden")
            self.assertEqual(me(B, access).status, 200, "a refused change must not revoke anything")

        r = send(A, "PATCH", "/api/v1/users/" + uid, {"role": "viewer"}, token=admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((body(r) or {}).get("role"), "viewer", r)
        self.assert_refused(me(B, access), "the old token on B right after a role change on A")
        self.assert_refused(me(A, access), "the old token on A after its role change")
        self.assertTrue(redis_exists(self.rd, "keel:bl:user:" + uid),
                        "no keel:bl:user:<id> key in Redis after the role change")
        self.assertEqual(refresh(A, rt).status, 401, "refresh families must be revoked on a role change")
        self.assertEqual(me(B, admin).status, 200, "the admin's own token must stay valid")

        # a new login carries the new role
        access2, rt2 = self.session(B, email)
        self.assertEqual(claims(access2).get("role"), "viewer")
        r = me(A, access2)
        self.assertEqual((r.status, (body(r) or {}).get("role")), (200, "viewer"), r)
        with self.subTest(check="B's cached profile shows the new role within 2 s"):
            got = poll(lambda: (body(me(B, access2)) or {}).get("role") == "viewer", 3.0, 0.1)
            self.assertTrue(got, "B still shows the old role 3 s after the change")
        with self.subTest(check="viewer has no profile:write"):
            r = send(B, "PATCH", "/api/v1/users/me", {"name": "x"}, token=access2)
            self.assertEqual(r.status, 403, r)

        # deletion through A
        r = send(A, "DELETE", "/api/v1/users/" + uid, token=admin)
        self.assertEqual(r.status, 204, r)
        self.assert_refused(me(B, access2), "the deleted user's token on B right after the DELETE on A")
        self.assert_refused(me(A, access2), "the deleted user's token on A")
        self.assertEqual(refresh(B, rt2).status, 401, "the deleted user's refresh token")
        self.assertEqual(login(B, email).status, 401, "login of a deleted user")
        self.assertEqual(self.sql("SELECT count(*) FROM users WHERE id = '%s'" % uid), "0")
        r = send(B, "DELETE", "/api/v1/users/" + uid, token=admin)
        self.assertEqual(r.status, 404, r)

    # -- 4 ----------------------------------------------------------------
    def test_4_without_redis_database_poll(self):
        env = keel_env(self.pg)  # no KEEL_REDIS_URL
        a, b = start_pair(env)
        ok = False
        try:
            email, uid = self.new_user(a)
            access, rt = self.session(a, email)
            self.assertEqual(me(a, access).status, 200)
            self.assertEqual(me(b, access).status, 200)
            r = logout(a, access, rt)
            self.assertEqual(r.status, 204, r)
            self.assert_refused(me(a, access), "the instance that handled the logout, at once")
            dt, seen = wait_refused(b, access, REVOKE_BOUND + 1)
            print("\n# no Redis: logout on A' refused on B' after %s s (statuses %r)"
                  % ("%.2f" % dt if dt is not None else "never", seen), flush=True)
            self.assertIsNotNone(dt, "B' still accepts the token %.1fs after the logout on A'"
                                 % (REVOKE_BOUND + 1))
            self.assertLessEqual(dt, REVOKE_BOUND, "B' refused the token only after %.2fs" % dt)

            # a role change (per-user cut-off) the same way
            access2, _ = self.session(b, email)
            self.assertEqual(me(b, access2).status, 200)
            admin = self.admin_token(a)
            r = send(a, "PATCH", "/api/v1/users/" + uid, {"role": "viewer"}, token=admin)
            self.assertEqual(r.status, 200, r)
            self.assert_refused(me(a, access2), "A' after its own role change")
            dt, seen = wait_refused(b, access2, REVOKE_BOUND + 1)
            print("# no Redis: role change on A' refused on B' after %s s"
                  % ("%.2f" % dt if dt is not None else "never"), flush=True)
            self.assertIsNotNone(dt, "B' still accepts the token after the role change on A'")
            self.assertLessEqual(dt, REVOKE_BOUND)
            ok = True
        finally:
            if ok:
                a.stop_and_check(self)
                b.stop_and_check(self)
            else:
                a.cleanup()
                b.cleanup()

    # -- 5 ----------------------------------------------------------------
    def test_5_rate_limits_shared_through_redis(self):
        email, uid = self.new_user(self.A)
        access, _ = self.session(self.A, email)  # through the unlimited pair
        with servers.Redis() as rd:
            env = keel_env(self.pg, rd.url, KEEL_RATE_LIMIT_USER="10/min", KEEL_RATE_LIMIT_AUTH="4/min")
            a, b = start_pair(env)
            ok = False
            try:
                # user scope: 5 on A', 5 on B', then the 11th on either -> 429
                got = [me(a, access).status for _ in range(5)] + [me(b, access).status for _ in range(5)]
                self.assertEqual(got, [200] * 10, "the first 10 requests of 10/min")
                for name, srv in (("A'", a), ("B'", b)):
                    with self.subTest(scope="user", instance=name):
                        r = me(srv, access)
                        check_problem(self, r, 429, "rate-limited")
                        ra = r.header("retry-after")
                        self.assertIsNotNone(ra, r.headers)
                        self.assertTrue(ra.isdigit() and int(ra) >= 1, ra)
                self.assertTrue(redis_exists(rd, "keel:rl:user:" + uid), "no user rate-limit key in Redis")

                # auth scope: 2 logins on A' + 2 on B', the 5th -> 429
                got = [login(srv, email).status for srv in (a, a, b, b)]
                self.assertEqual(got, [200] * 4, "the first 4 logins of 4/min")
                for name, srv in (("A'", a), ("B'", b)):
                    with self.subTest(scope="auth", instance=name):
                        r = login(srv, email)
                        check_problem(self, r, 429, "rate-limited")
                        ra = r.header("retry-after")
                        self.assertIsNotNone(ra, r.headers)
                        self.assertTrue(ra.isdigit() and int(ra) >= 1, ra)
                ok = True
            finally:
                if ok:
                    a.stop_and_check(self)
                    b.stop_and_check(self)
                else:
                    a.cleanup()
                    b.cleanup()

    # -- 6 ----------------------------------------------------------------
    def test_6_redis_stopped_and_restarted(self):
        A, B = self.A, self.B
        email, _ = self.new_user(B)
        t1, r1 = self.session(A, email)
        t2, r2 = self.session(B, email)
        for srv in (A, B):
            self.assertEqual(me(srv, t1).status, 200)
            self.assertEqual(me(srv, t2).status, 200)
        self.rd.stop()
        try:
            res = []
            for i in range(20):
                srv = (A, B)[i % 2]
                res.append(("AB"[i % 2], status(safe(me, srv, (t1, t2)[i // 2 % 2]))))
            bad = [x for x in res if x[1] != 200]
            self.assertEqual(bad, [], "authenticated requests with Redis down: %r" % res)
            r = login(B, email)
            self.assertEqual(r.status, 200, "login with Redis down: %r" % r)
            r = refresh(A, r2)
            self.assertEqual(r.status, 200, "refresh with Redis down: %r" % r)

            r = safe(logout, A, t1, r1)
            self.assertEqual(status(r), 204, "logout with Redis down: %r" % r)
            self.assert_refused(me(A, t1), "A after its own logout, Redis down")
            dt, seen = wait_refused(B, t1, REVOKE_BOUND + 1)
            print("\n# Redis down: logout on A refused on B after %s s (statuses %r)"
                  % ("%.2f" % dt if dt is not None else "never", seen), flush=True)
            self.assertIsNotNone(dt, "B still accepts a logged-out token %.1fs after the logout "
                                 "(Redis down)" % (REVOKE_BOUND + 1))
            self.assertLessEqual(dt, REVOKE_BOUND)
            self.assertLess(max([st for st in seen if isinstance(st, int)] or [0]), 500, seen)
            for srv in (A, B):
                self.assertEqual(me(srv, t2).status, 200, "an unrelated token after the logout")
        finally:
            self.rd.start()

        # recovery
        def both_ok():
            return all(status(safe(me, s, t2)) == 200 for s in (A, B))
        self.assertTrue(poll(both_ok, 10, 0.1), "requests do not succeed after Redis returned")

        def redis_closed(srv):
            r = safe(srv.request, "GET", "/debug/redis", timeout=TIMEOUT)
            d = body(r) if hasattr(r, "body") else None
            return bool(d) and d.get("redis") == "ok" and d.get("breaker") == "closed"
        for name, srv in (("A", A), ("B", B)):
            self.assertTrue(poll(lambda: redis_closed(srv), 15, 0.2),
                            "instance %s: Redis not ok / breaker not closed 15 s after Redis returned" % name)

        # revocations reach Redis again, and B refuses them
        t0 = time.monotonic()
        published = None
        while time.monotonic() - t0 < 10:
            tok, rt = self.session(A, email)
            self.assertEqual(logout(A, tok, rt).status, 204)
            if redis_exists(self.rd, "keel:bl:jti:" + claims(tok)["jti"]):
                published = tok
                break
            time.sleep(0.2)
        self.assertIsNotNone(published, "logouts were not published to Redis within 10 s of its return")
        dt, seen = wait_refused(B, published, REVOKE_BOUND + 1)
        print("# Redis back: logout on A refused on B after %.2f s" % (dt if dt is not None else -1),
              flush=True)
        self.assertIsNotNone(dt)
        self.assertLessEqual(dt, REVOKE_BOUND)
        for srv in (A, B):
            for _ in range(5):
                self.assertEqual(me(srv, t2).status, 200)

    # -- 7 ----------------------------------------------------------------
    def test_7_concurrent_refresh_reuse_detection(self):
        email, uid = self.new_user(self.A)
        n = 10
        for rnd in range(3):
            with self.subTest(round=rnd):
                _, rt = self.session((self.A, self.B)[rnd % 2], email)
                res = [None] * n
                barrier = threading.Barrier(n)

                def go(i):
                    srv = (self.A, self.B)[i % 2]
                    try:
                        barrier.wait(10)
                    except threading.BrokenBarrierError:
                        pass
                    res[i] = safe(refresh, srv, rt)
                ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(60)
                sts = [status(r) for r in res]
                self.assertEqual(sorted(sts, key=str), [200] + [401] * (n - 1),
                                 "%d concurrent refreshes of one token (A and B): %r" % (n, sts))
                winner = [r for r in res if status(r) == 200][0]
                new_rt = body(winner)["refresh_token"]
                self.assertEqual(self.sql("SELECT count(*) FROM refresh_families WHERE user_id = '%s' "
                                          "AND revoked_ms IS NULL" % uid), "0",
                                 "the family must be revoked after the concurrent reuse")
                r = refresh((self.B, self.A)[rnd % 2], new_rt)
                self.assertEqual(r.status, 401, "the winner's new refresh token after the reuse: %r" % r)

    # -- 8 ----------------------------------------------------------------
    def test_8a_login_throttle_shared(self):
        email, _ = self.new_user(self.B)
        got = []
        for i in range(5):
            got.append(login((self.A, self.B)[i % 2], email, "wrong password %d" % i).status)
        t5 = time.monotonic()
        self.assertEqual(got, [401] * 5, "5 failed logins over A and B")
        for name, srv, pw in (("B", self.B, PASSWORD), ("A", self.A, "wrong password x")):
            with self.subTest(instance=name):
                r = login(srv, email, pw)
                dt = time.monotonic() - t5
                self.assertEqual(r.status, 429, "attempt on %s %.2fs after the 5th failure "
                                 "(the first delay is 1 s): %r" % (name, dt, r))
                check_problem(self, r, 429, "rate-limited")
                ra = r.header("retry-after")
                self.assertTrue(ra and ra.isdigit() and int(ra) >= 1, r.headers)
        # never a permanent lock-out: after the delay the owner gets in
        time.sleep(1.2)
        r = login(self.A, email)
        self.assertEqual(r.status, 200, "the owner after the throttle delay: %r" % r)

    def test_8b_login_throttle_concurrent_failures_add_up(self):
        """5 failed logins at once, spread over A and B: each must count
        (docs: "concurrent failures of the same key must add up"), so the
        next attempt is throttled."""
        for rnd in range(2):
            with self.subTest(round=rnd):
                email, _ = self.new_user(self.A)
                n = 5
                res = [None] * n
                barrier = threading.Barrier(n)

                def go(i):
                    try:
                        barrier.wait(10)
                    except threading.BrokenBarrierError:
                        pass
                    res[i] = safe(login, (self.A, self.B)[i % 2], email, "wrong password %d" % i)
                ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(60)
                r = login(self.B, email, "wrong password again")
                counts = self.sql("SELECT key || '=' || failures FROM login_throttle "
                                  "WHERE key IN ('a:%s', 'ai:%s|127.0.0.1') ORDER BY key" % (email, email))
                self.assertEqual([status(x) for x in res], [401] * n)
                self.assertEqual(r.status, 429,
                                 "after %d concurrent failed logins (A and B, one account, one IP) "
                                 "the next attempt was %d, not 429; login_throttle now holds %r "
                                 "after %d failures in all (each key should count %d: concurrent "
                                 "failures were lost)" % (n, r.status, counts.splitlines(), n + 1, n + 1))


if __name__ == "__main__":
    servers.install_sigterm_cleanup()
    keeltest.main()
