#!/bin/sh
# Build and run the cas_store bench. The store root must be on the disk
# under test (default: a directory next to the build, i.e. on /work).
#   bench/cas_store/run.sh [threads] [small-count]
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$here/build-bench}
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target cas_store_bench >/dev/null
root=${CAS_BENCH_ROOT:-$build/cas_store_bench.root}
exec "$build/cas_store_bench" "$root" "${1:-8}" "${2:-100000}"
