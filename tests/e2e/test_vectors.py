"""Replays every `type == "request"` fixture of llhttp's test suite
(../shared/vectors/llhttp_cases.jsonl, see its README) against the real
server, whole and split into chunks of every size from 1 to its length.

Rules (README): an `ok` case is answered (a fixture without Host may get
400 and the close); an `error` case never has its bad message served: at
most `messages_completed` earlier messages are answered, then an error
status for the bad message (or just the close), and the connection closes.
Splitting the input must not change the outcome.

For ok cases the client half-closes after sending (SHUT_WR) so that the
server's close marks the end of the exchange; error cases must be closed by
the server on its own.
"""

import concurrent.futures
import json
import os
import re
import select
import socket
import time
import unittest

import keeltest
from keeltest import ServerCase, Conn, ConnectionClosed, ProtocolError

VECTORS = os.environ.get("KEEL_VECTORS") or os.path.abspath(
    os.path.join(keeltest.REPO_ROOT, "..", "shared", "vectors", "llhttp_cases.jsonl"))

WORKERS = 24
PAUSE = 0.0003          # between chunks, so the server reads them one by one
CLOSE_WAIT = 2.0        # how long to wait for the server's close (its own timeouts are 10 s)
CASE_SLOW = 3           # runs of one case that hit CLOSE_WAIT before its other splits are skipped
MAX_SLOW = 300          # the same, over a whole pass


def load_cases():
    cases = []
    with open(VECTORS) as f:
        for line in f:
            c = json.loads(line)
            if c.get("type") == "request":
                c["data"] = bytes.fromhex(c["input_hex"])
                if (c.get("meta") or {}).get("skipBody"):
                    # llhttp's harness skipped the body (on_headers_complete
                    # returned 1); a server reads it, so the next "message" is
                    # body bytes: the input is one incomplete message
                    c["messages_completed"] = 0
                    c["no_host_variant"] = True
                cases.append(c)
    return cases


def case_label(c):
    return "%s:%s %r" % (os.path.basename(c["file"]), c["line"], c["name"])


REQ_LINE_RE = re.compile(rb"(?:^|\n)(?:\r\n)*([A-Z][A-Z-]*) [^ \r\n]+ HTTP/1\.1\r\n")


def add_host(data):
    """Inserts a Host header after every HTTP/1.1 request line, or returns
    None when the fixture cannot be safely edited."""
    if re.search(rb"(?i)\nhost\s*:", data):
        return None
    out = REQ_LINE_RE.sub(lambda m: m.group(0) + b"Host: vectors.test\r\n", data)
    return out if out != data else None


def methods_of(data):
    return [m.decode() for m in re.findall(rb"(?:^|\n)(?:\r\n)*([A-Z][A-Z-]*) \S+ [A-Z]+/\d", data)]


class _BufReader(Conn):
    """Conn's response parser over bytes already received."""

    def __init__(self, data):
        self.buf = bytearray(data)
        self.eof = True
        self.reset = False
        self.timeout = 1


class Result:
    def __init__(self):
        self.statuses = []
        self.closes = []       # per response: announced close
        self.leftover = b""    # bytes that are not a complete response
        self.closed = False
        self.reset = False
        self.error = None      # protocol error in the server's output
        self.elapsed = 0.0

    def sig(self):
        return tuple(self.statuses)

    def __repr__(self):
        return "statuses=%r closed=%s reset=%s leftover=%r%s" % (
            self.statuses, self.closed, self.reset, self.leftover[:80],
            " error=%s" % self.error if self.error else "")


def replay(host, port, data, chunk, half_close):
    res = Result()
    t0 = time.monotonic()
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(5)
    s.connect((host, port))
    got = bytearray()
    peer_closed = False
    try:
        for i in range(0, len(data), chunk):
            try:
                s.sendall(data[i:i + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
            # collect whatever the server already said (avoids losing it to a reset)
            while select.select([s], [], [], 0)[0]:
                try:
                    b = s.recv(65536)
                except ConnectionResetError:
                    res.reset = peer_closed = True
                    break
                if not b:
                    peer_closed = True
                    break
                got += b
            if peer_closed:
                break
            if chunk < len(data):
                time.sleep(PAUSE)
        if half_close and not peer_closed:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        deadline = time.monotonic() + CLOSE_WAIT
        while not peer_closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                res.reset = peer_closed = True
                break
            if not b:
                peer_closed = True
                break
            got += b
    finally:
        s.close()
    res.closed = peer_closed
    res.elapsed = time.monotonic() - t0
    methods = methods_of(data)
    rd = _BufReader(bytes(got))
    i = 0
    while rd.buf:
        m = methods[i] if i < len(methods) else "GET"
        try:
            r = rd.read_response(method=m)
        except ConnectionClosed as e:
            res.leftover = e.partial
            break
        except ProtocolError as e:
            res.error = str(e)
            res.leftover = bytes(rd.buf)
            break
        if r.status >= 200:
            res.statuses.append(r.status)
            res.closes.append(r.closes)
            i += 1
    return res


def check(case, res):
    """Returns None when res obeys the README rules for case, else why not."""
    mc = case["messages_completed"]
    st = res.statuses
    if res.error:
        return "malformed response: %s" % res.error
    if res.leftover:
        return "incomplete response bytes %r" % res.leftover[:80]
    for i, cl in enumerate(res.closes[:-1]):
        if cl:
            return "response %d announced close but more responses followed" % (i + 1)
    if case["outcome"] == "ok":
        if mc == 0:
            if len(st) > 1 or (st and st[0] < 400):
                return "incomplete message: expected no answer or one error, got %r" % st
        else:
            if not st:
                return "ok case with %d message(s) got no response" % mc
            if len(st) > mc + 1:
                return "more responses than messages (%d > %d)" % (len(st), mc)
            if len(st) == mc + 1 and st[-1] < 400:
                return "a success response for an extra message"
            if len(st) < mc and not res.closes[len(st) - 1]:
                return "%d of %d messages answered, without announcing close" % (len(st), mc)
        if not res.closed:
            return "connection not closed within %.0fs of the client's EOF" % CLOSE_WAIT
        return None
    # error case
    if len(st) > mc + 1:
        return "the bad message (or bytes after it) was served: %d responses, %d messages before the error" % (
            len(st), mc)
    if len(st) == mc + 1:
        last = st[-1]
        if not (400 <= last < 500 or last in (501, 505)):
            return "the bad message got %d" % last
    if not res.closed:
        if len(st) < mc + 1:
            return "no error response and the connection stays open (the server is waiting for more)"
        return "connection not closed within %.0fs after the error response" % CLOSE_WAIT
    return None


def vectors_missing():
    return not os.path.exists(VECTORS)


@unittest.skipIf(vectors_missing(), "llhttp vectors not found at %s" % VECTORS)
class Vectors(ServerCase):
    THREADS = 2
    # long timeouts: every close seen within CLOSE_WAIT is the server's own decision
    ENV = {"KEEL_KEEPALIVE_TIMEOUT": "10", "KEEL_HEADER_TIMEOUT": "10", "KEEL_BODY_TIMEOUT": "10",
           "KEEL_MAX_CONNECTIONS": "10000"}
    whole = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cases = load_cases()

    def run_all(self, jobs):
        """jobs: [(case, data, chunk)] -> [(case, chunk, Result)]; a case
        whose runs keep hanging has its remaining runs skipped (Result None)."""
        slow = {}
        total_slow = [0]

        def job(case, data, chunk):
            if slow.get(id(case), 0) >= CASE_SLOW or total_slow[0] >= MAX_SLOW:
                return None
            res = replay(self.srv.host, self.srv.port, data, chunk, case["outcome"] == "ok")
            if not res.closed:
                slow[id(case)] = slow.get(id(case), 0) + 1
                total_slow[0] += 1
            return res

        out = []
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
            futs = {ex.submit(job, case, data, chunk): (case, chunk) for case, data, chunk in jobs}
            for f in concurrent.futures.as_completed(futs):
                case, chunk = futs[f]
                out.append((case, chunk, f.result()))
        if total_slow[0] >= MAX_SLOW:
            self.fail("%d replays were not closed by the server within %.0fs; gave up" % (
                total_slow[0], CLOSE_WAIT))
        return out

    def whole_results(self):
        if Vectors.whole is None:
            Vectors.whole = {id(c): r for c, _, r in self.run_all([(c, c["data"], len(c["data"]))
                                                                   for c in self.cases])}
        return Vectors.whole

    def test_1_count(self):
        self.assertGreaterEqual(len(self.cases), 100, "suspiciously few request fixtures")

    def test_2_whole(self):
        results = self.whole_results()
        problems = []
        for c in self.cases:
            if results[id(c)] is None:
                problems.append("%s: not run" % case_label(c))
                continue
            why = check(c, results[id(c)])
            if why:
                problems.append("%s [%s mc=%d]: %s; %r" % (case_label(c), c["outcome"],
                                                           c["messages_completed"], why, results[id(c)]))
        self.assertTrue(self.srv.alive(), "server died")
        if problems:
            self.fail("%d of %d fixtures broke the rules:\n  %s" % (len(problems), len(self.cases),
                                                                   "\n  ".join(problems)))

    def test_3_split_every_size(self):
        whole = self.whole_results()
        jobs = []
        for c in self.cases:
            for k in range(1, len(c["data"]) + 1):
                jobs.append((c, c["data"], k))
        t0 = time.monotonic()
        results = self.run_all(jobs)
        elapsed = time.monotonic() - t0
        per_case = {}
        skipped = 0
        for c, k, res in results:
            if res is None:
                skipped += 1
                per_case.setdefault(id(c), (c, []))[1].append((k, "skipped after %d hanging runs" % CASE_SLOW, None))
                continue
            why = check(c, res)
            w = whole[id(c)]
            if not why and w is not None and res.sig() != w.sig() and not (res.reset or w.reset):
                why = "outcome changed by splitting: whole %r, split %r" % (w.statuses, res.statuses)
            if why:
                per_case.setdefault(id(c), (c, []))[1].append((k, why, res))
        self.assertTrue(self.srv.alive(), "server died")
        print("split pass: %d replays in %.1fs (%d skipped)" % (len(jobs), elapsed, skipped))
        if per_case:
            lines = []
            for c, fails in per_case.values():
                fails.sort(key=lambda x: (x[2] is None, x[0]))
                k, why, res = fails[0]
                lines.append("%s [%s]: %d of %d chunk sizes fail, e.g. %d-byte chunks: %s; %r" % (
                    case_label(c), c["outcome"], len(fails), len(c["data"]), k, why, res))
            self.fail("%d fixtures change outcome or break the rules when split:\n  %s" % (
                len(per_case), "\n  ".join(lines)))

    def test_4_ok_cases_with_host(self):
        jobs = []
        for c in self.cases:
            if c["outcome"] != "ok" or c["messages_completed"] == 0 or c.get("no_host_variant"):
                continue
            data = add_host(c["data"])
            if data is None:
                continue
            for k in sorted({len(data), 1, 2, 3, 5, 8, 13, len(data) // 2, len(data) - 1} - {0}):
                jobs.append((c, data, k))
        results = self.run_all(jobs)
        problems = []
        statuses = {}
        for c, k, res in results:
            if res is None:
                problems.append("%s chunk %d: skipped after hanging runs" % (case_label(c), k))
                continue
            why = check(c, res)
            if not why and len(res.statuses) != c["messages_completed"] and not any(res.closes):
                why = "%d responses for %d messages" % (len(res.statuses), c["messages_completed"])
            if why:
                problems.append("%s chunk %d: %s; %r" % (case_label(c), k, why, res))
            statuses.setdefault(case_label(c), set()).add(res.sig())
        self.assertGreater(len({id(c) for c, _, _ in jobs}), 20)
        print("ok fixtures with Host added, statuses:")
        for label, sigs in sorted(statuses.items()):
            print("   %-70s %s" % (label[:70], " | ".join(str(list(s)) for s in sorted(sigs))))
        if problems:
            self.fail("%d problems:\n  %s" % (len(problems), "\n  ".join(problems[:40])))


if __name__ == "__main__":
    keeltest.main()
