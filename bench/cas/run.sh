#!/bin/sh
# Build (if needed) and run the CAS client benchmark against a fresh
# `cargo-distbuild cas run` on a temporary root, over loopback.
#   bench/cas/run.sh [BUILD_DIR] [cas_bench args...]
# BUILD_DIR defaults to build/ (cmake -S . -B build is run if missing).
# CAS_BENCH_TMP picks the parent of the server's store (default $TMPDIR or
# /tmp). The store fdatasyncs every blob, so on a real disk the 1 KiB
# upload rows measure the disk; use CAS_BENCH_TMP=/dev/shm to measure the
# client and the wire.
# CAS_BENCH_TLS=1 serves TLS (grpcs://, a throw-away certificate made with
# openssl) instead of h2c; bench/cas/tls.sh runs both and compares them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build}
[ $# -gt 0 ] && shift
case $build in /*) ;; *) build=$(pwd)/$build ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target cas_bench cargo-distbuild -j"$(nproc)" >/dev/null

tmp=$(mktemp -d "${CAS_BENCH_TMP:-${TMPDIR:-/tmp}}/cas_bench.XXXXXX")
echo "store: $tmp/store"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

tls_srv= tls_cli= scheme=
if [ -n "${CAS_BENCH_TLS:-}" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
  tls_srv="--tls-cert $tmp/cert.pem --tls-key $tmp/key.pem"
  tls_cli="--tls-ca $tmp/cert.pem"
  scheme=grpcs://
fi
# shellcheck disable=SC2086
CARGO_DISTBUILD_LOG=${CARGO_DISTBUILD_LOG:-warn} \
  "$build/cargo-distbuild" cas run --listen 127.0.0.1:0 --root "$tmp/store" \
  --port-file "$tmp/port" $tls_srv &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
  i=$((i + 1))
  [ $i -gt 500 ] && { echo "cas run did not start" >&2; exit 1; }
  sleep 0.02
done
port=$(cat "$tmp/port")
host=127.0.0.1
[ -n "$scheme" ] && host=localhost # the name the certificate carries
# shellcheck disable=SC2086
no_proxy='*' "$build/cas_bench" "$scheme$host:$port" "$@" $tls_cli
