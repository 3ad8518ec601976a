#!/usr/bin/env bash
# bench/commerce.sh: the commerce part of `make bench` (issue 5 "Performance"); also runs alone.
#
# (1) L1 reads: one Keel on the default SQLite (temporary directory, cache on, `keel seed`),
#     wrk -t2 -c64 -s bench/latency.lua (static request, p95 added) on GET /health/live and on
#     GET /api/v1/products/{id} (one product, read once before), interleaved. Bar: product
#     req/s >= 0.7 x live req/s.
# Then a throwaway PostgreSQL 15 (as bench/storage.sh: initdb in the temporary directory, trust
# auth, loopback only, a private port; defaults otherwise, so fsync and synchronous_commit are
# on), a database `keel` seeded with BENCH_COMMERCE_PRODUCTS products and the pgbench scale-10
# tables in `postgres`; a Keel on it with KEEL_CACHE=false and a pool of BENCH_COMMERCE_CONNS;
# the stock of BENCH_COMMERCE_ORDER_PRODUCTS products raised (POST .../stock as an admin created
# with `keel users create-admin`) and BENCH_COMMERCE_USERS users registered.
# (2) Uncached reads: wrk -t2 -c16 -s bench/products.lua (random product ids) vs
#     pgbench -S -M prepared -c16 -j2, interleaved. Bar: >= 20,000 req/s or >= 0.6 x pgbench.
# (3) Orders: wrk -t2 -c16 -s bench/orders.lua (2 random products, 1 unit each, the users'
#     tokens round-robin) vs pgbench -M prepared -c16 -j2 (TPC-B), interleaved. Bar: >= 0.6 x
#     pgbench; every order must answer 201 (the statuses are counted and reported).
# (4) Mixed: a Keel on the same database with the cache on and, when redis-server is installed,
#     KEEL_REDIS_URL to a throwaway Redis (no persistence); wrk -t2 -c64 -s bench/mixed.lua (90%
#     product reads, 10% orders). Reported: req/s, p50/p95/p99, reads/s and orders/s.
# Summary block on stdout, appended to bench/results/latest.txt (replacing an earlier commerce
# block there); raw output in bench/results/raw/commerce-*.
#
# The bars are informational: exit 0 whatever the figures; 1 if Keel, PostgreSQL or Redis failed
# to start or died, or the set-up (seed, admin, users, stock) failed, so nothing can be measured.
# Environment (defaults in brackets):
#   KEEL_BIN [build/keel, else build/src/keel]   BENCH_DURATION [10s]   BENCH_WARMUP [2s, 0 = none]
#   BENCH_ROUNDS [3]   BENCH_THREADS [nproc]   BENCH_RESULTS [bench/results]   BENCH_KEEP_TMP [0]
#   BENCH_COMMERCE_PRODUCTS [10000]   BENCH_COMMERCE_ORDER_PRODUCTS [1000]
#   BENCH_COMMERCE_USERS [8]   BENCH_COMMERCE_CONNS [16: wrk -c of (2)/(3), pgbench -c, pool]
#   BENCH_COMMERCE_MIXED ["-t2 -c64", wrk shape of (4)]   BENCH_COMMERCE_READ_PERCENT [90]
#   BENCH_COMMERCE_REDIS [1; 0 runs (4) without Redis]   BENCH_COMMERCE_PARTS ["1 2 3 4", a subset]
#   BENCH_DB_SCALE [10]   BENCH_DB_JOBS [2]
#   PG_BIN [/usr/lib/postgresql/15/bin]   REDIS_SERVER [redis-server]   WRK [wrk]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_TAG=commerce
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
PY=${PYTHON:-python3}
TOOL="$ROOT/bench/bench.py"
CTOOL="$ROOT/bench/commerce.py"
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-$(nproc)}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
WRK=${WRK:-wrk}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
PRODUCTS=${BENCH_COMMERCE_PRODUCTS:-10000}
ORDER_PRODUCTS=${BENCH_COMMERCE_ORDER_PRODUCTS:-1000}
USERS=${BENCH_COMMERCE_USERS:-8}
CONNS=${BENCH_COMMERCE_CONNS:-16}
JOBS=${BENCH_DB_JOBS:-2}
SCALE=${BENCH_DB_SCALE:-10}
READ_PERCENT=${BENCH_COMMERCE_READ_PERCENT:-90}
PARTS=${BENCH_COMMERCE_PARTS:-1 2 3 4}
CONFIG_L1="-t2 -c64"
CONFIG_PG="-t$JOBS -c$CONNS"
CONFIG_MIXED=${BENCH_COMMERCE_MIXED:--t2 -c64}
RATE=1000000000/s
ADMIN_EMAIL=bench-admin@example.com
PASSWORD=bench-password-123 # the admin's and the users'

DSECS=$(seconds "$DURATION")
WSECS=$(seconds "$WARMUP")
for v in DSECS WSECS ROUNDS PRODUCTS ORDER_PRODUCTS USERS CONNS JOBS SCALE READ_PERCENT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
((DSECS >= 1 && ROUNDS >= 1 && USERS >= 1 && CONNS >= 1)) ||
    die "BENCH_DURATION, BENCH_ROUNDS, BENCH_COMMERCE_USERS and BENCH_COMMERCE_CONNS must be >= 1"
((PRODUCTS >= 2 && ORDER_PRODUCTS >= 2 && READ_PERCENT <= 100)) ||
    die "orders need 2 products (BENCH_COMMERCE_PRODUCTS, _ORDER_PRODUCTS >= 2); READ_PERCENT <= 100"
((JOBS <= CONNS)) || JOBS=$CONNS
[[ $PARTS =~ ^[[:space:]]*[1-4]([[:space:]]+[1-4])*[[:space:]]*$ ]] ||
    die "BENCH_COMMERCE_PARTS takes part numbers 1 to 4 (got '$PARTS')"

keel_bin
for tool in "$WRK" "$PY"; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/ installs the bench deps)"
done
for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pgbench" "$PG_BIN/postgres" "$PG_BIN/psql"; do
    [[ -x $tool ]] || die "$tool not found (PostgreSQL 15: apt-get install postgresql; or set PG_BIN)"
done
REDIS=""
if [[ ${BENCH_COMMERCE_REDIS:-1} != 0 ]]; then
    if command -v "$REDIS_SERVER" >/dev/null; then
        REDIS=$(command -v "$REDIS_SERVER")
    else
        log "$REDIS_SERVER not found: the mixed run goes without Redis (apt-get install redis-server)"
    fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keel-cbench.XXXXXX")
R="$TMP/results"
PGDATA="$TMP/pgdata"
mkdir -p "$R"
# Keel, Redis and the clients stay root and write in the postgres-owned $TMP all the same.
pg_user
KEEL_PID="" KEEL_TAG="" CHILD="" REDIS_PID="" PG_STARTED=0 # what cleanup stops

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "$CHILD" "$KEEL_PID" "$REDIS_PID"; do [[ -z $pid ]] || stop "$pid" TERM 5; done
    pg_stop
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() { # TAG
    local f
    for f in "$TMP/$1"/stderr.log "$TMP/$1"/stdout.log; do
        [[ -s $f ]] && { echo "--- ${f#"$TMP"/} (last lines)" >&2; tail -n 15 "$f" >&2; }
    done
    return 0
}

pg_alive() { "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

# check_servers WHAT: exit 1 if Keel, PostgreSQL or Redis died during WHAT.
check_servers() {
    local sig
    if [[ -n $KEEL_PID ]] && ! alive "$KEEL_PID"; then
        log "keel died during $1"
        show_logs "$KEEL_TAG"
        # Keel logs the signal it drains on; name it when one came from elsewhere.
        sig=$(tail -n 5 "$TMP/$KEEL_TAG/stdout.log" 2>/dev/null | sed -n 's/.*"msg":"draining".*"signal":"\([A-Z]*\)".*/\1/p')
        [[ -z $sig ]] || log "keel drained on $sig, which this script did not send: is something else killing processes named keel?"
        KEEL_PID=""
        exit 1
    fi
    if [[ $PG_STARTED == 1 ]] && ! pg_alive; then
        log "PostgreSQL died during $1"
        show_pg_log
        PG_STARTED=0
        exit 1
    fi
    if [[ -n $REDIS_PID ]] && ! alive "$REDIS_PID"; then
        log "redis-server died during $1"
        tail -n 15 "$TMP/redis/redis.log" >&2 2>/dev/null || true
        REDIS_PID=""
        exit 1
    fi
    return 0
}

# keel_env TAG: the environment of every keel command of TAG (cwd $TMP/TAG; its data directory,
# SQLite file and development JWT key there). Settings that would change what is measured are
# removed from the caller's environment; the parts add theirs after it.
keel_env() {
    KENV=(env -u KEEL_CONFIG -u KEEL_DATABASE_URL -u KEEL_DATABASE_REPLICAS -u KEEL_REDIS_URL
        -u KEEL_CACHE -u KEEL_CACHE_L1_BYTES -u KEEL_CACHE_L1_TTL -u KEEL_DATABASE_POOL_SIZE
        -u KEEL_PASSWORD_CONCURRENCY -u KEEL_ACCESS_TOKEN_TTL -u KEEL_DEBUG_ROUTES
        KEEL_THREADS="$THREADS" KEEL_DATA_DIR="$TMP/$1/data" KEEL_LOG_LEVEL=info
        "KEEL_RATE_LIMIT_IP=$RATE" "KEEL_RATE_LIMIT_USER=$RATE" "KEEL_RATE_LIMIT_AUTH=$RATE"
        KEEL_PASSWORD_MEMORY=1024 KEEL_PASSWORD_ITERATIONS=1)
    mkdir -p "$TMP/$1/data"
}

# keel_cmd TAG [VAR=VALUE...] -- ARGS...: one keel command (seed, users) with TAG's environment;
# its output goes to $TMP/TAG/setup.log. Standard input is the caller's.
keel_cmd() {
    local tag=$1 vars=()
    shift
    while [[ $1 != -- ]]; do vars+=("$1"); shift; done
    shift
    keel_env "$tag"
    (cd "$TMP/$tag" && exec "${KENV[@]}" "${vars[@]}" "$KEEL_BIN" "$@") >>"$TMP/$tag/setup.log" 2>&1
}

# start_keel TAG [VAR=VALUE...]: `keel serve` on a free port, stdout (one JSON line per request)
# appended to $TMP/TAG/stdout.log; waits until GET /health/live answers 200. Sets KEEL_PID, BASE.
start_keel() {
    local tag=$1 port i ok=0
    shift
    port=$("$PY" "$TOOL" freeport)
    BASE="http://127.0.0.1:$port"
    keel_env "$tag"
    (
        cd "$TMP/$tag"
        ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
        exec "${KENV[@]}" KEEL_LISTEN="127.0.0.1:$port" "$@" "$KEEL_BIN" serve
    ) >>"$TMP/$tag/stdout.log" 2>"$TMP/$tag/stderr.log" </dev/null & # O_APPEND, as Keel's log expects
    KEEL_PID=$! KEEL_TAG=$tag
    log "keel ($tag) on 127.0.0.1:$port (pid $KEEL_PID, KEEL_THREADS=$THREADS${*:+, $*})"
    for ((i = 0; i < 50; i++)); do
        alive "$KEEL_PID" || break
        if "$PY" "$TOOL" probe "$BASE/health/live" "$R/probe-$tag.json" --wait 0.3 2>/dev/null; then ok=1; break; fi
    done
    [[ $ok == 1 ]] || { log "keel ($tag) failed to start (GET /health/live never answered 200)"; show_logs "$tag"; exit 1; }
}

stop_keel() {
    stop "$KEEL_PID" TERM 15
    KEEL_PID=""
    rm -f "$TMP/$KEEL_TAG/stdout.log" # the access log: can be a few GB after a default run
}

# ------------------------------------------------------------------------------------ runners

# record NAME PART TARGET ROUND [--pgbench]: parse $R/NAME.txt; keep it unless warm-up (round 0).
record() {
    local name=$1 part=$2 target=$3 round=$4
    shift 4
    "$PY" "$CTOOL" parse "$R/$name.txt" --part "$part" --target "$target" --round "$round" "$@" \
        >"$R/$name.json" || log "output of $name not understood: $(tail -c 300 "$R/$name.txt")"
    [[ $round == 0 ]] && return 0
    cat "$R/$name.json" >>"$R/commerce.jsonl"
    "$PY" "$CTOOL" line "$R/$name.json" >&2
}

# wrk_run NAME PART TARGET ROUND SECONDS CONFIG [wrk arguments...]
wrk_run() {
    local name=$1 part=$2 target=$3 round=$4 secs=$5 cfg=$6
    shift 6
    # shellcheck disable=SC2086 # cfg holds two wrk options
    run_bg "$R/$name.txt" "$R/$name.txt" "$WRK" $cfg -d"${secs}s" --latency "$@" || log "wrk exited $? for $name"
    check_servers "wrk $cfg ($name)"
    record "$name" "$part" "$target" "$round"
}

# pgbench_run NAME PART TARGET ROUND SECONDS [pgbench arguments...]
pgbench_run() {
    local name=$1 part=$2 target=$3 round=$4 secs=$5
    shift 5
    run_bg "$R/$name.txt" "$R/$name.txt" "${PGB[@]}" "$@" -M prepared -c "$CONNS" -j "$JOBS" -T "$secs" -n postgres ||
        log "pgbench exited $? for $name: $(tail -n 3 "$R/$name.txt" | tr '\n' ' ')"
    check_servers "pgbench ($name)"
    record "$name" "$part" "$target" "$round" --pgbench
}

tokens() {
    "$PY" "$CTOOL" tokens "$BASE" "$USERS" "$PASSWORD" "$TMP/tokens.txt" ||
        { check_servers "a login"; die "POST /auth/login of the bench users failed"; }
}

order() { # the order of two targets in ROUND: as given in odd rounds, swapped in even ones
    if (($1 % 2)); then echo "$2 $3"; else echo "$3 $2"; fi
}

"$PY" "$TOOL" meta "$R/meta.json" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" \
    "keel_bin=${KEEL_BIN#"$ROOT"/}" \
    "keel_version=$("$KEEL_BIN" version 2>/dev/null | head -n 1 || true)" \
    "wrk_version=wrk $("$WRK" -v 2>&1 | head -n 1 | awk '{print $2}')" \
    "postgres_version=$("$PG_BIN/postgres" --version | awk '{print $3}')" \
    "pgbench_version=$("$PG_BIN/pgbench" --version | awk '{print $3}')" \
    "cpus=$(nproc)" "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "kernel=$(uname -r)" "threads=$THREADS" "duration=$DURATION" "duration_s=$DSECS" \
    "products=$PRODUCTS" "order_products=$ORDER_PRODUCTS" "users=$USERS" "conns=$CONNS" \
    "pool=$CONNS" "jobs=$JOBS" "scale=$SCALE" "read_percent=$READ_PERCENT" \
    "config_l1=$CONFIG_L1" "config_pg=$CONFIG_PG" "config_mixed=$CONFIG_MIXED" "parts=$PARTS" \
    "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------------- (1) L1, SQLite
run1() { # TARGET ROUND SECONDS
    local url="$BASE/health/live"
    [[ $1 == live ]] || url=$PRODUCT_URL
    wrk_run "1-$1-r$2" 1 "$1" "$2" "$3" "$CONFIG_L1" -s "$ROOT/bench/latency.lua" "$url"
}

part1() {
    local round target
    keel_cmd sqlite -- seed --products "$PRODUCTS" ||
        { tail -n 5 "$TMP/sqlite/setup.log" >&2; die "keel seed (SQLite) failed"; }
    start_keel sqlite
    "$PY" -c 'import json,sys,urllib.request as u; print(json.load(u.urlopen(sys.argv[1]+"/api/v1/products?limit=1"))["items"][0]["id"])' \
        "$BASE" >"$TMP/l1-id.txt" || { check_servers "GET /api/v1/products"; die "GET /api/v1/products?limit=1 failed"; }
    PRODUCT_URL="$BASE/api/v1/products/$(cat "$TMP/l1-id.txt")"
    "$PY" "$TOOL" probe "$PRODUCT_URL" "$R/probe-product.json" --wait 5 ||
        { check_servers "GET $PRODUCT_URL"; die "GET $PRODUCT_URL did not answer 200"; }
    log "(1) product $(cat "$TMP/l1-id.txt") read once; L1 from here on"
    if ((WSECS > 0)); then
        log "(1) warm-up ${WSECS}s each: wrk $CONFIG_L1 on /health/live and the product"
        run1 live 0 "$WSECS"
        run1 product 0 "$WSECS"
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $(order "$round" live product); do
            log "(1) round $round/$ROUNDS: wrk $CONFIG_L1 -d${DSECS}s $target"
            run1 "$target" "$round" "$DSECS"
        done
    done
    "$PY" "$TOOL" meta "$R/meta.json" "l1_cache=$(cache_metrics)"
    stop_keel
}

# cache_metrics: the running Keel's cache lookups and database loads (from GET /metrics), so the
# report shows where the reads were answered.
cache_metrics() {
    "$PY" "$CTOOL" cache-metrics "$BASE" 2>/dev/null || echo "n/a"
}

# --------------------------------------------------------------------------------- PostgreSQL
pg_setup() {
    PGPORT=$("$PY" "$TOOL" freeport)
    # shared_buffers holds the pgbench tables and the catalog; the rest are defaults (fsync and
    # synchronous_commit on: an order and a TPC-B transaction each wait for their WAL flush).
    pg_start "$PGPORT" $((CONNS * 4 + 40)) $((SCALE * 16 + 256))
    PGB=("$PG_BIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres)
    PSQL=("$PG_BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -X -A -t -q)
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE keel" || { show_pg_log; die "CREATE DATABASE keel failed"; }
    DBURL="postgres://postgres@127.0.0.1:$PGPORT/keel"
    log "pgbench -i -s $SCALE"
    "${PGB[@]}" -i -s "$SCALE" -q postgres >"$TMP/pgbench-init.log" 2>&1 ||
        { tail -n 20 "$TMP/pgbench-init.log" >&2; show_pg_log; die "pgbench -i failed"; }
    "$PY" "$TOOL" meta "$R/meta.json" \
        "synchronous_commit=$("${PSQL[@]}" -d postgres -c 'SHOW synchronous_commit')" \
        "fsync=$("${PSQL[@]}" -d postgres -c 'SHOW fsync')" \
        "wal_fs=$(df --output=fstype "$PGDATA" | tail -n 1)"

    log "keel seed --products $PRODUCTS, users create-admin on PostgreSQL"
    keel_cmd pg-nocache "KEEL_DATABASE_URL=$DBURL" -- seed --products "$PRODUCTS" ||
        { tail -n 5 "$TMP/pg-nocache/setup.log" >&2; show_pg_log; die "keel seed (PostgreSQL) failed"; }
    echo "$PASSWORD" | keel_cmd pg-nocache "KEEL_DATABASE_URL=$DBURL" -- users create-admin --email "$ADMIN_EMAIL" ||
        { tail -n 5 "$TMP/pg-nocache/setup.log" >&2; die "keel users create-admin failed"; }

    # The Keel of (2) and (3); the set-up requests go through it too.
    start_keel pg-nocache "KEEL_DATABASE_URL=$DBURL" KEEL_CACHE=false "KEEL_DATABASE_POOL_SIZE=$CONNS"
    "$PY" "$CTOOL" setup "$BASE" "$ADMIN_EMAIL" "$PASSWORD" --users "$USERS" --user-password "$PASSWORD" \
        --order-products "$ORDER_PRODUCTS" --ids-out "$TMP/ids.txt" --order-ids-out "$TMP/order-ids.txt" ||
        { check_servers "the set-up"; show_logs pg-nocache; die "the set-up requests failed"; }
    tokens
    "$PY" "$CTOOL" check-order "$BASE" "$TMP/tokens.txt" "$TMP/order-ids.txt" ||
        { check_servers "an order"; die "POST /api/v1/orders refused the bench order"; }
    export BENCH_PRODUCT_IDS="$TMP/ids.txt" BENCH_ORDER_IDS="$TMP/order-ids.txt" \
        BENCH_TOKENS="$TMP/tokens.txt" BENCH_READ_PERCENT="$READ_PERCENT" # read by the Lua scripts
}

# ------------------------------------------------------------------ (2) uncached reads
run2() { # TARGET ROUND SECONDS
    if [[ $1 == pgbench ]]; then
        pgbench_run "2-pgbench-r$2" 2 pgbench "$2" "$3" -S
    else
        wrk_run "2-keel-r$2" 2 keel "$2" "$3" "$CONFIG_PG" -s "$ROOT/bench/products.lua" "$BASE"
    fi
}

part2() {
    local round target
    if ((WSECS > 0)); then
        log "(2) warm-up ${WSECS}s each: pgbench -S and wrk $CONFIG_PG products.lua"
        run2 pgbench 0 "$WSECS"
        run2 keel 0 "$WSECS"
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $(order "$round" pgbench keel); do
            log "(2) round $round/$ROUNDS: $target, $CONNS connections, ${DSECS}s"
            run2 "$target" "$round" "$DSECS"
        done
    done
}

# ------------------------------------------------------------------------------- (3) orders
run3() { # TARGET ROUND SECONDS
    if [[ $1 == pgbench ]]; then
        pgbench_run "3-pgbench-r$2" 3 pgbench "$2" "$3"
    else
        tokens # fresh 15-minute tokens for every run
        wrk_run "3-keel-r$2" 3 keel "$2" "$3" "$CONFIG_PG" --timeout 10s -s "$ROOT/bench/orders.lua" "$BASE"
    fi
}

part3() {
    local round target
    if ((WSECS > 0)); then
        log "(3) warm-up ${WSECS}s each: pgbench (TPC-B) and wrk $CONFIG_PG orders.lua"
        run3 pgbench 0 "$WSECS"
        run3 keel 0 "$WSECS"
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $(order "$round" pgbench keel); do
            log "(3) round $round/$ROUNDS: $target, $CONNS connections, ${DSECS}s"
            run3 "$target" "$round" "$DSECS"
        done
    done
}

# -------------------------------------------------------------------------------- (4) mixed
start_redis() {
    local i ok=0 line version
    RPORT=$("$PY" "$TOOL" freeport)
    mkdir -p "$TMP/redis"
    "$REDIS" --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no --dir "$TMP/redis" \
        --daemonize no --protected-mode no --loglevel warning >"$TMP/redis/redis.log" 2>&1 </dev/null &
    REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        alive "$REDIS_PID" || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$RPORT" && printf 'PING\r\n' >&3 && IFS= read -r -t 1 line <&3 &&
            [[ $line == +PONG* ]]) 2>/dev/null; then ok=1; break; fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || { tail -n 15 "$TMP/redis/redis.log" >&2; die "redis-server failed to start"; }
    version=$("$REDIS" --version | awk '{print $3}' | sed 's/^v=//')
    log "redis-server $version on 127.0.0.1:$RPORT (pid $REDIS_PID)"
    "$PY" "$TOOL" meta "$R/meta.json" "redis=redis-server $version"
}

run4() { # ROUND SECONDS
    tokens
    wrk_run "4-mixed-r$1" 4 mixed "$1" "$2" "$CONFIG_MIXED" --timeout 10s -s "$ROOT/bench/mixed.lua" "$BASE"
}

part4() {
    local round env=("KEEL_DATABASE_URL=$DBURL" "KEEL_DATABASE_POOL_SIZE=$CONNS")
    if [[ -n $REDIS ]]; then
        start_redis
        env+=("KEEL_REDIS_URL=redis://127.0.0.1:$RPORT/0")
    fi
    start_keel pg-mixed "${env[@]}"
    if ((WSECS > 0)); then
        log "(4) warm-up ${WSECS}s: wrk $CONFIG_MIXED mixed.lua"
        run4 0 "$WSECS"
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        log "(4) round $round/$ROUNDS: wrk $CONFIG_MIXED -d${DSECS}s mixed.lua ($READ_PERCENT% reads)"
        run4 "$round" "$DSECS"
    done
    "$PY" "$TOOL" meta "$R/meta.json" "mixed_cache=$(cache_metrics)"
    stop_keel
    [[ -z $REDIS_PID ]] || { stop "$REDIS_PID" TERM 10; REDIS_PID=""; }
}

# ------------------------------------------------------------------------------------ the run
want() { [[ " $PARTS " == *" $1 "* ]]; }
! want 1 || part1
if want 2 || want 3 || want 4; then
    pg_setup
    ! want 2 || part2
    ! want 3 || part3
    stop_keel
    ! want 4 || part4
    pg_stop
fi
"$PY" "$TOOL" meta "$R/meta.json" "load_end=$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------------------------- summary
mkdir -p "$RESULTS/raw"
rm -f "$RESULTS"/raw/commerce-*
for f in "$R"/*; do cp "$f" "$RESULTS/raw/commerce-$(basename "$f")"; done
echo
"$PY" "$CTOOL" report "$R" "$RESULTS/latest.txt"
log "summary appended to ${RESULTS#"$ROOT"/}/latest.txt (raw output in ${RESULTS#"$ROOT"/}/raw/commerce-*)"
