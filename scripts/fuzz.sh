#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each
# for FUZZ_SECONDS (default 30) from the seed corpus in tests/fuzz/corpus.
# New inputs go to build-fuzz/corpus-*, never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dbuildtype=debugoptimized -Dfuzz=true -Dtests=disabled \
        -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link \
        >/dev/null
fi
meson compile -C build-fuzz >build-fuzz/compile.log 2>&1 || { tail -n 40 build-fuzz/compile.log; exit 1; }
status=0
for h in fuzz_request fuzz_json; do
    corpus=build-fuzz/corpus-$h
    mkdir -p "$corpus"
    seeds=tests/fuzz/corpus/${h#fuzz_}
    echo "fuzz: $h for ${secs}s"
    if ! build-fuzz/tests/fuzz/$h -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -max_len=4096 -print_final_stats=1 -artifact_prefix=build-fuzz/ \
            "$corpus" "$seeds" >build-fuzz/$h.log 2>&1; then
        echo "fuzz: $h FAILED (see build-fuzz/$h.log)"
        tail -n 40 build-fuzz/$h.log
        status=1
    else
        grep -E "stat::number_of_executed_runs|cov:" build-fuzz/$h.log | tail -n 2 || true
    fi
done
exit $status
