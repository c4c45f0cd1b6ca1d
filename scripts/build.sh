#!/usr/bin/env bash
# Configures and builds toolgate into a build directory.
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
# TARGETS="toolgated toolgate" builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
shift || true
JOBS="${JOBS:-$(nproc)}"
LAUNCHER=()
# ccache, when installed, makes rebuilds after a small change quick.
if command -v ccache >/dev/null 2>&1; then LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "${LAUNCHER[@]}" "$@" >/dev/null
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS}
