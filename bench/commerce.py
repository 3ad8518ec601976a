#!/usr/bin/env python3
"""Helpers for bench/commerce.sh, the commerce part of `make bench` (Python 3 standard library).

Subcommands:
  setup BASE ADMIN_EMAIL ADMIN_PASSWORD --users N --user-password P --order-products M
        --ids-out FILE --order-ids-out FILE
      list every product (GET /api/v1/products, cursor pages of 100) into --ids-out, draw M of
      them for the orders into --order-ids-out and raise their stock to STOCK_TARGET as the admin
      (POST /api/v1/products/{id}/stock), register N users bench-user-I@example.com (201, or 409:
      the user exists); one line of what was done on stderr
  tokens BASE N PASSWORD OUT    log the N bench users in; their access tokens, one a line
  check-order BASE TOKENS ORDER_IDS
                                one POST /api/v1/orders as wrk will send it; exit 0 on 201
  cache-metrics BASE            one line from GET /metrics: cache lookups by layer and result,
                                and database loads after a miss (keel_cache_*_total)
  parse FILE --part P --target T --round N [--pgbench]
                                one wrk --latency output (with the "commerce ..." lines of
                                bench/commerce_lib.lua) or one pgbench output, as a JSON line
  line PARSED_JSON              one progress line for a parsed run
  report RESULTS_DIR OUT_TXT    print the commerce block, append it to OUT_TXT (replacing an
                                earlier commerce block there)

DESIGN: as with bench.py and auth.py, commerce.sh owns the processes and this file owns the set-up
requests, parsing and formatting; wrk and pgbench parsing, medians, verdicts and replace_block are
bench.py's, imported, so every part of the summary reads its tools the same way.
"""

import http.client
import json
import os
import random
import re
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bench/bench.py: parse_wrk, parse_pgbench, median_of, fmt_us, ...)

TITLE = "=== Keel commerce benchmark"
L1_BAR = 0.7             # (1) product from L1 / /health/live req/s
PG_READ_RPS_BAR = 20000  # (2) uncached product reads on PostgreSQL, req/s ...
PG_READ_RATIO_BAR = 0.6  # ... or >= 0.6 x pgbench -S -M prepared tps
ORDERS_RATIO_BAR = 0.6   # (3) orders/s >= 0.6 x pgbench TPC-B tps
STOCK_TARGET = 900000000  # stock of the ordered products (CATALOG_STOCK_MAX is 10^9)
USER_EMAIL = "bench-user-%d@example.com"


# ---------------------------------------------------------------- HTTP set-up

class Client:
    """One keep-alive HTTP/1.1 connection to BASE (reconnects once if the server closed it)."""

    def __init__(self, base, timeout=30):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn = None

    def call(self, method, path, body=None, token=None):
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, data, headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def fail(what, status, body):
    print("%s: %d %s" % (what, status, body[:300].decode("utf-8", "replace")), file=sys.stderr)
    return 1


def login(client, email, password):
    status, body = client.call("POST", "/auth/login", {"email": email, "password": password})
    try:
        token = json.loads(body)["access_token"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        token = None
    if not token:
        fail("POST /auth/login %s" % email, status, body)
    return token


def cmd_setup(args):
    base, admin_email, admin_password = args[:3]
    users = int(bench.opt(args, "--users", "8"))
    user_password = bench.opt(args, "--user-password")
    n_order = int(bench.opt(args, "--order-products", "1000"))
    ids_out, order_out = bench.opt(args, "--ids-out"), bench.opt(args, "--order-ids-out")
    c = Client(base)
    admin = login(c, admin_email, admin_password)
    if not admin:
        return 1

    stock = {}
    ids = []
    cursor = None
    while True:
        path = "/api/v1/products?limit=100"
        if cursor:
            path += "&cursor=" + urllib.parse.quote(cursor)
        status, body = c.call("GET", path)
        if status != 200:
            return fail("GET %s" % path, status, body)
        page = json.loads(body)
        for p in page["items"]:
            ids.append(p["id"])
            stock[p["id"]] = int(p["stock"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if len(ids) < 2:
        print("setup: the catalog has %d products; orders need 2" % len(ids), file=sys.stderr)
        return 1
    order_ids = random.Random(5).sample(ids, min(n_order, len(ids)))

    # Raise the stock of the ordered products on 8 connections at once (each is one transaction).
    errors = []
    todo = list(order_ids)
    lock = threading.Lock()

    def raiser():
        cl = Client(base)
        while True:
            with lock:
                if not todo or errors:
                    return
                pid = todo.pop()
            delta = STOCK_TARGET - stock[pid]
            if delta == 0:
                continue
            try:
                st, b = cl.call("POST", "/api/v1/products/%s/stock" % pid, {"delta": delta}, admin)
            except OSError as e:
                st, b = 0, str(e).encode()
            if st != 200:
                with lock:
                    errors.append((pid, st, b))

    workers = [threading.Thread(target=raiser) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        pid, st, b = errors[0]
        return fail("POST /api/v1/products/%s/stock" % pid, st, b)

    for i in range(1, users + 1):
        status, body = c.call("POST", "/auth/register", {
            "email": USER_EMAIL % i, "password": user_password, "name": "Bench User %d" % i})
        if status not in (201, 409):
            return fail("POST /auth/register %s" % (USER_EMAIL % i), status, body)

    with open(ids_out, "w") as f:
        f.write("".join(i + "\n" for i in ids))
    with open(order_out, "w") as f:
        f.write("".join(i + "\n" for i in order_ids))
    print("bench: commerce: %d products listed; stock of %d of them raised to %d; %d users"
          " registered" % (len(ids), len(order_ids), STOCK_TARGET, users), file=sys.stderr)
    return 0


def cmd_tokens(args):
    base, n, password, out = args[0], int(args[1]), args[2], args[3]
    c = Client(base)
    tokens = []
    for i in range(1, n + 1):
        t = login(c, USER_EMAIL % i, password)
        if not t:
            return 1
        tokens.append(t)
    with open(out, "w") as f:
        f.write("".join(t + "\n" for t in tokens))
    return 0


def cmd_check_order(args):
    base, tokens_file, ids_file = args[:3]
    token = open(tokens_file).readline().strip()
    ids = [ln.strip() for ln in open(ids_file) if ln.strip()][:2]
    status, body = Client(base).call("POST", "/api/v1/orders", {
        "items": [{"product_id": ids[0], "quantity": 1}, {"product_id": ids[1], "quantity": 1}]},
        token)
    if status == 201:
        return 0
    return fail("POST /api/v1/orders", status, body)


def cmd_cache_metrics(args):
    status, body = Client(args[0], timeout=5).call("GET", "/metrics")
    if status != 200:
        return fail("GET /metrics", status, body)
    text = body.decode("utf-8", "replace")
    out = []
    for name, label in (("keel_cache_requests_total", None), ("keel_cache_loads_total", "loads")):
        for m in re.finditer(r"^%s\{([^}]*)\} (\S+)$" % name, text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            n = float(m.group(2))
            if n:
                out.append("%s %s %.0f" % (label or labels.get("layer", "?"),
                                           labels.get("result", "?"), n))
    print(", ".join(out) or "no cache lookups counted")
    return 0


# ---------------------------------------------------------------- parsing

def parse_run(text, is_pgbench):
    if is_pgbench:
        res = bench.parse_pgbench(text)
        res["tool"] = "pgbench"
        res["rps"] = res.pop("qps")
        return res
    res = bench.parse_wrk(text)
    res["tool"] = "wrk"
    m = re.search(r"^\s+\d+ requests in ([0-9.]+)(us|ms|s|m)\b", text, re.M)
    if m:
        res["seconds"] = float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m.group(2)]
    m = re.search(r"^\s+Latency\s+(\S+)\s", text, re.M)
    if m:
        try:
            res["lat_avg_us"] = bench.to_us(m.group(1))
        except ValueError:
            pass
    m = re.search(r"^commerce latency: (.*)$", text, re.M)
    if m:
        for k, v in (p.split("=") for p in m.group(1).split() if "=" in p):
            res["%s_us" % k] = float(v)
    m = re.search(r"^commerce statuses: (.*)$", text, re.M)
    if m:
        res["statuses"] = {k: int(v) for k, v in
                           (p.split("=") for p in m.group(1).split() if "=" in p)}
        secs = res.get("seconds")
        for code in ("200", "201"):
            res["s%s_per_s" % code] = (round(res["statuses"].get(code, 0) / secs, 1)
                                       if secs else None)
    return res


def cmd_parse(args):
    res = parse_run(open(args[0]).read(), "--pgbench" in args)
    res["part"] = bench.opt(args, "--part", "?")
    res["target"] = bench.opt(args, "--target", "?")
    res["round"] = int(bench.opt(args, "--round", "1"))
    print(json.dumps(res))
    return 1 if res["parse_error"] else 0


def f0(v):
    return "n/a" if v is None else "%.0f" % v


def cmd_line(args):
    r = json.load(open(args[0]))
    if r["tool"] == "pgbench":
        print("bench: commerce: (%s) %-8s round %d: %s tps, avg latency %s, failed %d" % (
            r["part"], r["target"], r["round"], f0(r["rps"]), bench.fmt_us(r["lat_avg_us"]),
            r["errors"] or 0))
        return 0
    extra = ""
    if "statuses" in r:
        extra = "; statuses %s" % (" ".join("%s=%d" % kv for kv in sorted(r["statuses"].items()))
                                   or "none")
    print("bench: commerce: (%s) %-8s round %d: %s req/s, p50 %s, p99 %s, non-2xx %d, socket"
          " errors %s%s" % (r["part"], r["target"], r["round"], f0(r["rps"]),
                            bench.fmt_us(r["p50_us"]), bench.fmt_us(r["p99_us"]), r["non2xx"],
                            r["socket_errors"] or "none", extra))
    return 0


# ---------------------------------------------------------------- report

COLS = "  %-30s %10s %9s %9s %9s %9s  %-28s %s"


def header(first="req/s"):
    return COLS % ("", first, "p50", "p95", "p99", "avg", "rounds: rate (min-max)", "errors")


def summarize(label, runs):
    """(median rate, text row, error text) of the rounds of one target."""
    rate = bench.median_of(runs, "rps")
    vals = [r["rps"] for r in runs if r.get("rps") is not None]
    if any(r["tool"] == "pgbench" for r in runs):
        errs = sum(r.get("errors") or 0 for r in runs)
        perr = [r["parse_error"] for r in runs if r.get("parse_error")]
        err = "; ".join(([("failed transactions %d" % errs)] if errs else []) + perr) or "none"
    else:
        err = "; ".join(bench.errors_text(r) for r in runs
                        if bench.errors_text(r) != "none") or "none"
    text = COLS % (label, f0(rate), bench.fmt_us(bench.median_of(runs, "p50_us")),
                   bench.fmt_us(bench.median_of(runs, "p95_us")),
                   bench.fmt_us(bench.median_of(runs, "p99_us")),
                   bench.fmt_us(bench.median_of(runs, "lat_avg_us")),
                   "%.0f-%.0f" % (min(vals), max(vals)) if vals else "n/a", err)
    return rate, text, err


def statuses_of(runs):
    total = {}
    for r in runs:
        for k, n in (r.get("statuses") or {}).items():
            total[k] = total.get(k, 0) + n
    return total


def codes_text(total):
    return ", ".join("%s: %d" % (k, total[k]) for k in sorted(total, key=int)) or "none counted"


def rounds_text(runs, interleaved=True):
    n = max([r["round"] for r in runs] or [0])
    if n <= 1:
        return "one round"
    return "median of %d %srounds" % (n, "interleaved " if interleaved else "")


def table(lines, verdicts, part, runs, targets, first="req/s"):
    """Rows of the targets (target, label) of part; returns {target: median rate}."""
    lines.append(header(first))
    med = {}
    for target, label in targets:
        rs = [r for r in runs if r["part"] == part and r["target"] == target]
        if not rs:
            lines.append("  %-30s not measured" % label)
            verdicts.append(("(%s) %s measured" % (part, target), False))
            continue
        rate, text, err = summarize(label, rs)
        med[target] = rate
        lines.append(text)
        if err != "none":
            verdicts.append(("(%s) %s errors" % (part, target), False))
    return med


def commerce_block(rdir):
    meta = json.load(open(os.path.join(rdir, "meta.json")))
    runs = bench.load_jsonl(os.path.join(rdir, "commerce.jsonl"))
    parts = str(meta.get("parts", "1 2 3 4")).split()
    verdicts = []
    dur = meta.get("duration")
    conns = meta.get("conns")
    products = format(meta.get("products", 0), ",")
    lines = ["%s (bench/commerce.sh) %s ===" % (TITLE, meta.get("date", ""))]
    lines.append("keel: %s (commit %s, %s); %s; PostgreSQL %s (pgbench %s); Redis: %s" % (
        meta.get("keel_version", "?"), meta.get("commit", "?"), meta.get("keel_bin", "?"),
        meta.get("wrk_version", "?"), meta.get("postgres_version", "?"),
        meta.get("pgbench_version", "?"), meta.get("redis", "none")))
    lines.append("host: %s CPUs (%s), Linux %s; KEEL_THREADS=%s; load average before: %s,"
                 " after: %s" % (meta.get("cpus"), meta.get("cpu_model"), meta.get("kernel"),
                                 meta.get("threads"), meta.get("load_start", "?"),
                                 meta.get("load_end", "?")))
    lines.append("catalog: %s demo products (keel seed); an order takes 1 unit of each of 2"
                 " different products of %s (stock raised to %s), %s users' tokens round-robin;"
                 " rate limits 1000000000/s; password hash m=1024 KiB t=1" % (
                     products, format(meta.get("order_products", 0), ","),
                     format(STOCK_TARGET, ","), meta.get("users")))

    def skipped(part, title):
        if part in parts:
            return False
        lines.append("")
        lines.append("(%s) %s: skipped (BENCH_COMMERCE_PARTS=%s)" % (part, title,
                                                                    " ".join(parts)))
        return True

    # (1) L1 read vs /health/live
    if not skipped("1", "GET /api/v1/products/{id} from L1"):
        lines.append("")
        lines.append("(1) GET /api/v1/products/{id} from L1: SQLite, cache on, one product id read"
                     " once before; wrk %s -d%s --latency -s bench/latency.lua, %s" % (
                         meta.get("config_l1"), dur,
                         rounds_text([r for r in runs if r["part"] == "1"])))
        med = table(lines, verdicts, "1", runs, (("live", "GET /health/live"),
                                                 ("product", "GET /api/v1/products/{id}")))
        if med.get("live") and med.get("product"):
            ratio = med["product"] / med["live"]
            ok = ratio >= L1_BAR
            verdicts.append(("(1) product/live", ok))
            lines.append("  product/live req/s %.2f (bar >= %.2f) %s" % (
                ratio, L1_BAR, bench.verdict(ok)))
        else:
            verdicts.append(("(1) measured", False))
            lines.append("  product/live n/a (a run failed)")
        lines.append("  Keel's cache counters after the runs: %s" % meta.get("l1_cache", "n/a"))

    # (2) uncached reads on PostgreSQL vs pgbench -S
    if not skipped("2", "uncached GET /api/v1/products/{id} on PostgreSQL"):
        lines.append("")
        lines.append("(2) GET /api/v1/products/{id}, KEEL_CACHE=false, PostgreSQL, pool %s: wrk %s"
                     " -d%s --latency -s bench/products.lua (random id of %s)" % (
                         meta.get("pool"), meta.get("config_pg"), dur, products))
        lines.append("    vs pgbench -S -M prepared -c %s -j %s -T %s (scale %s, own database), %s"
                     % (conns, meta.get("jobs"), meta.get("duration_s"), meta.get("scale"),
                        rounds_text([r for r in runs if r["part"] == "2"])))
        med = table(lines, verdicts, "2", runs, (("keel", "keel GET /api/v1/products/{id}"),
                                                 ("pgbench", "pgbench -S (tps)")))
        k, p = med.get("keel"), med.get("pgbench")
        if k:
            ok_abs = k >= PG_READ_RPS_BAR
            ratio = k / p if p else None
            ok_rel = ratio is not None and ratio >= PG_READ_RATIO_BAR
            verdicts.append(("(2) uncached reads", ok_abs or ok_rel))
            lines.append("  keel req/s %.0f (bar >= %s) %s; keel/pgbench %s (bar >= %.2f) %s;"
                         " either bar: %s" % (
                             k, format(PG_READ_RPS_BAR, ","), bench.verdict(ok_abs),
                             "n/a" if ratio is None else "%.2f" % ratio, PG_READ_RATIO_BAR,
                             bench.verdict(ok_rel), bench.verdict(ok_abs or ok_rel)))
        else:
            verdicts.append(("(2) measured", False))
            lines.append("  keel req/s n/a (a run failed)")

    # (3) orders vs pgbench TPC-B
    if not skipped("3", "POST /api/v1/orders vs pgbench TPC-B"):
        lines.append("")
        lines.append("(3) POST /api/v1/orders (2 items), PostgreSQL synchronous_commit=%s fsync=%s"
                     " (WAL on %s), KEEL_CACHE=false, pool %s:" % (
                         meta.get("synchronous_commit", "?"), meta.get("fsync", "?"),
                         meta.get("wal_fs", "?"), meta.get("pool")))
        lines.append("    wrk %s -d%s --latency --timeout 10s -s bench/orders.lua vs pgbench"
                     " -M prepared -c %s -j %s -T %s (TPC-B, scale %s), %s" % (
                         meta.get("config_pg"), dur, conns, meta.get("jobs"),
                         meta.get("duration_s"), meta.get("scale"),
                         rounds_text([r for r in runs if r["part"] == "3"])))
        med = table(lines, verdicts, "3", runs, (("keel", "keel POST /api/v1/orders"),
                                                 ("pgbench", "pgbench TPC-B (tps)")))
        k, p = med.get("keel"), med.get("pgbench")
        if k and p:
            ratio = k / p
            ok = ratio >= ORDERS_RATIO_BAR
            verdicts.append(("(3) orders/pgbench", ok))
            lines.append("  orders/pgbench %.2f (bar >= %.2f) %s" % (ratio, ORDERS_RATIO_BAR,
                                                                    bench.verdict(ok)))
        else:
            verdicts.append(("(3) measured", False))
            lines.append("  orders/pgbench n/a (a run failed)")
        orders = [r for r in runs if r["part"] == "3" and r["target"] == "keel"]
        if orders:
            st = statuses_of(orders)
            bad = sum(n for c, n in st.items() if c != "201")
            non2xx = sum(r.get("non2xx") or 0 for r in orders)
            lines.append("  order responses over all rounds: %s; non-2xx (wrk): %d%s" % (
                codes_text(st), non2xx, "  (there must be none)" if bad or non2xx else ""))
            verdicts.append(("(3) every order 201", not bad and not non2xx and bool(st)))

    # (4) mixed
    if not skipped("4", "mixed reads and orders"):
        mixed = [r for r in runs if r["part"] == "4"]
        lines.append("")
        lines.append("(4) mixed: %s%% GET /api/v1/products/{id} (random of %s) / %s%% POST"
                     " /api/v1/orders, PostgreSQL, cache on (L1%s), pool %s;" % (
                         meta.get("read_percent"), products,
                         100 - int(meta.get("read_percent", 90)),
                         " + L2 in Redis; rate limits in Redis too"
                         if meta.get("redis", "none") != "none" else " only, no Redis",
                         meta.get("pool")))
        lines.append("    wrk %s -d%s --latency --timeout 10s -s bench/mixed.lua, %s" % (
            meta.get("config_mixed"), dur, rounds_text(mixed, False)))
        table(lines, verdicts, "4", runs, (("mixed", "mixed %s/%s" % (
            meta.get("read_percent"), 100 - int(meta.get("read_percent", 90)))),))
        if mixed:
            st = statuses_of(mixed)
            r200 = [r["s200_per_s"] for r in mixed if r.get("s200_per_s") is not None]
            r201 = [r["s201_per_s"] for r in mixed if r.get("s201_per_s") is not None]
            lines.append("  of which reads (200) %s/s and orders (201) %s/s (medians); responses"
                         " over all rounds: %s" % (
                             f0(bench.statistics.median(r200) if r200 else None),
                             f0(bench.statistics.median(r201) if r201 else None), codes_text(st)))
            if [c for c in st if c not in ("200", "201")]:
                verdicts.append(("(4) statuses other than 200 and 201", False))
        lines.append("  Keel's cache counters after the runs: %s" % meta.get("mixed_cache", "n/a"))

    lines.append(bench.verdicts_line("COMMERCE", verdicts))
    return "\n".join(lines) + "\n"


def cmd_report(args):
    rdir, out_txt = args[0], args[1]
    bench.report(out_txt, TITLE, commerce_block(rdir))
    return 0


COMMANDS = {
    "setup": cmd_setup,
    "tokens": cmd_tokens,
    "check-order": cmd_check_order,
    "cache-metrics": cmd_cache_metrics,
    "parse": cmd_parse,
    "line": cmd_line,
    "report": cmd_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]) or 0)
