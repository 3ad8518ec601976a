#!/usr/bin/env bash
# Installs the Debian packages Keel needs, only those that are missing.
# Usage: scripts/deps.sh [build|test|bench|all]   (default: build)
# As root it runs apt-get; otherwise it prints the exact command and stops.
set -euo pipefail

build_pkgs=(gcc make meson ninja-build pkg-config git
            libuv1-dev node-llhttp libjson-c-dev libsodium-dev zlib1g-dev libinih-dev
            libsqlite3-dev libpq-dev libhiredis-dev)
test_pkgs=(libcmocka-dev python3 clang libclang-rt-14-dev prometheus postgresql redis-server)
bench_pkgs=(wrk nginx python3 postgresql postgresql-contrib redis-server)

want=("${build_pkgs[@]}")
case "${1:-build}" in
build) ;;
test) want+=("${test_pkgs[@]}") ;;
bench) want+=("${bench_pkgs[@]}") ;;
all) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
*) echo "usage: $0 [build|test|bench|all]" >&2; exit 64 ;;
esac

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "Keel needs these Debian packages: ${missing[*]}" >&2
    echo "Run as root:  apt-get update && $cmd" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists; refresh them once if they are old.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -qq
fi
$cmd -qq >/dev/null || { apt-get update -qq && $cmd -qq >/dev/null; }
