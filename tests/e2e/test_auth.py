"""Identity and access end to end (issue 4; SPEC sections 2, 3 "Errors" and
"Auth", 5; docs/internals/identity.md and tokens.md): the real server, real
logins, tokens forged in Python with the configured HS256 secret.

  Register         201 shape and Location, email normalized, duplicates in any
                   case 409, the password policy in code points, missing /
                   unknown fields 400, 415, no password hash in any answer.
  Login            success shape and cookie attributes; unknown email and
                   wrong password give the same 401 (WWW-Authenticate);
                   LoginTiming: both cost about the same (default Argon2 cost).
  AccessToken      the JWT header and claims Keel issues.
  JwtRejected      hostile and malformed tokens on GET /api/v1/users/me, each
                   validly signed where it can be so that its own rule fires;
                   positive controls prove the forging is right.
  Refresh          rotation, reuse detection revoking the family, the cookie,
                   garbage, concurrent use; RefreshExpiry with short TTLs.
  LogoutSessions   logout revokes at once and leaves other sessions alone;
                   the session list (a paginated list), revoking one session.
  RevocationSurvivesRestart
                   logout and role-change revocations outlive a restart.
  Admin            role change and deletion revoke tokens and sessions; the
                   last admin; the authorization matrix (every route x every
                   role and anonymous); BOLA; mass assignment.
  UserRateLimit,
  AuthRateLimit    KEEL_RATE_LIMIT_USER and KEEL_RATE_LIMIT_AUTH.
  LoginThrottle    growing delays per account, never a permanent lockout,
                   metrics, security events, no secrets in the output;
  ThrottleAcrossAddresses
                   per-account (any address) and per-IP (any account)
                   counters, behind a trusted proxy.
  UsersList        admin list pagination and bad parameters.
  CreateAdminCli   `keel users create-admin` exit codes;
  CreateAdminEmail the CLI treats --email as the API treats emails.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import statistics
import sys
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keeltest  # noqa: E402
from keeltest import Server, run_cli  # noqa: E402
from test_storage import metrics_text, metric_value  # noqa: E402

SECRET = b"keel-e2e-auth-hs256-secret-0123456789abc"   # 40 bytes: used as given
OTHER_SECRET = b"keel-e2e-some-other-secret-0123456789xyz"
assert len(SECRET) == 40 and len(OTHER_SECRET) == 40
KID = hashlib.sha256(SECRET).hexdigest()[:16]

# Cheap Argon2 (the build under test may be ASan) and a known key.
FAST = {
    "KEEL_PASSWORD_MEMORY": "1024",
    "KEEL_PASSWORD_ITERATIONS": "1",
    "KEEL_JWT_SECRET": SECRET.decode(),
}

PASSWORD = "correct-horse-battery-staple"
ACCESS_TTL = 900
ISO_Z_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
USER_KEYS = {"id", "email", "name", "role", "created_at", "updated_at"}

_counter = [0]
_counter_lock = threading.Lock()


def unique_email(prefix="u"):
    with _counter_lock:
        _counter[0] += 1
        n = _counter[0]
    return "%s%d-%s@example.com" % (prefix, n, uuid.uuid4().hex[:8])


# --------------------------------------------------------------------------
# HTTP helpers

def call(target, method, path, body=None, token=None, headers=None, raw=None,
         ctype="application/json", timeout=10):
    """One request. target: a Server (fresh connection) or a Conn. body is
    sent as JSON; raw as given bytes; token as `Bearer <token>`."""
    hs = []
    if token is not None:
        hs.append(("Authorization", "Bearer " + token))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
    elif raw is not None:
        data = raw if isinstance(raw, bytes) else raw.encode()
    if data is not None and ctype:
        hs.append(("Content-Type", ctype))
    hs.extend(list(headers.items()) if isinstance(headers, dict) else list(headers or []))
    return target.request(method, path, hs, data, timeout=timeout)


def doc(resp):
    try:
        return json.loads(resp.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def register(tc, srv, email, password=PASSWORD, name="Test User"):
    r = call(srv, "POST", "/auth/register", {"email": email, "password": password, "name": name})
    tc.assertEqual(r.status, 201, r)
    return doc(r)


def login_resp(srv, email, password=PASSWORD):
    return call(srv, "POST", "/auth/login", {"email": email, "password": password})


def login(tc, srv, email, password=PASSWORD):
    r = login_resp(srv, email, password)
    tc.assertEqual(r.status, 200, r)
    return doc(r)


def refresh_resp(srv, token):
    return call(srv, "POST", "/auth/refresh", {"refresh_token": token})


def me(srv, token, **kw):
    return call(srv, "GET", "/api/v1/users/me", token=token, **kw)


def cli_env(srv):
    return {k: v for k, v in srv.env.items() if k.startswith("KEEL_")}


def create_admin(tc, srv, email, password=PASSWORD, name=None):
    """`keel users create-admin` against srv's database; returns the JSON it
    printed."""
    args = ["users", "create-admin", "--email", email]
    if name:
        args += ["--name", name]
    p = run_cli(args, env=cli_env(srv), input=password + "\n", cwd=srv.tmpdir, timeout=60)
    tc.assertEqual(p.returncode, 0, p.stdout + p.stderr)
    out = None
    for line in p.stdout.splitlines():
        rec = keeltest.parse_json_line(line)
        if rec and rec.get("role") == "admin" and "id" in rec:
            out = rec
    tc.assertIsNotNone(out, "create-admin printed no user JSON: %r" % p.stdout)
    return out


def new_user(tc, srv, role="user", admin_token=None, password=PASSWORD):
    """A registered, logged-in user; role set through the admin API first."""
    email = unique_email(role)
    u = register(tc, srv, email, password)
    if role != "user":
        r = call(srv, "PATCH", "/api/v1/users/" + u["id"], {"role": role}, token=admin_token)
        tc.assertEqual(r.status, 200, r)
    t = login(tc, srv, email, password)
    return {"id": u["id"], "email": email, "password": password,
            "access": t["access_token"], "refresh": t["refresh_token"]}


def check_401(tc, resp, path=None):
    doc_ = keeltest.check_problem(tc, resp, 401, "unauthorized", instance=path)
    www = resp.header("www-authenticate")
    tc.assertIsNotNone(www, "401 without WWW-Authenticate: %r" % resp.headers)
    tc.assertTrue(www.startswith("Bearer"), www)
    return doc_


def check_403(tc, resp):
    return keeltest.check_problem(tc, resp, 403, "forbidden")


def field_errors(d):
    return {e.get("field"): e.get("message") for e in (d or {}).get("errors", [])}


# --------------------------------------------------------------------------
# JWT helpers

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decode_jwt(tok):
    h, p, s = tok.split(".")
    return json.loads(b64u_dec(h)), json.loads(b64u_dec(p)), b64u_dec(s)


def uuid7(ms=None):
    ms = int(time.time() * 1000) if ms is None else ms
    r = int.from_bytes(os.urandom(10), "big")
    v = (ms << 80) | (0x7 << 76) | (((r >> 62) & 0xFFF) << 64) | (0b10 << 62) | (r & ((1 << 62) - 1))
    return str(uuid.UUID(int=v))


def claims(subject, now=None, ttl=ACCESS_TTL, **over):
    """Claims as Keel issues them for `subject`; over replaces (None
    removes) members."""
    now = int(time.time()) if now is None else now
    c = {"iss": "keel", "aud": "keel-api", "sub": subject, "role": "user",
         "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid7()}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def header(**over):
    h = {"alg": "HS256", "typ": "JWT", "kid": KID}
    for k, v in over.items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return h


def forge(cl, hdr=None, secret=SECRET, digest=hashlib.sha256, raw_header=None, raw_payload=None,
          sig=None):
    """A compact JWS over hdr/cl (or raw JSON texts), HMAC-signed with
    secret unless sig is given (b"" = the unsecured `h.p.` form)."""
    h = b64u(raw_header.encode() if raw_header is not None
             else json.dumps(hdr or header(), separators=(",", ":")).encode())
    p = b64u(raw_payload.encode() if raw_payload is not None
             else json.dumps(cl, separators=(",", ":")).encode())
    si = h + "." + p
    if sig is None:
        sig = hmac.new(secret, si.encode(), digest).digest()
    return si + "." + b64u(sig)


# --------------------------------------------------------------------------

class AuthCase(keeltest.ServerCase):
    ENV = FAST


class Register(AuthCase):

    def test_created_shape_and_location(self):
        email = unique_email("reg")
        r = call(self.srv, "POST", "/auth/register",
                 {"email": email, "password": PASSWORD, "name": "Ada Lovelace"})
        self.assertEqual(r.status, 201, r)
        d = keeltest.get_json(self, r)
        self.assertEqual(set(d), USER_KEYS, d)
        self.assertRegex(d["id"], keeltest.UUID7_RE)
        self.assertEqual(d["email"], email)
        self.assertEqual(d["name"], "Ada Lovelace")
        self.assertEqual(d["role"], "user")
        self.assertRegex(d["created_at"], ISO_Z_RE)
        self.assertRegex(d["updated_at"], ISO_Z_RE)
        self.assertEqual(r.header("location"), "/api/v1/users/" + d["id"], r.headers)
        # the account works
        t = login(self, self.srv, email)
        got = doc(me(self.srv, t["access_token"]))
        self.assertEqual(got, d)

    def test_email_normalized_and_duplicates(self):
        local = "Mixed.Case%s" % uuid.uuid4().hex[:6]
        r = call(self.srv, "POST", "/auth/register",
                 {"email": "  %s@Example.COM\t" % local, "password": PASSWORD, "name": "M"})
        self.assertEqual(r.status, 201, r)
        norm = "%s@example.com" % local.lower()
        self.assertEqual(doc(r)["email"], norm)
        for spelling in (norm, norm.upper(), " %s " % norm, "%s@EXAMPLE.com" % local):
            with self.subTest(spelling=spelling):
                r = call(self.srv, "POST", "/auth/register",
                         {"email": spelling, "password": PASSWORD, "name": "Dup"})
                keeltest.check_problem(self, r, 409, "conflict", instance="/auth/register")
        # login normalizes the same way
        self.assertEqual(login_resp(self.srv, "  " + norm.upper()).status, 200)

    def test_password_length_policy(self):
        cases = [
            ("x" * 9, 400), ("x" * 10, 201), ("x" * 128, 201), ("x" * 129, 400),
            # code points, not bytes (tokens.md "Passwords")
            ("\u00e9" * 9, 400), ("\u00e9" * 10, 201),
            ("\U0001F600" * 128, 201), ("\U0001F600" * 129, 400),
        ]
        for pw, want in cases:
            with self.subTest(chars=len(pw), bytes=len(pw.encode()), want=want):
                email = unique_email("pw")
                r = call(self.srv, "POST", "/auth/register",
                         {"email": email, "password": pw, "name": "P"})
                if want == 201:
                    self.assertEqual(r.status, 201, r)
                    self.assertEqual(login_resp(self.srv, email, pw).status, 200)
                else:
                    d = keeltest.check_problem(self, r, 400, "validation-error")
                    self.assertIn("password", field_errors(d), d)
                    # nothing was created (login refuses an over-long password outright)
                    self.assertIn(login_resp(self.srv, email, pw).status, (400, 401))

    def test_missing_unknown_and_bad_fields(self):
        good = {"email": unique_email("f"), "password": PASSWORD, "name": "F"}
        for missing in ("email", "password", "name"):
            with self.subTest(missing=missing):
                body = dict(good)
                del body[missing]
                d = keeltest.check_problem(self, call(self.srv, "POST", "/auth/register", body),
                                           400, "validation-error")
                self.assertIn(missing, field_errors(d), d)
        for extra in ({"role": "admin"}, {"is_admin": True}, {"id": str(uuid.uuid4())}):
            with self.subTest(extra=extra):
                body = dict(good, **extra)
                d = keeltest.check_problem(self, call(self.srv, "POST", "/auth/register", body),
                                           400, "validation-error")
                self.assertIn(list(extra)[0], field_errors(d), d)
        for bad_email in ("no-at-sign", "a@b", "@example.com", "a@@example.com", "a b@example.com"):
            with self.subTest(email=bad_email):
                d = keeltest.check_problem(
                    self, call(self.srv, "POST", "/auth/register", dict(good, email=bad_email)),
                    400, "validation-error")
                self.assertIn("email", field_errors(d), d)
        with self.subTest(case="not an object"):
            r = call(self.srv, "POST", "/auth/register", raw=b"[1,2]")
            self.assertEqual(r.status, 400, r)
        with self.subTest(case="invalid JSON"):
            r = call(self.srv, "POST", "/auth/register", raw=b'{"email":')
            self.assertEqual(r.status, 400, r)
        # none of those created the good account
        self.assertEqual(login_resp(self.srv, good["email"]).status, 401)

    def test_wrong_content_type(self):
        body = json.dumps({"email": unique_email("ct"), "password": PASSWORD, "name": "C"})
        for ct in ("text/plain", "application/x-www-form-urlencoded", None):
            with self.subTest(content_type=ct):
                r = call(self.srv, "POST", "/auth/register", raw=body, ctype=ct)
                keeltest.check_problem(self, r, 415, "unsupported-media-type")

    def test_password_hash_never_answered(self):
        admin_email = unique_email("hadmin")
        admin = create_admin(self, self.srv, admin_email)
        at = login(self, self.srv, admin_email)["access_token"]
        email = unique_email("hash")
        rs = [call(self.srv, "POST", "/auth/register",
                   {"email": email, "password": PASSWORD, "name": "H"})]
        rs.append(call(self.srv, "POST", "/auth/register",
                       {"email": email, "password": PASSWORD, "name": "H"}))
        rs.append(login_resp(self.srv, email))
        tok = doc(rs[-1])["access_token"]
        uid = doc(rs[0])["id"]
        rs.append(me(self.srv, tok))
        rs.append(call(self.srv, "PATCH", "/api/v1/users/me", {"name": "H2"}, token=tok))
        rs.append(call(self.srv, "PATCH", "/api/v1/users/me", {"password": "x"}, token=tok))
        rs.append(call(self.srv, "GET", "/api/v1/users?limit=100", token=at))
        rs.append(call(self.srv, "PATCH", "/api/v1/users/" + uid, {"role": "viewer"}, token=at))
        rs.append(call(self.srv, "GET", "/api/v1/users/me", token=at))
        self.assertEqual([r.status for r in rs], [201, 409, 200, 200, 200, 400, 200, 200, 200])
        self.assertIn(admin["id"], rs[-1].body.decode())
        for r in rs:
            text = r.body.decode("utf-8", "replace").lower()
            self.assertNotIn("argon2", text, r)
            self.assertNotIn("password_hash", text, r)
            self.assertNotIn("$m=", text, r)
            self.assertNotIn(PASSWORD, r.body.decode("utf-8", "replace"), r)


# --------------------------------------------------------------------------

class Login(AuthCase):

    def test_success_shape_and_cookie(self):
        email = unique_email("login")
        u = register(self, self.srv, email)
        r = login_resp(self.srv, email)
        self.assertEqual(r.status, 200, r)
        d = keeltest.get_json(self, r)
        self.assertEqual(set(d), {"access_token", "token_type", "expires_in", "refresh_token",
                                  "refresh_expires_in"}, d)
        self.assertEqual(d["token_type"], "Bearer")
        self.assertEqual(d["expires_in"], ACCESS_TTL)
        self.assertEqual(d["refresh_expires_in"], 604800)
        self.assertEqual(len(d["refresh_token"]), 43, d["refresh_token"])
        self.assertRegex(d["refresh_token"], B64URL_RE)
        self.assertEqual(d["access_token"].count("."), 2)
        self.assertIn("no-store", (r.header("cache-control") or "").lower(), r.headers)
        cookies = r.header_all("set-cookie")
        self.assertEqual(len(cookies), 1, cookies)
        parts = [p.strip() for p in cookies[0].split(";")]
        self.assertEqual(parts[0], "refresh=" + d["refresh_token"])
        attrs = {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else True)
                 for p in parts[1:]}
        self.assertIs(attrs.get("httponly"), True, cookies)
        self.assertIs(attrs.get("secure"), True, cookies)
        self.assertEqual(attrs.get("samesite"), "Strict", cookies)
        self.assertEqual(attrs.get("path"), "/auth/refresh", cookies)
        self.assertNotIn("domain", attrs, cookies)
        self.assertEqual(doc(me(self.srv, d["access_token"]))["id"], u["id"])

    def test_unknown_email_and_wrong_password_identical(self):
        email = unique_email("same")
        register(self, self.srv, email)
        wrong = login_resp(self.srv, email, "not-the-password")
        unknown = login_resp(self.srv, unique_email("nobody"), "not-the-password")
        docs = []
        for r in (wrong, unknown):
            d = check_401(self, r, "/auth/login")
            self.assertEqual(r.header("www-authenticate"), wrong.header("www-authenticate"))
            self.assertNotIn("set-cookie", [n.lower() for n, _ in r.headers])
            docs.append({k: v for k, v in d.items() if k not in ("request_id", "instance")})
        self.assertEqual(docs[0], docs[1], "the two failures must not be told apart")
        self.assertEqual(wrong.body.replace(wrong.header("x-request-id").encode(), b""),
                         unknown.body.replace(unknown.header("x-request-id").encode(), b""))

    def test_login_validation(self):
        for body in ({"email": unique_email()}, {"password": PASSWORD},
                     {"email": unique_email(), "password": PASSWORD, "remember": True}):
            with self.subTest(body=body):
                keeltest.check_problem(self, call(self.srv, "POST", "/auth/login", body),
                                       400, "validation-error")
        r = call(self.srv, "POST", "/auth/login",
                 raw=json.dumps({"email": unique_email(), "password": PASSWORD}), ctype="text/plain")
        keeltest.check_problem(self, r, 415, "unsupported-media-type")


class LoginTiming(unittest.TestCase):
    """Default Argon2 cost: an unknown email must cost what a wrong password
    costs (SPEC: "in similar time")."""

    def test_unknown_email_costs_like_wrong_password(self):
        env = {"KEEL_PASSWORD_MEMORY": "19456", "KEEL_PASSWORD_ITERATIONS": "2",
               "KEEL_JWT_SECRET": SECRET.decode()}
        with Server(env=env) as srv:
            email = unique_email("timing")
            register(self, srv, email)
            # warm up once; a new unknown email each time (no throttling: an
            # account is throttled after 5 failures, and only the 6th waits).
            # Up to three rounds of 5 + 5 interleaved logins: a machine busy
            # with other work can skew one round, while a missing dummy hash
            # (about 10x faster) fails every round.
            login_resp(srv, unique_email("ghost"), "warm-up-password")
            rounds = []
            for _ in range(3):
                t_unknown, t_wrong = [], []
                for i in range(5):
                    for who, sink in ((unique_email("ghost"), t_unknown), (email, t_wrong)):
                        t0 = time.perf_counter()
                        r = login_resp(srv, who, "wrong-password-%d" % i)
                        sink.append(time.perf_counter() - t0)
                        self.assertEqual(r.status, 401, r)
                mu, mw = statistics.median(t_unknown), statistics.median(t_wrong)
                ratio = max(mu, mw) / max(min(mu, mw), 1e-6)
                rounds.append("unknown %.1f ms vs wrong password %.1f ms (x%.2f)"
                              % (mu * 1000, mw * 1000, ratio))
                if ratio < 3.0:
                    break
                # the account's own throttle: 5 failures per round
                self.assertEqual(login_resp(srv, email).status, 429)
                time.sleep(1.2)
                self.assertEqual(login_resp(srv, email).status, 200)
            self.assertLess(ratio, 3.0, "median login times differ: " + "; ".join(rounds))


# --------------------------------------------------------------------------

class AccessToken(AuthCase):

    def test_header_and_claims(self):
        email = unique_email("tok")
        u = register(self, self.srv, email)
        before = int(time.time())
        d = login(self, self.srv, email)
        after = int(time.time())
        h, c, sig = decode_jwt(d["access_token"])
        self.assertEqual(h, {"alg": "HS256", "typ": "JWT", "kid": KID})
        self.assertEqual(len(sig), 32)
        self.assertEqual(set(c), {"iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti"}, c)
        self.assertEqual(c["iss"], "keel")
        self.assertEqual(c["aud"], "keel-api")
        self.assertEqual(c["sub"], u["id"])
        self.assertEqual(c["role"], "user")
        for k in ("iat", "nbf", "exp"):
            self.assertIs(type(c[k]), int, c)
        self.assertTrue(before - 2 <= c["iat"] <= after + 2, (before, c, after))
        self.assertEqual(c["nbf"], c["iat"])
        self.assertEqual(c["exp"] - c["iat"], ACCESS_TTL)
        self.assertRegex(c["jti"], keeltest.UUID7_RE)
        jti_ms = int(c["jti"].replace("-", "")[:12], 16)
        self.assertLessEqual(abs(jti_ms / 1000 - c["iat"]), 5, "jti time far from iat")
        # the signature is HMAC-SHA-256 with the configured secret
        h64, p64, s64 = d["access_token"].split(".")
        want = hmac.new(SECRET, (h64 + "." + p64).encode(), hashlib.sha256).digest()
        self.assertEqual(b64u(want), s64)
        # every login issues a distinct jti
        c2 = decode_jwt(login(self, self.srv, email)["access_token"])[1]
        self.assertNotEqual(c2["jti"], c["jti"])
        # authenticated answers are not cached
        r = me(self.srv, d["access_token"])
        self.assertEqual(r.status, 200, r)
        self.assertIn("no-store", (r.header("cache-control") or "").lower(), r.headers)


class JwtRejected(AuthCase):
    """Each hostile token on GET /api/v1/users/me: 401 problem with
    WWW-Authenticate and one generic detail."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.email = unique_email("jwt")
        r = call(cls.srv, "POST", "/auth/register",
                 {"email": cls.email, "password": PASSWORD, "name": "J"})
        assert r.status == 201, r
        cls.uid = json.loads(r.body)["id"]
        r = call(cls.srv, "GET", "/api/v1/users/me")
        cls.generic = json.loads(r.body)["detail"]

    def ok(self, tok, **kw):
        r = me(self.srv, tok, **kw)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(doc(r)["id"], self.uid)

    def rejected(self, tok=None, headers=None):
        hs = list(headers or [])
        if tok is not None:
            hs.append(("Authorization", "Bearer " + tok))
        r = call(self.srv, "GET", "/api/v1/users/me", headers=hs)
        d = check_401(self, r, "/api/v1/users/me")
        # the reason is for the log only
        self.assertEqual(d["detail"], self.generic, d)
        self.assertNotIn(self.email, r.body.decode())

    def test_forged_control(self):
        # the builder makes tokens Keel accepts: every rejection below is real
        self.ok(forge(claims(self.uid)))
        self.ok(forge(claims(self.uid), header(typ="jwt")))    # typ compares without case
        self.ok(forge(claims(self.uid, aud=["other", "keel-api"])))
        self.ok(forge(claims(self.uid, extra_claim="ignored")))

    def test_alg_none_and_other_algorithms(self):
        c = claims(self.uid)
        for alg in ("none", "None", "NONE", "nOnE"):
            with self.subTest(alg=alg, sig="hmac"):
                self.rejected(forge(c, header(alg=alg)))
            with self.subTest(alg=alg, sig="empty"):
                self.rejected(forge(c, header(alg=alg), sig=b""))
        with self.subTest(alg="none", kid="absent", sig="empty"):
            self.rejected(forge(c, header(alg="none", kid=None), sig=b""))
        with self.subTest(alg="HS512"):
            self.rejected(forge(c, header(alg="HS512"), digest=hashlib.sha512))
        with self.subTest(alg="HS384"):
            self.rejected(forge(c, header(alg="HS384"), digest=hashlib.sha384))
        with self.subTest(alg="RS256 signed with the HMAC secret"):
            self.rejected(forge(c, header(alg="RS256")))
        with self.subTest(alg="EdDSA signed with the HMAC secret"):
            self.rejected(forge(c, header(alg="EdDSA")))
        with self.subTest(alg="hs256"):
            self.rejected(forge(c, header(alg="hs256")))
        with self.subTest(alg="missing"):
            self.rejected(forge(c, header(alg=None)))

    def test_header_members(self):
        c = claims(self.uid)
        cases = {
            "unknown kid": header(kid="0123456789abcdef"),
            "kid other case": header(kid=KID.upper()),
            "missing kid": header(kid=None),
            "kid path": header(kid="../../var/jwt.key"),
            "kid not a string": header(kid=1),
            "jku": header(jku="http://127.0.0.1:9/jwks.json"),
            "x5u": header(x5u="http://127.0.0.1:9/cert.pem"),
            "jwk": header(jwk={"kty": "oct", "k": b64u(SECRET)}),
            "x5c": header(x5c=["MIIB"]),
            "crit unknown": header(crit=["x-keel-unknown"], **{"x-keel-unknown": 1}),
            "crit exp": header(crit=["exp"]),
            "cty": header(cty="JWT"),
            "zip": header(zip="DEF"),
            "unknown member": header(foo="bar"),
            "typ at+jwt": header(typ="at+jwt"),
            "typ JWS": header(typ="JWS"),
            "missing typ": header(typ=None),
        }
        for name, h in cases.items():
            with self.subTest(case=name):
                self.rejected(forge(c, h))
        with self.subTest(case="duplicate alg"):
            self.rejected(forge(c, raw_header='{"alg":"HS256","typ":"JWT","kid":"%s","alg":"none"}'
                                % KID))
        with self.subTest(case="header not an object"):
            self.rejected(forge(c, raw_header='["HS256"]'))

    def test_claims(self):
        now = int(time.time())
        cases = {
            "bad iss": claims(self.uid, iss="keel2"),
            "iss other case": claims(self.uid, iss="Keel"),
            "missing iss": claims(self.uid, iss=None),
            "bad aud": claims(self.uid, aud="other-api"),
            "aud array without ours": claims(self.uid, aud=["other", "keel-api2"]),
            "aud empty array": claims(self.uid, aud=[]),
            "aud array with a non-string": claims(self.uid, aud=["keel-api", 1]),
            "missing aud": claims(self.uid, aud=None),
            "missing sub": claims(self.uid, sub=None),
            "sub not a user id": claims(self.uid, sub="admin"),
            "role not in the table": claims(self.uid, role="superuser"),
            "role other case": claims(self.uid, role="Admin"),
            "missing role": claims(self.uid, role=None),
            "missing jti": claims(self.uid, jti=None),
            "jti not a uuid": claims(self.uid, jti="abc"),
            "expired (exp = now - 60)": claims(self.uid, now=now - ACCESS_TTL - 60),
            "nbf in the future (now + 60)": claims(self.uid, nbf=now + 60),
            "iat in the future (now + 60)": claims(self.uid, iat=now + 60, exp=now + 60 + ACCESS_TTL),
            "exp before iat": claims(self.uid, exp=now - 1, iat=now, nbf=now - 100),
            "lifetime over 24 h": claims(self.uid, exp=now + 86400 + 60),
            "exp a float": claims(self.uid, exp=float(now + 600)),
            "exp a string": claims(self.uid, exp=str(now + 600)),
            "missing exp": claims(self.uid, exp=None),
            "iat huge": claims(self.uid, iat=10 ** 30),
        }
        for name, c in cases.items():
            with self.subTest(case=name):
                self.rejected(forge(c))
        with self.subTest(case="duplicate sub"):
            c = claims(self.uid)
            raw = json.dumps(c, separators=(",", ":"))[:-1] + ',"sub":"%s"}' % uuid.uuid4()
            self.rejected(forge(None, raw_payload=raw))
        with self.subTest(case="payload not an object"):
            self.rejected(forge(None, raw_payload="[1]"))

    def test_leeway(self):
        now = int(time.time())
        # exp 10 s ago, nbf and iat 10 s ahead: inside the 30 s leeway
        self.ok(forge(claims(self.uid, now=now - ACCESS_TTL - 10)))
        self.ok(forge(claims(self.uid, nbf=now + 10)))
        self.ok(forge(claims(self.uid, iat=now + 10, exp=now + 10 + ACCESS_TTL)))
        # and past it
        self.rejected(forge(claims(self.uid, now=now - ACCESS_TTL - 45)))
        self.rejected(forge(claims(self.uid, nbf=now + 45)))

    def test_expiry_boundary_same_with_verified_token_cache(self):
        # tokens.md rule 18: valid while exp > now - 30. A token the server
        # verified (and cached) before must be refused exactly when an
        # unseen one is: in the second now = exp + 30 both are refused.
        while time.time() % 1 > 0.5:        # start early in a second
            time.sleep(0.02)
        now = int(time.time())
        exp = now - 29                      # valid until the next second
        cached = forge(claims(self.uid, iat=exp - ACCESS_TTL, nbf=exp - ACCESS_TTL, exp=exp))
        for _ in range(8):                  # reach every loop thread
            self.ok(cached)
        target = exp + 30 + 0.2
        while time.time() < target:
            time.sleep(0.02)
        fresh = forge(claims(self.uid, iat=exp - ACCESS_TTL, nbf=exp - ACCESS_TTL, exp=exp))
        self.assertLess(time.time(), exp + 30.8, "too slow to test the boundary second")
        statuses = [me(self.srv, fresh).status] + [me(self.srv, cached).status for _ in range(8)]
        self.assertEqual(statuses[0], 401, "an unseen token at now = exp + 30")
        self.assertEqual(statuses[1:], [401] * 8,
                         "a cached token is accepted at now = exp + 30, when rule 18 refuses it")

    def test_signature(self):
        c = claims(self.uid)
        with self.subTest(case="another secret"):
            self.rejected(forge(c, secret=OTHER_SECRET))
        with self.subTest(case="tampered payload"):
            real = login(self, self.srv, self.email)["access_token"]
            self.ok(real)
            h64, p64, s64 = real.split(".")
            pc = json.loads(b64u_dec(p64))
            pc["role"] = "admin"
            self.rejected(h64 + "." + b64u(json.dumps(pc, separators=(",", ":")).encode()) + "." + s64)
        with self.subTest(case="tampered signature"):
            tok = forge(c)
            sig = bytearray(b64u_dec(tok.rsplit(".", 1)[1]))
            sig[0] ^= 1
            self.rejected(tok.rsplit(".", 1)[0] + "." + b64u(bytes(sig)))
        with self.subTest(case="truncated signature"):
            tok = forge(c)
            self.rejected(tok.rsplit(".", 1)[0] + "." + b64u(b64u_dec(tok.rsplit(".", 1)[1])[:31]))
        with self.subTest(case="empty signature"):
            self.rejected(forge(c, sig=b""))
        with self.subTest(case="two parts"):
            self.rejected(forge(c).rsplit(".", 1)[0])
        with self.subTest(case="four parts"):
            self.rejected(forge(c) + ".AAAA")

    def test_non_canonical_base64url(self):
        c = claims(self.uid)
        tok = forge(c)
        h64, p64, s64 = tok.split(".")
        with self.subTest(case="padding on the signature"):
            self.assertEqual(len(s64) % 4, 3)
            self.rejected("%s.%s.%s=" % (h64, p64, s64))
        pad = [x for x in (h64, p64) if len(x) % 4]
        if pad:
            with self.subTest(case="padding on header/payload"):
                padded = [x + "=" * (-len(x) % 4) for x in (h64, p64)]
                self.rejected("%s.%s.%s" % (padded[0], padded[1], s64))
        with self.subTest(case="non-zero trailing bits"):
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            last = alphabet.index(s64[-1])
            self.assertEqual(last & 0x3, 0, "32 bytes leave 2 zero bits in the last character")
            odd = s64[:-1] + alphabet[last | 1]
            self.assertEqual(b64u_dec(odd), b64u_dec(s64), "a lenient decoder reads the same bytes")
            self.rejected("%s.%s.%s" % (h64, p64, odd))
        with self.subTest(case="'+' and '/' instead of '-' and '_'"):
            for _ in range(200):
                t = forge(claims(self.uid))
                s = t.rsplit(".", 1)[1]
                if "-" in s or "_" in s:
                    break
            self.assertTrue("-" in s or "_" in s)
            self.ok(t)
            std = s.replace("-", "+").replace("_", "/")
            self.rejected(t.rsplit(".", 1)[0] + "." + std)
        with self.subTest(case="whitespace inside"):
            self.rejected("%s.%s.%s %s" % (h64, p64, s64[:10], s64[10:]))

    def test_authorization_header_forms(self):
        tok = forge(claims(self.uid))
        self.ok(tok)
        self.rejected()                                                 # no header at all
        r = call(self.srv, "GET", "/api/v1/users/me")
        self.assertEqual(r.header("www-authenticate"), "Bearer", r.headers)
        # the scheme is case-insensitive (RFC 9110 11.1, RFC 6750 2.1)
        for scheme in ("bearer", "BEARER"):
            with self.subTest(scheme=scheme):
                r = call(self.srv, "GET", "/api/v1/users/me",
                         headers=[("Authorization", "%s %s" % (scheme, tok))])
                self.assertEqual(r.status, 200, r)
        for value in (tok, "Token " + tok, "Basic dXNlcjpwYXNzd29yZA==", "Bearer", "Bearer ",
                      "Bearer" + tok):
            with self.subTest(value=value[:20]):
                self.rejected(headers=[("Authorization", value)])
        with self.subTest(case="two Authorization fields"):
            self.rejected(headers=[("Authorization", "Bearer " + tok),
                                   ("Authorization", "Bearer " + tok)])

    def test_token_size_cap(self):
        def sized(n):
            return forge(claims(self.uid, pad="a" * n))
        n = 3000
        while len(sized(n + 1)) <= 4096:
            n += 1
        while len(sized(n)) > 4096:
            n -= 1
        under, over = sized(n), sized(n + 1)
        while len(over) <= 4096:
            n += 1
            over = sized(n + 1)
        self.assertLessEqual(len(under), 4096)
        self.assertGreater(len(over), 4096)
        self.assertLess(len(over), 4100)
        self.ok(under)
        self.rejected(over)
        self.rejected(sized(9000))


# --------------------------------------------------------------------------

class Refresh(AuthCase):

    def test_rotation_and_reuse_revokes_family(self):
        email = unique_email("rot")
        register(self, self.srv, email)
        t0 = login(self, self.srv, email)
        r = refresh_resp(self.srv, t0["refresh_token"])
        self.assertEqual(r.status, 200, r)
        t1 = keeltest.get_json(self, r)
        self.assertEqual(set(t1), {"access_token", "token_type", "expires_in", "refresh_token",
                                   "refresh_expires_in"})
        self.assertNotEqual(t1["refresh_token"], t0["refresh_token"])
        self.assertNotEqual(t1["access_token"], t0["access_token"])
        self.assertTrue(any(c.startswith("refresh=%s;" % t1["refresh_token"])
                            for c in r.header_all("set-cookie")), r.headers)
        self.assertEqual(me(self.srv, t1["access_token"]).status, 200)
        # a chain of honest rotations works
        t2 = doc(refresh_resp(self.srv, t1["refresh_token"]))
        self.assertIsNotNone(t2 and t2.get("refresh_token"), t2)
        # the rotated t1 is refused, and its reuse burns the family: t2 too
        check_401(self, refresh_resp(self.srv, t1["refresh_token"]))
        check_401(self, refresh_resp(self.srv, t2["refresh_token"]))
        check_401(self, refresh_resp(self.srv, t0["refresh_token"]))
        text = metrics_text(self.srv)
        self.assertGreaterEqual(metric_value(text, "keel_auth_refresh_total", {"result": "reuse"}) or 0, 1)
        rec = self.srv.wait_log(lambda x: x.get("security_event") == "refresh_token_reuse")
        self.assertIsNotNone(rec, "no security_event=refresh_token_reuse log line")

    def test_reuse_leaves_other_sessions(self):
        email = unique_email("fam")
        register(self, self.srv, email)
        a = login(self, self.srv, email)
        b = login(self, self.srv, email)
        a1 = doc(refresh_resp(self.srv, a["refresh_token"]))
        self.assertEqual(refresh_resp(self.srv, a["refresh_token"]).status, 401)
        self.assertEqual(refresh_resp(self.srv, a1["refresh_token"]).status, 401)
        r = refresh_resp(self.srv, b["refresh_token"])
        self.assertEqual(r.status, 200, "another session (family) of the same user: %r" % r)

    def test_cookie(self):
        email = unique_email("cookie")
        register(self, self.srv, email)
        t0 = login(self, self.srv, email)
        r = call(self.srv, "POST", "/auth/refresh",
                 headers=[("Cookie", "theme=dark; refresh=%s; lang=en" % t0["refresh_token"])])
        self.assertEqual(r.status, 200, r)
        t1 = doc(r)
        self.assertNotEqual(t1["refresh_token"], t0["refresh_token"])
        self.assertEqual(me(self.srv, t1["access_token"]).status, 200)
        r = call(self.srv, "POST", "/auth/refresh",
                 headers=[("Cookie", "refresh=" + t1["refresh_token"])])
        self.assertEqual(r.status, 200, r)
        # the rotated one by cookie: reuse
        r = call(self.srv, "POST", "/auth/refresh",
                 headers=[("Cookie", "refresh=" + t1["refresh_token"])])
        check_401(self, r)

    def test_garbage_tokens(self):
        email = unique_email("garb")
        register(self, self.srv, email)
        real = login(self, self.srv, email)["refresh_token"]
        cases = ["A" * 43, "not-a-token", real[:-1], real + "A", real[:-1] + "=",
                 real.replace("-", "+").replace("_", "/") if ("-" in real or "_" in real) else "+" * 43]
        for tok in cases:
            with self.subTest(token=tok):
                check_401(self, refresh_resp(self.srv, tok))
        with self.subTest(case="no token at all"):
            check_401(self, call(self.srv, "POST", "/auth/refresh"))
        with self.subTest(case="empty cookie"):
            check_401(self, call(self.srv, "POST", "/auth/refresh", headers=[("Cookie", "refresh=")]))
        with self.subTest(case="an access token as refresh token"):
            at = login(self, self.srv, email)["access_token"]
            r = call(self.srv, "POST", "/auth/refresh", headers=[("Cookie", "refresh=" + at)])
            check_401(self, r)
        # none of that hurt the real one
        self.assertEqual(refresh_resp(self.srv, real).status, 200)

    def test_concurrent_use_one_winner(self):
        email = unique_email("race")
        register(self, self.srv, email)
        tok = login(self, self.srv, email)["refresh_token"]
        results = []
        barrier = threading.Barrier(4)

        def go():
            barrier.wait()
            r = refresh_resp(self.srv, tok)
            results.append(r.status)

        ts = [threading.Thread(target=go) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(sorted(results), [200, 401, 401, 401], results)


class RefreshExpiry(unittest.TestCase):

    def test_refresh_token_expires(self):
        env = dict(FAST, KEEL_ACCESS_TOKEN_TTL="1", KEEL_REFRESH_TOKEN_TTL="2")
        with Server(env=env) as srv:
            email = unique_email("exp")
            register(self, srv, email)
            r = login_resp(srv, email)
            self.assertEqual(r.status, 200, r)
            t = doc(r)
            self.assertEqual(t["expires_in"], 1)
            self.assertEqual(t["refresh_expires_in"], 2)
            self.assertIn("Max-Age=2", r.header("set-cookie"))
            c = decode_jwt(t["access_token"])[1]
            self.assertEqual(c["exp"] - c["iat"], 1)
            fresh = login(self, srv, email)["refresh_token"]
            self.assertEqual(refresh_resp(srv, fresh).status, 200, "control: a fresh token works")
            time.sleep(3)
            check_401(self, refresh_resp(srv, t["refresh_token"]))


# --------------------------------------------------------------------------

class LogoutSessions(AuthCase):

    def test_logout(self):
        email = unique_email("out")
        register(self, self.srv, email)
        a = login(self, self.srv, email)
        b = login(self, self.srv, email)
        self.assertEqual(me(self.srv, a["access_token"]).status, 200)
        r = call(self.srv, "POST", "/auth/logout", {"refresh_token": a["refresh_token"]},
                 token=a["access_token"])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        cleared = [c for c in r.header_all("set-cookie") if c.startswith("refresh=")]
        self.assertEqual(len(cleared), 1, r.headers)
        self.assertTrue(cleared[0].startswith("refresh=;"), cleared)
        self.assertIn("Max-Age=0", cleared[0])
        self.assertIn("Path=/auth/refresh", cleared[0])
        # at once, on a new connection and on every route
        check_401(self, me(self.srv, a["access_token"]))
        check_401(self, call(self.srv, "GET", "/api/v1/users/me/sessions", token=a["access_token"]))
        check_401(self, call(self.srv, "POST", "/auth/logout", token=a["access_token"]))
        check_401(self, refresh_resp(self.srv, a["refresh_token"]))
        # the other session of the same user goes on
        self.assertEqual(me(self.srv, b["access_token"]).status, 200)
        r = refresh_resp(self.srv, b["refresh_token"])
        self.assertEqual(r.status, 200, r)

    def test_logout_with_cookie(self):
        email = unique_email("outc")
        register(self, self.srv, email)
        a = login(self, self.srv, email)
        r = call(self.srv, "POST", "/auth/logout", token=a["access_token"],
                 headers=[("Cookie", "refresh=" + a["refresh_token"])])
        self.assertEqual(r.status, 204, r)
        check_401(self, me(self.srv, a["access_token"]))
        check_401(self, refresh_resp(self.srv, a["refresh_token"]))

    def test_logout_requires_bearer(self):
        email = unique_email("outb")
        register(self, self.srv, email)
        a = login(self, self.srv, email)
        check_401(self, call(self.srv, "POST", "/auth/logout", {"refresh_token": a["refresh_token"]}))
        check_401(self, call(self.srv, "POST", "/auth/logout",
                             headers=[("Cookie", "refresh=" + a["refresh_token"])]))
        # nothing was revoked
        self.assertEqual(me(self.srv, a["access_token"]).status, 200)
        self.assertEqual(refresh_resp(self.srv, a["refresh_token"]).status, 200)

    def test_logout_cannot_revoke_another_users_session(self):
        a_email, b_email = unique_email("oa"), unique_email("ob")
        register(self, self.srv, a_email)
        register(self, self.srv, b_email)
        a = login(self, self.srv, a_email)
        b = login(self, self.srv, b_email)
        r = call(self.srv, "POST", "/auth/logout", {"refresh_token": b["refresh_token"]},
                 token=a["access_token"])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(refresh_resp(self.srv, b["refresh_token"]).status, 200,
                         "A's logout revoked B's session")

    def sessions(self, token):
        r = call(self.srv, "GET", "/api/v1/users/me/sessions", token=token)
        self.assertEqual(r.status, 200, r)
        d = keeltest.get_json(self, r)
        self.assertIn("items", d)
        for it in d["items"]:
            self.assertRegex(it["id"], keeltest.UUID_RE)
            for k in ("created_at", "last_used_at", "expires_at"):
                self.assertRegex(it.get(k, ""), ISO_Z_RE, it)
            self.assertNotIn("refresh_token", it)
            self.assertNotIn("token_hash", it)
        return {it["id"] for it in d["items"]}

    def test_sessions_list_is_paginated(self):
        # SPEC section 3: lists answer {"items", "next_cursor"}, ?limit=1..100
        # (default 20) and ?cursor; no session may silently drop out
        email = unique_email("many")
        register(self, self.srv, email)
        toks = [login(self, self.srv, email) for _ in range(101)]
        tok = toks[-1]["access_token"]
        seen, cursor, pages = [], None, 0
        while True:
            path = "/api/v1/users/me/sessions" + ("?cursor=" + cursor if cursor else "")
            r = call(self.srv, "GET", path, token=tok)
            self.assertEqual(r.status, 200, r)
            d = keeltest.get_json(self, r)
            self.assertLessEqual(len(d["items"]), 100)
            seen.extend(it["id"] for it in d["items"])
            cursor = d.get("next_cursor")
            pages += 1
            if not cursor or pages > 20:
                break
        self.assertEqual(len(set(seen)), 101,
                         "GET /api/v1/users/me/sessions listed %d of 101 sessions over %d page(s), "
                         "next_cursor null" % (len(set(seen)), pages))

    def test_sessions_list_limit(self):
        email = unique_email("lim")
        register(self, self.srv, email)
        toks = [login(self, self.srv, email) for _ in range(3)]
        r = call(self.srv, "GET", "/api/v1/users/me/sessions?limit=2", token=toks[0]["access_token"])
        self.assertEqual(r.status, 200, r)
        d = doc(r)
        self.assertEqual(len(d["items"]), 2, "?limit=2 ignored: %r" % d)
        self.assertIsNotNone(d["next_cursor"])
        r = call(self.srv, "GET", "/api/v1/users/me/sessions?limit=0", token=toks[0]["access_token"])
        keeltest.check_problem(self, r, 400, "validation-error")

    def test_sessions_list_and_revoke(self):
        email = unique_email("sess")
        register(self, self.srv, email)
        a = login(self, self.srv, email)
        (sa,) = self.sessions(a["access_token"])
        b = login(self, self.srv, email)
        ids = self.sessions(a["access_token"])
        self.assertEqual(len(ids), 2, ids)
        (sb,) = ids - {sa}
        r = call(self.srv, "DELETE", "/api/v1/users/me/sessions/" + sb, token=a["access_token"])
        self.assertEqual(r.status, 204, r)
        check_401(self, refresh_resp(self.srv, b["refresh_token"]))
        self.assertEqual(refresh_resp(self.srv, a["refresh_token"]).status, 200)
        self.assertEqual(self.sessions(a["access_token"]), {sa})
        # again: gone
        r = call(self.srv, "DELETE", "/api/v1/users/me/sessions/" + sb, token=a["access_token"])
        keeltest.check_problem(self, r, 404, "not-found")
        r = call(self.srv, "DELETE", "/api/v1/users/me/sessions/" + str(uuid.uuid4()),
                 token=a["access_token"])
        keeltest.check_problem(self, r, 404, "not-found")
        # a logout ends its session in the list too
        r = call(self.srv, "POST", "/auth/logout", {"refresh_token": b["refresh_token"]},
                 token=b["access_token"])
        self.assertEqual(r.status, 204, r)


# --------------------------------------------------------------------------

# permission of each authenticated route; None = public
ROUTES = [
    ("POST", "/auth/register", None),
    ("POST", "/auth/login", None),
    ("POST", "/auth/refresh", None),
    ("GET", "/api/v1/users/me", "profile:read"),
    ("PATCH", "/api/v1/users/me", "profile:write"),
    ("GET", "/api/v1/users/me/sessions", "sessions:manage"),
    ("DELETE", "/api/v1/users/me/sessions/{uuid}", "sessions:manage"),
    ("GET", "/api/v1/users", "users:read"),
    ("PATCH", "/api/v1/users/{uuid}", "users:write"),
    ("DELETE", "/api/v1/users/{uuid}", "users:write"),
    ("POST", "/auth/logout", "sessions:manage"),   # last: it revokes the token
]
PERMISSIONS = {
    "admin": {"profile:read", "profile:write", "sessions:manage", "users:read", "users:write"},
    "manager": {"profile:read", "profile:write", "sessions:manage"},
    "user": {"profile:read", "profile:write", "sessions:manage"},
    "viewer": {"profile:read", "sessions:manage"},
}


class Admin(AuthCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tc = unittest.TestCase()
        cls.admin_email = unique_email("root")
        cls.admin = create_admin(tc, cls.srv, cls.admin_email, name="Root")
        t = login(tc, cls.srv, cls.admin_email)
        cls.admin_token = t["access_token"]

    def user(self, role="user"):
        return new_user(self, self.srv, role, self.admin_token)

    # -- role change and deletion ------------------------------------------

    def test_role_change_revokes(self):
        u = self.user("user")
        self.assertEqual(me(self.srv, u["access"]).status, 200)
        r = call(self.srv, "PATCH", "/api/v1/users/" + u["id"], {"role": "manager"},
                 token=self.admin_token)
        self.assertEqual(r.status, 200, r)
        d = keeltest.get_json(self, r)
        self.assertEqual(d["role"], "manager")
        self.assertEqual(set(d), USER_KEYS)
        check_401(self, me(self.srv, u["access"]))
        check_401(self, refresh_resp(self.srv, u["refresh"]))
        t = login(self, self.srv, u["email"])
        self.assertEqual(decode_jwt(t["access_token"])[1]["role"], "manager")
        r = me(self.srv, t["access_token"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(doc(r)["role"], "manager")
        # the same role again changes (and revokes) nothing
        r = call(self.srv, "PATCH", "/api/v1/users/" + u["id"], {"role": "manager"},
                 token=self.admin_token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(me(self.srv, t["access_token"]).status, 200)
        # uppercase id spelling names the same user
        r = call(self.srv, "PATCH", "/api/v1/users/" + u["id"].upper(), {"role": "viewer"},
                 token=self.admin_token)
        self.assertEqual(r.status, 200, r)
        check_401(self, me(self.srv, t["access_token"]))

    def test_role_change_validation(self):
        u = self.user("user")
        for body in ({"role": "root"}, {"role": "Admin"}, {}, {"role": "manager", "email": "x@y.z"},
                     {"role": "manager", "name": "X"}, {"role": 1}):
            with self.subTest(body=body):
                r = call(self.srv, "PATCH", "/api/v1/users/" + u["id"], body, token=self.admin_token)
                keeltest.check_problem(self, r, 400, "validation-error")
        # nothing changed, nothing revoked
        r = me(self.srv, u["access"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(doc(r)["role"], "user")
        self.assertEqual(doc(r)["email"], u["email"])
        r = call(self.srv, "PATCH", "/api/v1/users/" + str(uuid.uuid4()), {"role": "user"},
                 token=self.admin_token)
        keeltest.check_problem(self, r, 404, "not-found")

    def test_delete_user_revokes(self):
        u = self.user("user")
        other = login(self, self.srv, u["email"])
        r = call(self.srv, "DELETE", "/api/v1/users/" + u["id"], token=self.admin_token)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        for tok in (u["access"], other["access_token"]):
            check_401(self, me(self.srv, tok))
            check_401(self, call(self.srv, "GET", "/api/v1/users/me/sessions", token=tok))
        check_401(self, refresh_resp(self.srv, u["refresh"]))
        check_401(self, refresh_resp(self.srv, other["refresh_token"]))
        r = login_resp(self.srv, u["email"])
        check_401(self, r)
        r = call(self.srv, "DELETE", "/api/v1/users/" + u["id"], token=self.admin_token)
        keeltest.check_problem(self, r, 404, "not-found")
        r = call(self.srv, "DELETE", "/api/v1/users/" + str(uuid.uuid4()), token=self.admin_token)
        keeltest.check_problem(self, r, 404, "not-found")
        # the list no longer has it
        d = doc(call(self.srv, "GET", "/api/v1/users?limit=100", token=self.admin_token))
        self.assertNotIn(u["id"], [x["id"] for x in d["items"]])
        # the email is free again
        register(self, self.srv, u["email"])

    def test_last_admin(self):
        aid = self.admin["id"]
        r = call(self.srv, "PATCH", "/api/v1/users/" + aid, {"role": "user"}, token=self.admin_token)
        keeltest.check_problem(self, r, 409, "conflict")
        r = call(self.srv, "DELETE", "/api/v1/users/" + aid, token=self.admin_token)
        keeltest.check_problem(self, r, 409, "conflict")
        # the failed attempts revoked nothing
        r = call(self.srv, "GET", "/api/v1/users", token=self.admin_token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(doc(me(self.srv, self.admin_token))["role"], "admin")
        # with a second admin, that one may be demoted; then the first is last again
        email2 = unique_email("root2")
        a2 = create_admin(self, self.srv, email2)
        t2 = login(self, self.srv, email2)["access_token"]
        self.assertEqual(call(self.srv, "GET", "/api/v1/users", token=t2).status, 200)
        r = call(self.srv, "PATCH", "/api/v1/users/" + a2["id"], {"role": "user"}, token=self.admin_token)
        self.assertEqual(r.status, 200, r)
        check_401(self, call(self.srv, "GET", "/api/v1/users", token=t2))
        t2 = login(self, self.srv, email2)["access_token"]
        check_403(self, call(self.srv, "GET", "/api/v1/users", token=t2))
        r = call(self.srv, "PATCH", "/api/v1/users/" + aid, {"role": "manager"}, token=self.admin_token)
        keeltest.check_problem(self, r, 409, "conflict")
        self.assertEqual(call(self.srv, "GET", "/api/v1/users", token=self.admin_token).status, 200)

    # -- authorization matrix ----------------------------------------------

    def matrix_request(self, method, pattern, who):
        """Sends one request of the matrix for `who` (a user dict or None)."""
        tok = who["access"] if who else None
        path = pattern.replace("{uuid}", str(uuid.uuid4()))
        if pattern == "/auth/register":
            return call(self.srv, method, path,
                        {"email": unique_email("mx"), "password": PASSWORD, "name": "M"}, token=tok)
        if pattern == "/auth/login":
            email = who["email"] if who else self.anon["email"]
            return call(self.srv, method, path, {"email": email, "password": PASSWORD}, token=tok)
        if pattern == "/auth/refresh":
            fresh = login(self, self.srv, who["email"] if who else self.anon["email"])
            return call(self.srv, method, path, {"refresh_token": fresh["refresh_token"]}, token=tok)
        if pattern == "/api/v1/users/me" and method == "PATCH":
            return call(self.srv, method, path, {"name": "Matrix Name"}, token=tok)
        if pattern == "/api/v1/users/{uuid}" and method == "PATCH":
            return call(self.srv, method, path, {"role": "user"}, token=tok)
        if pattern == "/auth/logout":
            return call(self.srv, method, path, {"refresh_token": who["refresh"]} if who else None,
                        token=tok)
        return call(self.srv, method, path, token=tok)

    def test_authorization_matrix(self):
        self.anon = self.user("user")
        people = {"admin": None, "manager": self.user("manager"), "user": self.user("user"),
                  "viewer": self.user("viewer")}
        t = login(self, self.srv, self.admin_email)
        people["admin"] = {"id": self.admin["id"], "email": self.admin_email,
                           "access": t["access_token"], "refresh": t["refresh_token"]}
        for role in ("admin", "manager", "user", "viewer"):
            self.assertEqual(decode_jwt(people[role]["access"])[1]["role"], role)
        table = []
        for method, pattern, perm in ROUTES:
            for who in ("admin", "manager", "user", "viewer", "anonymous"):
                person = people.get(who)
                r = self.matrix_request(method, pattern, person)
                if perm is None:
                    want = "2xx"
                elif person is None:
                    want = 401
                elif perm in PERMISSIONS[who]:
                    want = "allowed"
                else:
                    want = 403
                table.append((method, pattern, who, want, r.status))
                with self.subTest(route="%s %s" % (method, pattern), who=who, want=want):
                    if want == "2xx":
                        self.assertTrue(200 <= r.status < 300, r)
                    elif want == 401:
                        check_401(self, r)
                    elif want == 403:
                        check_403(self, r)
                    else:
                        self.assertNotIn(r.status, (401, 403), r)
                        self.assertLess(r.status, 500, r)
        # the allowed answers are the handlers' own
        got = {(m, p, w): s for m, p, w, _, s in table}
        self.assertEqual(got[("GET", "/api/v1/users", "admin")], 200)
        self.assertEqual(got[("PATCH", "/api/v1/users/{uuid}", "admin")], 404)
        self.assertEqual(got[("DELETE", "/api/v1/users/{uuid}", "admin")], 404)
        self.assertEqual(got[("POST", "/auth/logout", "viewer")], 204)
        self.assertEqual(got[("PATCH", "/api/v1/users/me", "user")], 200)

    def test_bola(self):
        a, b = self.user("user"), self.user("user")
        mgr = self.user("manager")
        sessions = doc(call(self.srv, "GET", "/api/v1/users/me/sessions", token=b["access"]))["items"]
        self.assertEqual(len(sessions), 1, sessions)
        bsid = sessions[0]["id"]
        # A cannot see or revoke B's session: 404, never 403
        r = call(self.srv, "DELETE", "/api/v1/users/me/sessions/" + bsid, token=a["access"])
        keeltest.check_problem(self, r, 404, "not-found")
        # not even an admin through the "me" route
        r = call(self.srv, "DELETE", "/api/v1/users/me/sessions/" + bsid, token=self.admin_token)
        keeltest.check_problem(self, r, 404, "not-found")
        self.assertEqual(refresh_resp(self.srv, b["refresh"]).status, 200, "B's session was revoked")
        asess = doc(call(self.srv, "GET", "/api/v1/users/me/sessions", token=a["access"]))["items"]
        self.assertNotIn(bsid, [s["id"] for s in asess])
        # non-admins cannot change or delete B
        for who in (a, mgr):
            r = call(self.srv, "PATCH", "/api/v1/users/" + b["id"], {"role": "admin"}, token=who["access"])
            check_403(self, r)
            r = call(self.srv, "DELETE", "/api/v1/users/" + b["id"], token=who["access"])
            check_403(self, r)
            r = call(self.srv, "PATCH", "/api/v1/users/" + who["id"], {"role": "admin"}, token=who["access"])
            check_403(self, r)
            check_403(self, call(self.srv, "GET", "/api/v1/users", token=who["access"]))
        r = login(self, self.srv, b["email"])
        self.assertEqual(doc(me(self.srv, r["access_token"]))["role"], "user")

    # -- mass assignment ---------------------------------------------------

    def test_mass_assignment(self):
        u = self.user("user")
        before = doc(me(self.srv, u["access"]))
        cases = [
            ({"role": "admin"}, "role"),
            ({"name": "Evil", "role": "admin"}, "role"),
            ({"name": "Evil", "email": "evil@example.com"}, "email"),
            ({"name": "Evil", "id": str(uuid.uuid4())}, "id"),
            ({"name": "Evil", "created_at": "2000-01-01T00:00:00Z"}, "created_at"),
            ({"name": "Evil", "updated_at": "2000-01-01T00:00:00Z"}, "updated_at"),
            ({"name": "Evil", "password": "new-password-123"}, "password"),
            ({"name": "Evil", "password_hash": "x"}, "password_hash"),
            ({"name": "Evil", "is_admin": True}, "is_admin"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                r = call(self.srv, "PATCH", "/api/v1/users/me", body, token=u["access"])
                d = keeltest.check_problem(self, r, 400, "validation-error")
                errs = field_errors(d)
                self.assertIn(field, errs, d)
                if field in USER_KEYS or field == "password":
                    self.assertEqual(errs[field], "is read-only", d)
        after = doc(me(self.srv, u["access"]))
        self.assertEqual(after, before, "a refused PATCH changed the profile")
        self.assertEqual(login_resp(self.srv, u["email"], "new-password-123").status, 401)
        self.assertEqual(decode_jwt(login(self, self.srv, u["email"])["access_token"])[1]["role"], "user")
        # the one writable field works, and only it changes
        r = call(self.srv, "PATCH", "/api/v1/users/me", {"name": "Renamed"}, token=u["access"])
        self.assertEqual(r.status, 200, r)
        d = doc(r)
        self.assertEqual(d["name"], "Renamed")
        for k in ("id", "email", "role", "created_at"):
            self.assertEqual(d[k], before[k])
        self.assertEqual(doc(me(self.srv, u["access"]))["name"], "Renamed")
        for bad in ({}, {"name": ""}, {"name": 5}, {"name": None}):
            with self.subTest(body=bad):
                r = call(self.srv, "PATCH", "/api/v1/users/me", bad, token=u["access"])
                keeltest.check_problem(self, r, 400, "validation-error")
        self.assertEqual(doc(me(self.srv, u["access"]))["name"], "Renamed")


# --------------------------------------------------------------------------

class UserRateLimit(unittest.TestCase):

    def test_per_user_limit(self):
        env = dict(FAST, KEEL_RATE_LIMIT_USER="100/min")
        with Server(env=env) as srv:
            a_email, b_email = unique_email("rla"), unique_email("rlb")
            register(self, srv, a_email)
            register(self, srv, b_email)
            a = login(self, srv, a_email)["access_token"]
            b = login(self, srv, b_email)["access_token"]
            statuses = []
            with srv.connect(timeout=10) as c:
                t0 = time.monotonic()
                for _ in range(100):
                    statuses.append(me(c, a).status)
                elapsed = time.monotonic() - t0
                self.assertEqual(statuses, [200] * 100)
                # the budget refills one request per 0.6 s
                extra = int(elapsed / 0.6) + 1
                r = None
                for _ in range(extra + 1):
                    r = me(c, a)
                    if r.status != 200:
                        break
            keeltest.check_problem(self, r, 429, "rate-limited")
            ra = r.header("retry-after")
            self.assertIsNotNone(ra, r.headers)
            self.assertRegex(ra, r"^\d+$")
            self.assertGreaterEqual(int(ra), 1)
            pol = r.header("ratelimit-policy") or ""
            self.assertIn('"user";q=100;w=60', pol, r.headers)
            # another user is unaffected
            r = me(srv, b)
            self.assertEqual(r.status, 200, r)
            text = metrics_text(srv)
            self.assertGreaterEqual(metric_value(text, "keel_rate_limited_total", {"scope": "user"}) or 0, 1)


class AuthRateLimit(unittest.TestCase):

    def test_auth_scope_limit(self):
        env = dict(FAST, KEEL_RATE_LIMIT_AUTH="5/min")
        with Server(env=env) as srv:
            # distinct unknown emails: no login throttling is involved
            for i in range(5):
                r = login_resp(srv, unique_email("rl%d" % i), "whatever-password")
                self.assertEqual(r.status, 401, r)
            r = login_resp(srv, unique_email("rl6"), "whatever-password")
            keeltest.check_problem(self, r, 429, "rate-limited")
            self.assertGreaterEqual(int(r.header("retry-after") or 0), 1, r.headers)
            self.assertIn('"auth";q=5;w=60', r.header("ratelimit-policy") or "", r.headers)
            # every credential route shares it; other routes do not
            r = call(srv, "POST", "/auth/register",
                     {"email": unique_email("rl7"), "password": PASSWORD, "name": "R"})
            keeltest.check_problem(self, r, 429, "rate-limited")
            check_401(self, call(srv, "GET", "/api/v1/users/me"))


class LoginThrottle(AuthCase):

    def test_throttle_then_owner_gets_in(self):
        email = unique_email("brute")
        secret_pw = "Owner-Pass-7f3a9c21e"
        uid = register(self, self.srv, email, secret_pw)["id"]
        wrong = ["Guess-Number-%d-q8z" % i for i in range(5)]
        for pw in wrong:
            r = login_resp(self.srv, email, pw)
            check_401(self, r)
        r = login_resp(self.srv, email, secret_pw)
        keeltest.check_problem(self, r, 429, "rate-limited")
        ra = r.header("retry-after")
        self.assertIsNotNone(ra, r.headers)
        self.assertRegex(ra, r"^\d+$")
        self.assertGreaterEqual(int(ra), 1)
        self.assertLessEqual(int(ra), 60, "the first delay is short")
        time.sleep(int(ra) + 0.2)
        # one more wrong guess after the wait: the next delay is longer
        wrong.append("Guess-Number-6-q8z")
        check_401(self, login_resp(self.srv, email, wrong[-1]))
        r = login_resp(self.srv, email, secret_pw)
        keeltest.check_problem(self, r, 429, "rate-limited")
        ra2 = int(r.header("retry-after") or 0)
        self.assertGreater(ra2, int(ra), "delays must grow: %s then %s" % (ra, ra2))
        self.assertLessEqual(ra2, 60)
        time.sleep(ra2 + 0.2)
        r = login_resp(self.srv, email, secret_pw)
        self.assertEqual(r.status, 200, "the owner is locked out after Retry-After: %r" % r)
        t = doc(r)
        # success cleared the count: one more wrong guess is a plain 401
        check_401(self, login_resp(self.srv, email, "Guess-After-Success-1"))
        self.assertEqual(login_resp(self.srv, email, secret_pw).status, 200)

        text = metrics_text(self.srv)
        self.assertGreaterEqual(metric_value(text, "keel_auth_login_total", {"result": "failure"}) or 0, 5)
        self.assertGreaterEqual(metric_value(text, "keel_auth_login_total", {"result": "throttled"}) or 0, 1)
        self.assertGreaterEqual(metric_value(text, "keel_auth_login_total", {"result": "success"}) or 0, 1)
        self.assertGreaterEqual(metric_value(text, "keel_auth_lockouts_total") or 0, 1)

        self.assertIsNotNone(self.srv.wait_log(lambda x: x.get("security_event") == "login_throttled"))
        events = {x.get("security_event") for x in self.srv.logs() if x.get("security_event")}
        self.assertIn("login_failed", events)
        self.assertIn("login_lockout", events)
        out = self.srv.all_output()
        for s in [secret_pw] + wrong + [t["access_token"], t["refresh_token"]]:
            self.assertNotIn(s, out, "a password or token appears in the server output")
        # user ids are logged hashed (SPEC section 6)
        self.assertNotIn(uid, out)
        rec = [x for x in self.srv.logs() if x.get("security_event") == "login_lockout"][0]
        self.assertEqual(rec.get("client_ip"), "127.0.0.1", rec)
        self.assertTrue(rec.get("user_id"), rec)

    def test_other_account_not_throttled(self):
        victim, other = unique_email("v"), unique_email("o")
        register(self, self.srv, victim)
        register(self, self.srv, other)
        for i in range(6):
            self.assertIn(login_resp(self.srv, victim, "bad-guess-%d" % i).status, (401, 429))
        self.assertEqual(login_resp(self.srv, victim).status, 429)
        self.assertEqual(login_resp(self.srv, other).status, 200)


class ThrottleAcrossAddresses(AuthCase):
    """Behind a trusted proxy each X-Forwarded-For address is a client:
    the per-account counter (10 failures, any address) and the per-IP
    counter (50 failures, any account) of identity.md."""
    ENV = dict(FAST, KEEL_TRUSTED_PROXIES="127.0.0.1")

    def attempt(self, email, password, ip):
        return call(self.srv, "POST", "/auth/login", {"email": email, "password": password},
                    headers=[("X-Forwarded-For", ip)])

    def test_account_throttled_from_any_address_but_not_locked(self):
        email = unique_email("acct")
        register(self, self.srv, email)
        for i in range(10):
            check_401(self, self.attempt(email, "wrong-guess-%d" % i, "198.51.100.%d" % (i + 1)))
        # an 11th address, with the right password: the account waits
        r = self.attempt(email, PASSWORD, "203.0.113.77")
        keeltest.check_problem(self, r, 429, "rate-limited")
        ra = int(r.header("retry-after") or 0)
        self.assertTrue(1 <= ra <= 60, r.headers)
        time.sleep(ra + 0.2)
        self.assertEqual(self.attempt(email, PASSWORD, "203.0.113.77").status, 200)

    def test_address_throttled_across_accounts(self):
        ip = "192.0.2.50"
        for i in range(50):
            r = self.attempt(unique_email("spray"), "spray-password", ip)
            self.assertEqual(r.status, 401, (i, r))
        email = unique_email("sprayed")
        register(self, self.srv, email)
        r = self.attempt(email, PASSWORD, ip)
        keeltest.check_problem(self, r, 429, "rate-limited")
        self.assertGreaterEqual(int(r.header("retry-after") or 0), 1, r.headers)
        # the same account from another address is fine
        self.assertEqual(self.attempt(email, PASSWORD, "192.0.2.51").status, 200)


# --------------------------------------------------------------------------

class UsersList(AuthCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tc = unittest.TestCase()
        email = unique_email("ladmin")
        cls.admin = create_admin(tc, cls.srv, email)
        cls.token = login(tc, cls.srv, email)["access_token"]

    def test_pagination(self):
        tok = self.token
        created = {self.admin["id"]}
        for i in range(25):
            created.add(register(self, self.srv, unique_email("list%d" % i))["id"])
        self.assertEqual(len(created), 26)
        seen, pages, cursor = [], 0, None
        while True:
            path = "/api/v1/users?limit=10" + ("&cursor=" + cursor if cursor else "")
            r = call(self.srv, "GET", path, token=tok)
            self.assertEqual(r.status, 200, r)
            d = keeltest.get_json(self, r)
            self.assertEqual(set(d), {"items", "next_cursor"}, d)
            pages += 1
            self.assertLessEqual(len(d["items"]), 10)
            for it in d["items"]:
                self.assertEqual(set(it), USER_KEYS, it)
            seen.extend(it["id"] for it in d["items"])
            cursor = d["next_cursor"]
            if cursor is None:
                break
            self.assertIsInstance(cursor, str)
            self.assertLess(pages, 10, "pagination does not end")
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), len(set(seen)), "duplicates across pages")
        self.assertEqual(set(seen), created)
        # default limit 20
        d = doc(call(self.srv, "GET", "/api/v1/users", token=tok))
        self.assertEqual(len(d["items"]), 20)
        self.assertIsNotNone(d["next_cursor"])
        d = doc(call(self.srv, "GET", "/api/v1/users?limit=100", token=tok))
        self.assertEqual(len(d["items"]), 26)
        self.assertIsNone(d["next_cursor"])

    def test_bad_parameters(self):
        tok = self.token
        for q in ("limit=0", "limit=101", "limit=abc", "limit=-1", "limit=", "limit=1.5",
                  "cursor=garbage!", "cursor=" + b64u(b"not-a-uuid"),
                  "cursor=" + b64u(str(uuid.uuid4()).encode()) + "=",
                  "cursor=%27%20OR%201%3D1--"):
            with self.subTest(query=q):
                r = call(self.srv, "GET", "/api/v1/users?" + q, token=tok)
                keeltest.check_problem(self, r, 400, "validation-error")
        for q in ("limit=1", "limit=100"):
            with self.subTest(query=q):
                self.assertEqual(call(self.srv, "GET", "/api/v1/users?" + q, token=tok).status, 200)


# --------------------------------------------------------------------------

class CreateAdminCli(unittest.TestCase):

    def setUp(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="keel-cli-auth-")
        self.env = {"KEEL_DATA_DIR": os.path.join(self.dir, "var"),
                    "KEEL_PASSWORD_MEMORY": "1024", "KEEL_PASSWORD_ITERATIONS": "1"}

    def tearDown(self):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, args, password):
        return run_cli(["users", "create-admin"] + args, env=self.env, cwd=self.dir,
                       input=None if password is None else password + "\n", timeout=60)

    def test_exit_codes(self):
        p = self.cli(["--email", "Boss@Example.com", "--name", "Boss"], PASSWORD)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        recs = [keeltest.parse_json_line(x) for x in p.stdout.splitlines()]
        out = [x for x in recs if x and x.get("role") == "admin"]
        self.assertEqual(len(out), 1, p.stdout)
        self.assertRegex(out[0]["id"], keeltest.UUID7_RE)
        self.assertEqual(out[0]["email"], "boss@example.com")
        self.assertNotIn(PASSWORD, p.stdout + p.stderr)
        with self.subTest(case="short password"):
            p = self.cli(["--email", "short@example.com"], "123456789")
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertTrue(p.stderr.strip())
        with self.subTest(case="no password"):
            p = self.cli(["--email", "nopw@example.com"], None)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        with self.subTest(case="duplicate email"):
            p = self.cli(["--email", "boss@example.com"], PASSWORD)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        with self.subTest(case="duplicate email, other case"):
            p = self.cli(["--email", "BOSS@example.COM"], PASSWORD)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        with self.subTest(case="missing --email"):
            p = self.cli([], PASSWORD)
            self.assertEqual(p.returncode, 64, p.stdout + p.stderr)
        with self.subTest(case="--email not an email"):
            p = self.cli(["--email", "nobody"], PASSWORD)
            self.assertEqual(p.returncode, 64, p.stdout + p.stderr)
        # the admin created by the CLI logs in, with the admin role
        with Server(env=dict(FAST, KEEL_DATA_DIR=self.env["KEEL_DATA_DIR"])) as srv:
            t = login(self, srv, "boss@example.com")
            self.assertEqual(decode_jwt(t["access_token"])[1]["role"], "admin")
            r = call(srv, "GET", "/api/v1/users", token=t["access_token"])
            self.assertEqual(r.status, 200, r)
            emails = [x["email"] for x in doc(r)["items"]]
            self.assertEqual(emails, ["boss@example.com"], "failed attempts created users")



class CreateAdminEmail(unittest.TestCase):
    """`keel users create-admin --email` must treat the address as the API
    does (SPEC section 3: emails are trimmed and lowercased): either refuse
    it (exit 64) or store the normalized form, so that the admin can sign
    in and nobody can register the same address again."""

    def test_email_handled_like_the_api(self):
        with Server(env=FAST) as srv:
            cases = [
                ("  Spaced@Example.com ", "spaced@example.com"),
                ("Tabbed@Example.com\t", "tabbed@example.com"),
                ("nodot@localhost", "nodot@localhost"),
                ('quo"te@example.com', 'quo"te@example.com'),
            ]
            for arg, norm in cases:
                with self.subTest(email=arg):
                    p = run_cli(["users", "create-admin", "--email", arg], env=cli_env(srv),
                                input=PASSWORD + "\n", cwd=srv.tmpdir, timeout=60)
                    if p.returncode != 0:
                        self.assertEqual(p.returncode, 64, p.stdout + p.stderr)
                        continue
                    last = p.stdout.strip().splitlines()[-1]
                    try:
                        out = json.loads(last)
                    except ValueError:
                        self.fail("create-admin printed invalid JSON: %r" % last)
                    r = login_resp(srv, arg)
                    self.assertEqual(r.status, 200, "the new admin (stored as %r) cannot sign in "
                                     "with the address given: %r" % (out.get("email"), r))
                    r = call(srv, "POST", "/auth/register",
                             {"email": norm, "password": PASSWORD, "name": "Twin"})
                    self.assertEqual(r.status, 409, "the admin's address %r was registered again "
                                     "as a second account: %r" % (norm, r))
                    self.assertEqual(out.get("email"), norm, "stored without normalizing")


class RevocationSurvivesRestart(unittest.TestCase):
    """The database is the durable record of revocations
    (identity.md "Blocklist"): a restarted server still refuses a logged-out
    token and a token issued before a role change, and keeps every other
    session."""

    def test_restart(self):
        import tempfile
        import shutil
        tmp = tempfile.mkdtemp(prefix="keel-auth-restart-")
        try:
            env = dict(FAST, KEEL_DATA_DIR=os.path.join(tmp, "var"))
            with Server(env=env) as srv:
                admin_email = unique_email("rs")
                create_admin(self, srv, admin_email)
                at = login(self, srv, admin_email)["access_token"]
                u_email, v_email = unique_email("ru"), unique_email("rv")
                register(self, srv, u_email)
                v = register(self, srv, v_email)
                a = login(self, srv, u_email)
                b = login(self, srv, u_email)
                vt = login(self, srv, v_email)
                r = call(srv, "POST", "/auth/logout", {"refresh_token": a["refresh_token"]},
                         token=a["access_token"])
                self.assertEqual(r.status, 204, r)
                r = call(srv, "PATCH", "/api/v1/users/" + v["id"], {"role": "viewer"}, token=at)
                self.assertEqual(r.status, 200, r)
                check_401(self, me(srv, a["access_token"]))
                check_401(self, me(srv, vt["access_token"]))
            with Server(env=env) as srv:
                check_401(self, me(srv, a["access_token"]))
                check_401(self, me(srv, vt["access_token"]))
                check_401(self, refresh_resp(srv, a["refresh_token"]))
                check_401(self, refresh_resp(srv, vt["refresh_token"]))
                self.assertEqual(me(srv, b["access_token"]).status, 200)
                self.assertEqual(refresh_resp(srv, b["refresh_token"]).status, 200)
                self.assertEqual(me(srv, at).status, 200)
                t = login(self, srv, v_email)
                self.assertEqual(doc(me(srv, t["access_token"]))["role"], "viewer")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    keeltest.main()
