#!/usr/bin/env bash
# make test: every test Keel has, the way CI runs it.
#  1. release build with -Werror (what `make build` ships, warnings are errors);
#  2. debug build under AddressSanitizer + UndefinedBehaviorSanitizer with
#     -Werror and the arena in debug mode (one malloc per allocation, so
#     ASan sees every overrun), running the unit and end-to-end suites;
#  3. a short libFuzzer run over the request path and the JSON layer.
# Ends with one summary line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

if [ ! -f build-test/build.ninja ]; then
    meson setup build-test -Dbuildtype=release --werror -Dtests=enabled >/dev/null || fail "meson setup (release) failed"
fi
meson compile -C build-test >/dev/null || { meson compile -C build-test 2>&1 | tail -n 40; fail "release build failed"; }

if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Dbuildtype=debug --werror -Dtests=enabled -Darena_debug=true \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || fail "meson setup (asan) failed"
fi
meson compile -C build-asan >/dev/null || { meson compile -C build-asan 2>&1 | tail -n 40; fail "sanitizer build failed"; }

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}"
meson test -C build-asan --print-errorlogs --num-processes 2 "$@"
suite_rc=$?

fuzz_rc=skip
if [ $# -eq 0 ]; then
    fuzz_rc=0
    FUZZ_SECONDS="${FUZZ_SECONDS:-30}" scripts/fuzz.sh || fuzz_rc=1
fi

python3 - "$fuzz_rc" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open("build-asan/meson-logs/testlog.json"):
    r = json.loads(line).get("result")
    if r == "OK" or r == "EXPECTEDFAIL":
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
if sys.argv[1] == "1":
    failed += 1
elif sys.argv[1] == "0":
    passed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[ $suite_rc -eq 0 ] && [ "$fuzz_rc" != 1 ]
