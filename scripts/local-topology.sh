#!/usr/bin/env bash
# The cluster's shape as local processes: one redis-server and N toolgated
# (3 by default) sharing it, all on free loopback ports. Each toolgated binds
# port 0 (gRPC and metrics) and the addresses it logs are used; redis-server
# cannot bind port 0, so it gets a random port below the kernel's ephemeral
# range (and another one if that port turns out to be taken).
#
#   scripts/local-topology.sh [run]   [options]  start, print the addresses, and
#                                                stay until Ctrl-C / SIGTERM, then stop all
#   scripts/local-topology.sh start   [options]  start in the background and return
#   scripts/local-topology.sh stop    [options]  stop what `start` started
#   scripts/local-topology.sh status  [options]  show what is running
#
# Options:
#   --build-dir DIR   where toolgated and toolgate are (default: build)
#   --state-dir DIR   pid file, env file and logs (default: BUILD_DIR/local-topology)
#   --servers N       number of toolgated (default: 3)
#   --policy PATH     policy file or directory (default: examples/policy.yaml)
#   --redis-server P  the redis-server binary (default: redis-server from PATH)
#   -- ARGS...        more flags for every toolgated
#
# Files in the state directory, for tests and scripts:
#   topology.env   shell syntax (`source` it): TOPOLOGY_REDIS_URL,
#                  TOPOLOGY_SERVERS (comma-separated HOST:PORT),
#                  TOPOLOGY_SERVER_1..N, TOPOLOGY_METRICS (when toolgated has
#                  --metrics-listen), TOPOLOGY_GRPC_TARGET (an ipv4: target
#                  with every server, for a round_robin client),
#                  TOOLGATE_TARGET (the first server: the CLI's default --target)
#   pids           one "NAME PID" per line (redis, toolgated-1, ...)
#   *.log          each process's output
#
# Everything listens on 127.0.0.1 only. The processes run until `stop` (or,
# with `run`, until the script is interrupted); a start that fails part-way
# stops what it had started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CMD="run"
case "${1:-}" in
  run|start|stop|status) CMD="$1"; shift ;;
esac

BUILD_DIR="$ROOT/build"
STATE_DIR=""
SERVERS=3
POLICY="$ROOT/examples/policy.yaml"
REDIS_SERVER="redis-server"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --build-dir=*) BUILD_DIR="${1#*=}"; shift ;;
    --state-dir) STATE_DIR="$2"; shift 2 ;;
    --state-dir=*) STATE_DIR="${1#*=}"; shift ;;
    --servers) SERVERS="$2"; shift 2 ;;
    --servers=*) SERVERS="${1#*=}"; shift ;;
    --policy) POLICY="$2"; shift 2 ;;
    --policy=*) POLICY="${1#*=}"; shift ;;
    --redis-server) REDIS_SERVER="$2"; shift 2 ;;
    --redis-server=*) REDIS_SERVER="${1#*=}"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-topology: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac
[ -n "$STATE_DIR" ] || STATE_DIR="$BUILD_DIR/local-topology"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
if ! [[ "$SERVERS" =~ ^[1-9][0-9]?$ ]]; then
  echo "local-topology: --servers must be 1..99, got '$SERVERS'" >&2; exit 2
fi
PID_FILE="$STATE_DIR/pids"
ENV_FILE="$STATE_DIR/topology.env"
TOOLGATED="$BUILD_DIR/toolgated"

log() { echo "local-topology: $*" >&2; }

# ---- processes ------------------------------------------------------------------

# True when PID is alive and is the program we started (its command line
# contains NEEDLE), so that a recycled pid is never signalled.
is_ours() {
  local pid="$1" needle="$2"
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# Stops every process in the pid file (toolgated first, Redis last): SIGTERM,
# then SIGKILL after the deadline.
stop_all() {
  [ -f "$PID_FILE" ] || return 0
  local name pid waited
  local -a order=()
  while read -r name pid; do
    [ "$name" = redis ] || order+=("$name $pid")
  done <"$PID_FILE"
  while read -r name pid; do
    [ "$name" = redis ] && order+=("$name $pid")
  done <"$PID_FILE"
  local entry
  for entry in "${order[@]}"; do
    read -r name pid <<<"$entry"
    local needle="toolgated"
    [ "$name" = redis ] && needle="redis"
    is_ours "$pid" "$needle" && kill -TERM "$pid" 2>/dev/null || true
  done
  for entry in "${order[@]}"; do
    read -r name pid <<<"$entry"
    local needle="toolgated"
    [ "$name" = redis ] && needle="redis"
    waited=0
    while is_ours "$pid" "$needle" && [ "$waited" -lt 150 ]; do
      sleep 0.1; waited=$((waited + 1))
    done
    if is_ours "$pid" "$needle"; then
      log "$name (pid $pid) did not stop in 15s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$PID_FILE" "$ENV_FILE"
}

# A random TCP port outside the kernel's ephemeral range (which it hands out
# to outgoing connections and to port-0 listeners): below it, from 10000,
# when there is room, else above it.
port_outside_ephemeral_range() {
  local low=32768 high=60999
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if [ "$low" -gt 11000 ]; then
    echo $((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
  elif [ "$high" -lt 64535 ]; then
    echo $((high + 1 + (RANDOM * 32768 + RANDOM) % (65535 - high)))
  else
    echo $((1024 + (RANDOM * 32768 + RANDOM) % (low - 1024)))
  fi
}

# True when the Redis answering on port $1 is process $2: it answers PING,
# and INFO says so (so that someone else's server on the port is never taken
# for ours).
redis_ready() {
  local port="$1" pid="$2" line="" ours=1
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'PING\r\nINFO server\r\n' >&3
  IFS= read -r -t 2 line <&3 || true
  if [[ "$line" == "+PONG"* ]]; then
    while IFS= read -r -t 2 line <&3; do
      line="${line%$'\r'}"
      case "$line" in
        process_id:*) [ "${line#process_id:}" = "$pid" ] && ours=0; break ;;
      esac
    done
  fi
  exec 3<&- 3>&-
  return "$ours"
}

start_redis() {
  local attempt port pid i logf="$STATE_DIR/redis.log"
  for attempt in $(seq 1 20); do
    port="$(port_outside_ephemeral_range)"
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$STATE_DIR" --daemonize no --protected-mode yes \
      >"$logf" 2>&1 </dev/null &
    pid=$!
    # Ask it until it answers (30 s: far more than it needs, even when busy).
    for i in $(seq 1 600); do
      if redis_ready "$port" "$pid"; then
        echo "redis $pid" >>"$PID_FILE"
        REDIS_PORT="$port"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if grep -q "Address already in use" "$logf"; then
      log "port $port is taken (attempt $attempt): trying another"
      continue
    fi
    log "redis-server did not start on port $port; log:"
    sed 's/^/  /' "$logf" >&2 || true
    return 1
  done
  log "no free port for redis-server after $attempt attempts"
  return 1
}

# Starts toolgated number $1 on port 0 (and metrics on port 0), and reads
# the addresses it got from its log; sets SERVER_ADDR and ADMIN_ADDR (and
# METRICS_ADDR).
start_server() {
  local n="$1" pid i addr="" logf="$STATE_DIR/toolgated-$n.log"
  local -a args=(--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --policy "$POLICY"
    --redis "redis://127.0.0.1:$REDIS_PORT")
  [ "$HAS_METRICS" -eq 1 ] && args+=(--metrics-listen 127.0.0.1:0)
  METRICS_ADDR=""
  # TOOLGATE_* of the caller's shell would change every server: drop them.
  env $(env | awk -F= '/^TOOLGATE_/ { printf "-u %s ", $1 }') \
    "$TOOLGATED" "${args[@]}" ${EXTRA[@]+"${EXTRA[@]}"} >"$logf" 2>&1 </dev/null &
  pid=$!
  # Until it says where it listens (30 s: far more than it needs, even when busy).
  for i in $(seq 1 600); do
    addr="$(sed -n 's/.*toolgated listening on \([0-9.]*:[0-9]*\).*/\1/p' "$logf" 2>/dev/null | head -n 1)"
    ADMIN_ADDR="$(sed -n 's/.*toolgated admin listening on \([0-9.]*:[0-9]*\).*/\1/p' "$logf" 2>/dev/null | head -n 1)"
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    log "toolgated-$n did not start; log:"
    sed 's/^/  /' "$logf" >&2 || true
    return 1
  fi
  echo "toolgated-$n $pid" >>"$PID_FILE"
  SERVER_ADDR="$addr"
  # Logged before the gRPC address.
  if [ "$HAS_METRICS" -eq 1 ]; then
    METRICS_ADDR="$(sed -n 's/.*metrics listening on \([0-9.]*:[0-9]*\).*/\1/p' "$logf" | head -n 1)"
    if [ -z "$METRICS_ADDR" ]; then
      log "toolgated-$n did not log its metrics address; log:"
      sed 's/^/  /' "$logf" >&2 || true
      return 1
    fi
  fi
  return 0
}

start_all() {
  if [ ! -x "$TOOLGATED" ]; then
    log "no toolgated in $BUILD_DIR (build first: scripts/build.sh $BUILD_DIR, or pass --build-dir)"
    exit 1
  fi
  if ! command -v "$REDIS_SERVER" >/dev/null 2>&1; then
    log "no $REDIS_SERVER (install redis-server, or pass --redis-server PATH)"
    exit 1
  fi
  mkdir -p "$STATE_DIR"
  if [ -f "$PID_FILE" ]; then
    log "$PID_FILE exists: stopping what it names first"
    stop_all
  fi
  : >"$PID_FILE"
  HAS_METRICS=0
  "$TOOLGATED" --help 2>/dev/null | grep -q -- "--metrics-listen" && HAS_METRICS=1

  if ! start_redis; then
    log "start failed"; stop_all; exit 1
  fi
  local servers="" metrics="" target="" n TOPOLOGY_ADMIN_1=""
  local -a lines=()
  for n in $(seq 1 "$SERVERS"); do
    if ! start_server "$n"; then
      log "start failed: stopping what was started"; stop_all; exit 1
    fi
    servers="${servers:+$servers,}$SERVER_ADDR"
    [ "$n" = 1 ] && TOPOLOGY_ADMIN_1="$ADMIN_ADDR"
    target="${target:+$target,}$SERVER_ADDR"
    [ -n "$METRICS_ADDR" ] && metrics="${metrics:+$metrics,}$METRICS_ADDR"
    lines+=("TOPOLOGY_SERVER_$n=$SERVER_ADDR" "TOPOLOGY_ADMIN_$n=$ADMIN_ADDR")
  done
  {
    echo "# written by scripts/local-topology.sh; stop with: scripts/local-topology.sh stop --state-dir $STATE_DIR"
    echo "TOPOLOGY_STATE_DIR=$STATE_DIR"
    echo "TOPOLOGY_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "TOPOLOGY_SERVERS=$servers"
    printf '%s\n' "${lines[@]}"
    echo "TOPOLOGY_METRICS=$metrics"
    echo "TOPOLOGY_GRPC_TARGET=ipv4:$target"
    echo "TOOLGATE_TARGET=${servers%%,*}"
    echo "TOOLGATE_ADMIN_TARGET=$TOPOLOGY_ADMIN_1"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"

  echo "redis:      redis://127.0.0.1:$REDIS_PORT"
  local i=1 addr
  IFS=, read -r -a addrs <<<"$servers"
  for addr in "${addrs[@]}"; do
    echo "toolgated-$i: $addr"
    i=$((i + 1))
  done
  [ -n "$metrics" ] && echo "metrics:    $metrics"
  echo "target:     ipv4:$target   (gRPC round_robin over every server)"
  echo "env file:   $ENV_FILE"
  echo "try:        $BUILD_DIR/toolgate check --target ${servers%%,*} --tool wait_for_background_task --grant agent-7"
}

case "$CMD" in
  start)
    start_all
    ;;
  run)
    start_all
    trap 'stop_all; exit 0' INT TERM HUP
    trap 'stop_all' EXIT
    log "running; Ctrl-C stops everything"
    # Wait until interrupted, or until a process exits by itself.
    while true; do
      while read -r name pid; do
        needle="toolgated"; [ "$name" = redis ] && needle="redis"
        if ! is_ours "$pid" "$needle"; then
          log "$name (pid $pid) exited: stopping the rest"
          exit 1
        fi
      done <"$PID_FILE"
      sleep 1 &
      wait $! || true
    done
    ;;
  stop)
    if [ ! -f "$PID_FILE" ]; then
      log "nothing to stop (no $PID_FILE)"
      exit 0
    fi
    stop_all
    log "stopped"
    ;;
  status)
    if [ ! -f "$PID_FILE" ]; then echo "not running (no $PID_FILE)"; exit 1; fi
    rc=0
    while read -r name pid; do
      needle="toolgated"; [ "$name" = redis ] && needle="redis"
      if is_ours "$pid" "$needle"; then echo "$name: running (pid $pid)"; else echo "$name: gone (pid $pid)"; rc=1; fi
    done <"$PID_FILE"
    [ -f "$ENV_FILE" ] && cat "$ENV_FILE"
    exit "$rc"
    ;;
esac
