#!/usr/bin/env bash
# Where the time goes: counts the instructions toolgated executes per Check
# (valgrind --tool=callgrind, collection switched on only while the load
# runs), next to the no-op server under the same load, for scenarios a, b,
# c and e of bench/run.sh. Prints a Markdown section on stdout (bench/run.sh
# --profile appends it to docs/benchmarks.md).
#
# Instructions are counted, not time: valgrind runs each server ~50x slower,
# so the load is light (concurrency 4) and nothing here is a speed figure.
# (Hardware counters, e.g. `perf stat -e instructions`, are often not
# available in VMs; callgrind needs none.)
#
# Usage: bench/profile.sh [--bin-dir DIR]   (default: build-bench)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR="$ROOT/build-bench"
while (($#)); do
  case "$1" in
    --bin-dir) BIN_DIR=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for tool in valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "profile.sh: $tool is needed" >&2; exit 1; }
done

PIN=0
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_setup profile

ARGS_A='{"path": "/tmp/report.txt"}'
ARGS_B='{"command": "ls la tmp", "timeout": 30, "retries": 3, "mode": "safe"}'
ARGS_E='{"path": "/tmp/report.txt", "limit": 10, "mode": "read"}'
CALLGRIND=(valgrind --tool=callgrind --instr-atstart=no)

# profile NAME "SERVER FLAGS" BENCH_ARGS...: runs the server (the no-op
# server for NAME=noop, else toolgated with FLAGS) under callgrind, loads it,
# and leaves $WORK/NAME.out (callgrind data) and $WORK/NAME.calls.
profile() {
  local name=$1 flags=$2
  shift 2
  local server=("$BIN_DIR/noop_server" --listen 127.0.0.1:0)
  # shellcheck disable=SC2206  # flags are words.
  [[ "$name" == noop ]] || server=("$BIN_DIR/toolgated" --listen 127.0.0.1:0 --no-watch $flags)
  start_server "$name" "${CALLGRIND[@]}" --callgrind-out-file="$WORK/$name.out" "${server[@]}"
  local pid=$SRV_PID
  local bench=("$BIN_DIR/toolgate_bench" --target "$SRV_ADDR" --concurrency 4 --timeout 10s "$@")
  "${bench[@]}" --warmup 1s --duration 1s >/dev/null  # Connections, caches, lazy init.
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "${bench[@]}" --warmup 100ms --duration 4s --json "$WORK/$name.json" >/dev/null || true
  callgrind_control -i off "$pid" >/dev/null 2>&1
  stop "$pid"
  grep -o '"all_calls": *[0-9]*' "$WORK/$name.json" | grep -o '[0-9]*$' >"$WORK/$name.calls"
}

profile noop "" --tool read_file --grant 'agent-{i}' --grants 1000 --args "$ARGS_A"
profile a "--policy $ROOT/bench/policies/allow.yaml" \
  --tool read_file --grant 'agent-{i}' --grants 1000 --args "$ARGS_A"
profile b "--policy $ROOT/bench/policies/schema.yaml" \
  --tool run_command --grant 'agent-{i}' --grants 1000 --args "$ARGS_B"
start_redis none
profile c "--policy $ROOT/bench/policies/redis_window.yaml --redis redis://127.0.0.1:$REDIS_PORT" \
  --tool search_web --grant 'agent-{i}' --grants 10000 --args "$ARGS_A"
stop "$REDIS_PID"
"$ROOT/bench/gen_large_policy.sh" "$WORK/large"
profile e "--policy $WORK/large/large.yaml" \
  --tools-file "$WORK/large/large.tools" --grant 'agent-{i}' --grants 1000 --args "$ARGS_E"

NAMES="noop a b c e"
total() {
  callgrind_annotate --threshold=100 "$WORK/$1.out" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
}
calls() { cat "$WORK/$1.calls"; }
per_call() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.0f", n ? a / n : 0 }'; }
# Inclusive (or, with "self", exclusive) costs: "IR<TAB>FUNCTION" lines.
costs() {
  local flag=--inclusive=yes
  [[ "${2:-}" == self ]] && flag=--inclusive=no
  callgrind_annotate "$flag" --threshold=100 "$WORK/$1.out" 2>/dev/null |
    sed -n 's/^ *\([0-9,]*\) ([ 0-9.]*%)  [^:]*:\(.*\)$/\1\t\2/p' |
    awk -F'\t' -v OFS='\t' '{ gsub(",", "", $1); sub(/ \[[^]]*\]$/, "", $2); print }'
}
# inclusive NAME TEXT: the largest inclusive cost of a function whose name
# contains TEXT (0 when none).
inclusive() {
  awk -F'\t' -v p="$2" 'index($2, p) > 0 && $1 > m { m = $1 } END { print m + 0 }' "$WORK/$1.incl"
}
for name in $NAMES; do costs "$name" >"$WORK/$name.incl"; costs "$name" self >"$WORK/$name.self"; done

declare -A PC
for name in $NAMES; do PC[$name]=$(per_call "$(total "$name")" "$(calls "$name")"); done

echo
echo "## Where the time goes"
echo
echo "Instructions executed by the server per \`Check\`, counted with"
echo "\`valgrind --tool=callgrind\` while \`toolgate_bench\` ran at concurrency 4 (collection"
echo "switched on only for the measured load; \`bench/profile.sh\`). Instructions are not time"
echo "(cache misses, locks, system calls and thread wake-ups are not weighted), but unlike"
echo "the timings above they do not depend on what else the machine is doing."
echo
echo "| server | calls | instructions per call | ratio to no-op |"
echo "|---|---:|---:|---:|"
declare -A LABEL=([noop]="no-op" [a]="toolgated, a (lookup only)" [b]="toolgated, b (schema)"
  [c]="toolgated, c (Redis sliding window)" [e]="toolgated, e (large policy)")
for name in $NAMES; do
  echo "| ${LABEL[$name]} | $(thousands "$(calls "$name")") | $(thousands "${PC[$name]}") | $(ratio "${PC[$name]}" "${PC[noop]}") |"
done
echo
echo "toolgate's own steps, inclusive instructions per call (a function's cost includes what it"
echo "calls; indented rows are part of the row above them; empty: not on that path):"
echo
echo "| step | function | a | b | c | e |"
echo "|---|---|---:|---:|---:|---:|"
row() {  # LABEL TEXT
  local name cells="" sum=0 v
  for name in a b c e; do
    v=$(inclusive "$name" "$2")
    sum=$((sum + v))
    if ((v == 0)); then cells+=" |"; else cells+=" $(thousands "$(per_call "$v" "$(calls "$name")")") |"; fi
  done
  ((sum > 0)) || return 0
  echo "| $1 | \`${2%%(*}\` |$cells"
}
I2="&nbsp;&nbsp;"
I4="$I2$I2"
row "the gRPC handler, until it returns (c finishes later, from Redis's thread)" "toolgate::DecisionServiceImpl::Check("
row "${I2}copy of the request buffer" "grpc_byte_buffer_copy"
row "${I2}parsing the request (protobuf, Struct args)" "google::protobuf::MessageLite::ParseFromCodedStream("
row "${I2}args size and depth limits" "toolgate::CheckArgsLimits("
row "${I2}active revision" "toolgate::PolicyRegistry::Get("
row "${I2}shadow revision check" "toolgate::PolicyRegistry::shadow("
row "${I2}the decision (lookup, validation, limits to check)" "toolgate::Engine::Evaluate("
row "${I4}tool lookup (exact, then globs)" "toolgate::RuleSet::Find("
row "${I4}glob matching" "toolgate::GlobMatch("
row "${I4}argument validation" "toolgate::ArgsSchema::Validate("
row "${I4}RE2 pattern match" "re2::RE2::PartialMatchN("
row "Redis: formatting the command (RESP, written directly)" "toolgate::RedisCounterStore::Send("
row "Redis: reading replies (incl. completing the calls)" "toolgate::RedisCounterStore::ReadReplies("
row "finishing a call (counts, decision id, serialize, freeing the call and its arena; in c also gRPC's send, which a, b and e run after the handler returns)" "toolgate::DecisionServiceImpl::Finish("
row "${I2}decision id" "toolgate::DecisionServiceImpl::NextDecisionId("
row "${I2}serializing the response" "grpc::Status grpc::GenericSerialize<grpc::ProtoBufferWriter, toolgate::v1::CheckResponse>"
echo
echo "The most expensive functions by their own (exclusive) instructions per call:"
echo
echo "| no-op server | per call | toolgated, b | per call | toolgated, c | per call |"
echo "|---|---:|---|---:|---|---:|"
name_of() { sed 's/(.*//' <<<"$1" | cut -c1-60; }
paste <(head -12 "$WORK/noop.self") <(head -12 "$WORK/b.self") <(head -12 "$WORK/c.self") |
  while IFS=$'\t' read -r n1 f1 n2 f2 n3 f3; do
    echo "| \`$(name_of "$f1")\` | $(thousands "$(per_call "$n1" "$(calls noop)")") | \`$(name_of "$f2")\` | $(thousands "$(per_call "$n2" "$(calls b)")") | \`$(name_of "$f3")\` | $(thousands "$(per_call "$n3" "$(calls c)")") |"
  done
