#!/usr/bin/env bash
# Install what is missing, build, and run every test: first a normal build,
# then the same suite built by clang with AddressSanitizer and
# UndefinedBehaviorSanitizer, together with the libFuzzer targets (fuzz/),
# whose bounded runs are part of that build's tests (label `fuzz`).
#   scripts/test.sh           everything
#   scripts/test.sh --fast    skip the sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."
FAST=0
[ "${1:-}" = "--fast" ] && FAST=1

scripts/install-deps.sh

run_suite() {
  local dir="$1"; shift
  echo "== building $dir" >&2
  scripts/build.sh "$dir" "$@"
  echo "== testing $dir" >&2
  (cd "$dir" && ctest --output-on-failure -j "$(nproc)" --timeout 300)
}

run_suite build -DTOOLGATE_BUILD_TESTS=ON
if [ "$FAST" -eq 0 ]; then
  export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # A build directory configured with another compiler is configured afresh.
  if [ -f build-asan/CMakeCache.txt ] &&
     ! grep -q '^CMAKE_CXX_COMPILER_ID:.*Clang\|^CMAKE_CXX_COMPILER:.*clang' build-asan/CMakeCache.txt; then
    rm -rf build-asan/CMakeCache.txt build-asan/CMakeFiles
  fi
  CXX=clang++ BUILD_TYPE=Debug run_suite build-asan -DTOOLGATE_BUILD_TESTS=ON \
    -DTOOLGATE_SANITIZE=ON -DTOOLGATE_FUZZ=ON
fi
echo "== all tests passed" >&2
