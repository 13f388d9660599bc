#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting, builds
# with -Werror, runs every test under ctest, then again under ASan + UBSan.
#   scripts/test.sh            everything
#   SKIP_SANITIZE=1 scripts/test.sh   skip the sanitizer pass (quicker local loop)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

echo "== clang-format check"
bash scripts/check-format.sh

# run_suite DIR "CTEST ARGS" CMAKE ARGS...
run_suite() {
  local dir=$1 ctest_args=$2; shift 2
  echo "== build $dir ($*)"
  cmake -S . -B "$dir" -DDB_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS" >/dev/null
  echo "== test $dir"
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "${CTEST_JOBS:-1}" $ctest_args)
}

run_suite build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ -z "${SKIP_SANITIZE:-}" ]; then
  # detect_leaks stays on: leaks are bugs too. The container tests run
  # binaries built inside the image, not these instrumented ones, so the
  # sanitizer pass leaves them out.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_suite build-asan "-E ^container_" -DCMAKE_BUILD_TYPE=Debug -DDB_SANITIZE=ON
fi
echo "== all tests passed"
