#!/usr/bin/env bash
# The cluster's shape as local processes: a Redis and N toolgated (3 by
# default) sharing it, all on free loopback ports. The Redis is one
# redis-server, a Sentinel set (master, replica, three sentinels) or a Redis
# Cluster (three masters, three replicas): --redis-mode, started by
# scripts/redis-topology.sh. Each toolgated binds port 0 (gRPC and metrics)
# and the addresses it logs are used; redis-server cannot bind port 0, so
# each Redis process gets a random port below the kernel's ephemeral range
# (and another one if that port turns out to be taken).
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
#   --servers N       number of toolgated, 0..99 (default: 3; 0: Redis only)
#   --policy PATH     policy file or directory (default: examples/policy.yaml)
#   --redis-mode M    single (default): one redis-server, redis://...;
#                     sentinel: a master, a replica and three sentinels,
#                     redis+sentinel://S1,S2,S3/toolgate;
#                     cluster: three masters and three replicas,
#                     redis+cluster://N1,...,N6
#   --redis-password-file FILE
#                     Redis requires this password (first line of FILE), and
#                     every toolgated gets --redis-password-file FILE
#   --redis-server P  the redis-server binary (default: redis-server from PATH)
#   -- ARGS...        more flags for every toolgated
#
# Files in the state directory, for tests and scripts:
#   topology.env   shell syntax (`source` it): TOPOLOGY_REDIS_URL,
#                  TOPOLOGY_REDIS_MODE, TOPOLOGY_REDIS_DIR,
#                  TOPOLOGY_SERVERS (comma-separated HOST:PORT),
#                  TOPOLOGY_SERVER_1..N, TOPOLOGY_METRICS (when toolgated has
#                  --metrics-listen), TOPOLOGY_GRPC_TARGET (an ipv4: target
#                  with every server, for a round_robin client),
#                  TOOLGATE_TARGET (the first server: the CLI's default
#                  --target), and scripts/redis-topology.sh's REDIS_TOPOLOGY_*
#                  (the Redis processes' addresses)
#   pids           one "NAME PID" per line (toolgated-1, ..., and the Redis
#                  processes: redis | redis-master, redis-replica,
#                  redis-sentinel-1..3 | redis-node-1..6)
#   *.log          each toolgated's output
#   redis/         the Redis processes' configs, logs and working directories
#
# Everything listens on 127.0.0.1 only. The processes run until `stop` (or,
# with `run`, until the script is interrupted, or a toolgated, or the single
# Redis, exits: in the sentinel and cluster modes a Redis process may be
# killed to try a failover); a start that fails part-way stops what it had
# started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/redis-topology.sh
source "$ROOT/scripts/redis-topology.sh"
CMD="run"
case "${1:-}" in
  run|start|stop|status) CMD="$1"; shift ;;
esac

BUILD_DIR="$ROOT/build"
STATE_DIR=""
SERVERS=3
POLICY="$ROOT/examples/policy.yaml"
REDIS_SERVER="redis-server"
REDIS_MODE="single"
REDIS_PASSWORD_FILE=""
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
    --redis-mode) REDIS_MODE="$2"; shift 2 ;;
    --redis-mode=*) REDIS_MODE="${1#*=}"; shift ;;
    --redis-password-file) REDIS_PASSWORD_FILE="$2"; shift 2 ;;
    --redis-password-file=*) REDIS_PASSWORD_FILE="${1#*=}"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,58p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-topology: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac
[ -n "$STATE_DIR" ] || STATE_DIR="$BUILD_DIR/local-topology"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
if ! [[ "$SERVERS" =~ ^(0|[1-9][0-9]?)$ ]]; then
  echo "local-topology: --servers must be 0..99, got '$SERVERS'" >&2; exit 2
fi
case "$REDIS_MODE" in
  single|sentinel|cluster) ;;
  *) echo "local-topology: --redis-mode must be single, sentinel or cluster, got '$REDIS_MODE'" >&2; exit 2 ;;
esac
if [ -n "$REDIS_PASSWORD_FILE" ]; then
  case "$REDIS_PASSWORD_FILE" in /*) ;; *) REDIS_PASSWORD_FILE="$PWD/$REDIS_PASSWORD_FILE" ;; esac
  if [ ! -r "$REDIS_PASSWORD_FILE" ]; then
    echo "local-topology: cannot read --redis-password-file $REDIS_PASSWORD_FILE" >&2; exit 2
  fi
fi
PID_FILE="$STATE_DIR/pids"
REDIS_DIR="$STATE_DIR/redis"
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

# The needle is_ours looks for in the command line of the process NAME.
needle_of() {
  case "$1" in toolgated*) echo toolgated ;; *) echo redis ;; esac
}

# SIGTERM to each "NAME PID" given that is still ours, then waits for each
# (SIGKILL after 15 s).
stop_entries() {
  local entry name pid waited
  for entry in "$@"; do
    read -r name pid <<<"$entry"
    if is_ours "$pid" "$(needle_of "$name")"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for entry in "$@"; do
    read -r name pid <<<"$entry"
    waited=0
    while is_ours "$pid" "$(needle_of "$name")" && [ "$waited" -lt 150 ]; do
      sleep 0.1; waited=$((waited + 1))
    done
    if is_ours "$pid" "$(needle_of "$name")"; then
      log "$name (pid $pid) did not stop in 15s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

# Stops every process in the pid file: toolgated first, then the Redis
# processes (scripts/redis-topology.sh: sentinels before the data nodes).
stop_all() {
  [ -f "$PID_FILE" ] || return 0
  local name pid
  local -a toolgated=() rest=()
  while read -r name pid; do
    case "$name" in
      toolgated*) toolgated+=("$name $pid") ;;
      *) rest+=("$name $pid") ;;
    esac
  done <"$PID_FILE"
  stop_entries ${toolgated[@]+"${toolgated[@]}"}
  redis_topology_stop "$REDIS_DIR" || true
  # What the Redis directory did not name (a state from an older version).
  stop_entries ${rest[@]+"${rest[@]}"}
  rm -f "$PID_FILE" "$ENV_FILE"
}

# Starts the Redis of --redis-mode in $REDIS_DIR and adds its processes to
# the pid file; sets REDIS_URL.
start_redis() {
  local -a args=(--redis-server "$REDIS_SERVER")
  [ -n "$REDIS_PASSWORD_FILE" ] && args+=(--password-file "$REDIS_PASSWORD_FILE")
  REDIS_URL="$("redis_topology_start_$REDIS_MODE" "$REDIS_DIR" "${args[@]}")" || return 1
  local name pid port
  while read -r name pid port; do
    echo "$name $pid" >>"$PID_FILE"
  done <"$REDIS_DIR/redis-topology.pids"
}

# Starts toolgated number $1 on port 0 (and metrics on port 0), and reads
# the addresses it got from its log; sets SERVER_ADDR and ADMIN_ADDR (and
# METRICS_ADDR).
start_server() {
  local n="$1" pid i addr="" logf="$STATE_DIR/toolgated-$n.log"
  local -a args=(--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --policy "$POLICY"
    --redis "$REDIS_URL")
  [ -n "$REDIS_PASSWORD_FILE" ] && args+=(--redis-password-file "$REDIS_PASSWORD_FILE")
  [ "$HAS_METRICS" -eq 1 ] && args+=(--metrics-listen 127.0.0.1:0)
  METRICS_ADDR=""
  # The child truncates the log only once it runs: a log of an earlier run
  # must not be read as this one's.
  rm -f "$logf"
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
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      log "toolgated-$n did not log its metrics address; log:"
      sed 's/^/  /' "$logf" >&2 || true
      return 1
    fi
  fi
  return 0
}

# A value of the Redis directory's env file.
redis_env() {
  sed -n "s/^$1=//p" "$REDIS_DIR/redis-topology.env" | head -n 1
}

start_all() {
  if [ "$SERVERS" -gt 0 ] && [ ! -x "$TOOLGATED" ]; then
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
  if [ "$SERVERS" -gt 0 ] && "$TOOLGATED" --help 2>/dev/null | grep -q -- "--metrics-listen"; then
    HAS_METRICS=1
  fi

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
    echo "TOPOLOGY_REDIS_URL=$REDIS_URL"
    echo "TOPOLOGY_REDIS_MODE=$REDIS_MODE"
    echo "TOPOLOGY_REDIS_DIR=$REDIS_DIR"
    echo "TOPOLOGY_SERVERS=$servers"
    [ "${#lines[@]}" -gt 0 ] && printf '%s\n' "${lines[@]}"
    echo "TOPOLOGY_METRICS=$metrics"
    echo "TOPOLOGY_GRPC_TARGET=${target:+ipv4:$target}"
    echo "TOOLGATE_TARGET=${servers%%,*}"
    echo "TOOLGATE_ADMIN_TARGET=$TOPOLOGY_ADMIN_1"
    grep '^REDIS_TOPOLOGY_' "$REDIS_DIR/redis-topology.env"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"

  echo "redis:      $REDIS_URL"
  case "$REDIS_MODE" in
    sentinel)
      echo "            master $(redis_env REDIS_TOPOLOGY_MASTER), replica $(redis_env REDIS_TOPOLOGY_REPLICAS) (as started; failovers move it)" ;;
    cluster)
      echo "            masters $(redis_env REDIS_TOPOLOGY_MASTERS) (as started)" ;;
  esac
  [ "$SERVERS" -eq 0 ] && { echo "env file:   $ENV_FILE"; return 0; }
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
        # A Redis of several processes is left to fail over by itself.
        case "$name" in toolgated*|redis) ;; *) continue ;; esac
        if ! is_ours "$pid" "$(needle_of "$name")"; then
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
      if is_ours "$pid" "$(needle_of "$name")"; then echo "$name: running (pid $pid)"; else echo "$name: gone (pid $pid)"; rc=1; fi
    done <"$PID_FILE"
    [ -f "$ENV_FILE" ] && cat "$ENV_FILE"
    exit "$rc"
    ;;
esac
