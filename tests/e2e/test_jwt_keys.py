"""test_jwt_keys - the server's signing keys (docs/internals/tokens.md, "In
the server"): EdDSA signatures, and rotation with KEEL_JWT_PREVIOUS_SECRET.
"""
import base64
import contextlib
import hashlib
import json
import shutil
import tempfile

import keeltest
from keeltest import Server, json_request

PW = "correct horse battery staple"
FAST = {"KEEL_PASSWORD_MEMORY": "1024", "KEEL_PASSWORD_ITERATIONS": "1"}
SECRET_A = "a" * 40
SECRET_B = "b" * 40


@contextlib.contextmanager
def serving(env):
    srv = Server(env=env)
    with srv:
        yield srv


def call(srv, method, path, body=None, token=None):
    headers = {"Authorization": "Bearer " + token} if token else None
    with srv.connect(timeout=30) as c:
        if body is None:
            c.send(keeltest.build_request(method, path, headers))
        else:
            c.send(json_request(method, path, body, headers=headers))
        return c.read_final_response(method=method, timeout=30)


def header_of(token):
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))


def login(srv, email, register=False):
    if register:
        r = call(srv, "POST", "/auth/register", {"email": email, "password": PW, "name": "N"})
        assert r.status == 201, r
    r = call(srv, "POST", "/auth/login", {"email": email, "password": PW})
    assert r.status == 200, r
    return r.json()["access_token"]


class Keys(keeltest.unittest.TestCase):
    def setUp(self):
        self.data = tempfile.mkdtemp(prefix="keel-keys-")

    def tearDown(self):
        shutil.rmtree(self.data, ignore_errors=True)

    def env(self, **kw):
        e = dict(FAST, KEEL_DATA_DIR=self.data)
        e.update(kw)
        return e

    def test_eddsa(self):
        with serving(self.env(KEEL_JWT_SECRET=SECRET_A, KEEL_JWT_ALGORITHM="EdDSA")) as srv:
            tok = login(srv, "ed@example.com", register=True)
            h = header_of(tok)
            self.assertEqual(h["alg"], "EdDSA")
            self.assertEqual(len(h["kid"]), 16)
            self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=tok).status, 200)
            # An HS256 token with the same secret is not what this server issues.
            with serving(self.env(KEEL_JWT_SECRET=SECRET_A)) as hs:
                hs_tok = login(hs, "ed@example.com")
            self.assertEqual(header_of(hs_tok)["alg"], "HS256")
            self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=hs_tok).status, 401)

    def test_rotation(self):
        with serving(self.env(KEEL_JWT_SECRET=SECRET_A)) as srv:
            old = login(srv, "rot@example.com", register=True)
        kid_a = header_of(old)["kid"]
        self.assertEqual(kid_a, hashlib.sha256(SECRET_A.encode()).hexdigest()[:16])
        # B signs, A still verifies.
        with serving(self.env(KEEL_JWT_SECRET=SECRET_B, KEEL_JWT_PREVIOUS_SECRET=SECRET_A)) as srv:
            self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=old).status, 200)
            new = login(srv, "rot@example.com")
            self.assertEqual(header_of(new)["kid"], hashlib.sha256(SECRET_B.encode()).hexdigest()[:16])
            self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=new).status, 200)
            self.assertNotIn(SECRET_A, srv.all_output())
            self.assertNotIn(SECRET_B, srv.all_output())
        # A dropped: its tokens stop verifying, B's keep working.
        with serving(self.env(KEEL_JWT_SECRET=SECRET_B)) as srv:
            self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=old).status, 401)
            self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=new).status, 200)

    def test_short_previous_secret_refused_in_production(self):
        r = keeltest.run_cli(["serve"], env={"KEEL_ENV": "production", "KEEL_JWT_SECRET": SECRET_A,
                                             "KEEL_JWT_PREVIOUS_SECRET": "short"})
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("KEEL_JWT_PREVIOUS_SECRET", r.stderr)
        self.assertNotIn("short", r.stderr.replace("KEEL_JWT_PREVIOUS_SECRET", ""))


if __name__ == "__main__":
    keeltest.main()
