#!/bin/sh
# Action-cache hits per second and Execute latency of the scheduler over
# loopback. usage: bench/exec/sched_bench.sh [BUILD_DIR] [seconds] [threads]
#                  [inflight per thread]
# Goal: >= 2000 hits/s, p50 < 2 ms.
set -eu
BUILD=${1:-build}
SECS=${2:-5}
THREADS=${3:-2}
INFLIGHT=${4:-8}
BIN=${SCHED_BIN:-$BUILD/cargo-distbuild}
BENCH=$BUILD/sched_bench
[ -x "$BIN" ] && [ -x "$BENCH" ] || {
  echo "build first: cmake --build $BUILD --target cargo-distbuild sched_bench" >&2
  exit 2
}
DIR=$(mktemp -d /tmp/sched-bench.XXXXXX)
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
# Log level warn: one info line per cache hit would measure stderr, not
# the scheduler.
CARGO_DISTBUILD_LOG=${CARGO_DISTBUILD_LOG:-warn} "$BIN" scheduler run \
  --listen 127.0.0.1:0 --http-listen off --cas-dir "$DIR/cas" \
  --port-file "$DIR/port" 2>"$DIR/log" &
PID=$!
i=0
while [ ! -s "$DIR/port" ]; do
  i=$((i + 1))
  [ $i -gt 200 ] && { cat "$DIR/log" >&2; exit 1; }
  sleep 0.05
done
"$BENCH" "127.0.0.1:$(cat "$DIR/port")" "$SECS" "$THREADS" "$INFLIGHT" || { tail -5 "$DIR/log" >&2; exit 1; }
