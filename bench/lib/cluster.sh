# Sourced by the benchmarks: start a scheduler and N workers of binary $CD
# under $WORK, append their pids to the PIDS array, export
# CARGO_DISTBUILD_SCHEDULER, and return once every worker has joined (or
# after about 10 s).
#
#   bench_cluster_start N
bench_cluster_start() {
  local n=$1 i port
  mkdir -p "$WORK/sched"
  "$CD" scheduler run --listen 127.0.0.1:0 --port-file "$WORK/sched/port" \
    --cas-dir "$WORK/sched/cas" --http-listen off >"$WORK/sched/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$WORK/sched/port" ] && break; sleep 0.05; done
  port=$(cat "$WORK/sched/port")
  export CARGO_DISTBUILD_SCHEDULER=127.0.0.1:$port
  for i in $(seq "$n"); do
    "$CD" worker run --id "worker-$i" --scheduler "127.0.0.1:$port" \
      --cache-dir "$WORK/worker-$i" >"$WORK/worker-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 100); do
    [ "$(grep -c 'worker joined' "$WORK/sched/log")" -ge "$n" ] && break
    sleep 0.1
  done
}
