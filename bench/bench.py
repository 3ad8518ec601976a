#!/usr/bin/env python3
"""Helpers for bench/run.sh (Python 3 standard library only).

Subcommands:
  freeport                      print a free TCP port on 127.0.0.1
  probe URL OUT_JSON [--wait S] wait until URL answers, save status/headers/body (base64)
  nginx-conf TEMPLATE PROBE_JSON PORT WORKERS TMP [--headers mirror|none] [--user U:G]
                                render bench/nginx.conf.in to stdout
  same-body A_JSON B_JSON       exit 0 if both probes returned identical status and body
  wrk-parse FILE [--server S --config C --round N]
                                parse one wrk --latency output into a JSON line
  meta OUT_JSON key=value...    merge facts about the run into OUT_JSON
  probe-field PROBE_JSON FIELD  print one field of a saved probe
  report RESULTS_DIR OUT_TXT    print the table and the summary block, write it to OUT_TXT
  pgbench-parse FILE [--round N]   parse one `pgbench -S` output into a JSON line (storage.sh)
  db-bench-parse FILE [--round N]  check and normalize one bench/db_bench JSON line (storage.sh)
  storage-report RESULTS_DIR OUT_TXT
                                print the storage block, append it to OUT_TXT (replacing an
                                earlier storage block there)

DESIGN: run.sh and storage.sh own processes (start, wait, kill); this file owns everything that parses or
formats, so the shell stays short and the parsing can be tested on saved wrk output.
"""

import base64
import json
import os
import re
import socket
import statistics
import sys
import time
import urllib.parse

RPS_BAR = 0.75      # Keel req/s >= 0.75 x nginx req/s
P99_BAR = 2.0       # Keel p99 <= 2 x nginx p99
IDLE_RSS_BAR = 16e6  # bytes (decimal MB, the strict reading of "16 MB")
CONN_RSS_BAR = 40e6  # bytes added by 10,000 idle keep-alive connections
STORAGE_BAR = 0.8   # Keel point selects/s >= 0.8 x pgbench -S -M prepared tps (issue 3)
STORAGE_TITLE = "=== Keel storage benchmark"

# Headers nginx produces itself or that make no sense to copy into a static config.
NO_MIRROR = {"date", "server", "content-length", "content-type", "connection",
             "keep-alive", "transfer-encoding", "x-request-id"}


# ---------------------------------------------------------------- small commands

def cmd_freeport(_args):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def read_response(sock, buf=b""):
    """Read one HTTP/1.1 response (Content-Length or chunked) from sock.

    Returns (status, [[name, value]...], body, raw_bytes, leftover)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [[k.strip(), v.strip()] for k, v in (ln.split(":", 1) for ln in lines[1:])]
    hmap = {k.lower(): v for k, v in headers}
    if "content-length" in hmap:
        n = int(hmap["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside the body")
            rest += chunk
        body, leftover = rest[:n], rest[n:]
        raw = len(head) + 4 + n
    elif hmap.get("transfer-encoding", "").lower() == "chunked":
        while not re.search(rb"(^|\r\n)0\r\n\r\n", rest):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside a chunked body")
            rest += chunk
        end = re.search(rb"(^|\r\n)0\r\n\r\n", rest).end()
        raw_body, leftover = rest[:end], rest[end:]
        body, p = b"", 0
        while True:
            eol = raw_body.index(b"\r\n", p)
            size = int(raw_body[p:eol].split(b";")[0], 16)
            if size == 0:
                break
            body += raw_body[eol + 2:eol + 2 + size]
            p = eol + 2 + size + 2
        raw = len(head) + 4 + end
    else:
        raise ConnectionError("response without Content-Length or chunked body")
    return status, headers, body, raw, leftover


def fetch(url, timeout=2.0):
    """One keep-alive GET shaped like wrk's request; returns a JSON-able dict."""
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                   % (u.path or "/", u.hostname, u.port)).encode())
        status, headers, body, raw, _ = read_response(s)
    return {"status": status, "headers": headers, "body_b64": base64.b64encode(body).decode(),
            "body_len": len(body), "raw_len": raw}


def cmd_probe(args):
    url, out = args[0], args[1]
    wait = float(opt(args, "--wait", "15"))
    deadline = time.monotonic() + wait
    last = None
    while time.monotonic() < deadline:
        try:
            res = fetch(url)
            if res["status"] == 200:
                with open(out, "w") as f:
                    json.dump(res, f)
                return 0
            last = "status %d" % res["status"]
        except (OSError, ValueError, IndexError) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.1)
    print("probe: %s did not answer 200 within %.0fs (%s)" % (url, wait, last), file=sys.stderr)
    return 1


def cmd_same_body(args):
    a, b = (json.load(open(p)) for p in args[:2])
    if a["status"] == b["status"] and a["body_b64"] == b["body_b64"]:
        return 0
    print("bodies differ:\n  keel : %r\n  nginx: %r" % (base64.b64decode(a["body_b64"]),
                                                      base64.b64decode(b["body_b64"])),
          file=sys.stderr)
    return 1


def opt(args, name, default=None):
    if name in args:
        return args[args.index(name) + 1]
    return default


# ---------------------------------------------------------------- nginx config

def nginx_quote(value):
    """Quote a string for nginx.conf single quotes; '$' goes through the $dollar geo variable."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "$":
            out.append("${dollar}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


def cmd_nginx_conf(args):
    template, probe_path, port, workers, tmp = args[:5]
    mode = opt(args, "--headers", "mirror")
    user = opt(args, "--user", "")
    probe = json.load(open(probe_path))
    body = base64.b64decode(probe["body_b64"]).decode("utf-8")
    ctype = "application/json"
    lines = []
    for name, value in probe["headers"]:
        low = name.lower()
        if low == "content-type":
            ctype = value
        elif low == "x-request-id" and mode == "mirror":
            lines.append("add_header X-Request-ID $request_id always;")
        elif low not in NO_MIRROR and mode == "mirror":
            lines.append("add_header %s %s always;" % (name, nginx_quote(value)))
    user_line = ""
    if user:
        user_line = "user %s;" % user.replace(":", " ")
    subst = {
        "@USER@": user_line,
        "@WORKERS@": str(int(workers)),
        "@TMP@": tmp,
        "@PORT@": str(int(port)),
        "@CONTENT_TYPE@": nginx_quote(ctype),
        "@HEADERS@": "\n            ".join(lines) or "# (no extra headers)",
        "@BODY@": nginx_quote(body),
    }
    text = open(template).read()
    for k, v in subst.items():
        text = text.replace(k, v)
    sys.stdout.write(text)


# ---------------------------------------------------------------- wrk output

UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError("bad wrk time %r" % text)
    return float(m.group(1)) * UNITS_US[m.group(2)]


def parse_wrk(text):
    res = {"rps": None, "p50_us": None, "p75_us": None, "p90_us": None, "p99_us": None,
           "requests": None, "non2xx": 0, "socket_errors": {}, "parse_error": None}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if m:
        res["rps"] = float(m.group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+(\S+)" % pct, text, re.M)
        if m:
            res["p%s_us" % pct] = to_us(m.group(1))
    m = re.search(r"^\s+(\d+) requests in", text, re.M)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors:\s+(.*)", text)
    if m:
        for part in m.group(1).split(","):
            k, v = part.split()
            res["socket_errors"][k] = int(v)
    if res["rps"] is None or res["p99_us"] is None:
        first = (text.strip().splitlines() or ["(no output)"])[0].strip()
        res["parse_error"] = "wrk output unparsed: %s" % first[:100]
    return res


def cmd_wrk_parse(args):
    res = parse_wrk(open(args[0]).read())
    res["server"] = opt(args, "--server", "?")
    res["config"] = opt(args, "--config", "?")
    res["round"] = int(opt(args, "--round", "1"))
    print(json.dumps(res))


def cmd_meta(args):
    """meta OUT_JSON key=value...: merge the pairs into OUT_JSON (numbers stay numbers)."""
    out = args[0]
    data = json.load(open(out)) if os.path.exists(out) else {}
    for pair in args[1:]:
        k, _, v = pair.partition("=")
        if re.fullmatch(r"-?\d+", v):
            v = int(v)
        data[k] = v
    with open(out, "w") as f:
        json.dump(data, f, indent=1)


def cmd_probe_field(args):
    """probe-field PROBE_JSON FIELD: print raw_len, body_len or status of a saved probe."""
    print(json.load(open(args[0]))[args[1]])


# ---------------------------------------------------------------- report

def fmt_us(us):
    if us is None:
        return "n/a"
    if us < 1000:
        return "%.0fus" % us
    if us < 1e6:
        return "%.2fms" % (us / 1e3)
    return "%.2fs" % (us / 1e6)


def fmt_mb(b):
    return "n/a" if b is None else "%.1f MB" % (b / 1e6)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def verdicts_line(part, verdicts):
    """The last line of a part's block: "PART: PASS (n/m checks pass)", naming the failing
    checks; verdicts is a list of (name, ok)."""
    failed = [name for name, ok in verdicts if not ok]
    return "%s: %s (%d/%d checks pass)%s" % (
        part, verdict(not failed), len(verdicts) - len(failed), len(verdicts),
        "; failing: " + ", ".join(failed) if failed else "")


def report(out_txt, title, text):
    """Prints a part's summary block and puts it in out_txt (replace_block)."""
    sys.stdout.write(text)
    replace_block(out_txt, title, text)


def errors_text(r):
    parts = []
    if r.get("non2xx"):
        parts.append("non-2xx %d" % r["non2xx"])
    for k, v in sorted(r.get("socket_errors", {}).items()):
        if v:
            parts.append("%s %d" % (k, v))
    if r.get("parse_error"):
        parts.append(r["parse_error"])
    return ", ".join(parts) or "none"


def load_jsonl(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def http_section(results, meta, verdicts):
    lines = []
    configs = []
    for r in results:
        if r["config"] not in configs:
            configs.append(r["config"])
    rounds = max([r["round"] for r in results] or [1])
    title = "HTTP  GET /health/live, wrk %s each" % meta.get("duration", "?")
    if rounds > 1:
        title += ", median of %d interleaved rounds" % rounds
    lines.append(title)
    spread = rounds > 1
    lines.append("  %-14s %-6s %12s %10s %10s %10s  %s%s" %
                 ("wrk", "server", "req/s", "p50", "p90", "p99",
                  "%-33s " % "rounds: req/s, p99 (min-max)" if spread else "", "errors"))
    for cfg in configs:
        agg = {}
        for server in ("keel", "nginx"):
            runs = [r for r in results if r["config"] == cfg and r["server"] == server]
            if not runs:
                continue
            a = {"rps": median_of(runs, "rps"), "p50_us": median_of(runs, "p50_us"),
                 "p90_us": median_of(runs, "p90_us"), "p99_us": median_of(runs, "p99_us")}
            err = "; ".join(errors_text(r) for r in runs if errors_text(r) != "none") or "none"
            agg[server] = a
            rng = ""
            if spread:
                rps = [r["rps"] for r in runs if r.get("rps") is not None] or [0]
                p99 = [r["p99_us"] for r in runs if r.get("p99_us") is not None] or [None]
                rng = "%-33s " % ("%.0f-%.0f, %s-%s" % (min(rps), max(rps), fmt_us(min(p99)),
                                                         fmt_us(max(p99))) if p99[0] else "n/a")
            lines.append("  %-14s %-6s %12s %10s %10s %10s  %s%s" % (
                cfg, server, "n/a" if a["rps"] is None else "%.0f" % a["rps"],
                fmt_us(a["p50_us"]), fmt_us(a["p90_us"]), fmt_us(a["p99_us"]), rng, err))
            if err != "none":
                verdicts.append(("%s %s errors" % (cfg, server), False))
        k, n = agg.get("keel"), agg.get("nginx")
        if k and n and k["rps"] and n["rps"] and k["p99_us"] and n["p99_us"]:
            rr = k["rps"] / n["rps"]
            pr = k["p99_us"] / n["p99_us"]
            v1, v2 = rr >= RPS_BAR, pr <= P99_BAR
            verdicts.append(("%s rps ratio" % cfg, v1))
            verdicts.append(("%s p99 ratio" % cfg, v2))
            lines.append("  %-14s keel/nginx  req/s %.2f (bar >= %.2f) %s   p99 %.2f (bar <= %.1f) %s"
                         % (cfg, rr, RPS_BAR, verdict(v1), pr, P99_BAR, verdict(v2)))
        else:
            verdicts.append(("%s ratios" % cfg, False))
            lines.append("  %-14s keel/nginx  n/a (a run failed)" % cfg)
    return lines


def memory_section(mem, verdicts):
    lines = ["MEMORY  (VmRSS of the keel process; MB = 10^6 bytes)"]
    if not mem:
        lines.append("  not measured (see errors above)")
        verdicts.append(("memory measured", False))
        return lines
    idle = mem.get("rss_idle")
    lines.append("  idle RSS 1 s after start:  %-10s (bar <= %s) %s" % (
        fmt_mb(idle), fmt_mb(IDLE_RSS_BAR), verdict(idle is not None and idle <= IDLE_RSS_BAR)))
    verdicts.append(("idle RSS", idle is not None and idle <= IDLE_RSS_BAR))
    want, got = mem.get("count"), mem.get("opened", 0)
    delta = mem.get("delta")
    ok = delta is not None and delta <= CONN_RSS_BAR and got == want and mem.get("still_open") == want
    per = (delta / got) if (delta is not None and got) else None
    lines.append("  %d idle keep-alive conns: +%-9s (bar <= %s) %s   = %s bytes/conn" % (
        want or 0, fmt_mb(delta), fmt_mb(CONN_RSS_BAR), verdict(ok),
        "n/a" if per is None else "%.0f" % per))
    verdicts.append(("connection RSS", ok))
    lines.append("  RSS with them open: %s (anon %s, file %s); opened %d/%d, still open after %ss: %s,"
                 " /health/live alongside: %s" % (
                     fmt_mb(mem.get("rss_loaded")), fmt_mb(mem.get("anon_loaded")),
                     fmt_mb(mem.get("file_loaded")), got, want or 0, mem.get("settle", "?"),
                     mem.get("still_open", "n/a"), mem.get("probe_alongside", "n/a")))
    lines.append("  RSS after closing them: %s; open phase took %.1fs; failures: %s" % (
        fmt_mb(mem.get("rss_after_close")), mem.get("open_seconds", 0.0),
        mem.get("failures") or "none"))
    return lines


def cmd_report(args):
    rdir, out_txt = args[0], args[1]
    meta = json.load(open(os.path.join(rdir, "meta.json")))
    results = load_jsonl(os.path.join(rdir, "wrk.jsonl"))
    mem_path = os.path.join(rdir, "memory.json")
    mem = json.load(open(mem_path)) if os.path.exists(mem_path) else None
    verdicts = []
    lines = ["=== Keel benchmark (make bench) %s ===" % meta.get("date", "")]
    lines.append("keel: %s (commit %s, %s); %s; %s" % (
        meta.get("keel_version", "?"), meta.get("commit", "?"), meta.get("keel_bin", "?"),
        meta.get("nginx_version", "?"), meta.get("wrk_version", "?")))
    lines.append("host: %s CPUs (%s), Linux %s; keel KEEL_THREADS=%s, nginx worker_processes=%s,"
                 " loopback" % (meta.get("cpus"), meta.get("cpu_model"), meta.get("kernel"),
                                meta.get("threads"), meta.get("threads")))
    lines.append("load average (1/5/15 min) before: %s, after: %s (\"after\" includes the bench itself)"
                 % (meta.get("load_start", "?"), meta.get("load_end", "?")))
    lines.append("response: keel %s bytes, nginx %s bytes (headers+body, body %s bytes identical: %s)"
                 % (meta.get("keel_resp_bytes"), meta.get("nginx_resp_bytes"),
                    meta.get("body_bytes"), meta.get("same_body")))
    lines.append("")
    if results:
        lines += http_section(results, meta, verdicts)
    else:
        lines.append("HTTP  not measured (see errors above)")
        verdicts.append(("http measured", False))
    if meta.get("keel_requests") is not None:
        lines.append("  access logs: keel %s request lines for %s requests; nginx %s lines" % (
            meta.get("keel_log_lines"), meta.get("keel_requests"), meta.get("nginx_log_lines")))
    lines.append("")
    lines += memory_section(mem, verdicts)
    lines.append("")
    lines.append(verdicts_line("OVERALL", verdicts))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(out_txt) or ".", exist_ok=True)
    with open(out_txt, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- storage (storage.sh)

def parse_pgbench(text):
    """Figures of one `pgbench -S` run; tps is the "without initial connection time" one."""
    res = {"client": "pgbench", "qps": None, "lat_avg_us": None, "errors": 0, "queries": None,
           "parse_error": None}
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    if m:
        res["qps"] = float(m.group(1))
    m = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    if m:
        res["lat_avg_us"] = round(float(m.group(1)) * 1000, 1)
    m = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    if m:
        res["queries"] = int(m.group(1))
    m = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    if m:
        res["errors"] = int(m.group(1))
    if res["qps"] is None:
        first = (text.strip().splitlines() or ["(no output)"])[-1].strip()
        res["parse_error"] = "pgbench output unparsed: %s" % first[:100]
    return res


def cmd_pgbench_parse(args):
    res = parse_pgbench(open(args[0]).read())
    res["round"] = int(opt(args, "--round", "1"))
    print(json.dumps(res))
    return 1 if res["parse_error"] else 0


def cmd_db_bench_parse(args):
    text = open(args[0]).read().strip()
    try:
        res = json.loads(text.splitlines()[-1])
        float(res["qps"])
    except (ValueError, IndexError, KeyError, TypeError):
        print("db_bench printed %r" % text[:200], file=sys.stderr)
        return 1
    res["client"] = "keel"
    res["round"] = int(opt(args, "--round", "1"))
    res.setdefault("parse_error", None)
    print(json.dumps(res))
    return 0


def storage_block(rdir):
    meta = json.load(open(os.path.join(rdir, "meta.json")))
    runs = load_jsonl(os.path.join(rdir, "runs.jsonl"))
    rounds = max([r["round"] for r in runs] or [1])
    scale = int(meta.get("scale", 10))
    lines = ["%s (bench/storage.sh) %s ===" % (STORAGE_TITLE, meta.get("date", ""))]
    lines.append("PostgreSQL %s (pgbench %s), throwaway cluster on loopback TCP, scale %d"
                 " (%s accounts, all in shared_buffers)" % (
                     meta.get("postgres_version", "?"), meta.get("pgbench_version", "?"), scale,
                     format(scale * 100000, ",")))
    lines.append("host: %s CPUs (%s), Linux %s; commit %s; load average before: %s, after: %s"
                 % (meta.get("cpus"), meta.get("cpu_model"), meta.get("kernel"),
                    meta.get("commit", "?"), meta.get("load_start", "?"),
                    meta.get("load_end", "?")))
    lines.append("point select by primary key, %s connections, %ss each%s:" % (
        meta.get("conns"), meta.get("duration"),
        ", median of %d interleaved rounds" % rounds if rounds > 1 else ""))
    lines.append("  pgbench: pgbench -S -M prepared -c %s -j %s -T %s -n (tps without initial"
                 " connection time)" % (meta.get("conns"), meta.get("jobs"), meta.get("duration")))
    lines.append("  keel:    %s --threads %s: keel_db_acquire(%s) + keel_db_query + next + int64"
                 " + rows_free + release, pool of %s" % (
                     meta.get("db_bench", "db_bench"), meta.get("conns"),
                     "KEEL_DB_READ" if meta.get("intent") == "read" else "KEEL_DB_READ_PRIMARY",
                     meta.get("conns")))
    lines.append("  %-8s %12s %12s %10s %10s  %-20s %s" % (
        "client", "queries/s", "avg latency", "p50", "p99", "rounds (min-max)", "errors"))
    med = {}
    ok_runs = True
    for client in ("pgbench", "keel"):
        rs = [r for r in runs if r["client"] == client]
        if not rs:
            lines.append("  %-8s not measured" % client)
            ok_runs = False
            continue
        q = [r["qps"] for r in rs if r.get("qps") is not None]
        med[client] = statistics.median(q) if q else None
        errs = sum(r.get("errors") or 0 for r in rs)
        if errs:
            ok_runs = False
        lat = median_of(rs, "lat_avg_us")
        lines.append("  %-8s %12s %12s %10s %10s  %-20s %s" % (
            client, "n/a" if med[client] is None else "%.0f" % med[client],
            fmt_us(lat), fmt_us(median_of(rs, "lat_p50_us")),
            fmt_us(median_of(rs, "lat_p99_us")),
            "%.0f-%.0f" % (min(q), max(q)) if q else "n/a", errs or "none"))
    k, p = med.get("keel"), med.get("pgbench")
    if k and p:
        ratio = k / p
        ok = ratio >= STORAGE_BAR
        lines.append("  keel/pgbench  %.2f (bar >= %.2f) %s" % (ratio, STORAGE_BAR, verdict(ok)))
    else:
        ok = False
        lines.append("  keel/pgbench  n/a (a run failed)")
    lines.append("STORAGE: %s%s" % (verdict(ok and ok_runs),
                                    "" if ok_runs else " (errors or a missing run, see above)"))
    return "\n".join(lines) + "\n"


def replace_block(out_txt, title, text):
    """Appends a summary block to out_txt, dropping the previous block with
    the same title (it runs to the end or to the next "=== ")."""
    old = open(out_txt).read() if os.path.exists(out_txt) else ""
    i = old.find(title)
    if i >= 0:
        j = old.find("\n=== ", i + len(title))
        old = old[:i] + (old[j + 1:] if j >= 0 else "")
    if old and not old.endswith("\n\n"):
        old = old.rstrip("\n") + "\n\n"
    os.makedirs(os.path.dirname(out_txt) or ".", exist_ok=True)
    with open(out_txt, "w") as f:
        f.write(old + text)


def cmd_storage_report(args):
    rdir, out_txt = args[0], args[1]
    text = storage_block(rdir)
    sys.stdout.write(text)
    replace_block(out_txt, STORAGE_TITLE, text)


COMMANDS = {
    "freeport": cmd_freeport,
    "probe": cmd_probe,
    "same-body": cmd_same_body,
    "nginx-conf": cmd_nginx_conf,
    "wrk-parse": cmd_wrk_parse,
    "meta": cmd_meta,
    "probe-field": cmd_probe_field,
    "report": cmd_report,
    "pgbench-parse": cmd_pgbench_parse,
    "db-bench-parse": cmd_db_bench_parse,
    "storage-report": cmd_storage_report,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]) or 0)
