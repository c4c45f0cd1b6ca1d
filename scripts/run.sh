#!/usr/bin/env bash
# Quick start: install what is missing, build, and run toolgated.
# With no arguments it serves the example policy compiled into the binary
# (examples/policy.yaml), with in-process counters, on 0.0.0.0:50051.
# Any arguments are passed to toolgated, e.g. --policy examples/seed-policy.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
TARGETS="toolgated toolgate" scripts/build.sh build
exec build/toolgated "$@"
