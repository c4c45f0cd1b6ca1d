#!/usr/bin/env bash
# Shared by bench/run.sh and bench/profile.sh: processes (started, tracked,
# stopped on exit), redis-server on a free port, and number formatting.
# Servers that can bind port 0 do, and report the port they got.
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
# for "listening on HOST:PORT"; sets SRV_PID and SRV_ADDR (and SRV_ADMIN, the
# address of toolgated's admin listener, when it has one).
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
    SRV_ADDR=$(grep -v 'admin listening on' "$log" 2>/dev/null | grep -o 'listening on [^ ]*' |
      head -1 | cut -d' ' -f3 || true)
    SRV_ADMIN=$(grep -o 'admin listening on [^ ]*' "$log" 2>/dev/null | head -1 | cut -d' ' -f4 ||
      true)
    [[ -n "$SRV_ADDR" ]] && return 0
    if ! kill -0 "$SRV_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "$(basename "$0"): $name did not start:" >&2
  cat "$log" >&2
  exit 1
}

# A random TCP port outside the kernel's ephemeral range (which it hands out
# to outgoing connections and to port-0 listeners): below it, from 10000,
# when there is room, else above it. For redis-server, which cannot bind
# port 0.
port_outside_ephemeral_range() {
  local low=32768 high=60999
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if ((low > 11000)); then
    echo $((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
  elif ((high < 64535)); then
    echo $((high + 1 + (RANDOM * 32768 + RANDOM) % (65535 - high)))
  else
    echo $((1024 + (RANDOM * 32768 + RANDOM) % (low - 1024)))
  fi
}

# start_redis CPU: redis-server on a free loopback port outside the ephemeral
# range (another one if the port is taken), no persistence, pinned to CPU (or
# "none"); waits until it answers PING (and INFO names its process, not
# someone else's server on the port). Sets REDIS_PID and REDIS_PORT.
start_redis() {
  local cpu=$1
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "$(basename "$0"): redis-server and redis-cli are needed" >&2; exit 1; }
  local try i
  for try in $(seq 20); do
    REDIS_PORT=$(port_outside_ephemeral_range)
    local cmd=($(pin_prefix "$cpu") redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save ""
      --appendonly no --daemonize no --dir "$WORK")
    "${cmd[@]}" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for i in $(seq 600); do  # 30 s: far more than it needs, even on a busy machine.
      if [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] &&
        [[ "$(redis-cli -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' |
          sed -n 's/^process_id://p')" == "$REDIS_PID" ]]; then
        record "${cmd[@]}"
        return 0
      fi
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.05
    done
    stop "$REDIS_PID"
    grep -q "Address already in use" "$WORK/redis.log" || break  # Another port will not help.
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
