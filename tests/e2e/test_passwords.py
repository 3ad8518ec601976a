"""test_passwords - Argon2id cost, rehash on login, the hash queue, and the
development JWT key (issue 4, "Users and auth endpoints"; SPEC section 3).

- A hash made with old parameters is replaced by one with the configured
  parameters at the next successful login; a failed login changes nothing.
- With one loop and KEEL_PASSWORD_CONCURRENCY=1, many logins at once all
  succeed (they queue) while /health/live keeps answering.
- Production refuses an Argon2 cost below OWASP's minimum.
- Without KEEL_JWT_SECRET a development key is created 0600 in the data
  dir and reused: a token survives a restart.
"""
import contextlib
import os
import shutil
import sqlite3
import stat
import tempfile
import threading

import keeltest
from keeltest import Server, json_request

PW = "correct horse battery staple"
FAST = {"KEEL_PASSWORD_MEMORY": "1024", "KEEL_PASSWORD_ITERATIONS": "1"}


@contextlib.contextmanager
def serving(env):
    srv = Server(env=env)
    with srv:
        yield srv


def call(srv, method, path, body=None, token=None, timeout=30):
    headers = {"Authorization": "Bearer " + token} if token else None
    with srv.connect(timeout=timeout) as c:
        if body is None:
            c.send(keeltest.build_request(method, path, headers))
        else:
            c.send(json_request(method, path, body, headers=headers))
        return c.read_final_response(method=method, timeout=timeout)


def register_and_login(srv, email):
    r = call(srv, "POST", "/auth/register", {"email": email, "password": PW, "name": "N"})
    assert r.status == 201, r
    r = call(srv, "POST", "/auth/login", {"email": email, "password": PW})
    assert r.status == 200, r
    return r.json()


def stored_hash(data_dir, email):
    db = sqlite3.connect(os.path.join(data_dir, "keel.db"))
    try:
        return db.execute("SELECT password_hash FROM users WHERE email = ?", (email,)).fetchone()[0]
    finally:
        db.close()


class Rehash(keeltest.unittest.TestCase):
    def test_login_rehashes_with_new_parameters(self):
        data = tempfile.mkdtemp(prefix="keel-pw-")
        try:
            env = dict(FAST, KEEL_DATA_DIR=data)
            with serving(env) as srv:
                register_and_login(srv, "re@example.com")
            old = stored_hash(data, "re@example.com")
            self.assertIn("$argon2id$", old)
            self.assertIn("m=1024,t=1", old)

            env["KEEL_PASSWORD_MEMORY"] = "2048"
            env["KEEL_PASSWORD_ITERATIONS"] = "2"
            with serving(env) as srv:
                r = call(srv, "POST", "/auth/login", {"email": "re@example.com", "password": "wrong password!"})
                self.assertEqual(r.status, 401)
                self.assertEqual(stored_hash(data, "re@example.com"), old)  # a failure changes nothing
                r = call(srv, "POST", "/auth/login", {"email": "re@example.com", "password": PW})
                self.assertEqual(r.status, 200)
                new = stored_hash(data, "re@example.com")
                self.assertIn("m=2048,t=2", new)
                self.assertNotEqual(new, old)
                # The new hash verifies: log in again.
                r = call(srv, "POST", "/auth/login", {"email": "re@example.com", "password": PW})
                self.assertEqual(r.status, 200)
                self.assertEqual(stored_hash(data, "re@example.com"), new)  # no rehash needed now
                self.assertNotIn(PW, srv.all_output())
        finally:
            shutil.rmtree(data, ignore_errors=True)


class HashQueue(keeltest.ServerCase):
    THREADS = 1
    ENV = dict(FAST, KEEL_PASSWORD_CONCURRENCY="1")

    def test_logins_queue_and_probes_still_answer(self):
        register_and_login(self.srv, "q@example.com")
        results, lock = [], threading.Lock()

        def login():
            r = call(self.srv, "POST", "/auth/login", {"email": "q@example.com", "password": PW}, timeout=60)
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=login) for _ in range(24)]
        for t in threads:
            t.start()
        probes = [self.get("/health/live").status for _ in range(20)]
        for t in threads:
            t.join(90)
        self.assertEqual(probes, [200] * 20)
        self.assertEqual(sorted(results), [200] * 24)


class Production(keeltest.unittest.TestCase):
    def test_weak_argon2_refused_in_production(self):
        env = {"KEEL_ENV": "production", "KEEL_JWT_SECRET": "s" * 40,
               "KEEL_PASSWORD_MEMORY": "1024"}
        r = keeltest.run_cli(["serve"], env=env)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("KEEL_PASSWORD_MEMORY", r.stderr)
        env = {"KEEL_ENV": "production", "KEEL_JWT_SECRET": "s" * 40,
               "KEEL_PASSWORD_ITERATIONS": "1"}
        r = keeltest.run_cli(["serve"], env=env)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("KEEL_PASSWORD_ITERATIONS", r.stderr)

    def test_bad_trusted_proxies_refused(self):
        r = keeltest.run_cli(["serve"], env={"KEEL_TRUSTED_PROXIES": "10.0.0.1/8"})
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("KEEL_TRUSTED_PROXIES", r.stderr)


class DevKey(keeltest.unittest.TestCase):
    def test_generated_key_is_private_and_survives_restart(self):
        data = tempfile.mkdtemp(prefix="keel-key-")
        try:
            env = dict(FAST, KEEL_DATA_DIR=data)
            with serving(env) as srv:
                tok = register_and_login(srv, "k@example.com")["access_token"]
                self.assertEqual(call(srv, "GET", "/api/v1/users/me", token=tok).status, 200)
            path = os.path.join(data, "jwt.key")
            st = os.stat(path)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
            self.assertEqual(st.st_size, 32)
            with open(path, "rb") as f:
                key = f.read()
            with serving(env) as srv:
                r = call(srv, "GET", "/api/v1/users/me", token=tok)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["email"], "k@example.com")
                self.assertNotIn(key.hex(), srv.all_output())
            # Another key (another data dir) does not accept it.
            other = tempfile.mkdtemp(prefix="keel-key2-")
            try:
                with serving(dict(FAST, KEEL_DATA_DIR=other)) as srv:
                    r = call(srv, "GET", "/api/v1/users/me", token=tok)
                    self.assertEqual(r.status, 401)
            finally:
                shutil.rmtree(other, ignore_errors=True)
        finally:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    keeltest.main()
