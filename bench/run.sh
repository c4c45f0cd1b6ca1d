#!/usr/bin/env bash
# toolgate benchmarks: toolgated against a no-op gRPC server, in the same run,
# under the same load, reported as ratios (docs/benchmarks.md).
#
# For each scenario the driver starts bench/noop_server and toolgated (each
# pinned to CPU 0 with taskset), and runs bench/toolgate_bench (pinned to
# CPU 1) against each in turn, at concurrency 1 and 64. Scenarios:
#
#   a  allowed tool, no limits: policy lookup only
#   b  argument validation: a pattern, two ranges and an enum
#   c  one sliding-window limit in Redis over 10,000 grants (never over)
#   d  one hot counter in Redis that is over its limit (over-limit cache)
#   e  a large policy: 10,000 exact tools, 1,000 globs, 1,000 schemas
#   v  ListVisibleTools of 300 tools against one Check, both of toolgated in
#      the same rounds (no no-op server: the section "Visible tools")
#   r  Redis CPU per check of each limit algorithm against a pipelined INCR
#      (bench/toolgate_redis_cost against its own redis-server; no gRPC),
#      the section "Redis CPU per check"
#   s  scenario c through Redis Sentinel (master, replica, three sentinels)
#   w  scenario s with --redis-wait-replicas 1
#   k  scenario c on a Redis Cluster (three masters, three replicas)
#      (s, w and k start their Redis with scripts/redis-topology.sh)
#   x  Envoy's ext_authz against toolgate's own Check: scenario a's calls sent
#      as Envoy asks about an MCP tools/call, compared with the same calls to
#      DecisionService/Check on the same toolgated (not with the no-op server)
#
# Every run checks that every call got the expected decision and that no
# call failed; a failed check is a warning in the report (and exit status 1).
#
# Usage:
#   bench/run.sh [--duration 1500ms] [--warmup 250ms] [--rounds 5] [--profile]
#                [--out docs/benchmarks.md]
#   bench/run.sh --smoke [--bin-dir DIR]
#
#   --smoke       every scenario once, briefly (0.3 s, concurrency 4, no
#                 pinning); exits non-zero only on errors or wrong decisions,
#                 never on speed; writes no report. (ctest: bench_smoke.)
#   --bin-dir D   use the binaries in D (toolgated, toolgate, noop_server,
#                 toolgate_bench, toolgate_redis_cost) instead of building
#                 build-bench/ (Release).
#   --scenarios L run only these scenarios, e.g. "a c" (or "r" alone, whose
#                 section can be spliced into an existing report).
#   --rounds N    measure each point N times (default 5), each round the
#                 no-op server then toolgated; ratios are the median of the
#                 rounds' ratios, so background load hits both alike.
#   --redis-cpu C pin redis-server to CPU C (default 0, with the server
#                 under test, so that the load generator's CPU is the same
#                 in every run and Redis's work is charged to the server
#                 side), or "none".
#   --no-pin      do not pin processes to CPUs.
#   --profile     also count instructions per call under valgrind (callgrind,
#                 bench/profile.sh) and add "Where the time goes" to the report.
#
# The report ends with bench/notes.md (hand-written notes on the results), if
# it exists.
#
# Needs: bash, awk, taskset (unless --no-pin), redis-server and redis-cli on
# PATH (scenarios c, d and r), valgrind for --profile.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=0
BIN_DIR=""
DURATION=1500ms
WARMUP=250ms
OUT="$ROOT/docs/benchmarks.md"
SCENARIOS="a b c d e v r s w k x"
PIN=1
PROFILE=0
CONCURRENCIES="1 64"
ROUNDS=5
REDIS_CPU=0

while (($#)); do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --bin-dir) BIN_DIR=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --out) OUT=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --no-pin) PIN=0 ;;
    --rounds) ROUNDS=$2; shift ;;
    --redis-cpu) REDIS_CPU=$2; shift ;;
    --profile) PROFILE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# Deadlines: toolgated's own to Redis (flags of scenarios c, d, s, w, k) and the
# load generator's per call (empty: the defaults).
REDIS_DEADLINE_FLAGS=""
CALL_TIMEOUT=""
if ((SMOKE)); then
  DURATION=300ms
  WARMUP=100ms
  CONCURRENCIES="4"
  ROUNDS=1
  PIN=0
  PROFILE=0
  # The smoke run checks decisions, never speed: deadlines 10x more than a
  # call needs on a busy machine (sanitizer builds included), so that a slow
  # moment is never a wrong decision (toolgated's default Redis deadline,
  # 25 ms, would deny by failure mode) or a failed call.
  REDIS_DEADLINE_FLAGS="--redis-timeout 5s"
  CALL_TIMEOUT=20s
fi
if ((PIN)) && { ! command -v taskset >/dev/null || (($(nproc) < 2)); }; then
  echo "run.sh: taskset missing or fewer than 2 CPUs: not pinning" >&2
  PIN=0
fi

# ---- Binaries ----------------------------------------------------------------
if [[ -z "$BIN_DIR" ]]; then
  BIN_DIR="$ROOT/build-bench"
  echo "== building (Release) in $BIN_DIR" >&2
  cmake -S "$ROOT" -B "$BIN_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  make -C "$BIN_DIR" -j1 --no-print-directory toolgated toolgate noop_server toolgate_bench \
    toolgate_redis_cost >/dev/null
fi
TOOLGATED="$BIN_DIR/toolgated"
CLI="$BIN_DIR/toolgate"
NOOP="$BIN_DIR/noop_server"
BENCH="$BIN_DIR/toolgate_bench"
REDIS_COST="$BIN_DIR/toolgate_redis_cost"
for bin in "$TOOLGATED" "$CLI" "$NOOP" "$BENCH" "$REDIS_COST"; do
  [[ -x "$bin" ]] || { echo "run.sh: $bin not built" >&2; exit 2; }
done

# ---- Processes and cleanup ---------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=scripts/redis-topology.sh
source "$ROOT/scripts/redis-topology.sh"
bench_setup bench

FAILED=0
WARNINGS=()
warn() {
  echo "WARNING: $*" >&2
  WARNINGS+=("$*")
  FAILED=1
}

# ---- Reading results ---------------------------------------------------------
# jnum FILE KEY: the first number (quoted or not) under "KEY" in a JSON file.
jnum() {
  local v
  v=$(grep -o "\"$2\": *\"\{0,1\}-\{0,1\}[0-9.eE+]*" "$1" | head -1 | sed 's/.*: *"\{0,1\}//')
  echo "${v:-0}"
}
# The non-zero decision counts of a bench JSON: "ALLOW 123, DENY 4".
decisions_of() {
  grep -o '"decisions": {[^}]*}' "$1" | sed 's/"decisions": {//; s/}//' | tr ',' '\n' |
    sed 's/[" ]//g' | awk -F: '$2 > 0 { printf "%s%s %s", sep, $1, $2; sep = ", " }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

declare -A R  # Results: R[scenario,server,concurrency,field].
TCK=$(getconf CLK_TCK)

# measure SCEN KIND PID ADDR CONC EXPECT BENCH_ARGS...: one bench run, round
# $ROUND. Stores R[SCEN,KIND,CONC,ROUND,metric], and sums errors per point.
measure() {
  local scen=$1 kind=$2 pid=$3 addr=$4 conc=$5 expect=$6
  shift 6
  local run="$scen-$kind-c$conc-r$ROUND"
  local json="$WORK/$run.json" key="$scen,$kind,$conc"
  local cmd=($(pin_prefix 1) "$BENCH" --target "$addr" --concurrency "$conc" --warmup "$WARMUP"
    --duration "$DURATION" --expect "$expect" --label "$scen/$kind/c$conc" --json "$json"
    ${CALL_TIMEOUT:+--timeout "$CALL_TIMEOUT"} "$@")
  ((ROUND > 1)) || record "${cmd[@]}"
  local c0 c1 t0 t1 r0=0 r1=0 rc=0
  c0=$(cpu_ticks "$pid")
  if [[ -n "${REDIS_PID:-}" ]]; then r0=$(cpu_ticks "$REDIS_PID"); fi
  t0=$(date +%s%N)
  "${cmd[@]}" >"$WORK/$run.txt" 2>&1 || rc=$?
  t1=$(date +%s%N)
  c1=$(cpu_ticks "$pid")
  if [[ -n "${REDIS_PID:-}" ]]; then r1=$(cpu_ticks "$REDIS_PID"); fi
  sed 's/^/    /' "$WORK/$run.txt" >&2
  if ! kill -0 "$pid" 2>/dev/null; then
    warn "scenario $scen, $kind, concurrency $conc: the server exited: $(tail -5 \
      "$WORK/"*"-$scen.log" | tr '\n' ' ')"
  fi
  if ((rc != 0)) || [[ ! -s "$json" ]]; then
    warn "scenario $scen, $kind, concurrency $conc, round $ROUND: $(grep -E 'ERROR|WARNING' \
      "$WORK/$run.txt" | sed 's/^ *//' | tr '\n' ' ')(toolgate_bench exit $rc)"
    [[ -s "$json" ]] || return 0
  fi
  R[$key,errors]=$((${R[$key,errors]:-0} + $(jnum "$json" all_errors)))
  R[$key,jsons]+=" $json"
  local k="$key,$ROUND"
  R[$k,tput]=$(jnum "$json" calls_per_second)
  R[$k,p50]=$(jnum "$json" p50)
  R[$k,p90]=$(jnum "$json" p90)
  R[$k,p99]=$(jnum "$json" p99)
  R[$k,p999]=$(jnum "$json" p99_9)
  local all_calls cpu_ms wall_ms
  all_calls=$(jnum "$json" all_calls)
  cpu_ms=$(((c1 - c0) * 1000 / TCK))
  wall_ms=$(((t1 - t0) / 1000000))
  R[$k,cpu_us]=$(awk -v c="$cpu_ms" -v n="$all_calls" 'BEGIN { printf "%.1f", n ? c * 1000 / n : 0 }')
  R[$k,util]=$(awk -v c="$cpu_ms" -v w="$wall_ms" 'BEGIN { printf "%.0f", w ? 100 * c / w : 0 }')
  R[$k,redis_cpu_us]=$(awk -v c="$(((r1 - r0) * 1000 / TCK))" -v n="$all_calls" \
    'BEGIN { printf "%.1f", n ? c * 1000 / n : 0 }')
}

# Statistics over the rounds of a point ("SCEN,KIND,CONC").
median() {
  printf '%s\n' "$@" | grep -v '^$' | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2];
      else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# med KEY METRIC: the median of METRIC over the rounds.
med() {
  local r v=()
  for r in $(seq "$ROUNDS"); do v+=("${R[$1,$r,$2]:-}"); done
  median "${v[@]}"
}
# pair_ratios T N METRIC: METRIC of T ÷ METRIC of N, round by round (each
# round measures N and T one right after the other).
pair_ratios() {
  local r
  for r in $(seq "$ROUNDS"); do
    [[ -n "${R[$1,$r,$3]:-}" && -n "${R[$2,$r,$3]:-}" ]] || continue
    echo "$(ratio "${R[$1,$r,$3]}" "${R[$2,$r,$3]}")"
  done | grep -v n/a || true
}
# pmed T N METRIC: the median of the round-by-round ratios.
pmed() {
  local v
  v=$(pair_ratios "$@")
  [[ -n "$v" ]] || { echo n/a; return; }
  fmt "$(median $v)" 2
}
# prange T N METRIC: "min–max" of the round-by-round ratios.
prange() {
  local v
  v=$(pair_ratios "$@" | sort -g)
  [[ -n "$v" ]] || { echo n/a; return; }
  echo "$(fmt "$(head -1 <<<"$v")" 2)–$(fmt "$(tail -1 <<<"$v")" 2)"
}
# rounds_of KEY: every round's calls/s, comma-separated.
rounds_of() {
  local r out=""
  for r in $(seq "$ROUNDS"); do out+="${out:+, }$(fmt "${R[$1,$r,tput]:-0}" 0)"; done
  echo "$out"
}
# decisions_sum KEY: decision counts summed over the rounds.
decisions_sum() {
  local f
  for f in ${R[$1,jsons]:-}; do decisions_of "$f"; echo; done | tr ',' '\n' | grep . |
    awk '{ n[$1] += $2 } END { for (d in n) printf "%s%s %d", (sep++ ? ", " : ""), d, n[d] }'
}

# Counters of a running toolgated (toolgate status --output json).
status_json() {
  local out=$1 addr=$2
  "$CLI" status --target "$addr" --output json >"$out" 2>&1 ||
    warn "toolgate status --target $addr failed: $(head -3 "$out" | tr '\n' ' ')"
}
redis_evalsha_calls() {
  redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' |
    awk -F'[:=,]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { n += $3 } END { print n + 0 }'
}

# run_scenario SCEN EXPECT "TOOLGATED_FLAGS" BENCH_ARGS...: starts the no-op
# server and toolgated, measures both at each concurrency, then stops them.
# With BASELINE=native, the baseline ("noop" in the results) is the same
# toolgated through DecisionService/Check, and TG_BENCH_ARGS (e.g. --api
# ext_authz) are added to the measured runs only.
run_scenario() {
  local scen=$1 expect=$2 flags=$3
  shift 3
  echo "== scenario $scen" >&2
  local native=0 base_expect=UNSPECIFIED noop_pid="" noop_addr=""
  [[ "${BASELINE:-noop}" != native ]] || { native=1; base_expect=$expect; }
  if ((!native)); then
    start_server "noop-$scen" $(pin_prefix 0) "$NOOP" --listen 127.0.0.1:0
    noop_pid=$SRV_PID noop_addr=$SRV_ADDR
  fi
  # shellcheck disable=SC2086  # flags are words.
  start_server "toolgated-$scen" $(pin_prefix 0) "$TOOLGATED" --listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --no-watch $flags
  local tg_pid=$SRV_PID tg_addr=$SRV_ADDR tg_admin=$SRV_ADMIN
  if ((native)); then noop_pid=$tg_pid noop_addr=$tg_addr; fi
  TG_ADDR=$tg_addr
  if [[ -n "${PRIME:-}" ]]; then
    local rc=0
    # shellcheck disable=SC2086
    record "$CLI" check --target "$tg_addr" $PRIME
    "$CLI" check --target "$tg_addr" $PRIME >"$WORK/prime-$scen.txt" 2>&1 || rc=$?
    ((rc == 0)) || warn "scenario $scen: the priming call was not allowed (exit $rc): \
$(tr '\n' ' ' <"$WORK/prime-$scen.txt")"
  fi
  local conc before_status="$WORK/status-$scen-before.json" after_status="$WORK/status-$scen-after.json"
  local evalsha_before=0
  for conc in $CONCURRENCIES; do
    for ROUND in $(seq "$ROUNDS"); do
      measure "$scen" noop "$noop_pid" "$noop_addr" "$conc" "$base_expect" "$@"
      status_json "$before_status" "$tg_admin"
      if [[ -n "${REDIS_PORT:-}" ]]; then evalsha_before=$(redis_evalsha_calls); fi
      # shellcheck disable=SC2086  # TG_BENCH_ARGS are words.
      measure "$scen" toolgate "$tg_pid" "$tg_addr" "$conc" "$expect" "$@" ${TG_BENCH_ARGS:-}
      status_json "$after_status" "$tg_admin"
      # Server and Redis counters: summed over the rounds.
      local key="$scen,toolgate,$conc" field
      for field in checks commands roundTrips cacheHits timeouts failures; do
        R[$key,$field]=$((${R[$key,$field]:-0} + $(jnum "$after_status" "$field") -
          $(jnum "$before_status" "$field")))
      done
      if [[ -n "${REDIS_PORT:-}" ]]; then
        R[$key,evalsha]=$((${R[$key,evalsha]:-0} + $(redis_evalsha_calls) - evalsha_before))
      fi
    done
  done
  # Read before and after each toolgated run (the differences are reported):
  record "$CLI" status --target "$tg_admin" --output json
  if [[ -n "${REDIS_PORT:-}" ]]; then record redis-cli -p "$REDIS_PORT" info commandstats; fi
  R[$scen,rss_kb]=$(rss_kb "$tg_pid")
  ((native)) || stop "$noop_pid"
  stop "$tg_pid"
}

# ---- Scenarios -------------------------------------------------------------
ARGS_A='{"path": "/tmp/report.txt"}'
ARGS_B='{"command": "ls la tmp", "timeout": 30, "retries": 3, "mode": "safe"}'
ARGS_E='{"path": "/tmp/report.txt", "limit": 10, "mode": "read"}'
declare -A TITLE=(
  [a]="a. Allowed tool, no limits (policy lookup only)"
  [b]="b. Argument validation (pattern, two ranges, enum)"
  [c]="c. One sliding-window limit in Redis over 10,000 grants"
  [d]="d. One hot counter over its limit (Redis, over-limit cache)"
  [e]="e. Large policy: 10,000 exact tools, 1,000 globs, 1,000 schemas"
  [s]="s. Scenario c through Redis Sentinel (a master, a replica, three sentinels)"
  [w]="w. Scenario s with --redis-wait-replicas 1 (each admission waits for the replica)"
  [k]="k. Scenario c on a Redis Cluster (three masters, three replicas)"
  [x]="x. Envoy's ext_authz against toolgate's own Check (scenario a's calls)"
)
declare -A SETUP
LINT_MS=""

for scen in $SCENARIOS; do
  PRIME=""
  REDIS_PORT=""
  case "$scen" in
    a)
      SETUP[a]="Policy \`bench/policies/allow.yaml\`; tool \`read_file\` (allowed, no limits, no schema); 1,000 grants; args \`$ARGS_A\`; in-process counters. Expected: all ALLOW."
      run_scenario a ALLOW "--policy $ROOT/bench/policies/allow.yaml" \
        --tool read_file --grant 'agent-{i}' --grants 1000 --args "$ARGS_A"
      ;;
    b)
      SETUP[b]="Policy \`bench/policies/schema.yaml\`; tool \`run_command\` whose schema has a pattern, two integer ranges and an enum (plus required and additionalProperties); 1,000 grants; args \`$ARGS_B\` (valid). Expected: all ALLOW."
      run_scenario b ALLOW "--policy $ROOT/bench/policies/schema.yaml" \
        --tool run_command --grant 'agent-{i}' --grants 1000 --args "$ARGS_B"
      ;;
    c)
      start_redis "$REDIS_CPU"
      SETUP[c]="Policy \`bench/policies/redis_window.yaml\`; tool \`search_web\` with one \`sliding_window\` limit per grant (1,000 a minute, never reached); 10,000 grants; \`toolgated --redis\` to a local redis-server (\`--save \"\" --appendonly no\`, pinned with the server under test). Expected: all ALLOW."
      run_scenario c ALLOW "--policy $ROOT/bench/policies/redis_window.yaml --redis redis://127.0.0.1:$REDIS_PORT $REDIS_DEADLINE_FLAGS" \
        --tool search_web --grant 'agent-{i}' --grants 10000 --args "$ARGS_A"
      stop "$REDIS_PID"
      REDIS_PID="" REDIS_PORT=""
      ;;
    d)
      start_redis "$REDIS_CPU"
      SETUP[d]="Policy \`bench/policies/hot_key.yaml\`; tool \`send_email\` with one global limit of 1 an hour in Redis; one priming call takes the only unit, so every measured call is over the limit and answered by the over-limit cache. Expected: all RATE_LIMITED."
      PRIME="--tool send_email --grant agent-0"
      run_scenario d RATE_LIMITED "--policy $ROOT/bench/policies/hot_key.yaml --redis redis://127.0.0.1:$REDIS_PORT $REDIS_DEADLINE_FLAGS" \
        --tool send_email --grant 'agent-{i}' --grants 1000 --args "$ARGS_A"
      stop "$REDIS_PID"
      REDIS_PID="" REDIS_PORT=""
      ;;
    e)
      mkdir -p "$WORK/large"
      record bench/gen_large_policy.sh "$WORK/large"
      "$ROOT/bench/gen_large_policy.sh" "$WORK/large"
      # Load + compile, offline, with the server's own loader: the best of 3.
      record "$CLI" lint "$WORK/large/large.yaml"
      for _ in 1 2 3; do
        t0=$(date +%s%N)
        "$CLI" lint "$WORK/large/large.yaml" >"$WORK/lint.txt" 2>&1 ||
          warn "scenario e: the generated policy does not lint: $(head -3 "$WORK/lint.txt")"
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        if [[ -z "$LINT_MS" ]] || ((ms < LINT_MS)); then LINT_MS=$ms; fi
      done
      SETUP[e]="Generated by \`bench/gen_large_policy.sh\` (18,000 lines of YAML): 10,000 exact tools (the first 1,000 with an argument schema, each with its own RE2 pattern, range and enum; 900 denied), 1,000 globs (250 requiring approval). Calls cycle over $(grep -c . "$WORK/large/large.tools") allowed tools: 9,100 exact (1,000 of them validated) and 750 matched by a glob; 1,000 grants; args \`$ARGS_E\`. Expected: all ALLOW."
      run_scenario e ALLOW "--policy $WORK/large/large.yaml" \
        --tools-file "$WORK/large/large.tools" --grant 'agent-{i}' --grants 1000 --args "$ARGS_E"
      ;;
    v)
      # ListVisibleTools of 300 tools against one Check, both answered by
      # the same toolgated, round after round (as noop and toolgated are
      # elsewhere): what classifying 300 tools costs over one decision.
      echo "== scenario v" >&2
      # An allowed tool first (the call counts as its decision), then 299
      # decided every way the policy can (bench/policies/visible.yaml).
      {
        echo read_file
        for i in $(seq 0 298); do
          case $((i % 6)) in
            0) echo "github_create_issue_$i" ;;
            1) echo "github_get_issue_$i" ;;
            2) echo "fs_read_$i" ;;
            3) echo "db_drop_table_$i" ;;
            4) echo "mcp_tool_$i" ;;
            5) echo "unlisted_tool_$i" ;;
          esac
        done
      } >"$WORK/visible.tools"
      VISIBLE_TOOLS=$(grep -c . "$WORK/visible.tools")
      start_server toolgated-v $(pin_prefix 0) "$TOOLGATED" --listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --no-watch --policy "$ROOT/bench/policies/visible.yaml"
      tg_pid=$SRV_PID
      for conc in $CONCURRENCIES; do
        for ROUND in $(seq "$ROUNDS"); do
          measure v check "$tg_pid" "$SRV_ADDR" "$conc" ALLOW --tool read_file \
            --grant 'agent-{i}' --grants 1000 --server tools-hub --args "$ARGS_A"
          measure v list "$tg_pid" "$SRV_ADDR" "$conc" ALLOW --list-visible \
            --tools-file "$WORK/visible.tools" --grant 'agent-{i}' --grants 1000 --server tools-hub
        done
      done
      R[v,rss_kb]=$(rss_kb "$tg_pid")
      stop "$tg_pid"
      ;;
    r)
      # Redis CPU per check: its own redis-server (pinned like the others'),
      # the load generator on CPU 1; the section comes out of the program.
      start_redis "$REDIS_CPU"
      echo "== scenario r" >&2
      cost_cmd=($(pin_prefix 1) "$REDIS_COST" --redis "redis://127.0.0.1:$REDIS_PORT"
        --rounds "$ROUNDS" --warmup "$WARMUP" --duration "$DURATION"
        --concurrency "$( ((SMOKE)) && echo 8 || echo 64)" --markdown "$WORK/redis-cost.md")
      record "${cost_cmd[@]}"
      rc=0
      "${cost_cmd[@]}" >"$WORK/redis-cost.txt" 2>&1 || rc=$?
      grep '^round' "$WORK/redis-cost.txt" | sed 's/^/    /' >&2 || true
      if ((rc != 0)) || [[ ! -s "$WORK/redis-cost.md" ]]; then
        warn "scenario r: toolgate_redis_cost exit $rc: $(grep -E 'FAILURES|toolgate_redis_cost:' \
          "$WORK/redis-cost.txt" | head -3 | tr '\n' ' ')"
      fi
      stop "$REDIS_PID"
      REDIS_PID="" REDIS_PORT=""
      ;;
    s|w|k)
      # The same calls as c, through Sentinel (s, w) or a Cluster (k), all of
      # its processes started by scripts/redis-topology.sh and pinned like c's.
      topo=sentinel
      [[ "$scen" == k ]] && topo=cluster
      tdir="$WORK/redis-$scen"
      mkdir -p "$tdir"
      if ! url=$(redis_topology_start_$topo "$tdir" 2>"$tdir/start.log"); then
        warn "scenario $scen: the Redis $topo did not start: $(tail -3 "$tdir/start.log" | tr '\n' ' ')"
        continue
      fi
      tpids=()
      while read -r name pid port; do
        PIDS+=("$pid")
        tpids+=("$pid")
        if ((PIN)); then taskset -pc "$REDIS_CPU" "$pid" >/dev/null; fi
        # Sentinel: Redis's own figures are the master's.
        if [[ "$name" == redis-master ]]; then REDIS_PID=$pid REDIS_PORT=$port; fi
      done <"$tdir/redis-topology.pids"
      flags=""
      [[ "$scen" == w ]] && flags="--redis-wait-replicas 1"
      case "$scen" in
        s) SETUP[s]="As c, with \`--redis redis+sentinel://S1,S2,S3/toolgate\`: toolgated finds the master from three sentinels (\`scripts/redis-topology.sh\`; every Redis process pinned with the server under test). The replica's work (replication) is on the same CPU. Expected: all ALLOW." ;;
        w) SETUP[w]="As s, with \`--redis-wait-replicas 1\`: after its script runs toolgated sends \`WAIT 1\` (one at a time per connection) and answers an admission only once the replica has it. Expected: all ALLOW." ;;
        k) SETUP[k]="As c, with \`--redis redis+cluster://N1,...,N6\`: three masters and three replicas (\`scripts/redis-topology.sh\`, all pinned with the server under test); the 10,000 grants' counters spread over the three masters, one connection to each, calls batched per slot. Redis's own figures (commandstats, CPU) are not collected for a cluster. Expected: all ALLOW." ;;
      esac
      run_scenario "$scen" ALLOW "--policy $ROOT/bench/policies/redis_window.yaml --redis $url $flags $REDIS_DEADLINE_FLAGS" \
        --tool search_web --grant 'agent-{i}' --grants 10000 --args "$ARGS_A"
      redis_topology_stop "$tdir" 2>/dev/null || true
      for pid in "${tpids[@]}"; do
        for i in "${!PIDS[@]}"; do [[ "${PIDS[$i]}" == "$pid" ]] && unset 'PIDS[i]'; done
      done
      REDIS_PID="" REDIS_PORT=""
      ;;
    x)
      SETUP[x]="Policy \`bench/policies/allow.yaml\`; tool \`read_file\`; 1,000 grants; args \`$ARGS_A\`; in-process counters. One toolgated; the baseline is \`toolgate.v1.DecisionService/Check\`, the run under test \`envoy.service.auth.v3.Authorization/Check\` with what Envoy sends for the same call as an MCP \`tools/call\` over Streamable HTTP (\`toolgate_bench --api ext_authz\`: ten headers, the JSON-RPC body as \`raw_body\`). Expected: all ALLOW."
      BASELINE=native TG_BENCH_ARGS="--api ext_authz" run_scenario x ALLOW \
        "--policy $ROOT/bench/policies/allow.yaml" \
        --tool read_file --grant 'agent-{i}' --grants 1000 --args "$ARGS_A"
      ;;
    *) echo "run.sh: unknown scenario $scen" >&2; exit 2 ;;
  esac
done

# ---- Checks that are not about speed -----------------------------------------
# Redis scenarios: the server's own counters must agree with what was sent.
for scen in $SCENARIOS; do
  for conc in $CONCURRENCIES; do
    key="$scen,toolgate,$conc"
    [[ "$scen" =~ ^[cdswk]$ ]] || continue
    [[ -n "${R[$key,jsons]:-}" ]] || continue
    if ((${R[$key,timeouts]:-0} + ${R[$key,failures]:-0} > 0)); then
      warn "scenario $scen, concurrency $conc: Redis timeouts ${R[$key,timeouts]}, failures ${R[$key,failures]}"
    fi
  done
done

if ((SMOKE)); then
  if ((FAILED)); then
    echo "bench smoke: FAILED" >&2
    printf '  %s\n' "${WARNINGS[@]}" >&2
    exit 1
  fi
  echo "bench smoke: every scenario ran, no errors, expected decisions" >&2
  exit 0
fi

# ---- Report ------------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REPORT="$WORK/benchmarks.md"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`bench/run.sh\` on $(date -u +%Y-%m-%d) — do not edit by hand; run it again."
  echo
  echo "toolgate is measured against a **no-op gRPC server** (\`bench/noop_server\`: the same"
  echo "gRPC library and callback API, answering every \`Check\` with an empty message without"
  echo "parsing it) in the same run, under the same load. Ratios are toolgate ÷ no-op: for"
  echo "throughput higher is better (1.00 = as fast as gRPC alone), for latency and CPU lower"
  echo "is better (1.00 = no cost over gRPC)."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPUs (nproc) | $(nproc) |"
  echo "| CPU model | ${CPU_MODEL:-unknown} |"
  echo "| kernel | $(uname -sr) |"
  echo "| build | Release (\`cmake -DCMAKE_BUILD_TYPE=Release\`), gRPC $(
    pkg-config --modversion grpc++ 2>/dev/null || echo unknown) |"
  echo "| load average (1, 5, 15 min) | $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end |"
  echo "| redis-server | $(redis-server --version 2>/dev/null | awk '{ print $3 }' | sed 's/v=//') |"
  echo
  echo "## Method"
  echo
  echo "- The server under test (the no-op server or \`toolgated\`) runs on CPU 0"
  if ((PIN)); then
    echo "  (\`taskset -c 0\`), the load generator \`bench/toolgate_bench\` on CPU 1 (\`taskset -c 1\`),"
    echo "  the same way for both servers. Redis, when used, is $(
      [[ "$REDIS_CPU" == none ]] && echo "not pinned" || echo "pinned to CPU $REDIS_CPU") (\`--redis-cpu\`)."
    if [[ "$REDIS_CPU" == 0 ]]; then
      echo "  Redis shares the server's CPU: the load generator then has its CPU to itself in every"
      echo "  run, no-op or not, and the server side (toolgated with its counter store) is charged"
      echo "  for all of its work. (With Redis beside the load generator instead, Redis's work slows"
      echo "  the client, and the ratio measures that as much as toolgate.)"
    fi
  else
    echo "  — not pinned in this run."
  fi
  echo "- \`toolgate_bench\` keeps a fixed number of calls in flight (closed loop; one gRPC channel,"
  echo "  callback API, requests serialized once and reused) for a $WARMUP warm-up, then measures"
  echo "  for $DURATION. Latency is from starting a call to its completion callback."
  echo "- Each point is measured in $ROUNDS rounds; a round measures the no-op server, then"
  echo "  toolgated, one right after the other, so that both see the same background load."
  echo "  Ratios are the median over the rounds of each round's ratio (with the range, as a"
  echo "  measure of noise); absolute numbers are medians over the rounds."
  echo "- **Server CPU per call** is the server process's user+system CPU time during the run"
  echo "  divided by the calls it answered; **CPU busy** is that time over the wall time. When the"
  echo "  server is less than ~95% busy the load generator (one CPU) is the bottleneck, and the"
  echo "  throughput ratio understates the server's own headroom; CPU per call does not."
  echo "- Other processes on the machine compete for the same CPUs; the load averages above show
  how busy it was. Such noise affects both servers alike only on average.
- Every call's decision is checked against the scenario's expected one, and every"
  echo "  gRPC error is counted; either is reported below as a warning."
  echo
  if ((${#WARNINGS[@]})); then
    echo "## Warnings"
    echo
    for w in "${WARNINGS[@]}"; do echo "- **$w**"; done
    echo
  fi
  echo "## Results"
  for scen in $SCENARIOS; do
    [[ "$scen" != r && "$scen" != v ]] || continue  # Their own sections, below.
    echo
    echo "### ${TITLE[$scen]}"
    echo
    echo "${SETUP[$scen]}"
    echo
    if [[ "$scen" == x ]]; then
      echo "Ratios (ext_authz ÷ toolgate's own Check, the same toolgated; median over the rounds of each round's ratio):"
    else
      echo "Ratios (toolgate ÷ no-op; median over the rounds of each round's ratio):"
    fi
    echo
    echo "| concurrency | throughput | (range over rounds) | p50 | p90 | p99 | p99.9 | server CPU per call |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    for conc in $CONCURRENCIES; do
      n="$scen,noop,$conc"
      t="$scen,toolgate,$conc"
      echo "| $conc | **$(pmed "$t" "$n" tput)** | $(prange "$t" "$n" tput) | $(pmed "$t" "$n" p50) | $(pmed "$t" "$n" p90) | $(pmed "$t" "$n" p99) | $(pmed "$t" "$n" p999) | $(pmed "$t" "$n" cpu_us) |"
    done
    echo
    echo "Absolute (medians over the rounds):"
    echo
    echo "| concurrency | server | calls/s | p50 µs | p90 µs | p99 µs | p99.9 µs | CPU µs/call | CPU busy | each round (calls/s) | errors | decisions (all rounds) |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
    for conc in $CONCURRENCIES; do
      for kind in noop toolgate; do
        k="$scen,$kind,$conc"
        name=toolgated
        decisions=$(decisions_sum "$k")
        decisions=${decisions:-none}
        if [[ $scen == x ]]; then
          name=$([[ $kind == noop ]] && echo "toolgated, Check" || echo "toolgated, ext_authz")
        elif [[ $kind == noop ]]; then
          name=no-op
          decisions=${decisions/UNSPECIFIED/empty answers:}
        fi
        echo "| $conc | $name | $(thousands "$(med "$k" tput)") | $(fmt "$(med "$k" p50)") | $(fmt "$(med "$k" p90)") | $(fmt "$(med "$k" p99)") | $(fmt "$(med "$k" p999)") | $(fmt "$(med "$k" cpu_us)") | $(fmt "$(med "$k" util)" 0)% | $(rounds_of "$k") | ${R[$k,errors]:-?} | $decisions |"
      done
    done
    if [[ "$scen" =~ ^[cdswk]$ ]]; then
      echo
      echo "Redis work (server counters from \`toolgate status --output json\`, and Redis's own"
      echo "\`INFO commandstats\`; every round, warm-up included):"
      echo
      echo "| concurrency | checks | Redis commands | commands per check | EVALSHA+EVAL (Redis) | round trips | round trips per check | over-limit cache hits | redis-server CPU µs per call |"
      echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      for conc in $CONCURRENCIES; do
        k="$scen,toolgate,$conc"
        echo "| $conc | $(thousands "${R[$k,checks]:-0}") | $(thousands "${R[$k,commands]:-0}") | $(ratio "${R[$k,commands]:-0}" "${R[$k,checks]:-0}") | $(thousands "${R[$k,evalsha]:-0}") | $(thousands "${R[$k,roundTrips]:-0}") | $(ratio "${R[$k,roundTrips]:-0}" "${R[$k,checks]:-0}") | $(thousands "${R[$k,cacheHits]:-0}") | $(fmt "$(med "$k" redis_cpu_us)") |"
      done
      echo
      echo "redis-server CPU per call is its user+system CPU time during the measured run over the"
      echo "calls answered (median over the rounds); it runs on CPU $REDIS_CPU, so in scenario $scen the"
      echo "server side (toolgated and Redis) spends the sum of the two CPU columns per call."
    fi
    echo
    echo "toolgated's resident memory after the runs (VmRSS): $(awk -v k="${R[$scen,rss_kb]:-0}" 'BEGIN { printf "%.1f MB", k / 1024 }')."
    if [[ "$scen" == e ]]; then
      echo "Load + compile of the policy (\`toolgate lint\` on it, whole process, best of 3): ${LINT_MS} ms."
    fi
  done

  # ---- Visible tools (scenario v) ----
  if [[ " $SCENARIOS " == *" v "* ]]; then
    echo
    echo "### v. Visible tools: ListVisibleTools of $VISIBLE_TOOLS tools against one Check"
    echo
    echo "Policy \`bench/policies/visible.yaml\` (exact entries, globs, a server section, class"
    echo "rules); server \`tools-hub\`; 1,000 grants. **check**: \`Check\` of \`read_file\` (allowed)."
    echo "**list**: one \`ListVisibleTools\` naming $VISIBLE_TOOLS tools (\`read_file\`, then names"
    echo "allowed by globs and by the server section, needing approval, and denied by a class rule"
    echo "or by the default). The same toolgated answers both, one right after the other in each"
    echo "round; there is no no-op server here. Expected: every call answered, its first tool ALLOW."
    echo
    echo "| concurrency | call | calls/s | p50 µs | p99 µs | server CPU µs/call | server CPU µs per tool | errors |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|"
    for conc in $CONCURRENCIES; do
      for kind in check list; do
        k="v,$kind,$conc"
        per_tool=$(med "$k" cpu_us)
        [[ $kind == list ]] && per_tool=$(awk -v c="$per_tool" -v n="$VISIBLE_TOOLS" 'BEGIN { printf "%.2f", c / n }')
        echo "| $conc | $kind | $(thousands "$(med "$k" tput)") | $(fmt "$(med "$k" p50)") | $(fmt "$(med "$k" p99)") | $(fmt "$(med "$k" cpu_us)") | $per_tool | ${R[$k,errors]:-?} |"
      done
      echo "| $conc | list ÷ check | $(pmed "v,list,$conc" "v,check,$conc" tput) | $(pmed "v,list,$conc" "v,check,$conc" p50) | $(pmed "v,list,$conc" "v,check,$conc" p99) | $(pmed "v,list,$conc" "v,check,$conc" cpu_us) | | |"
    done
    echo
    echo "Server CPU per call is toolgated's user+system CPU time over the calls it answered"
    echo "(median over the rounds): for **list**, gRPC's own work for the call plus classifying"
    echo "every tool and writing its answer. toolgated's resident memory after the runs: $(awk -v k="${R[v,rss_kb]:-0}" 'BEGIN { printf "%.1f MB", k / 1024 }')."
  fi

  # ---- Redis CPU per check (scenario r) ----
  if [[ " $SCENARIOS " == *" r "* && -s "$WORK/redis-cost.md" ]]; then
    echo
    cat "$WORK/redis-cost.md"
  fi

  # ---- Targets ----
  echo
  echo "## Targets"
  echo
  echo "Scenarios a and e run at different times, so the machine's background load can differ"
  echo "between them; the second row for e compares them through the no-op server measured"
  echo "beside each, which cancels that."
  echo
  echo "| scenario | target | measured | met |"
  echo "|---|---|---:|---|"
  target() {  # SCENARIO TEXT VALUE ge|le LIMIT
    local met=no
    if "$4" "$3" "$5"; then met=yes; fi
    echo "| $1 | $2 | $3 | $met |"
  }
  hi=${CONCURRENCIES##* }
  lo=${CONCURRENCIES%% *}
  for scen in $SCENARIOS; do
    [[ "$scen" != r ]] || continue  # Its targets are in its section.
    if [[ "$scen" == v ]]; then
      target v "ListVisibleTools of $VISIBLE_TOOLS tools: server CPU per call < 1000 µs (concurrency $lo)" \
        "$(fmt "$(med "v,list,$lo" cpu_us)")" le 999.9
      continue
    fi
    t="$scen,toolgate,$hi"
    n="$scen,noop,$hi"
    tr_hi=$(pmed "$t" "$n" tput)
    case "$scen" in
      a)
        target a "throughput at concurrency $hi ≥ 0.80 × no-op" "$tr_hi" ge 0.80
        target a "p50 at concurrency $lo ≤ 1.3 × no-op" \
          "$(pmed "a,toolgate,$lo" "a,noop,$lo" p50)" le 1.3
        ;;
      b) target b "throughput at concurrency $hi ≥ 0.75 × no-op" "$tr_hi" ge 0.75 ;;
      c)
        target c "throughput at concurrency $hi ≥ 0.60 × no-op" "$tr_hi" ge 0.60
        target c "Redis commands per check ≤ 1 (concurrency $hi)" \
          "$(ratio "${R[$t,commands]:-0}" "${R[$t,checks]:-0}")" le 1.0
        target c "EVALSHA per check ≤ 1, by Redis (concurrency $hi)" \
          "$(ratio "${R[$t,evalsha]:-0}" "${R[$t,checks]:-0}")" le 1.0
        target c "round trips per check < 1 (concurrency $hi)" \
          "$(ratio "${R[$t,roundTrips]:-0}" "${R[$t,checks]:-0}")" le 0.99
        ;;
      d) target d "throughput at concurrency $hi ≥ 0.80 × no-op" "$tr_hi" ge 0.80 ;;
      x) target x "ext_authz throughput at concurrency $hi ≥ 0.70 × toolgate's own Check" "$tr_hi" ge 0.70 ;;
      e)
        if [[ -n "${R[a,toolgate,$hi,jsons]:-}" ]]; then
          target e "throughput at concurrency $hi ≥ 0.90 × scenario a (absolute calls/s)" \
            "$(ratio "$(med "$t" tput)" "$(med "a,toolgate,$hi" tput)")" ge 0.90
          target e "the same, each scenario taken as its ratio to the no-op server measured beside it" \
            "$(ratio "$tr_hi" "$(pmed "a,toolgate,$hi" "a,noop,$hi" tput)")" ge 0.90
        fi
        target e "load + compile ≤ 1000 ms" "$LINT_MS" le 1000
        target e "toolgated RSS ≤ 150 MB" \
          "$(awk -v k="${R[e,rss_kb]:-0}" 'BEGIN { printf "%.1f", k / 1024 }')" le 150
        ;;
    esac
  done

  echo
  echo "## Commands"
  echo
  echo "\`\`\`sh"
  echo "bench/run.sh --duration $DURATION --warmup $WARMUP --rounds $ROUNDS$( ((PROFILE)) && echo " --profile")"
  echo "# which ran (ports are picked at run time; \$WORK is a temporary directory):"
  printf '%s\n' "${COMMANDS[@]}"
  echo "\`\`\`"
} >"$REPORT"

if ((PROFILE)); then
  "$ROOT/bench/profile.sh" --bin-dir "$BIN_DIR" >>"$REPORT" || {
    warn "profiling failed (bench/profile.sh)"
    printf '\n**Profiling failed (bench/profile.sh); see the output of bench/run.sh.**\n' >>"$REPORT"
  }
fi
# Hand-written notes on the results, kept across runs.
if [[ -s "$ROOT/bench/notes.md" ]]; then
  { echo; cat "$ROOT/bench/notes.md"; } >>"$REPORT"
fi

mkdir -p "$(dirname "$OUT")"
cp "$REPORT" "$OUT"
echo "== wrote $OUT" >&2
exit "$FAILED"
