#!/usr/bin/env bash
# bench/run.sh: `make bench`. Keel vs nginx on loopback with wrk, then Keel's memory.
#
# 1. HTTP: Keel (release build, whole pipeline, access log to a file) and nginx (one worker per
#    core, access log on, `return 200` with the very bytes Keel answers) on GET /health/live,
#    wrk -t2 -c64 and -t1 -c32, interleaved; req/s, p50/p90/p99 and the Keel/nginx ratios.
# 2. Memory: a fresh Keel's idle RSS, then with 10,000 idle keep-alive connections.
# 3. Summary block on stdout and in bench/results/latest.txt.
# 4. Storage: bench/storage.sh (point selects through the storage API vs pgbench -S on a throwaway
#    PostgreSQL), which appends its own block to latest.txt. It also runs alone.
# 5. Identity: bench/auth.sh (authenticated GET /api/v1/users/me vs /health/live, and
#    /health/live during a login flood), which appends its own block too. It also runs alone.
# 6. Commerce: bench/commerce.sh (product reads from L1 vs /health/live, uncached product reads and
#    orders on a throwaway PostgreSQL vs pgbench, a 90/10 read/order mix), which appends its own
#    block too. It also runs alone.
#
# The bars are informational: exit 0 whatever the figures, 1 if a server failed to start or died.
# Environment (defaults in brackets):
#   KEEL_BIN [build/keel, else build/src/keel]   BENCH_DURATION [10s]   BENCH_WARMUP [2s, 0 = none]
#   BENCH_ROUNDS [3]   BENCH_THREADS [nproc]   BENCH_CONNS [10000]   BENCH_NGINX_HEADERS [mirror|none]
#   BENCH_RESULTS [bench/results]   BENCH_KEEP_TMP [0; 1 keeps the temporary directory]
#   NGINX [/usr/sbin/nginx]   WRK [wrk]   BENCH_STORAGE [1; 0 skips part 4]
#   DB_BENCH_BIN [bench/db_bench of KEEL_BIN's build directory]; storage.sh lists its own variables
#   BENCH_AUTH [1; 0 skips part 5]; auth.sh lists its own variables
#   BENCH_COMMERCE [1; 0 skips part 6]; commerce.sh lists its own variables
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_TAG=""
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
PY=${PYTHON:-python3}
TOOL="$ROOT/bench/bench.py"
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-$(nproc)}
CONNS=${BENCH_CONNS:-10000}
HEADERS=${BENCH_NGINX_HEADERS:-mirror}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
CONFIGS=("-t2 -c64" "-t1 -c32")

keel_bin
for tool in "$NGINX" "$WRK" "$PY"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (scripts/ installs the bench deps)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench.XXXXXX")
R="$TMP/results"
mkdir -p "$R"
PIDS=()

STORAGE_PID=""
AUTH_PID=""
COMMERCE_PID=""

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    [[ -z $STORAGE_PID ]] || stop "$STORAGE_PID" TERM 30 # it stops its PostgreSQL first
    [[ -z $AUTH_PID ]] || stop "$AUTH_PID" TERM 30       # it stops its Keel and wrk first
    [[ -z $COMMERCE_PID ]] || stop "$COMMERCE_PID" TERM 40 # its Keel, wrk, Redis, PostgreSQL
    for pid in "${PIDS[@]}"; do stop "$pid" TERM 5; done
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bg_wait PID: wait for a long-running helper started with &; unlike a foreground command, `wait`
# returns as soon as INT/TERM arrives, so the trap stops everything at once.
bg_wait() {
    PIDS+=("$1")
    wait "$1"
}

show_logs() { # dir
    local f
    for f in "$1"/stderr.log "$1"/stdout.log "$1"/error.log; do
        [[ -s $f ]] && { echo "--- ${f#"$TMP"/} (last lines)" >&2; tail -n 15 "$f" >&2; }
    done
    return 0
}

# start_keel TAG PORT [VAR=VALUE...]: Keel in $TMP/TAG (its cwd, so ./var lands there too),
# stdout (JSON log lines) to $TMP/TAG/stdout.log. Sets KEEL_PID.
start_keel() {
    local tag=$1 port=$2
    shift 2
    mkdir -p "$TMP/$tag/data"
    (
        cd "$TMP/$tag"
        ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
        exec env KEEL_LISTEN="127.0.0.1:$port" KEEL_THREADS="$THREADS" \
            KEEL_DATA_DIR="$TMP/$tag/data" KEEL_LOG_LEVEL=info "$@" "$KEEL_BIN" serve
    ) >>"$TMP/$tag/stdout.log" 2>"$TMP/$tag/stderr.log" </dev/null & # O_APPEND, as Keel's log expects
    KEEL_PID=$!
    PIDS+=("$KEEL_PID")
}

# wait_listening TAG PID PORT: until the "listening" log line appears or the port accepts a TCP
# connection (no request is sent, so the idle RSS stays idle).
wait_listening() {
    local tag=$1 pid=$2 port=$3 i
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || return 1
        grep -q '"msg" *: *"listening"' "$TMP/$tag/stdout.log" 2>/dev/null && return 0
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# probe URL OUT PID: poll URL until it answers 200 (15 s at most) while PID lives.
probe() {
    local url=$1 out=$2 pid=$3 i
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 1
        "$PY" "$TOOL" probe "$url" "$out" --wait 0.3 2>/dev/null && return 0
    done
    "$PY" "$TOOL" probe "$url" "$out" --wait 0.3
}

# signal_hint TAG: Keel logs the signal it drains on; name it when one came from elsewhere.
signal_hint() {
    local sig
    sig=$(tail -n 5 "$TMP/$1/stdout.log" 2>/dev/null | sed -n 's/.*"msg":"draining".*"signal":"\([A-Z]*\)".*/\1/p')
    [[ -z $sig ]] || log "keel drained on $sig, which this script did not send: is something else killing processes named keel?"
}

fail_start() { # what dir
    log "$1 failed to start"
    show_logs "$2"
    exit 1
}

# ------------------------------------------------------------------------------------------- meta
"$PY" "$TOOL" meta "$R/meta.json" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" \
    "keel_bin=${KEEL_BIN#"$ROOT"/}" \
    "keel_version=$("$KEEL_BIN" version 2>/dev/null | head -n 1 || true)" \
    "nginx_version=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
    "wrk_version=wrk $("$WRK" -v 2>&1 | head -n 1 | awk '{print $2}')" \
    "cpus=$(nproc)" "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "kernel=$(uname -r)" "threads=$THREADS" "duration=$DURATION" \
    "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------------------------------- HTTP
KPORT=$("$PY" "$TOOL" freeport)
# Rate limits raised far beyond what wrk sends (the per-IP limit is on by default, 1000/min).
start_keel keel "$KPORT" KEEL_RATE_LIMIT_IP=1000000000/s KEEL_RATE_LIMIT_USER=1000000000/s \
    KEEL_RATE_LIMIT_AUTH=1000000000/s
KEEL_HTTP_PID=$KEEL_PID
log "keel $KEEL_BIN on 127.0.0.1:$KPORT (pid $KEEL_HTTP_PID, KEEL_THREADS=$THREADS)"
probe "http://127.0.0.1:$KPORT/health/live" "$R/probe-keel.json" "$KEEL_HTTP_PID" ||
    fail_start "keel (GET /health/live never answered 200)" "$TMP/keel"

NDIR="$TMP/nginx"
mkdir -p "$NDIR"
NPORT=$("$PY" "$TOOL" freeport)
while [[ $NPORT == "$KPORT" ]]; do NPORT=$("$PY" "$TOOL" freeport); done
NUSER=""
[[ $(id -u) == 0 ]] && NUSER="$(id -un):$(id -gn)" # run the workers as the invoking user
"$PY" "$TOOL" nginx-conf bench/nginx.conf.in "$R/probe-keel.json" "$NPORT" "$THREADS" "$NDIR" \
    --headers "$HEADERS" ${NUSER:+--user "$NUSER"} >"$NDIR/nginx.conf"
"$NGINX" -t -q -p "$NDIR" -e "$NDIR/error.log" -c "$NDIR/nginx.conf" 2>"$NDIR/stderr.log" ||
    fail_start "nginx (config test)" "$NDIR"
"$NGINX" -p "$NDIR" -e "$NDIR/error.log" -c "$NDIR/nginx.conf" -g 'daemon off;' \
    >"$NDIR/stdout.log" 2>"$NDIR/stderr.log" </dev/null &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
log "nginx $NGINX on 127.0.0.1:$NPORT (pid $NGINX_PID, worker_processes $THREADS)"
probe "http://127.0.0.1:$NPORT/health/live" "$R/probe-nginx.json" "$NGINX_PID" ||
    fail_start "nginx" "$NDIR"
if "$PY" "$TOOL" same-body "$R/probe-keel.json" "$R/probe-nginx.json"; then SAME=yes; else SAME=NO; fi
"$PY" "$TOOL" meta "$R/meta.json" "same_body=$SAME" \
    "body_bytes=$("$PY" "$TOOL" probe-field "$R/probe-keel.json" body_len)" \
    "keel_resp_bytes=$("$PY" "$TOOL" probe-field "$R/probe-keel.json" raw_len)" \
    "nginx_resp_bytes=$("$PY" "$TOOL" probe-field "$R/probe-nginx.json" raw_len)"

# shellcheck disable=SC2034 # read through ${!url} in run_wrk
URL_keel="http://127.0.0.1:$KPORT/health/live"
# shellcheck disable=SC2034
URL_nginx="http://127.0.0.1:$NPORT/health/live"
KEEL_REQUESTS=2 # the two probes

# run_wrk SERVER CONFIG ROUND DURATION: one wrk run; appends its parsed figures unless warm-up.
run_wrk() {
    local server=$1 cfg=$2 round=$3 dur=$4 url out name
    url="URL_$server"
    name="${server}_${cfg// /}_r$round"
    out="$R/wrk-$name.txt"
    # shellcheck disable=SC2086 # cfg holds two wrk options
    "$WRK" $cfg -d"$dur" --latency "${!url}" >"$out" 2>&1 </dev/null &
    bg_wait $! || log "wrk exited $? for $server $cfg"
    "$PY" "$TOOL" wrk-parse "$out" --server "$server" --config "$cfg" --round "$round" >"$R/$name.json"
    if [[ $server == keel ]]; then
        KEEL_REQUESTS=$((KEEL_REQUESTS + $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"] or 0)' "$R/$name.json")))
    fi
    if [[ $round != 0 ]]; then
        cat "$R/$name.json" >>"$R/wrk.jsonl"
        "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("bench: %-6s %-9s round %d: %s req/s, p50 %s us, p99 %s us, non-2xx %d, socket errors %s" % (r["server"], r["config"], r["round"], r["rps"], r["p50_us"], r["p99_us"], r["non2xx"], r["socket_errors"] or "none"))' "$R/$name.json" >&2
    fi
    alive "$KEEL_HTTP_PID" || { log "keel died during wrk $cfg"; show_logs "$TMP/keel"; signal_hint keel; exit 1; }
    alive "$NGINX_PID" || { log "nginx died during wrk $cfg"; show_logs "$NDIR"; exit 1; }
}

if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    log "warm-up $WARMUP each"
    run_wrk keel "${CONFIGS[0]}" 0 "$WARMUP"
    run_wrk nginx "${CONFIGS[0]}" 0 "$WARMUP"
fi
for ((round = 1; round <= ROUNDS; round++)); do
    for cfg in "${CONFIGS[@]}"; do
        if ((round % 2)); then order=(keel nginx); else order=(nginx keel); fi
        for server in "${order[@]}"; do
            log "round $round/$ROUNDS: wrk $cfg -d$DURATION --latency $server"
            run_wrk "$server" "$cfg" "$round" "$DURATION"
        done
    done
done

stop "$KEEL_HTTP_PID" TERM 15 # lets Keel flush its log before the lines are counted
stop "$NGINX_PID" QUIT 10
"$PY" "$TOOL" meta "$R/meta.json" "keel_requests=$KEEL_REQUESTS" \
    "keel_log_lines=$(grep -c '"method"' "$TMP/keel/stdout.log" || true)" \
    "nginx_log_lines=$(wc -l <"$NDIR/access.log")"
rm -f "$TMP/keel/stdout.log" "$NDIR/access.log" # can be a few GB after a long run

# ----------------------------------------------------------------------------------------- memory
MPORT=$("$PY" "$TOOL" freeport)
start_keel mem "$MPORT" KEEL_MAX_CONNECTIONS=20000 KEEL_KEEPALIVE_TIMEOUT=300
MEM_PID=$KEEL_PID
wait_listening mem "$MEM_PID" "$MPORT" || fail_start "keel (memory run)" "$TMP/mem"
log "keel for the memory run on 127.0.0.1:$MPORT (pid $MEM_PID, open files $(sed -n 's/^Max open files *\([0-9]*\).*/\1/p' "/proc/$MEM_PID/limits"))"
sleep 1
log "opening $CONNS idle keep-alive connections"
"$PY" bench/idle_conns.py --pid "$MEM_PID" --port "$MPORT" --count "$CONNS" "$R/memory.json" </dev/null &
bg_wait $! || log "not every connection could be opened (see the summary)"
alive "$MEM_PID" || { log "keel died during the memory run"; show_logs "$TMP/mem"; signal_hint mem; exit 1; }
stop "$MEM_PID" TERM 15

# ---------------------------------------------------------------------------------------- summary
mkdir -p "$RESULTS/raw"
rm -f "$RESULTS"/raw/*
cp "$R"/*.json "$R"/*.jsonl "$R"/*.txt "$RESULTS/raw/" 2>/dev/null || true
cp "$NDIR/nginx.conf" "$RESULTS/raw/nginx.conf"
"$PY" "$TOOL" meta "$R/meta.json" "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$PY" "$TOOL" report "$R" "$RESULTS/latest.txt"
log "summary written to ${RESULTS#"$ROOT"/}/latest.txt (raw wrk output in ${RESULTS#"$ROOT"/}/raw/)"

# ---------------------------------------------------------------------------------------- storage
# db_bench is built next to the keel binary: build/keel is a link to build/src/keel.
if [[ ${BENCH_STORAGE:-1} != 0 ]]; then
    DB_BENCH_BIN=${DB_BENCH_BIN:-$(dirname "$(dirname "$(readlink -f "$KEEL_BIN")")")/bench/db_bench}
    echo
    log "storage: bash bench/storage.sh (DB_BENCH_BIN=${DB_BENCH_BIN#"$ROOT"/})"
    DB_BENCH_BIN=$DB_BENCH_BIN BENCH_RESULTS=$RESULTS BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS \
        bash "$ROOT/bench/storage.sh" </dev/null &
    STORAGE_PID=$!
    if ! wait "$STORAGE_PID"; then
        STORAGE_PID=""
        log "the storage benchmark failed (see above)"
        exit 1
    fi
    STORAGE_PID=""
fi

# --------------------------------------------------------------------------------------- identity
if [[ ${BENCH_AUTH:-1} != 0 ]]; then
    echo
    log "identity: bash bench/auth.sh"
    KEEL_BIN=$KEEL_BIN BENCH_RESULTS=$RESULTS BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS \
        BENCH_WARMUP=$WARMUP BENCH_THREADS=$THREADS bash "$ROOT/bench/auth.sh" </dev/null &
    AUTH_PID=$!
    if ! wait "$AUTH_PID"; then
        AUTH_PID=""
        log "the identity benchmark failed (see above)"
        exit 1
    fi
    AUTH_PID=""
fi

# --------------------------------------------------------------------------------------- commerce
if [[ ${BENCH_COMMERCE:-1} != 0 ]]; then
    echo
    log "commerce: bash bench/commerce.sh"
    KEEL_BIN=$KEEL_BIN BENCH_RESULTS=$RESULTS BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS \
        BENCH_WARMUP=$WARMUP BENCH_THREADS=$THREADS bash "$ROOT/bench/commerce.sh" </dev/null &
    COMMERCE_PID=$!
    if ! wait "$COMMERCE_PID"; then
        COMMERCE_PID=""
        log "the commerce benchmark failed (see above)"
        exit 1
    fi
    COMMERCE_PID=""
fi
