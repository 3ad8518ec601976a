#!/usr/bin/env python3
"""Memory bench: RSS of a running Keel, idle and with N idle keep-alive connections.

usage: idle_conns.py --pid PID --port PORT [--count 10000] [--settle 2] OUT_JSON

Reads VmRSS of PID (the caller has already let it idle), opens COUNT connections to
127.0.0.1:PORT one after another, each sending one `GET /health/live HTTP/1.1` and reading its
response, then keeps them all open and idle, waits SETTLE seconds, reads VmRSS again, checks that
the server still answers a fresh request and that none of the COUNT connections was closed,
closes them all and reads VmRSS a last time. Writes the figures as JSON to OUT_JSON.
Python 3 standard library only.
"""

import argparse
import json
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import read_response  # noqa: E402

REQUEST = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"


def proc_status(pid):
    """VmRSS, RssAnon, RssFile, VmHWM, Threads of pid, in bytes (Threads as a count)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
            elif key == "Threads":
                out[key] = int(val)
    return out


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_one(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(REQUEST)
        status, _, _, _, _ = read_response(s)
        if status != 200:
            raise ConnectionError("status %d" % status)
    except BaseException:
        s.close()
        raise
    s.setblocking(False)
    return s


def count_open(socks):
    """How many sockets are still open: readable or hung up means the server closed or wrote."""
    p = select.poll()
    for s in socks:
        p.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLRDHUP)
    closed = len(p.poll(0))
    return len(socks) - closed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=60.0, help="for the whole open phase")
    ap.add_argument("out")
    a = ap.parse_args()

    res = {"count": a.count, "settle": a.settle, "failures": {}}
    res["client_nofile"] = raise_nofile(a.count + 64)
    idle = proc_status(a.pid)
    res.update(rss_idle=idle["VmRSS"], anon_idle=idle.get("RssAnon"),
               file_idle=idle.get("RssFile"), threads=idle.get("Threads"))

    socks = []
    t0 = time.monotonic()
    while len(socks) < a.count and time.monotonic() - t0 < a.timeout:
        try:
            socks.append(open_one(a.port, timeout=5.0))
        except (OSError, ValueError, IndexError) as e:
            name = type(e).__name__
            res["failures"][name] = res["failures"].get(name, 0) + 1
            if sum(res["failures"].values()) > 100:
                break
            time.sleep(0.01)
    res["open_seconds"] = time.monotonic() - t0
    res["opened"] = len(socks)

    time.sleep(a.settle)
    loaded = proc_status(a.pid)
    res.update(rss_loaded=loaded["VmRSS"], anon_loaded=loaded.get("RssAnon"),
               file_loaded=loaded.get("RssFile"), hwm_loaded=loaded.get("VmHWM"))
    res["delta"] = loaded["VmRSS"] - idle["VmRSS"]
    res["per_conn"] = res["delta"] / len(socks) if socks else None
    res["still_open"] = count_open(socks)
    try:
        s = open_one(a.port, timeout=5.0)
        s.close()
        res["probe_alongside"] = "ok"
    except (OSError, ValueError, IndexError) as e:
        res["probe_alongside"] = "failed (%s)" % (str(e) or type(e).__name__)

    for s in socks:
        s.close()
    socks = []
    time.sleep(1.0)
    try:
        res["rss_after_close"] = proc_status(a.pid)["VmRSS"]
    except OSError:
        res["rss_after_close"] = None

    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    mb = 1e6
    print("memory: idle %.1f MB; %d/%d connections open (%.1fs), RSS %.1f MB (+%.1f MB, %s B/conn);"
          " after close %s" % (res["rss_idle"] / mb, res["opened"], a.count, res["open_seconds"],
                               res["rss_loaded"] / mb, res["delta"] / mb,
                               "n/a" if res["per_conn"] is None else "%.0f" % res["per_conn"],
                               "n/a" if res["rss_after_close"] is None
                               else "%.1f MB" % (res["rss_after_close"] / mb)))
    return 0 if res["opened"] == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
