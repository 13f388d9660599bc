#!/usr/bin/env bash
# Per-call cost of the rustc wrapper on one crate of test-workspace
# (lib-math), measured in the same run against local rustc:
#
#   local     plain rustc compiling the crate (the baseline)
#   served    a cache hit through the wrapper and the client server that
#             `cargo distbuild build` runs (the default)
#   exec'd    the same hit with CARGO_DISTBUILD_CLIENT_SERVER=0: the front
#             execs the remote client, as RUSTC_WRAPPER alone does
#
#   bench/wrapper/run.sh [--bin-dir DIR] [--calls N]
#
# The variants alternate call by call (noise hits them alike); the table
# shows medians and ratios. A scheduler and one worker run on this machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/build"
CALLS=40
while [ $# -gt 0 ]; do
  case "$1" in
  --bin-dir) BIN=$(cd "$2" && pwd); shift 2 ;;
  --calls) CALLS="$2"; shift 2 ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
CD="$BIN/cargo-distbuild"
[ -x "$CD" ] && [ -x "$BIN/cargo-distbuild-wrapper" ] || {
  echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 2; }

# Under $HOME: the exec root must hold both the toolchain and the workspace.
mkdir -p "$HOME/.cache"
WORK=$(mktemp -d -p "$HOME/.cache" distbuild-bench-wrapper-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export CARGO_DISTBUILD_CACHE_DIR="$WORK/cache"
export CARGO_DISTBUILD_STATS_DIR="$WORK/stats"
export CARGO_DISTBUILD_LOG=warn
export CARGO_INCREMENTAL=0
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_TARGET_DIR || true

. "$ROOT/bench/lib/cluster.sh"
bench_cluster_start 1

cp -r "$ROOT/test-workspace" "$WORK/ws"
rm -rf "$WORK/ws/target"
cd "$WORK/ws"
# Fill the action cache, then capture the crate's exact rustc call (with
# the environment cargo gives it) from a verbose build through the wrapper.
"$CD" build --offline >/dev/null 2>&1
cargo clean -q
RUSTC_WRAPPER="$BIN/cargo-distbuild-wrapper" cargo build --offline -vv 2>&1 |
  sed -n 's/^ *Running `\(.*--crate-name lib_math .*\)`$/\1/p' | head -1 \
  >"$WORK/call.sh"
[ -s "$WORK/call.sh" ] || { echo "bench: could not capture the call" >&2; exit 1; }

# The timing loop runs as "cargo" under `cargo distbuild build`, so the
# client server is up exactly as in a real build.
cat >"$WORK/loop.py" <<'EOF'
import os, shlex, subprocess, sys, time
words = shlex.split(open(sys.argv[1]).read())
env = dict(os.environ)
while "=" in words[0] and not words[0].startswith("/"):
    k, v = words.pop(0).split("=", 1)
    env[k] = v
wrapped, plain = words, words[1:]  # words[0] is the wrapper
served = dict(env)
execd = dict(env, CARGO_DISTBUILD_CLIENT_SERVER="0")
execd.pop("CARGO_DISTBUILD_CLIENT_SOCKET", None)
out = {"local": [], "served": [], "execd": []}
for i in range(int(sys.argv[2])):
    for name, argv, e in (("local", plain, env), ("served", wrapped, served),
                          ("execd", wrapped, execd)):
        t = time.perf_counter()
        subprocess.run(argv, env=e, cwd=sys.argv[3], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[name].append((time.perf_counter() - t) * 1000)
with open(sys.argv[4], "w") as f:
    for k, v in out.items():
        v.sort()
        f.write("%s %.2f\n" % (k, v[len(v) // 2]))
EOF
printf '#!/bin/sh\nexec python3 %s %s %s %s %s\n' "$WORK/loop.py" \
  "$WORK/call.sh" "$CALLS" "$WORK/ws" "$WORK/result" >"$WORK/cargo"
chmod +x "$WORK/cargo"
CARGO="$WORK/cargo" "$CD" build >/dev/null 2>"$WORK/loop.log" || {
  cat "$WORK/loop.log" >&2; exit 1; }

read -r _ L < <(grep '^local ' "$WORK/result")
read -r _ S < <(grep '^served ' "$WORK/result")
read -r _ E < <(grep '^execd ' "$WORK/result")
echo "wrapper bench: lib-math, median of $CALLS calls each (ms)"
printf '%-34s %8s %8s\n' variant ms "x local"
printf '%-34s %8s %8s\n' "local rustc (compile)" "$L" 1.00
printf '%-34s %8s %8.3f\n' "hit, client server (default)" "$S" "$(echo "$S / $L" | bc -l)"
printf '%-34s %8s %8.3f\n' "hit, remote client exec'd" "$E" "$(echo "$E / $L" | bc -l)"
printf 'served / exec'"'"'d: %.2f\n' "$(echo "$S / $E" | bc -l)"
