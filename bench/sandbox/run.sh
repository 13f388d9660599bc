#!/bin/bash
# Sandbox set-up overhead: median time to run /bin/true sandboxed minus
# running it directly, for libsandbox and for bubblewrap with comparable
# flags, measured in the same run.  Not a test: numbers depend on the host.
#
#   bench/sandbox/run.sh [BUILD_DIR] [N]     (default build-sbx, 300)
#
# Rows:
#   lib      sbx_run() called in-process after the one-time probe: what the
#            worker pays per action (no limits, i.e. no cgroup)
#   lib+cg   the same with memory+pids limits: one cgroup per run
#   cli      `cargo-distbuild sandbox run -q -- /bin/true`, a fresh process
#            each time, so it includes exec, the probe and its test sandbox
#   bwrap    bwrap --unshare-all, ro-bind /usr and /etc, merged-/usr
#            symlinks, --proc, --dev, --tmpfs /tmp (a fresh process each time)
# Then what sandboxes cost a large caller (32 MiB written, 1000 of its pages
# written again after every run, like the worker's threads), with sbx_run()
# in-process and through a spawner: `sbx_bench caller`, two rounds each.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build-sbx}
N=${2:-300}
BENCH=$BUILD/sbx_bench
CLI=$BUILD/cargo-distbuild
BWRAP=${BWRAP:-/usr/bin/bwrap}
[ -x "$BENCH" ] || { echo "build sbx_bench first: cmake --build $BUILD --target sbx_bench cargo-distbuild"; exit 2; }

val() { sed -n "s/.*$1=\([0-9]*\).*/\1/p"; }

lib=$("$BENCH" lib "$N" 2>/dev/null)
direct=$(echo "$lib" | val direct_us)
sbx=$(echo "$lib" | val sandbox_us)
sbxcg=$(echo "$lib" | val sandbox_cgroup_us)
direct2=$("$BENCH" exec "$N" /bin/true | val median_us)
cli=$("$BENCH" exec "$((N / 3))" "$CLI" sandbox run -q -- /bin/true | val median_us)
BW=("$BWRAP" --unshare-all --die-with-parent --ro-bind /usr /usr --ro-bind /etc /etc
    --proc /proc --dev /dev --tmpfs /tmp --chdir /tmp)
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then BW+=(--symlink "$(readlink "/$d")" "/$d");
  elif [ -d "/$d" ]; then BW+=(--ro-bind "/$d" "/$d"); fi
done
if [ -x "$BWRAP" ]; then
  bw=$("$BENCH" exec "$N" "${BW[@]}" /bin/true | val median_us)
else
  bw=
fi
d=$(( (direct + direct2) / 2 ))
ms() { awk -v x="$1" 'BEGIN { printf "%.2f ms", x / 1000 }'; }
echo "runs: $N (cli: $((N / 3))); medians; /bin/true direct: $(ms "$d")"
printf '%-8s %12s %14s\n' "" "total" "overhead"
printf '%-8s %12s %14s\n' lib "$(ms "$sbx")" "$(ms $((sbx - d)))"
printf '%-8s %12s %14s\n' lib+cg "$(ms "$sbxcg")" "$(ms $((sbxcg - d)))"
printf '%-8s %12s %14s\n' cli "$(ms "$cli")" "$(ms $((cli - d)))"
if [ -n "$bw" ]; then
  printf '%-8s %12s %14s\n' bwrap "$(ms "$bw")" "$(ms $((bw - d)))"
  awk -v s=$((sbx - d)) -v b=$((bw - d)) -v c=$((cli - d)) 'BEGIN {
    printf "ratio overhead lib/bwrap = %.2f  (cli/bwrap = %.2f)\n", s / b, c / b }'
else
  echo "bwrap: not installed"
fi

echo
echo "large caller (32 MiB, 1000 pages written per run), per run:"
"$BENCH" caller "$((N / 2))" 32 1000 2>/dev/null | awk '
  { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    m = v["mode"]; w[m] += v["wall_us"]; c[m] += v["cpu_us"];
    f[m] += v["caller_faults"]; n[m]++
    printf "  %-8s wall %.2f ms  cpu %.2f ms  caller faults %d\n", m,
      v["wall_us"] / 1000, v["cpu_us"] / 1000, v["caller_faults"] }
  END { if (n["inproc"] && n["spawner"])
    printf "ratio spawner/in-process: wall %.2f  cpu %.2f\n",
      w["spawner"] / w["inproc"], c["spawner"] / c["inproc"] }'
