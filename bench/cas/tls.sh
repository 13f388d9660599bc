#!/bin/sh
# What TLS costs the CAS client and server: bench/cas/run.sh over h2c and
# then over TLS, in one run on this machine, and each workload's TLS result
# as a ratio of the h2c one (1.00 = no cost; above 1 for rates, TLS is
# faster). Arguments go to both runs, e.g.
#   bench/cas/tls.sh build --small 20000 --large-mb 64
set -eu
here=$(cd "$(dirname "$0")" && pwd)
plain=$(mktemp) tls=$(mktemp)
trap 'rm -f "$plain" "$tls"' EXIT
"$here/run.sh" "$@" >"$plain"
CAS_BENCH_TLS=1 "$here/run.sh" "$@" >"$tls"
# A result row: the workload, then its first "<number> <unit>/s".
rows() {
  awk '/^  [a-zA-Z]/ && match($0, /  +[0-9.]+ (blobs|MB|digests)\/s/) {
    name = substr($0, 3, RSTART - 3); split(substr($0, RSTART, RLENGTH), v, " ")
    printf "%s|%s|%s\n", name, v[1], v[2] }' "$1"
}
echo "workload | h2c | TLS | TLS/h2c"
rows "$plain" | while IFS='|' read -r name val unit; do
  t=$(rows "$tls" | awk -F'|' -v n="$name" '$1 == n { print $2; exit }')
  [ -n "$t" ] || continue
  printf '%s | %s %s | %s %s | %.2f\n' "$name" "$val" "$unit" "$t" "$unit" \
    "$(echo "$t / $val" | bc -l)"
done
