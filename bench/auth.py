#!/usr/bin/env python3
"""Helpers for bench/auth.sh, the identity part of `make bench` (Python 3 standard library only).

Subcommands:
  register BASE EMAIL PASSWORD NAME   POST /auth/register; 201 (or 409: the user exists) is fine
  login BASE EMAIL PASSWORD           POST /auth/login; print the access token
  check-me BASE TOKEN                 GET /api/v1/users/me with the token; exit 0 on 200
  parse FILE --part a|b --target T --round N
                                      one wrk --latency output (and the "auth_login statuses:"
                                      line of bench/auth_login.lua) as a JSON line
  line PARSED_JSON                    one progress line for a parsed run
  report RESULTS_DIR OUT_TXT          print the auth block, append it to OUT_TXT (replacing an
                                      earlier auth block there)

DESIGN: as with bench.py, auth.sh owns the processes and this file owns parsing and formatting;
the wrk parser and the formatting helpers are bench.py's, imported, so every part of the
summary reads wrk the same way.
"""

import json
import os
import re
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench/bench.py: parse_wrk, median_of, fmt_us, verdict, ...)

RPS_BAR = 0.5         # (a) me/live req/s and (b) live under flood / live unloaded req/s
P99_LIMIT_US = 10000  # (b) /health/live p99 under the login flood < 10 ms
TITLE = "=== Keel identity benchmark"


# ---------------------------------------------------------------- HTTP set-up

def call(method, url, body=None, token=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def cmd_register(args):
    base, email, password, name = args[:4]
    status, body = call("POST", base + "/auth/register",
                        {"email": email, "password": password, "name": name})
    if status in (201, 409):
        return 0
    print("register: %d %s" % (status, body[:300].decode("utf-8", "replace")), file=sys.stderr)
    return 1


def cmd_login(args):
    base, email, password = args[:3]
    status, body = call("POST", base + "/auth/login", {"email": email, "password": password})
    try:
        token = json.loads(body)["access_token"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        token = None
    if not token:
        print("login: %d %s" % (status, body[:300].decode("utf-8", "replace")), file=sys.stderr)
        return 1
    print(token)
    return 0


def cmd_check_me(args):
    base, token = args[:2]
    status, body = call("GET", base + "/api/v1/users/me", token=token)
    if status == 200:
        return 0
    print("GET /api/v1/users/me: %d %s" % (status, body[:300].decode("utf-8", "replace")),
          file=sys.stderr)
    return 1


# ---------------------------------------------------------------- parsing

def cmd_parse(args):
    text = open(args[0]).read()
    res = bench.parse_wrk(text)
    res["part"] = bench.opt(args, "--part", "?")
    res["target"] = bench.opt(args, "--target", "?")
    res["round"] = int(bench.opt(args, "--round", "1"))
    m = re.search(r"^\s+\d+ requests in ([0-9.]+)(us|ms|s|m)\b", text, re.M)
    if m:
        res["seconds"] = float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m.group(2)]
    m = re.search(r"^auth_login statuses: (.*)$", text, re.M)
    if m:
        res["statuses"] = {k: int(v) for k, v in
                           (p.split("=") for p in m.group(1).split() if "=" in p)}
        ok = sum(n for k, n in res["statuses"].items() if 200 <= int(k) < 300)
        res["ok"] = ok
        res["ok_per_s"] = round(ok / res["seconds"], 1) if res.get("seconds") else None
    print(json.dumps(res))
    return 1 if res["parse_error"] else 0


def cmd_line(args):
    r = json.load(open(args[0]))

    def f(v):
        return "n/a" if v is None else "%.0f" % v
    extra = ""
    if "statuses" in r:
        extra = "; statuses %s, %s logins/s" % (
            " ".join("%s=%d" % kv for kv in sorted(r["statuses"].items())) or "none",
            f(r.get("ok_per_s")))
    print("bench: auth: %s %-13s round %d: %s req/s, p50 %s us, p99 %s us, non-2xx %d,"
          " socket errors %s%s" % (r["part"], r["target"], r["round"], f(r["rps"]), f(r["p50_us"]),
                                   f(r["p99_us"]), r["non2xx"], r["socket_errors"] or "none", extra))


# ---------------------------------------------------------------- report

def row(label, runs, spread=True):
    rps = bench.median_of(runs, "rps")
    vals = [r["rps"] for r in runs if r.get("rps") is not None]
    p99s = [r["p99_us"] for r in runs if r.get("p99_us") is not None]
    rng = ("%.0f-%.0f, %s-%s" % (min(vals), max(vals), bench.fmt_us(min(p99s)),
                                 bench.fmt_us(max(p99s)))) if vals and p99s else "n/a"
    err = "; ".join(bench.errors_text(r) for r in runs if bench.errors_text(r) != "none") or "none"
    return rps, bench.median_of(runs, "p99_us"), err, "  %-26s %10s %9s %9s %9s  %-30s %s" % (
        label, "n/a" if rps is None else "%.0f" % rps,
        bench.fmt_us(bench.median_of(runs, "p50_us")), bench.fmt_us(bench.median_of(runs, "p90_us")),
        bench.fmt_us(bench.median_of(runs, "p99_us")), rng if spread else "", err)


def header():
    return "  %-26s %10s %9s %9s %9s  %-30s %s" % (
        "", "req/s", "p50", "p90", "p99", "rounds: req/s, p99 (min-max)", "errors")


def auth_block(rdir):
    meta = json.load(open(os.path.join(rdir, "meta.json")))
    runs = bench.load_jsonl(os.path.join(rdir, "auth.jsonl"))
    verdicts = []
    lines = ["%s (bench/auth.sh) %s ===" % (TITLE, meta.get("date", ""))]
    lines.append("keel: %s (commit %s, %s); %s; SQLite in a temporary directory; KEEL_THREADS=%s;"
                 " rate limits 1000000000/s (IP, user, auth)" % (
                     meta.get("keel_version", "?"), meta.get("commit", "?"),
                     meta.get("keel_bin", "?"), meta.get("wrk_version", "?"), meta.get("threads")))
    lines.append("host: %s CPUs (%s), Linux %s; load average before: %s, after: %s" % (
        meta.get("cpus"), meta.get("cpu_model"), meta.get("kernel"), meta.get("load_start", "?"),
        meta.get("load_end", "?")))

    # (a) authenticated read vs /health/live
    a = [r for r in runs if r["part"] == "a"]
    rounds_a = max([r["round"] for r in a] or [0])
    lines.append("")
    lines.append("(a) authenticated read: wrk %s -d%s --latency, %s" % (
        meta.get("config_a"), meta.get("duration"),
        "median of %d interleaved rounds" % rounds_a if rounds_a > 1 else "one round"))
    lines.append("    GET /api/v1/users/me with Authorization: Bearer (JWT verified, blocklist"
                 " checked, profile from cache or database)")
    lines.append(header())
    med = {}
    for target, label in (("live", "GET /health/live"), ("me", "GET /api/v1/users/me")):
        rs = [r for r in a if r["target"] == target]
        if not rs:
            lines.append("  %-26s not measured" % label)
            continue
        rps, _, err, text = row(label, rs)
        med[target] = rps
        lines.append(text)
        if err != "none":
            verdicts.append(("(a) %s errors" % target, False))
    if med.get("me") and med.get("live"):
        ratio = med["me"] / med["live"]
        ok = ratio >= RPS_BAR
        verdicts.append(("(a) me/live", ok))
        lines.append("  me/live req/s %.2f (bar >= %.2f) %s" % (ratio, RPS_BAR, bench.verdict(ok)))
    else:
        verdicts.append(("(a) measured", False))
        lines.append("  me/live n/a (a run failed)")

    # (b) /health/live with and without a login flood
    b = [r for r in runs if r["part"] == "b"]
    rounds_b = max([r["round"] for r in b] or [0])
    lines.append("")
    lines.append("(b) login flood: wrk %s POST /auth/login (a real user, right password; Argon2id"
                 " %s, %s hashes at once) during" % (
                     meta.get("config_flood"), meta.get("password_cost"),
                     meta.get("hash_concurrency")))
    lines.append("    wrk %s -d%s --latency GET /health/live; unloaded and loaded runs"
                 " interleaved, %s" % (
                     meta.get("config_b"), meta.get("duration"),
                     "median of %d rounds" % rounds_b if rounds_b > 1 else "one round"))
    lines.append(header())
    med = {}
    p99 = None
    for target, label in (("live_unloaded", "GET /health/live unloaded"),
                          ("live_flood", "GET /health/live in flood")):
        rs = [r for r in b if r["target"] == target]
        if not rs:
            lines.append("  %-26s not measured" % label)
            continue
        rps, rp99, err, text = row(label, rs)
        med[target] = rps
        if target == "live_flood":
            p99 = rp99
        lines.append(text)
        if err != "none":
            verdicts.append(("(b) %s errors" % target, False))
    if med.get("live_unloaded") and med.get("live_flood"):
        ratio = med["live_flood"] / med["live_unloaded"]
        ok = ratio >= RPS_BAR
        verdicts.append(("(b) live in flood/unloaded", ok))
        lines.append("  in flood/unloaded req/s %.2f (bar >= %.2f) %s" % (
            ratio, RPS_BAR, bench.verdict(ok)))
    else:
        verdicts.append(("(b) measured", False))
        lines.append("  in flood/unloaded n/a (a run failed)")
    if p99 is not None:
        ok = p99 < P99_LIMIT_US
        verdicts.append(("(b) live p99 in flood", ok))
        lines.append("  /health/live p99 in flood %s (bar < %s) %s" % (
            bench.fmt_us(p99), bench.fmt_us(P99_LIMIT_US), bench.verdict(ok)))
    flood = [r for r in b if r["target"] == "login"]
    if flood:
        statuses = {}
        for r in flood:
            for k, n in (r.get("statuses") or {}).items():
                statuses[k] = statuses.get(k, 0) + n
        ok_s = [r["ok_per_s"] for r in flood if r.get("ok_per_s") is not None]
        sock = "; ".join(bench.errors_text(dict(r, non2xx=0)) for r in flood
                         if bench.errors_text(dict(r, non2xx=0)) != "none") or "none"
        lines.append("  login flood: %s logins/s (2xx, median; rounds %s), latency p50 %s, p99 %s;"
                     " socket errors: %s" % (
                         "%.0f" % bench.statistics.median(ok_s) if ok_s else "n/a",
                         "-".join("%.0f" % v for v in (min(ok_s), max(ok_s))) if ok_s else "n/a",
                         bench.fmt_us(bench.median_of(flood, "p50_us")),
                         bench.fmt_us(bench.median_of(flood, "p99_us")), sock))
        total = sum(statuses.values())
        codes = ", ".join("%s: %d" % (k, statuses[k]) for k in sorted(statuses, key=int)) or "none"
        notes = []
        if statuses.get("503"):
            notes.append("503 = hash queue full, accepted")
        if statuses.get("429"):
            notes.append("429 = rate limit or login throttle")
        other = [k for k in statuses if not (200 <= int(k) < 300) and k not in ("503", "429")]
        if other:
            notes.append("unexpected: %s" % ", ".join(sorted(other)))
            verdicts.append(("(b) login statuses", False))
        if not statuses:
            verdicts.append(("(b) login statuses", False))
        lines.append("  login responses over all rounds (%d): %s%s" % (
            total, codes, " (%s)" % "; ".join(notes) if notes else ""))
    else:
        verdicts.append(("(b) login flood measured", False))
        lines.append("  login flood: not measured")

    lines.append(bench.verdicts_line("AUTH", verdicts))
    return "\n".join(lines) + "\n"


def cmd_report(args):
    rdir, out_txt = args[0], args[1]
    bench.report(out_txt, TITLE, auth_block(rdir))


COMMANDS = {
    "register": cmd_register,
    "login": cmd_login,
    "check-me": cmd_check_me,
    "parse": cmd_parse,
    "line": cmd_line,
    "report": cmd_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]) or 0)
