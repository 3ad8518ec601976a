#!/usr/bin/env bash
# bench/auth.sh: the identity part of `make bench` (issue 4 "Performance"); also runs alone.
#
# One Keel (release build, default SQLite in a temporary directory, KEEL_THREADS = cores, access
# log to a file, rate limits raised to 1000000000/s so that wrk is never throttled, default
# Argon2id cost), one user registered and logged in over HTTP, then:
# (a) Authenticated read: wrk -t2 -c64 on GET /health/live and on GET /api/v1/users/me with
#     `Authorization: Bearer <access token>`, interleaved for BENCH_ROUNDS rounds (live first in
#     odd rounds, me first in even ones; a fresh login before each me run). Bar: median me req/s
#     >= 0.5 x median live req/s.
# (b) Login flood: wrk -t1 -c50 -s bench/auth_login.lua (POST /auth/login, right password, so
#     every request is a full Argon2id verify) running while wrk -t1 -c32 measures
#     GET /health/live, against the same wrk -t1 -c32 run without the flood, interleaved
#     (unloaded first in odd rounds, loaded first in even ones). The flood starts 1 s before the
#     measured run and ends 1 s after it. Bars: live req/s in the flood >= 0.5 x unloaded, live
#     p99 in the flood < 10 ms. Also reported: logins/s, the flood's latency, and its statuses
#     (503 from the full hash queue is accepted and counted; 429 would be a rate limit or the
#     login throttle).
# Summary block on stdout, appended to bench/results/latest.txt (replacing an earlier auth block
# there); raw wrk output in bench/results/raw/auth-*.
#
# The bars are informational: exit 0 whatever the figures; 1 if Keel failed to start, died, or
# refused to register or log in the bench user (then nothing can be measured).
# Environment (defaults in brackets):
#   KEEL_BIN [build/keel, else build/src/keel]   BENCH_DURATION [10s]   BENCH_WARMUP [2s, 0 = none]
#   BENCH_ROUNDS [3]   BENCH_THREADS [nproc]   BENCH_RESULTS [bench/results]   BENCH_KEEP_TMP [0]
#   BENCH_AUTH_LIVE ["-t1 -c32", the /health/live wrk shape of (b)]
#   BENCH_AUTH_FLOOD_CONNS [50]   WRK [wrk]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_TAG=auth
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
PY=${PYTHON:-python3}
TOOL="$ROOT/bench/bench.py"
ATOOL="$ROOT/bench/auth.py"
LUA="$ROOT/bench/auth_login.lua"
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-$(nproc)}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
WRK=${WRK:-wrk}
CONFIG_A="-t2 -c64"
CONFIG_B=${BENCH_AUTH_LIVE:--t1 -c32}
FLOOD_CONNS=${BENCH_AUTH_FLOOD_CONNS:-50}
CONFIG_FLOOD="-t1 -c$FLOOD_CONNS"
RATE=1000000000/s
export BENCH_AUTH_EMAIL=bench@example.com BENCH_AUTH_PASSWORD=bench-password-123 # read by the Lua script

DSECS=$(seconds "$DURATION")
[[ $DSECS =~ ^[0-9]+$ && $DSECS -ge 1 ]] || die "BENCH_DURATION must be whole seconds, minutes or hours (got '$DURATION')"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "BENCH_ROUNDS must be >= 1 (got '$ROUNDS')"
[[ $FLOOD_CONNS =~ ^[0-9]+$ && $FLOOD_CONNS -ge 1 ]] || die "BENCH_AUTH_FLOOD_CONNS must be >= 1"

keel_bin
for tool in "$WRK" "$PY"; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/ installs the bench deps)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-abench.XXXXXX")
R="$TMP/results"
mkdir -p "$R"
KEEL_PID="" CHILD="" FLOOD="" # what cleanup stops; each is cleared once waited for

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "$CHILD" "$FLOOD" "$KEEL_PID"; do [[ -z $pid ]] || stop "$pid" TERM 5; done
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
    local f
    for f in "$TMP"/keel/stderr.log "$TMP"/keel/stdout.log; do
        [[ -s $f ]] && { echo "--- ${f#"$TMP"/} (last lines)" >&2; tail -n 15 "$f" >&2; }
    done
    return 0
}

# Keel logs the signal it drains on; name it when one came from elsewhere.
signal_hint() {
    local sig
    sig=$(tail -n 5 "$TMP/keel/stdout.log" 2>/dev/null | sed -n 's/.*"msg":"draining".*"signal":"\([A-Z]*\)".*/\1/p')
    [[ -z $sig ]] || log "keel drained on $sig, which this script did not send: is something else killing processes named keel?"
}

check_keel() { # what
    alive "$KEEL_PID" && return 0
    log "keel died during $1"
    show_logs
    signal_hint
    exit 1
}

# ------------------------------------------------------------------------------------------ keel
# cwd and data directory in $TMP/keel: the default database (sqlite:./var/keel.db) and the
# development JWT key land there. Settings that would change what is measured (another database,
# Redis, a config file, a cheaper password hash) are removed from the environment.
PORT=$("$PY" "$TOOL" freeport)
BASE="http://127.0.0.1:$PORT"
mkdir -p "$TMP/keel/data"
(
    cd "$TMP/keel"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
    exec env -u KEEL_CONFIG -u KEEL_DATABASE_URL -u KEEL_DATABASE_REPLICAS -u KEEL_REDIS_URL \
        -u KEEL_PASSWORD_MEMORY -u KEEL_PASSWORD_ITERATIONS \
        KEEL_LISTEN="127.0.0.1:$PORT" KEEL_THREADS="$THREADS" KEEL_DATA_DIR="$TMP/keel/data" \
        KEEL_LOG_LEVEL=info KEEL_RATE_LIMIT_IP=$RATE KEEL_RATE_LIMIT_USER=$RATE \
        KEEL_RATE_LIMIT_AUTH=$RATE "$KEEL_BIN" serve
) >>"$TMP/keel/stdout.log" 2>"$TMP/keel/stderr.log" </dev/null & # O_APPEND, as Keel's log expects
KEEL_PID=$!
log "keel $KEEL_BIN on 127.0.0.1:$PORT (pid $KEEL_PID, KEEL_THREADS=$THREADS)"
ok=0
for ((i = 0; i < 50; i++)); do
    alive "$KEEL_PID" || break
    if "$PY" "$TOOL" probe "$BASE/health/live" "$R/probe.json" --wait 0.3 2>/dev/null; then ok=1; break; fi
done
[[ $ok == 1 ]] || { log "keel failed to start (GET /health/live never answered 200)"; show_logs; exit 1; }

"$PY" "$ATOOL" register "$BASE" "$BENCH_AUTH_EMAIL" "$BENCH_AUTH_PASSWORD" "Bench User" ||
    { show_logs; die "POST /auth/register failed"; }
TOKEN=$("$PY" "$ATOOL" login "$BASE" "$BENCH_AUTH_EMAIL" "$BENCH_AUTH_PASSWORD") ||
    { show_logs; die "POST /auth/login failed"; }
"$PY" "$ATOOL" check-me "$BASE" "$TOKEN" || { show_logs; die "GET /api/v1/users/me refused the token"; }
log "user $BENCH_AUTH_EMAIL registered and logged in; GET /api/v1/users/me answers 200"

"$PY" "$TOOL" meta "$R/meta.json" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" \
    "keel_bin=${KEEL_BIN#"$ROOT"/}" \
    "keel_version=$("$KEEL_BIN" version 2>/dev/null | head -n 1 || true)" \
    "wrk_version=wrk $("$WRK" -v 2>&1 | head -n 1 | awk '{print $2}')" \
    "cpus=$(nproc)" "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "kernel=$(uname -r)" "threads=$THREADS" "duration=$DURATION" \
    "config_a=$CONFIG_A" "config_b=$CONFIG_B" "config_flood=$CONFIG_FLOOD" \
    "password_cost=m=19456 KiB t=2 p=1 (default)" \
    "hash_concurrency=${KEEL_PASSWORD_CONCURRENCY:-$(nproc)}" \
    "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# --------------------------------------------------------------------------------------- wrk
# run_wrk NAME CONFIG DURATION [wrk arguments...]: one wrk run in the background (so INT/TERM
# reach the trap at once), output to $R/wrk-NAME.txt.
run_wrk() {
    local name=$1 cfg=$2 dur=$3
    shift 3
    # shellcheck disable=SC2086 # cfg holds two wrk options
    "$WRK" $cfg -d"$dur" --latency "$@" >"$R/wrk-$name.txt" 2>&1 </dev/null &
    CHILD=$!
    wait "$CHILD" || log "wrk exited $? for $name"
    CHILD=""
}

# record NAME PART TARGET ROUND: parse wrk-NAME.txt; keep it unless warm-up (round 0).
record() {
    local name=$1 part=$2 target=$3 round=$4
    "$PY" "$ATOOL" parse "$R/wrk-$name.txt" --part "$part" --target "$target" --round "$round" \
        >"$R/$name.json" || log "wrk output for $name not understood: $(head -c 300 "$R/wrk-$name.txt")"
    [[ $round == 0 ]] && return 0
    cat "$R/$name.json" >>"$R/auth.jsonl"
    "$PY" "$ATOOL" line "$R/$name.json" >&2
}

# (a) one run of TARGET (live|me) in ROUND with DURATION.
run_a() {
    local target=$1 round=$2 dur=$3 name="a-$1-r$2"
    if [[ $target == live ]]; then
        run_wrk "$name" "$CONFIG_A" "$dur" "$BASE/health/live"
    else
        TOKEN=$("$PY" "$ATOOL" login "$BASE" "$BENCH_AUTH_EMAIL" "$BENCH_AUTH_PASSWORD") ||
            { check_keel "a login"; die "POST /auth/login failed before round $round"; }
        run_wrk "$name" "$CONFIG_A" "$dur" -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/users/me"
    fi
    check_keel "wrk $CONFIG_A on $target"
    record "$name" a "$target" "$round"
}

# (b) /health/live in ROUND, unloaded or under the login flood.
run_b() {
    local mode=$1 round=$2 dur=$3
    if [[ $mode == unloaded ]]; then
        run_wrk "b-live_unloaded-r$round" "$CONFIG_B" "$dur" "$BASE/health/live"
        check_keel "wrk $CONFIG_B on /health/live"
        record "b-live_unloaded-r$round" b live_unloaded "$round"
        return 0
    fi
    # shellcheck disable=SC2086
    "$WRK" $CONFIG_FLOOD -d"$(($(seconds "$dur") + 2))s" --timeout 10s --latency -s "$LUA" \
        "$BASE/auth/login" >"$R/wrk-b-login-r$round.txt" 2>&1 </dev/null &
    FLOOD=$!
    sleep 1
    run_wrk "b-live_flood-r$round" "$CONFIG_B" "$dur" "$BASE/health/live"
    wait "$FLOOD" || log "wrk exited $? for the login flood"
    FLOOD=""
    check_keel "the login flood"
    record "b-live_flood-r$round" b live_flood "$round"
    record "b-login-r$round" b login "$round"
    sleep 1 # logins still hashing when wrk closed their connections finish before the next run
}

if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
    log "warm-up $WARMUP each: wrk $CONFIG_A on /health/live and /api/v1/users/me"
    run_a live 0 "$WARMUP"
    run_a me 0 "$WARMUP"
fi
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then order=(live me); else order=(me live); fi
    for target in "${order[@]}"; do
        log "(a) round $round/$ROUNDS: wrk $CONFIG_A -d$DURATION $target"
        run_a "$target" "$round" "$DURATION"
    done
done
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then order=(unloaded flood); else order=(flood unloaded); fi
    for mode in "${order[@]}"; do
        if [[ $mode == flood ]]; then
            log "(b) round $round/$ROUNDS: wrk $CONFIG_B -d$DURATION /health/live during wrk $CONFIG_FLOOD POST /auth/login"
        else
            log "(b) round $round/$ROUNDS: wrk $CONFIG_B -d$DURATION /health/live, unloaded"
        fi
        run_b "$mode" "$round" "$DURATION"
    done
done

stop "$KEEL_PID" TERM 15
KEEL_PID=""
"$PY" "$TOOL" meta "$R/meta.json" "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$TMP/keel/stdout.log" # the access log: about 1 GB after a default run

# ------------------------------------------------------------------------------------- summary
mkdir -p "$RESULTS/raw"
rm -f "$RESULTS"/raw/auth-*
for f in "$R"/*; do cp "$f" "$RESULTS/raw/auth-$(basename "$f")"; done
echo
"$PY" "$ATOOL" report "$R" "$RESULTS/latest.txt"
log "summary appended to ${RESULTS#"$ROOT"/}/latest.txt (raw output in ${RESULTS#"$ROOT"/}/raw/auth-*)"
