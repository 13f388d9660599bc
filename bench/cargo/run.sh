#!/usr/bin/env bash
# Benchmark cargo-distbuild against a local `cargo build` (and sccache when
# available), measured in the same run on the same machine.
#
#   bench/cargo/run.sh [--bin-dir DIR] [--workloads "test-workspace realworld"]
#                      [--no-sccache] [--workers N] [--runs N]
#
# Per workload and run (--runs, default 3; the table shows medians, since
# these machines are noisy): local build (CARGO_INCREMENTAL=0, after cargo clean);
# distributed cold (empty action cache for this code; the toolchain is
# already in the CAS from a priming build, as it is after the first build
# on any machine; realworld's sources enter the CAS in its run 1 only, so
# that run's cold ratio is also printed apart); distributed warm (cargo
# clean + rebuild: every action a cache hit); sccache cold / warm with a
# fresh local cache. Everything runs under a temp dir in $HOME (the
# wrapper's exec root must be a common ancestor of the toolchain, the
# workspace and the cargo registry).
# realworld fetches its pinned crates from crates.io (cargo fetch) before
# any timing; sccache comes from PATH, else Debian's package, else
# `cargo install sccache`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/build"
WORKLOADS="test-workspace realworld"
SCCACHE=1
WORKERS=2
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
  --bin-dir) BIN=$(cd "$2" && pwd); shift 2 ;;
  --workloads) WORKLOADS="$2"; shift 2 ;;
  --no-sccache) SCCACHE=0; shift ;;
  --workers) WORKERS="$2"; shift 2 ;;
  --runs) RUNS="$2"; shift 2 ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
CD="$BIN/cargo-distbuild"
[ -x "$CD" ] && [ -x "$BIN/cargo-distbuild-wrapper" ] &&
  [ -x "$BIN/cargo-distbuild-wrapper-remote" ] || {
  echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 2; }

mkdir -p "$HOME/.cache"
WORK=$(mktemp -d -p "$HOME/.cache" distbuild-bench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${SCCACHE_BIN:-}" ]; then
    SCCACHE_DIR="$WORK/sccache" "$SCCACHE_BIN" --stop-server >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

export CARGO_HOME="$WORK/cargo-home"
export CARGO_DISTBUILD_CACHE_DIR="$WORK/cache"
export CARGO_DISTBUILD_STATS_DIR="$WORK/stats"
export CARGO_DISTBUILD_LOG=warn
export CARGO_TERM_PROGRESS_WHEN=never
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_TARGET_DIR || true

# ---- cluster ----
. "$ROOT/bench/lib/cluster.sh"
bench_cluster_start "$WORKERS"

now() { date +%s.%N; }
TCK=$(getconf CLK_TCK)
# CPU seconds (user + sys) of a live process and the children it has reaped
# (a worker's sandboxes and their rustc): fields 14-17 of /proc/PID/stat.
proc_cpu() { awk -v t="$TCK" '{printf "%.2f", ($14 + $15 + $16 + $17) / t}' "/proc/$1/stat"; }
# CPU seconds of a process itself (fields 14-15) and of the children it has
# reaped (16-17: for a worker, its sandboxes and their rustc).
proc_self_cpu() { awk -v t="$TCK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
proc_child_cpu() { awk -v t="$TCK" '{printf "%.2f", ($16 + $17) / t}' "/proc/$1/stat"; }
cluster_cpu() { # scheduler, the workers themselves, their sandboxes
  local w=0 c=0 p s
  # A worker's spawner (its child) counts as the worker; what the spawner
  # reaped is the sandboxes.
  for p in "${PIDS[@]:1}"; do
    for s in "$p" $(pgrep -P "$p" -x sbx-spawner || true); do
      w=$(echo "$w + $(proc_self_cpu "$s")" | bc -l)
      c=$(echo "$c + $(proc_child_cpu "$s")" | bc -l)
    done
  done
  echo "$(proc_cpu "${PIDS[0]}") $w $c"
}
timed() { # timed OUTVAR cmd...  (output to $WORK/last.log; CPU to $WORK/cpu)
  local var=$1 t0 t1
  shift
  t0=$(now)
  # A subshell, so its reaped-children CPU is exactly the command's.
  if ! ("$@" >"$WORK/last.log" 2>&1 && proc_cpu "$BASHPID" >"$WORK/cpu"); then
    cat "$WORK/last.log" >&2
    echo "bench: '$*' failed" >&2
    exit 1
  fi
  t1=$(now)
  printf -v "$var" '%.2f' "$(echo "$t1 - $t0" | bc -l)"
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
# min, lower and upper quartile (nearest rank) and max of the arguments:
# how far single runs spread on this noisy machine.
spread() {
  printf '%s\n' "$@" | sort -g |
    awk '{a[NR] = $1} function q(p, i) {i = int(p * NR + 0.999999);
      if (i < 1) i = 1; return a[i]} END {printf "%.2f  %.2f-%.2f  %.2f",
      a[1], q(0.25), q(0.75), a[NR]}'
}
# median of the arguments ("-" when there are none to take)
median() {
  [ "$1" = "-" ] && { echo "-"; return; }
  printf '%s\n' "$@" | sort -g |
    awk '{a[NR] = $1} END {if (NR % 2) printf "%.2f", a[(NR + 1) / 2];
      else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# ---- sccache ----
SCCACHE_BIN=""
if [ "$SCCACHE" = 1 ]; then
  SCCACHE_BIN=$(command -v sccache || true)
  KEEP="$HOME/.cache/cargo-distbuild-bench/sccache"
  [ -z "$SCCACHE_BIN" ] && [ -x "$KEEP/bin/sccache" ] && SCCACHE_BIN="$KEEP/bin/sccache"
  if [ -z "$SCCACHE_BIN" ] && [ "$(id -u)" = 0 ] &&
    apt-cache policy sccache 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    { apt-get install -y -qq sccache || { apt-get update -qq &&
      apt-get install -y -qq sccache; }; } >/dev/null 2>&1 || true
    SCCACHE_BIN=$(command -v sccache || true)
  fi
  if [ -z "$SCCACHE_BIN" ]; then
    # Outside $WORK so later runs reuse it (building sccache takes minutes).
    CARGO_HOME="$HOME/.cargo" cargo install --quiet --root "$KEEP" sccache \
      >/dev/null 2>&1 && SCCACHE_BIN="$KEEP/bin/sccache" || true
  fi
fi

# Prime: the toolchain enters the CAS and the workers' tree caches.
cp -r "$ROOT/test-workspace" "$WORK/prime"
rm -rf "$WORK/prime/target"
(cd "$WORK/prime" && "$CD" build --offline >/dev/null 2>&1)

declare -a ROWS CROWS SPREAD FIRST
for w in $WORKLOADS; do
  case "$w" in
  test-workspace) SRC="$ROOT/test-workspace" ;;
  realworld) SRC="$ROOT/bench/cargo/realworld" ;;
  *) echo "unknown workload $w" >&2; exit 2 ;;
  esac
  L=() C=() CR=() W=() WR=() SC=() SW=() CL=() CC=() CS=() CW=() CX=() CRR=()
  for r in $(seq "$RUNS"); do
    # A new path per run: absolute paths are part of each action, so the
    # distributed build is cold again; sccache gets a fresh cache too.
    D="$WORK/$w-$r"
    cp -r "$SRC" "$D"
    rm -rf "$D/target"
    cd "$D"
    if [ "$r" = 1 ]; then
      cargo fetch --locked >/dev/null 2>&1 || cargo fetch >/dev/null
    fi
    # Warm the OS page cache and cargo's metadata once, untimed.
    CARGO_INCREMENTAL=0 cargo build --offline >/dev/null 2>&1
    cargo clean -q
    timed T_LOCAL env CARGO_INCREMENTAL=0 cargo build --offline
    CPU_LOCAL=$(cat "$WORK/cpu")
    NCRATES=$(grep -c '^ *Compiling' "$WORK/last.log" || true)
    cargo clean -q
    read -r S0 W0 X0 <<<"$(cluster_cpu)"
    timed T_COLD "$CD" build --offline
    read -r S1 W1 X1 <<<"$(cluster_cpu)"
    CPU_CLIENT=$(cat "$WORK/cpu")
    CPU_SCHED=$(printf '%.2f' "$(echo "$S1 - $S0" | bc -l)")
    CPU_WORKERS=$(printf '%.2f' "$(echo "$W1 - $W0" | bc -l)")
    CPU_SANDBOX=$(printf '%.2f' "$(echo "$X1 - $X0" | bc -l)")
    CPU_COLD=$(printf '%.2f' "$(echo "$CPU_CLIENT + $CPU_SCHED + $CPU_WORKERS + $CPU_SANDBOX" | bc -l)")
    COLD_STATS=$("$CD" stats --json)
    cargo clean -q
    timed T_WARM "$CD" build --offline
    WARM_STATS=$("$CD" stats --json)
    T_SC_COLD="-"
    T_SC_WARM="-"
    if [ -n "$SCCACHE_BIN" ]; then
      "$SCCACHE_BIN" --stop-server >/dev/null 2>&1 || true
      export SCCACHE_DIR="$WORK/sccache-$w-$r"
      "$SCCACHE_BIN" --start-server >/dev/null 2>&1 || true
      cargo clean -q
      timed T_SC_COLD env RUSTC_WRAPPER="$SCCACHE_BIN" CARGO_INCREMENTAL=0 cargo build --offline
      cargo clean -q
      timed T_SC_WARM env RUSTC_WRAPPER="$SCCACHE_BIN" CARGO_INCREMENTAL=0 cargo build --offline
      SC+=("$T_SC_COLD")
      SW+=("$T_SC_WARM")
    fi
    CL+=("$CPU_LOCAL")
    CC+=("$CPU_CLIENT")
    CS+=("$CPU_SCHED")
    CW+=("$CPU_WORKERS")
    CX+=("$CPU_SANDBOX")
    CRR+=("$(ratio "$CPU_COLD" "$CPU_LOCAL")")
    echo "  $w run $r: CPU s local $CPU_LOCAL; cold $CPU_COLD = client $CPU_CLIENT + scheduler $CPU_SCHED + workers $CPU_WORKERS + sandboxes $CPU_SANDBOX (${CRR[-1]}x)" >&2
    L+=("$T_LOCAL")
    C+=("$T_COLD")
    W+=("$T_WARM")
    CR+=("$(ratio "$T_COLD" "$T_LOCAL")")
    WR+=("$(ratio "$T_WARM" "$T_LOCAL")")
    echo "  $w run $r: local $T_LOCAL, cold $T_COLD (${CR[-1]}x), warm $T_WARM (${WR[-1]}x), sccache $T_SC_COLD / $T_SC_WARM" >&2
    hits=$(echo "$WARM_STATS" | sed -n 's/.*"last_build":{"actions":\([0-9]*\),"action_cache_hits":\([0-9]*\).*/\2\/\1/p')
    remote=$(echo "$COLD_STATS" | sed -n 's/.*"last_build":{[^}]*"remote_executions":\([0-9]*\).*/\1/p')
    pipe=$(echo "$COLD_STATS" | sed -n 's/.*"last_build":{[^}]*"pipelined":\([0-9]*\).*/\1/p')
    cd "$ROOT"
    rm -rf "$D"
  done
  ROWS+=("$(printf '%-15s %7s %8s %8s %6s %8s %6s %9s %9s %16s' "$w" "$NCRATES" \
    "$(median "${L[@]}")" "$(median "${C[@]}")" "$(median "${CR[@]}")" \
    "$(median "${W[@]}")" "$(median "${WR[@]}")" \
    "$(median "${SC[@]:--}")" "$(median "${SW[@]:--}")" \
    "${remote:-?}/${pipe:-?}/${hits:-?}")")
  SPREAD+=("$(printf '%-15s cold %s   warm %s' "$w" "$(spread "${CR[@]}")" \
    "$(spread "${WR[@]}")")")
  # Run 1 is also the first time this cluster sees the workload's sources
  # (later runs find them in the CAS and the workers' caches): a new
  # project's first build, as against a rebuild after a change. Not so for
  # test-workspace, whose sources the priming build uploaded.
  if [ "$RUNS" -gt 1 ] && [ "$w" != test-workspace ]; then
    FIRST+=("$(printf '%-15s run 1 %s   runs 2-%s (median) %s' "$w" "${CR[0]}" \
      "$RUNS" "$(median "${CR[@]:1}")")")
  fi
  CROWS+=("$(printf '%-15s %9s %11s %9s %9s %9s %9s' "$w" "$(median "${CL[@]}")" \
    "$(median "${CC[@]}")" "$(median "${CS[@]}")" "$(median "${CW[@]}")" \
    "$(median "${CX[@]}")" "$(median "${CRR[@]}")")")
  cd "$ROOT"
done

echo
echo "cargo-distbuild bench ($(nproc) CPUs, $WORKERS local workers; median of $RUNS run(s);"
echo "seconds; ratio = the median of each run's distributed / local time)"
printf '%-15s %7s %8s %8s %6s %8s %6s %9s %9s %16s\n' workload crates local \
  dist-cold ratio dist-warm ratio sccache-c sccache-w rem/pipe/hit/act
for r in "${ROWS[@]}"; do echo "$r"; done
echo "goals: cold <= 1.10x local; warm <= 0.50x local and faster than sccache warm"
echo "spread of the runs' ratios: min  quartiles  max"
for r in "${SPREAD[@]}"; do echo "$r"; done
if [ ${#FIRST[@]} -gt 0 ]; then
  echo "cold ratio of the first run (the workload's sources enter the CAS too) and of the rest:"
  for r in "${FIRST[@]}"; do echo "$r"; done
fi
echo
echo "CPU seconds (user + sys; medians), local build vs distributed cold build:"
echo "client = cargo, wrappers and the rustc calls that stay local; workers ="
echo "the worker processes themselves; sandboxes = every sandboxed rustc. On a"
echo "machine that runs the cluster too, scheduler + workers is the overhead"
echo "that competes with rustc. Less noisy than wall time."
printf '%-15s %9s %11s %9s %9s %9s %9s\n' workload local dist-client scheduler workers \
  sandboxes ratio
for r in "${CROWS[@]}"; do echo "$r"; done
