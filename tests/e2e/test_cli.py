"""The `keel` command line: help, version, exit codes (SPEC section 1),
configuration validation (SPEC section 5), the redacted config log line and
`keel healthcheck`."""

import json
import os
import re
import tempfile
import unittest

import keeltest
from keeltest import run_cli, Server, free_port

SECRET = "e2e-SUPER-secret-value-0123456789-abcdefghijklmnop"  # 50 bytes


def problem_lines(stderr):
    return [l for l in stderr.splitlines() if l.strip()]


class HelpAndVersion(unittest.TestCase):
    def test_help(self):
        p = run_cli(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("serve", p.stdout + p.stderr)

    def test_serve_help(self):
        # must print help and exit, not start a server
        p = run_cli(["serve", "--help"], timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue((p.stdout + p.stderr).strip())
        self.assertNotIn('"msg":"listening"', p.stdout.replace(" ", ""))

    def test_version(self):
        p = run_cli(["version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"\d+\.\d+\.\d+")

    def test_unknown_subcommand(self):
        p = run_cli(["frobnicate"])
        self.assertEqual(p.returncode, 64, p.stdout + p.stderr)
        self.assertTrue(p.stderr.strip(), "a usage error says why on stderr")

    def test_unknown_flag(self):
        p = run_cli(["--no-such-flag"])
        self.assertEqual(p.returncode, 64, p.stdout + p.stderr)
        p = run_cli(["serve", "--no-such-flag"], timeout=10)
        self.assertEqual(p.returncode, 64, p.stdout + p.stderr)


class BadConfig(unittest.TestCase):
    def run_serve(self, env):
        env = dict({"KEEL_LISTEN": "127.0.0.1:0", "KEEL_DEBUG_ROUTES": None}, **env)
        return run_cli(["serve"], env=env, timeout=10)

    def test_bad_threads(self):
        p = self.run_serve({"KEEL_THREADS": "abc"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        lines = problem_lines(p.stderr)
        self.assertEqual(len(lines), 1, "one stderr line per problem: %r" % lines)
        self.assertIn("KEEL_THREADS", lines[0])

    def test_bad_listen(self):
        p = self.run_serve({"KEEL_LISTEN": "nope"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        lines = problem_lines(p.stderr)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("KEEL_LISTEN", lines[0])

    def test_two_problems_two_lines(self):
        p = self.run_serve({"KEEL_THREADS": "abc", "KEEL_LISTEN": "nope"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        lines = problem_lines(p.stderr)
        self.assertEqual(len(lines), 2, lines)
        joined = "\n".join(lines)
        self.assertIn("KEEL_THREADS", joined)
        self.assertIn("KEEL_LISTEN", joined)
        self.assertFalse(all("KEEL_THREADS" in l for l in lines), lines)

    def test_bad_duration_and_size(self):
        for var, val in (("KEEL_HEADER_TIMEOUT", "soon"), ("KEEL_MAX_BODY_BYTES", "-5"),
                         ("KEEL_LOG_LEVEL", "chatty"), ("KEEL_ENV", "moon")):
            with self.subTest(var=var):
                p = self.run_serve({var: val})
                self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
                lines = problem_lines(p.stderr)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(var, lines[0])

    def test_production_requires_jwt_secret(self):
        p = self.run_serve({"KEEL_ENV": "production"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertIn("KEEL_JWT_SECRET", p.stderr)

    def test_production_short_jwt_secret(self):
        p = self.run_serve({"KEEL_ENV": "production", "KEEL_JWT_SECRET": "short-secret"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertNotIn("short-secret", p.stdout + p.stderr, "secret echoed in an error")

    def test_production_refuses_debug_routes(self):
        p = self.run_serve({"KEEL_ENV": "production", "KEEL_JWT_SECRET": SECRET,
                            "KEEL_DEBUG_ROUTES": "1"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertIn("KEEL_DEBUG_ROUTES", p.stderr)

    def test_production_wildcard_cors(self):
        p = self.run_serve({"KEEL_ENV": "production", "KEEL_JWT_SECRET": SECRET,
                            "KEEL_CORS_ORIGINS": "*"})
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertIn("KEEL_CORS_ORIGINS", p.stderr)


class ConfigLog(unittest.TestCase):
    def test_config_line_redacts_secret(self):
        with Server(env={"KEEL_JWT_SECRET": SECRET}) as srv:
            cfg = srv.wait_log(lambda r: r.get("msg") == "config", timeout=2)
            self.assertIsNotNone(cfg, "no {\"msg\":\"config\"} log line")
            text = json.dumps(cfg)
            self.assertIn("127.0.0.1", text, "config line should carry the effective listen address")
            r = srv.request("GET", "/health/live", {"Authorization": "Bearer " + SECRET})
            self.assertEqual(r.status, 200)
            self.assertNotIn(SECRET, r.body.decode("latin-1"))
        self.assertNotIn(SECRET, srv.all_output(), "the JWT secret leaked into the output")
        self.assertNotIn(SECRET[:24], srv.all_output())

    def test_secret_from_file_in_production(self):
        with tempfile.NamedTemporaryFile("w", suffix=".secret", delete=False) as f:
            f.write(SECRET + "\n")
            path = f.name
        try:
            # production refuses pending migrations unless told to apply them
            with Server(env={"KEEL_ENV": "production", "KEEL_JWT_SECRET_FILE": path,
                             "KEEL_DEBUG_ROUTES": None}, debug_routes=False,
                        args=("--migrate",)) as srv:
                self.assertEqual(srv.request("GET", "/health/live").status, 200)
            self.assertNotIn(SECRET, srv.all_output())
        finally:
            os.unlink(path)

    def test_config_from_env_applies(self):
        # KEEL_MAX_URI_BYTES from the environment reaches the server
        with Server(env={"KEEL_MAX_URI_BYTES": "200"}) as srv:
            self.assertEqual(srv.request("GET", "/health/live?x=" + "a" * 100).status, 200)
            self.assertEqual(srv.request("GET", "/health/live?x=" + "a" * 300).status, 414)


class Precedence(unittest.TestCase):
    """flags > environment > config file > defaults (SPEC section 5), seen
    through KEEL_MAX_URI_BYTES: a URI over the effective limit gets 414."""

    def setUp(self):
        fd, self.conf = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write("# e2e\n[keel]\nmax_uri_bytes = 100\n")
        self.addCleanup(os.unlink, self.conf)

    def uri_status(self, srv, n):
        return srv.request("GET", "/health/live?" + "a" * (n - len("/health/live?"))).status

    def test_file_over_default(self):
        with Server(args=["--config", self.conf]) as srv:
            self.assertEqual(self.uri_status(srv, 90), 200)
            self.assertEqual(self.uri_status(srv, 150), 414)

    def test_env_over_file(self):
        with Server(args=["--config", self.conf], env={"KEEL_MAX_URI_BYTES": "200"}) as srv:
            self.assertEqual(self.uri_status(srv, 150), 200)
            self.assertEqual(self.uri_status(srv, 250), 414)

    def test_flag_over_env(self):
        with Server(args=["--config", self.conf, "--max-uri-bytes", "300"],
                    env={"KEEL_MAX_URI_BYTES": "200"}) as srv:
            self.assertEqual(self.uri_status(srv, 250), 200)
            self.assertEqual(self.uri_status(srv, 350), 414)

    def test_bad_file_value(self):
        with open(self.conf, "w") as f:
            f.write("[keel]\nmax_uri_bytes = lots\n")
        p = run_cli(["serve", "--config", self.conf], env={"KEEL_LISTEN": "127.0.0.1:0"}, timeout=10)
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)
        self.assertEqual(len(problem_lines(p.stderr)), 1, p.stderr)

    def test_missing_config_file(self):
        p = run_cli(["serve", "--config", self.conf + ".missing"], env={"KEEL_LISTEN": "127.0.0.1:0"},
                    timeout=10)
        self.assertEqual(p.returncode, 78, p.stdout + p.stderr)


class Healthcheck(unittest.TestCase):
    def test_healthcheck_ready(self):
        with Server() as srv:
            srv.wait_ready()
            p = run_cli(["healthcheck"], env={"KEEL_LISTEN": srv.addr}, timeout=10)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_healthcheck_nothing_listening(self):
        port = free_port()
        p = run_cli(["healthcheck"], env={"KEEL_LISTEN": "127.0.0.1:%d" % port}, timeout=10)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)


if __name__ == "__main__":
    keeltest.main()
