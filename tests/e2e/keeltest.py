"""keeltest - the end-to-end harness for Keel.

Starts the real `keel serve` binary on an ephemeral loopback port and speaks
raw HTTP/1.1 to it over plain sockets. Python 3 standard library only.

    with keeltest.Server(env={"KEEL_THREADS": "1"}) as srv:
        r = srv.request("GET", "/health/live")
        assert r.status == 200

Pieces:
  Server      starts `$KEEL_BIN serve`, waits for the "listening" log line
              (which carries the real port), drains stdout/stderr in threads
              (the lines stay available for assertions), stops with SIGTERM.
  Conn        one raw TCP connection with a read buffer: send bytes, read
              one complete response (Content-Length, chunked, HEAD, 1xx,
              204/304, close-delimited), wait for EOF.
  build_request, run_cli, free_port, main (the per-file entry point).

Every socket operation has a timeout: nothing in the suite can hang.
"""

import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
KEEL_BIN = os.environ.get("KEEL_BIN") or os.path.join(REPO_ROOT, "build-dev", "src", "keel")

DEFAULT_TIMEOUT = 5.0

UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STATUS_LINE_RE = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: (.*))?$")


# --------------------------------------------------------------------------
# process helpers

def base_env(extra=None):
    """The environment for a keel process: ours minus every KEEL_* / OTEL_*
    variable (so the developer's shell cannot change a test), plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KEEL_") and not k.startswith("OTEL_")}
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def run_cli(args, env=None, timeout=15, cwd=None, input=None):
    """Runs `keel ARGS...` to completion; returns CompletedProcess (text)."""
    tmp = None
    if cwd is None:
        tmp = tempfile.mkdtemp(prefix="keel-cli-")
        cwd = tmp
    try:
        full_env = base_env({"KEEL_DATA_DIR": os.path.join(cwd, "var")})
        if env:
            full_env.update({k: str(v) for k, v in env.items() if v is not None})
        return subprocess.run([KEEL_BIN] + list(args), env=full_env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout,
                              input=input)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    """A loopback port nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sanitizer_report(text):
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ThreadSanitizer", "Segmentation fault"):
        if marker in text:
            return marker
    return None


class ServerError(Exception):
    pass


class Server:
    """One `keel serve` process on 127.0.0.1:<ephemeral>.

    env: overrides on top of the defaults below (None removes a variable).
    The defaults enable the debug routes and use KEEL_THREADS=2."""

    def __init__(self, env=None, threads=2, debug_routes=True, args=(),
                 ready_timeout=15.0):
        self.tmpdir = tempfile.mkdtemp(prefix="keel-e2e-")
        defaults = {
            "KEEL_LISTEN": "127.0.0.1:0",
            "KEEL_DATA_DIR": os.path.join(self.tmpdir, "var"),
            "KEEL_THREADS": str(threads),
            "KEEL_LOG_LEVEL": "info",
            # The suites send thousands of requests from 127.0.0.1: no
            # throttling unless a test sets its own limits.
            "KEEL_RATE_LIMIT_IP": "1000000000/s",
            "KEEL_RATE_LIMIT_AUTH": "1000000000/s",
            "KEEL_RATE_LIMIT_USER": "1000000000/s",
        }
        if debug_routes:
            defaults["KEEL_DEBUG_ROUTES"] = "1"
        if env:
            defaults.update(env)
        self.env = base_env(defaults)
        self.args = list(args)
        self.ready_timeout = ready_timeout
        self.proc = None
        self.host = None
        self.port = None
        self.lines = []          # raw stdout lines (str, no newline)
        self.err_lines = []      # raw stderr lines
        self._cond = threading.Condition()
        self._threads = []
        self.returncode = None

    # -- lifecycle --------------------------------------------------------
    def start(self):
        if not os.path.exists(KEEL_BIN):
            raise ServerError("KEEL_BIN %s does not exist (build first: meson compile -C build-dev)" % KEEL_BIN)
        self.proc = subprocess.Popen([KEEL_BIN, "serve"] + self.args, env=self.env,
                                     cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, sink in ((self.proc.stdout, self.lines), (self.proc.stderr, self.err_lines)):
            t = threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + self.ready_timeout
        with self._cond:
            while True:
                rec = self._find_listening()
                if rec is not None:
                    break
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                    raise ServerError("keel serve exited with %s before listening\nstdout:\n%s\nstderr:\n%s"
                                      % (self.proc.returncode, "\n".join(self.lines[-30:]),
                                         "\n".join(self.err_lines[-30:])))
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise ServerError("no {\"msg\":\"listening\"} line within %.0fs\nstdout:\n%s\nstderr:\n%s"
                                      % (self.ready_timeout, "\n".join(self.lines[-30:]),
                                         "\n".join(self.err_lines[-30:])))
                self._cond.wait(min(left, 0.1))
        self.host = rec.get("host") or "127.0.0.1"
        if self.host in ("0.0.0.0", "::", ""):
            self.host = "127.0.0.1"
        self.port = int(rec["port"])
        return self

    def _find_listening(self):
        for line in self.lines:
            rec = parse_json_line(line)
            if rec and rec.get("msg") == "listening" and "port" in rec:
                return rec
        return None

    def _drain(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._threads:
            t.join(timeout=5)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends sig and waits; returns the exit code (kills and raises when
        the process does not exit in time)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            raise ServerError("keel serve did not exit within %.0fs of %s" % (timeout, sig))
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def stop_and_check(self, testcase=None, timeout=15.0):
        """stop(), then assert exit code 0 and no sanitizer report."""
        try:
            rc = self.stop(timeout=timeout)
            report = sanitizer_report("\n".join(self.err_lines))
            msg = None
            if report:
                msg = "sanitizer report in stderr (%s):\n%s" % (report, "\n".join(self.err_lines[-60:]))
            elif rc != 0:
                msg = "keel serve exited with %r after SIGTERM (expected 0)\nstderr tail:\n%s" % (
                    rc, "\n".join(self.err_lines[-20:]))
            if msg:
                if testcase is not None:
                    testcase.fail(msg)
                raise AssertionError(msg)
        finally:
            self.cleanup()

    def __enter__(self):
        try:
            return self.start()
        except Exception:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop_and_check()
        else:
            self.cleanup()
        return False

    # -- logs -------------------------------------------------------------
    def logs(self):
        """Every stdout line that parses as a JSON object."""
        with self._cond:
            lines = list(self.lines)
        out = []
        for line in lines:
            rec = parse_json_line(line)
            if rec is not None:
                out.append(rec)
        return out

    def all_output(self):
        with self._cond:
            return "\n".join(self.lines) + "\n" + "\n".join(self.err_lines)

    def wait_log(self, pred, timeout=5.0):
        """Waits until a JSON log record satisfies pred; returns it or None."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.lines):
                    rec = parse_json_line(self.lines[seen])
                    seen += 1
                    if rec is not None and pred(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))

    def request_logs(self, request_id=None):
        recs = [r for r in self.logs() if r.get("msg") == "request"]
        if request_id is not None:
            recs = [r for r in recs if r.get("request_id") == request_id]
        return recs

    # -- process ----------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -- HTTP -------------------------------------------------------------
    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def connect(self, timeout=DEFAULT_TIMEOUT, rcvbuf=None, nodelay=True):
        return Conn(self.host, self.port, timeout=timeout, rcvbuf=rcvbuf, nodelay=nodelay)

    def request(self, method, path, headers=None, body=None, timeout=DEFAULT_TIMEOUT,
                version="1.1", host=True):
        """One request on a fresh connection; returns the final Response
        (interim 1xx responses are skipped)."""
        with self.connect(timeout=timeout) as c:
            c.send(build_request(method, path, headers, body, version=version, host=host))
            return c.read_final_response(method=method, timeout=timeout)

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.request("GET", "/health/ready", timeout=2)
                if last.status == 200:
                    return last
            except (OSError, ConnectionClosed):
                pass
            time.sleep(0.05)
        raise AssertionError("/health/ready never answered 200 (last: %r)" % (last,))


def parse_json_line(line):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_state(local_port, remote_port):
    """The kernel's state of the loopback TCP socket local_port -> remote_port
    (from /proc/net/tcp), or None when there is none. Lets a test see that
    the server closed a connection without reading from it."""
    want_l = ":%04X" % local_port
    want_r = ":%04X" % remote_port
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1].endswith(want_l) and parts[2].endswith(want_r):
                    return TCP_STATES.get(parts[3], parts[3])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------
# requests and responses

def build_request(method, path, headers=None, body=None, version="1.1", host=True):
    """Serializes a request. headers: dict or list of (name, value); a
    Host header is added unless present or host=False; Content-Length is
    added for a body unless Content-Length/Transfer-Encoding is given."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    headers = list(headers or [])
    names = {n.lower() for n, _ in headers}
    if host and "host" not in names:
        headers.insert(0, ("Host", "127.0.0.1"))
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    out = ["%s %s HTTP/%s\r\n" % (method, path, version)]
    for n, v in headers:
        out.append("%s: %s\r\n" % (n, v))
    out.append("\r\n")
    data = "".join(out).encode("latin-1")
    return data + (body or b"")


def json_request(method, path, obj, headers=None, **kw):
    hs = [("Content-Type", "application/json")] + list((headers or {}).items() if isinstance(headers, dict) else (headers or []))
    return build_request(method, path, hs, json.dumps(obj).encode(), **kw)


class ConnectionClosed(Exception):
    """EOF (or reset) while waiting for a response. partial holds the
    response bytes received before it (empty: nothing at all)."""

    def __init__(self, msg, partial=b"", reset=False):
        super().__init__(msg)
        self.partial = partial
        self.reset = reset


class ProtocolError(Exception):
    pass


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version          # "1.1"
        self.status = status            # int
        self.reason = reason
        self.headers = headers          # list of (name, value), names as sent
        self.body = body                # bytes (dechunked)
        self.raw_head = raw_head        # the status line and headers, bytes

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    def tokens(self, name):
        """The comma-separated tokens of every `name` header, lowercased."""
        out = []
        for v in self.header_all(name):
            out.extend(t.strip().lower() for t in v.split(",") if t.strip())
        return out

    @property
    def closes(self):
        """True when the connection closes after this response."""
        conn = self.tokens("connection")
        if "close" in conn:
            return True
        if self.version == "1.0":
            return "keep-alive" not in conn
        return False

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %s %s %r>" % (self.status, self.reason, self.body[:200])


class Conn:
    """A raw TCP connection with an input buffer."""

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT, rcvbuf=None, nodelay=True, sndbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data, timeout=None):
        self.sock.settimeout(timeout or self.timeout)
        self.sock.sendall(data)

    def try_send(self, data, timeout=None):
        """send() that reports a closed/reset peer as False instead of raising."""
        try:
            self.send(data, timeout)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False

    def send_slowly(self, data, chunk, pause):
        for i in range(0, len(data), chunk):
            if not self.try_send(data[i:i + chunk]):
                return False
            if pause:
                time.sleep(pause)
        return True

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # -- reading ----------------------------------------------------------
    def _fill(self, deadline):
        """Reads more bytes into buf. Returns False on EOF/reset; raises
        socket.timeout when the deadline passes."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_line(self, deadline, limit=65536):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)[:-2]
            if len(self.buf) > limit:
                raise ProtocolError("line too long")
            if not self._fill(deadline):
                raise ConnectionClosed("EOF inside a line", bytes(self.buf), self.reset)

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed("EOF inside a body (%d of %d bytes)" % (len(self.buf), n),
                                       bytes(self.buf), self.reset)
        return self._take(n)

    def read_response(self, method="GET", timeout=None, max_body=1 << 30):
        """Reads the next response (1xx included). Raises ConnectionClosed
        (partial = bytes received) on EOF, socket.timeout on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ProtocolError("response head too large")
            if not self._fill(deadline):
                raise ConnectionClosed("EOF before a complete response head", bytes(self.buf), self.reset)
        i = self.buf.find(b"\r\n\r\n")
        head = self._take(i + 4)
        lines = head[:-4].split(b"\r\n")
        m = STATUS_LINE_RE.match(lines[0])
        if not m:
            raise ProtocolError("bad status line %r" % lines[0][:200])
        version = "%s.%s" % (m.group(1).decode(), m.group(2).decode())
        status = int(m.group(3))
        reason = (m.group(4) or b"").decode("latin-1")
        headers = []
        for line in lines[1:]:
            if b"\n" in line or b"\r" in line:
                raise ProtocolError("bare CR/LF in response head %r" % line)
            if b":" not in line:
                raise ProtocolError("bad header line %r" % line)
            n, v = line.split(b":", 1)
            if n != n.strip() or not n:
                raise ProtocolError("bad header name %r" % n)
            headers.append((n.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", head)
        if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
            return resp
        te = resp.tokens("transfer-encoding")
        if te:
            if te[-1] != "chunked":
                raise ProtocolError("unsupported Transfer-Encoding %r" % te)
            resp.body = self._read_chunked(deadline)
            return resp
        cl = resp.header_all("content-length")
        if cl:
            if len(set(cl)) != 1 or not cl[0].isdigit():
                raise ProtocolError("bad Content-Length %r" % cl)
            n = int(cl[0])
            if n > max_body:
                raise ProtocolError("body too large for this helper: %d" % n)
            resp.body = self._read_exact(n, deadline)
            return resp
        # close-delimited
        while self._fill(deadline):
            pass
        resp.body = self._take(len(self.buf))
        return resp

    def _read_chunked(self, deadline):
        body = bytearray()
        while True:
            line = self._read_line(deadline)
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ProtocolError("bad chunk size %r" % line)
            if size == 0:
                while self._read_line(deadline) != b"":
                    pass
                return bytes(body)
            body += self._read_exact(size, deadline)
            if self._read_exact(2, deadline) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")

    def read_final_response(self, method="GET", timeout=None):
        """read_response, skipping interim 1xx responses."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            r = self.read_response(method=method, timeout=max(0.01, deadline - time.monotonic()))
            if r.status >= 200 or r.status == 101:
                return r

    def request(self, method, path, headers=None, body=None, timeout=None, **kw):
        self.send(build_request(method, path, headers, body, **kw))
        return self.read_final_response(method=method, timeout=timeout)

    def read_until_close(self, timeout=DEFAULT_TIMEOUT, limit=None):
        """Reads until EOF/reset. Returns (bytes, closed): closed is False when
        the timeout (or the byte limit) was reached first."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                if limit is not None and len(self.buf) >= limit:
                    return self._take(len(self.buf)), False
        except socket.timeout:
            return self._take(len(self.buf)), False
        return self._take(len(self.buf)), True

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """True when the peer closes within timeout with no further bytes.
        Raises AssertionError when bytes arrive instead."""
        data, closed = self.read_until_close(timeout)
        if data:
            raise AssertionError("expected EOF, got %d more bytes: %r" % (len(data), data[:300]))
        return closed

    def is_open(self, wait=0.2):
        """True if no EOF/reset arrives within `wait` (pending bytes are kept)."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return True
        try:
            self.sock.settimeout(0.5)
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = self.reset = True
            return False
        except socket.timeout:
            return True
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True


# --------------------------------------------------------------------------
# assertions shared by several files

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def check_problem(tc, resp, status, slug=None, instance=None):
    """Asserts resp is an RFC 9457 problem+json answer of `status`."""
    tc.assertEqual(resp.status, status, resp)
    ct = (resp.header("content-type") or "").split(";")[0].strip().lower()
    tc.assertEqual(ct, "application/problem+json", resp.headers)
    doc = resp.json()
    for key in ("type", "title", "status", "detail", "instance", "request_id"):
        tc.assertIn(key, doc, doc)
    tc.assertEqual(doc["status"], status, doc)
    tc.assertTrue(str(doc["type"]).startswith("/problems/"), doc)
    if slug is not None:
        tc.assertEqual(doc["type"], "/problems/" + slug, doc)
    if instance is not None:
        tc.assertEqual(doc["instance"], instance, doc)
    rid = resp.header("x-request-id")
    # a subTest: a mismatch is reported, and the rest of the test still runs
    with tc.subTest(check="problem request_id == X-Request-ID", status=status):
        tc.assertIsNotNone(rid, "no X-Request-ID header")
        tc.assertEqual(doc["request_id"], rid, "problem request_id must match X-Request-ID")
    return doc


def get_json(tc, resp):
    ct = (resp.header("content-type") or "").split(";")[0].strip().lower()
    tc.assertEqual(ct, "application/json", resp.headers)
    return resp.json()


# --------------------------------------------------------------------------
# a TestCase with one server per class

class ServerCase(unittest.TestCase):
    """Starts one server for the whole class (ENV, THREADS, DEBUG_ROUTES
    class attributes) and checks it exits 0 on SIGTERM at the end."""
    ENV = None
    THREADS = 2
    DEBUG_ROUTES = True
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(env=cls.ENV, threads=cls.THREADS, debug_routes=cls.DEBUG_ROUTES)
        try:
            cls.srv.start()
        except Exception:
            cls.srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            cls.srv.stop_and_check()

    def setUp(self):
        if not self.srv.alive():
            self.fail("keel serve is not running any more (exit %r)\nstdout tail:\n%s\nstderr tail:\n%s" % (
                self.srv.proc.returncode, "\n".join(l[:300] for l in self.srv.lines[-8:]),
                "\n".join(self.srv.err_lines[-30:])))

    def get(self, path, headers=None, **kw):
        return self.srv.request("GET", path, headers, **kw)


# --------------------------------------------------------------------------
# entry point

def main():
    """unittest.main for one file; prints a final summary line and exits
    non-zero on failure."""
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    if not os.path.exists(KEEL_BIN):
        print("e2e %s: KEEL_BIN %s not found (meson compile -C build-dev first)" % (name, KEEL_BIN))
        sys.exit(1)
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    ok = r.wasSuccessful()
    print("e2e %s: %s (%d run, %d failures, %d errors, %d skipped)" % (
        name, "PASS" if ok else "FAIL", r.testsRun, len(r.failures), len(r.errors),
        len(r.skipped)), flush=True)
    sys.exit(0 if ok else 1)
