#!/usr/bin/env bash
# One bounded fuzz run, as CTest runs it (fuzz/CMakeLists.txt):
#   fuzz/run.sh FUZZER SEED_DIR WORK_DIR SECONDS MAX_LEN [DICT]
# Fuzzes for SECONDS from the seeds in SEED_DIR (read only); new inputs go to
# WORK_DIR/corpus (emptied first) and any crashing, leaking or slow input to
# WORK_DIR/ as crash-*, leak-*, timeout-* or oom-*. Exits non-zero on any such
# finding (libFuzzer's own exit status), after naming the input to reproduce
# it with: FUZZER INPUT.
set -euo pipefail
fuzzer="$1" seeds="$2" work="$3" seconds="$4" max_len="$5" dict="${6:-}"
rm -rf "$work"
mkdir -p "$work/corpus"
status=0
# -timeout: one input may take at most 20 s (generous: sanitizers, and a
# machine kept busy by other tests); -rss_limit_mb bounds the memory of the
# whole run; -malloc_limit_mb one allocation. -entropic=0: with every
# library instrumented, the entropic scheduler's bookkeeping took most of the
# time (the policy target made 5 times fewer executions, for less coverage).
"$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -entropic=0 \
  -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$work/" ${dict:+-dict="$dict"} \
  "$work/corpus" "$seeds" >"$work/log" 2>&1 || status=$?
# The last lines: the finding (if any) and the final stats, with
# stat::number_of_executed_units.
tail -n 60 "$work/log"
if [ "$status" -ne 0 ]; then
  echo "fuzz: $(basename "$fuzzer") failed (exit $status); full log: $work/log" >&2
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*; do
    [ -e "$f" ] && echo "fuzz: reproduce with: $fuzzer $f" >&2
  done
fi
exit "$status"
