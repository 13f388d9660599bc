#!/usr/bin/env bash
# The main job: install what is missing, build, start a scheduler and two
# workers, build test-workspace through them (cold, then warm after
# `cargo clean`), and print the action-cache report.
#
# Service state (CAS, worker caches, logs) goes to DEMO_DIR (default
# /var/tmp/cargo-distbuild-demo: sandboxed actions run as an unprivileged
# uid, so worker caches must sit on a path that uid can traverse). The
# workspace copy goes next to the Rust toolchain's home (~/.cache/...): the
# wrapper reproduces absolute paths inside the sandbox from the deepest
# directory that holds both the toolchain and the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh
echo "== building (cmake, build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$JOBS" >/dev/null
BIN=$REPO/build/cargo-distbuild

DEMO_DIR=${DEMO_DIR:-/var/tmp/cargo-distbuild-demo}
SYSROOT=$(rustc --print sysroot)
case "$SYSROOT" in
  "$HOME"/*) WS_PARENT=$HOME/.cache/cargo-distbuild ;;
  *) WS_PARENT=$DEMO_DIR ;;
esac
rm -rf "$DEMO_DIR" "$WS_PARENT/demo-workspace"
mkdir -p "$DEMO_DIR" "$WS_PARENT"
chmod 755 "$DEMO_DIR"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_file() {
  for _ in $(seq 1 200); do
    [ -s "$1" ] && return 0
    sleep 0.05
  done
  echo "demo: timed out waiting for $1" >&2
  return 1
}

echo "== starting the scheduler"
"$BIN" scheduler run --listen 127.0.0.1:0 --port-file "$DEMO_DIR/sched.port" \
  --cas-dir "$DEMO_DIR/scheduler-cas" --http-listen 127.0.0.1:0 \
  >"$DEMO_DIR/scheduler.log" 2>&1 &
PIDS+=($!)
wait_file "$DEMO_DIR/sched.port"
SCHED=127.0.0.1:$(cat "$DEMO_DIR/sched.port")
echo "   scheduler on $SCHED (log: $DEMO_DIR/scheduler.log)"

echo "== starting two workers"
for i in 1 2; do
  "$BIN" worker run --id "worker-$i" --scheduler "$SCHED" \
    --cache-dir "$DEMO_DIR/worker-$i" >"$DEMO_DIR/worker-$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2; do
  for _ in $(seq 1 100); do
    grep -q "connected to" "$DEMO_DIR/worker-$i.log" && break
    sleep 0.05
  done
  grep -m1 "sandbox:" "$DEMO_DIR/worker-$i.log" | sed 's/^/   /'
done

WS=$WS_PARENT/demo-workspace
cp -r "$REPO/test-workspace" "$WS"
rm -rf "$WS/target"
export CARGO_DISTBUILD_SCHEDULER=$SCHED
export CARGO_DISTBUILD_STATS_DIR=$DEMO_DIR/stats
export PATH=$REPO/build:$PATH

echo "== cold build of test-workspace through the scheduler"
(cd "$WS" && cargo distbuild build)
echo "== warm rebuild after cargo clean"
(cd "$WS" && cargo clean -q && cargo distbuild build)
echo "== the binary"
"$WS/target/debug/main-binary"
echo "== scheduler log (last lines)"
tail -n 6 "$DEMO_DIR/scheduler.log" | sed 's/^/   /'
echo "== cumulative stats"
"$BIN" stats
echo "demo: workspace in $WS, logs in $DEMO_DIR"
