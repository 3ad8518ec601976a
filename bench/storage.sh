#!/usr/bin/env bash
# bench/storage.sh: the storage part of `make bench` (issue 3 "Performance"); also runs alone.
#
# Point selects by primary key through Keel's storage API (bench/db_bench, include/keel/db.h) vs
# `pgbench -S -M prepared`, same number of connections, same throwaway PostgreSQL 15, same run:
# 1. initdb a cluster in a temporary directory (trust auth, loopback TCP only, a private port),
#    start it, `pgbench -i -s SCALE` (scale 10: 1,000,000 rows in pgbench_accounts).
# 2. One short warm-up of each, then BENCH_ROUNDS interleaved rounds (pgbench first in odd
#    rounds, db_bench first in even ones) of
#      pgbench -S -M prepared -c N -j J -T D -n           ("tps = ... (without initial ...)")
#      db_bench --threads N --duration D --scale SCALE    (N threads, a pool of N connections)
# 3. Medians, the Keel/pgbench ratio and PASS/FAIL against 0.8 on stdout, appended to
#    bench/results/latest.txt (replacing an earlier storage block there).
#
# Exit status: 0 whatever the figures; 1 when PostgreSQL, pgbench or db_bench fails to run.
# Environment (defaults in brackets):
#   DB_BENCH_BIN [build/bench/db_bench]   BENCH_DB_CONNS [16]   BENCH_DB_JOBS [2, pgbench -j]
#   BENCH_DURATION [10, seconds; "10s" also accepted]   BENCH_DB_WARMUP [3, 0 = none]
#   BENCH_ROUNDS [3]   BENCH_DB_SCALE [10]   BENCH_DB_INTENT [read|primary]
#   BENCH_RESULTS [bench/results]   BENCH_KEEP_TMP [0]   PG_BIN [/usr/lib/postgresql/15/bin]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_TAG=storage
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
PY=${PYTHON:-python3}
TOOL="$ROOT/bench/bench.py"
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CONNS=${BENCH_DB_CONNS:-16}
JOBS=${BENCH_DB_JOBS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_DB_SCALE:-10}
INTENT=${BENCH_DB_INTENT:-read}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
DB_BENCH_BIN=${DB_BENCH_BIN:-build/bench/db_bench}

DURATION=$(seconds "${BENCH_DURATION:-10}")
WARMUP=$(seconds "${BENCH_DB_WARMUP:-3}")
for v in CONNS JOBS ROUNDS SCALE DURATION WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
((CONNS >= 1 && DURATION >= 1 && ROUNDS >= 1)) || die "BENCH_DB_CONNS, BENCH_DURATION and BENCH_ROUNDS must be >= 1"
((JOBS <= CONNS)) || JOBS=$CONNS # pgbench refuses more threads than clients

[[ -x $DB_BENCH_BIN ]] || die "no db_bench at $DB_BENCH_BIN (make build, or set DB_BENCH_BIN)"
DB_BENCH_BIN=$(cd "$(dirname "$DB_BENCH_BIN")" && pwd)/$(basename "$DB_BENCH_BIN")
for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pgbench" "$PG_BIN/postgres"; do
    [[ -x $tool ]] || die "$tool not found (PostgreSQL 15: apt-get install postgresql; or set PG_BIN)"
done
command -v "$PY" >/dev/null || die "$PY not found"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-sbench.XXXXXX")
R="$TMP/results"
PGDATA="$TMP/pgdata"
mkdir -p "$R"
pg_user
PG_STARTED=0
CHILD=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z $CHILD ]] || { kill "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; }
    pg_stop
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ------------------------------------------------------------------------------------ PostgreSQL
PORT=$("$PY" "$TOOL" freeport)
# shared_buffers holds the whole scale-10 database (about 160 MB) so both clients read from
# memory; the rest are defaults (fsync on, but the benchmark only reads).
pg_start "$PORT" $((CONNS * 2 + 20)) $((SCALE * 16 + 128))
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
PGB=("$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres)

log "pgbench -i -s $SCALE"
"${PGB[@]}" -i -s "$SCALE" -q postgres >"$TMP/pgbench-init.log" 2>&1 ||
    { tail -n 20 "$TMP/pgbench-init.log" >&2; show_pg_log; die "pgbench -i failed"; }

"$PY" "$TOOL" meta "$R/meta.json" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" \
    "db_bench=${DB_BENCH_BIN#"$ROOT"/}" \
    "postgres_version=$("$PG_BIN/postgres" --version | awk '{print $3}')" \
    "pgbench_version=$("$PG_BIN/pgbench" --version | awk '{print $3}')" \
    "cpus=$(nproc)" "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "kernel=$(uname -r)" "conns=$CONNS" "jobs=$JOBS" "scale=$SCALE" "duration=$DURATION" \
    "intent=$INTENT" "rounds=$ROUNDS" "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# --------------------------------------------------------------------------------------- runs
# run_pgbench ROUND SECONDS: appends its parsed figures to runs.jsonl unless warm-up (round 0).
run_pgbench() {
    local round=$1 secs=$2 out="$R/pgbench-r$1.txt"
    run_bg "$out" "$R/pgbench-r$round.err" "${PGB[@]}" -S -M prepared -c "$CONNS" -j "$JOBS" \
        -T "$secs" -n postgres ||
        { tail -n 20 "$R/pgbench-r$round.err" >&2; show_pg_log; die "pgbench failed (round $round)"; }
    "$PY" "$TOOL" pgbench-parse "$out" --round "$round" >"$R/pgbench-r$round.json" ||
        { tail -n 20 "$out" >&2; die "pgbench output not understood (round $round)"; }
    [[ $round == 0 ]] || { cat "$R/pgbench-r$round.json" >>"$R/runs.jsonl"; report_run "$R/pgbench-r$round.json"; }
}

# run_keel ROUND SECONDS: the same for db_bench.
run_keel() {
    local round=$1 secs=$2 out="$R/keel-r$1.json"
    run_bg "$out" "$R/keel-r$round.err" "$DB_BENCH_BIN" --url "$URL" --threads "$CONNS" \
        --duration "$secs" --scale "$SCALE" --intent "$INTENT" ||
        { tail -n 20 "$R/keel-r$round.err" >&2; show_pg_log; die "db_bench failed (round $round)"; }
    [[ -s $R/keel-r$round.err ]] && { log "db_bench said:"; tail -n 5 "$R/keel-r$round.err" >&2; }
    "$PY" "$TOOL" db-bench-parse "$out" --round "$round" >"$R/keel-r$round.parsed.json" ||
        die "db_bench output not understood (round $round)"
    [[ $round == 0 ]] || { cat "$R/keel-r$round.parsed.json" >>"$R/runs.jsonl"; report_run "$R/keel-r$round.parsed.json"; }
}

report_run() {
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("bench: storage: %-7s round %d: %.0f queries/s, avg latency %s us, errors %d" % (r["client"], r["round"], r["qps"], r["lat_avg_us"], r["errors"]))' "$1" >&2
}

if ((WARMUP > 0)); then
    log "warm-up ${WARMUP}s each"
    run_pgbench 0 "$WARMUP"
    run_keel 0 "$WARMUP"
fi
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then order=(pgbench keel); else order=(keel pgbench); fi
    for client in "${order[@]}"; do
        log "round $round/$ROUNDS: $client, $CONNS connections, ${DURATION}s"
        "run_$client" "$round" "$DURATION"
    done
done

# ------------------------------------------------------------------------------------- summary
"$PY" "$TOOL" meta "$R/meta.json" "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$RESULTS/raw"
rm -f "$RESULTS"/raw/storage-*
for f in "$R"/*; do cp "$f" "$RESULTS/raw/storage-$(basename "$f")"; done
echo
"$PY" "$TOOL" storage-report "$R" "$RESULTS/latest.txt"
log "summary appended to ${RESULTS#"$ROOT"/}/latest.txt (raw output in ${RESULTS#"$ROOT"/}/raw/storage-*)"
