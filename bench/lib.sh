# bench/lib.sh: the shell functions bench/run.sh, storage.sh, auth.sh and commerce.sh share.
# Sourced, not run. The script sets BENCH_TAG first ("storage" prints "bench: storage: ...";
# empty prints "bench: ..."). run_bg sets CHILD, and the PostgreSQL helpers read AS, PG_BIN,
# PGDATA, PG_STARTED and TMP, which the script's cleanup relies on too.

log() { printf 'bench: %s%s\n' "${BENCH_TAG:+$BENCH_TAG: }" "$*" >&2; }
die() { log "$*"; exit 1; }

# seconds VALUE: wrk's "10s", "2m", "1h" or "10" as whole seconds (pgbench -T takes seconds).
seconds() {
    case $1 in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
    esac
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop PID [SIGNAL] [SECONDS]: signal one process we started, wait for it, SIGKILL if it lingers.
stop() {
    local pid=$1 sig=${2:-TERM} secs=${3:-10} i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -s "$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still running after ${secs}s, SIGKILL"
        kill -s KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# keel_bin: KEEL_BIN (default build/keel, else build/src/keel) as an absolute path, or die.
keel_bin() {
    if [[ -z "${KEEL_BIN:-}" ]]; then
        KEEL_BIN=build/keel
        [[ -x $KEEL_BIN ]] || KEEL_BIN=build/src/keel
    fi
    [[ -x $KEEL_BIN ]] || die "no keel binary at $KEEL_BIN (run make build or set KEEL_BIN)"
    KEEL_BIN=$(cd "$(dirname "$KEEL_BIN")" && pwd)/$(basename "$KEEL_BIN")
}

# run_bg OUT ERR CMD...: a measured program in the background (stdout to OUT, stderr to ERR, which
# may be the same file), waited for, so that INT/TERM reach the trap at once instead of after a
# 10 s run. Returns its status.
run_bg() {
    local out=$1 err=$2 rc=0
    shift 2
    if [[ $out == "$err" ]]; then
        "$@" >"$out" 2>&1 </dev/null &
    else
        "$@" >"$out" 2>"$err" </dev/null &
    fi
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# ------------------------------------------------------------------ a throwaway PostgreSQL

# pg_user: as root PostgreSQL runs as postgres (it refuses root) in a directory that user owns
# ($TMP); sets AS to the command prefix that runs a server tool as that user (empty otherwise).
pg_user() {
    AS=()
    if [[ $(id -u) == 0 ]]; then
        id -u postgres >/dev/null 2>&1 || die "running as root needs the postgres user (Debian package postgresql)"
        chown postgres: "$TMP"
        chmod 700 "$TMP"
        AS=(runuser -u postgres --)
    fi
}

# pg_start PORT MAX_CONNECTIONS SHARED_BUFFERS_MB: initdb in $PGDATA (trust, loopback TCP only,
# PORT, its socket in $TMP) and start it; defaults otherwise, so fsync and synchronous_commit
# are on. Sets PG_STARTED=1; dies (with the server log) on failure.
pg_start() {
    local port=$1 maxconn=$2 shared=$3
    log "initdb in $TMP, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
    "${AS[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-sync --locale=C \
        >"$TMP/initdb.log" 2>&1 || { tail -n 20 "$TMP/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$TMP'
max_connections = $maxconn
shared_buffers = ${shared}MB
logging_collector = off
EOF
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$TMP/postgres.log" -w -t 60 start >/dev/null ||
        { show_pg_log; die "PostgreSQL failed to start"; }
    PG_STARTED=1
}

# pg_stop: stops the cluster in $PGDATA if this script started it (PG_STARTED=1).
pg_stop() {
    [[ ${PG_STARTED:-0} == 1 ]] || return 0
    PG_STARTED=0
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 20 stop >/dev/null 2>&1 || {
        # pg_ctl gave up: the postmaster is ours (its pid file is in our directory).
        local pid
        pid=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)
        [[ -z $pid ]] || { log "PostgreSQL did not stop, SIGKILL $pid"; kill -KILL "$pid" 2>/dev/null || true; }
    }
}

show_pg_log() {
    [[ -s $TMP/postgres.log ]] && { echo "--- postgres.log (last lines)" >&2; tail -n 20 "$TMP/postgres.log" >&2; }
    return 0
}
