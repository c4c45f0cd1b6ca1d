#!/usr/bin/env bash
# Shared by bench/run.sh and bench/profile.sh: processes (started, tracked,
# stopped on exit), redis-server on a free port, and number formatting.
# Source it after setting ROOT; then call bench_setup NAME.
#
# Variables read: ROOT (the repository), PIN (1: pin with taskset).
# Variables set: WORK (a temporary directory, removed on exit), PIDS,
# COMMANDS (every command recorded for a report).

# bench_setup NAME: the temporary directory and the exit trap.
bench_setup() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/toolgate-$1.XXXXXX")
  PIDS=()
  COMMANDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Stops every process still running (TERM, then KILL after 5 s), and
# removes $WORK.
bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}

# Records a command for the report, with the repository and the temporary
# directory written as names.
record() {
  local line="" a
  for a in "$@"; do
    a=${a//"$ROOT/"/}
    a=${a//"$WORK"/\$WORK}
    if [[ -z "$a" || "$a" =~ [^A-Za-z0-9_./:=,@+-] ]]; then a="'$a'"; fi
    line+="${line:+ }$a"
  done
  COMMANDS+=("$line")
}

# `$(pin_prefix CPU) CMD...`: CMD, pinned to CPU when pinning.
pin_prefix() { if ((PIN)) && [[ "$1" != none ]]; then printf '%s\n' taskset -c "$1"; fi; }

# stop PID: SIGTERM, wait, and forget it.
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${!PIDS[@]}"; do [[ "${PIDS[$i]}" == "$pid" ]] && unset 'PIDS[i]'; done
  return 0
}

# start_server NAME CMD... : starts CMD (output to $WORK/NAME.log) and waits
# for "listening on HOST:PORT"; sets SRV_PID and SRV_ADDR.
start_server() {
  local name=$1
  shift
  local log="$WORK/$name.log"
  record "$@"
  "$@" >"$log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  local i
  for i in $(seq 600); do  # 30 s: enough under valgrind too.
    SRV_ADDR=$(grep -o 'listening on [^ ]*' "$log" 2>/dev/null | head -1 | cut -d' ' -f3 || true)
    [[ -n "$SRV_ADDR" ]] && return 0
    if ! kill -0 "$SRV_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "$(basename "$0"): $name did not start:" >&2
  cat "$log" >&2
  exit 1
}

# start_redis CPU: redis-server on a free loopback port, no persistence,
# pinned to CPU (or "none"); sets REDIS_PID and REDIS_PORT.
start_redis() {
  local cpu=$1
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "$(basename "$0"): redis-server and redis-cli are needed" >&2; exit 1; }
  local try i
  for try in $(seq 20); do
    REDIS_PORT=$((20000 + RANDOM % 40000))
    local cmd=($(pin_prefix "$cpu") redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save ""
      --appendonly no --daemonize no --dir "$WORK")
    "${cmd[@]}" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for i in $(seq 100); do
      if [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; then
        record "${cmd[@]}"
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop "$REDIS_PID"  # Port taken (or too slow): try another.
  done
  echo "$(basename "$0"): cannot start redis-server" >&2
  cat "$WORK/redis.log" >&2
  exit 1
}

# Formatting and comparing decimals (awk): "n/a" on division by zero.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
fmt() { awk -v a="$1" -v p="${2:-1}" 'BEGIN { printf "%.*f", p, a }'; }
thousands() { awk -v a="$1" 'BEGIN { s = sprintf("%.0f", a); o = "";
  while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
  print s o }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 >= b + 0) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 <= b + 0) }'; }
