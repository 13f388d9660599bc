#!/bin/sh
# Throughput of sandboxed no-op actions: a scheduler and two workers on this
# machine, driven by exec_bench (tests/e2e/CMakeLists.txt builds it).
#   bench/exec/run.sh [BUILD_DIR] [ACTIONS] [INFLIGHT]
set -eu
BUILD=${1:-build}
N=${2:-3000}
INFLIGHT=${3:-64}
BIN=$BUILD/cargo-distbuild
DIR=$(mktemp -d "${TMPDIR:-/tmp}/exec-bench.XXXXXX")
chmod 755 "$DIR"
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
export CARGO_DISTBUILD_LOG=${CARGO_DISTBUILD_LOG:-warn}
"$BIN" scheduler run --listen 127.0.0.1:0 --http-listen off \
  --cas-dir "$DIR/cas" --port-file "$DIR/port" 2>"$DIR/sched.log" &
PIDS="$PIDS $!"
for i in $(seq 100); do [ -s "$DIR/port" ] && break; sleep 0.05; done
TARGET=127.0.0.1:$(cat "$DIR/port")
for w in 1 2; do
  "$BIN" worker run --id "bench-$w" --scheduler "$TARGET" \
    --cache-dir "$DIR/w$w" ${WORKER_ARGS:-} 2>"$DIR/w$w.log" &
  PIDS="$PIDS $!"
done
sleep 1
echo "warm-up"; "$BUILD/exec_bench" "$TARGET" 200 "$INFLIGHT" >/dev/null
echo "run: $N actions, $INFLIGHT in flight, 2 workers x $(nproc) slots"
"$BUILD/exec_bench" "$TARGET" "$N" "$INFLIGHT"
