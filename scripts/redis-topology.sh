# shellcheck shell=bash
# Redis topologies as local processes, for scripts/local-topology.sh, the
# benchmark scripts and by hand. Source it; it only defines functions (no
# options, traps or variables are set on source), and each function works
# under `set -euo pipefail` as well as without it.
#
#   redis_topology_start_single   DIR [--port P] [options]
#       one redis-server; prints redis://127.0.0.1:P
#   redis_topology_start_sentinel DIR [--ports M,R,S1,S2,S3] [--master-name NAME] [options]
#       a master, its replica and three sentinels (`redis-server CONF --sentinel`,
#       quorum 2); returns once the replica is in sync and every sentinel
#       knows the replica and the two other sentinels (so a failover can be
#       agreed on); prints redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/NAME
#   redis_topology_start_cluster  DIR [--ports P1,...,P6] [--bus-ports B1,...,B6] [options]
#       three masters and three replicas (`cluster-enabled yes`,
#       `redis-cli --cluster create ... --cluster-replicas 1`); returns once
#       every node says cluster_state:ok with all 16384 slots assigned and
#       every replica is in sync; prints redis+cluster://127.0.0.1:P1,...,127.0.0.1:P6
#   redis_topology_stop   DIR   stop what a start in DIR started (sentinels
#                               first, so that no failover begins)
#   redis_topology_status DIR   one line per process; non-zero when one is gone
#   redis_topology_master DIR   sentinel: the master's HOST:PORT as the
#                               sentinels now name it (changes on failover)
#
# Options of the start functions:
#   --redis-server BIN       default: redis-server from PATH
#   --redis-cli BIN          default: redis-cli beside BIN, else from PATH
#   --password-file FILE     requirepass (and masterauth, sentinel auth-pass) on
#                            the data nodes, from the first line of FILE; it is
#                            written to the 0600 config files only, never to a
#                            command line or the URL (give toolgated
#                            --redis-password-file FILE)
#   --sentinel-password-file FILE   requirepass on the sentinels too (sentinel
#                            mode; by default the sentinels need none).
#                            toolgated authenticates to the sentinels with
#                            its one Redis password: give it the same file
#                            as --password-file for that
#   --down-after-ms N        sentinel: down-after-milliseconds (default 2000)
#   --failover-timeout-ms N  sentinel: failover-timeout (default 10000)
#   --node-timeout-ms N      cluster: cluster-node-timeout (default 2000)
#   --timeout S              limit of each wait, in seconds (default 60)
#
# Ports: given ones are used as they are (a taken port is an error); without
# --ports each process gets a random free port outside the kernel's
# ephemeral range (which it hands out to outgoing connections), and another
# one when the first turns out to be taken. Cluster bus ports likewise
# (`cluster-port`), so no port+10000 has to be free. Everything binds
# 127.0.0.1.
#
# Files in DIR (created when missing):
#   redis-topology.pids   "NAME PID PORT" per process: redis | redis-master,
#                         redis-replica, redis-sentinel-1..3 | redis-node-1..6
#   redis-topology.env    shell syntax: REDIS_TOPOLOGY_MODE, REDIS_TOPOLOGY_URL,
#                         and per mode REDIS_TOPOLOGY_PORT | _MASTER_NAME,
#                         _MASTER, _REPLICAS, _SENTINELS | _NODES, _MASTERS,
#                         _REPLICAS (HOST:PORT lists, as created); and
#                         REDIS_TOPOLOGY_CLI (redis-cli's path),
#                         REDIS_TOPOLOGY_PASSWORD_FILE (with --password-file)
#   NAME.conf, NAME.log   each process's configuration and output
#   NAME/                 its working directory (nodes.conf, ...), emptied at start
# A start in a DIR whose pid file exists stops those processes first; a start
# that fails part-way stops what it had started and returns non-zero.
#
# Log lines go to stderr; stdout carries only the URL.

_rtopo_log() { echo "redis-topology: $*" >&2; }

# Fills the o_* locals of _rtopo_run from the options, and checks them.
_rtopo_parse() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --port | --ports | --bus-ports | --master-name | --redis-server | --redis-cli | \
        --password-file | --sentinel-password-file | --down-after-ms | \
        --failover-timeout-ms | --node-timeout-ms | --timeout)
        if [ $# -lt 2 ]; then
          _rtopo_log "$1 needs a value"
          return 2
        fi
        case "$1" in
          --port | --ports) o_ports="$2" ;;
          --bus-ports) o_bus_ports="$2" ;;
          --master-name) o_master_name="$2" ;;
          --redis-server) o_server="$2" ;;
          --redis-cli) o_cli="$2" ;;
          --password-file) o_password_file="$2" ;;
          --sentinel-password-file) o_sentinel_password_file="$2" ;;
          --down-after-ms) o_down_after="$2" ;;
          --failover-timeout-ms) o_failover_timeout="$2" ;;
          --node-timeout-ms) o_node_timeout="$2" ;;
          --timeout) o_timeout="$2" ;;
        esac
        shift 2
        ;;
      *)
        _rtopo_log "unknown option '$1'"
        return 2
        ;;
    esac
  done
  local n
  for n in "$o_down_after" "$o_failover_timeout" "$o_node_timeout"; do
    if ! [[ "$n" =~ ^[1-9][0-9]{0,6}$ ]]; then
      _rtopo_log "a millisecond option must be 1..9999999, got '$n'"
      return 2
    fi
  done
  if ! [[ "$o_timeout" =~ ^[1-9][0-9]{0,3}$ ]]; then
    _rtopo_log "--timeout must be 1..9999 seconds, got '$o_timeout'"
    return 2
  fi
  if ! [[ "$o_master_name" =~ ^[A-Za-z0-9_.-]{1,64}$ ]]; then
    _rtopo_log "--master-name must be 1..64 of A-Z a-z 0-9 _ . -, got '$o_master_name'"
    return 2
  fi
  if ! command -v "$o_server" >/dev/null 2>&1; then
    _rtopo_log "no $o_server (install redis-server, or pass --redis-server PATH)"
    return 1
  fi
  if [ -z "$o_cli" ]; then
    o_cli="$(dirname "$(command -v "$o_server")")/redis-cli"
    [ -x "$o_cli" ] || o_cli="redis-cli"
  fi
  if ! command -v "$o_cli" >/dev/null 2>&1; then
    _rtopo_log "no $o_cli (install redis-tools, or pass --redis-cli PATH)"
    return 1
  fi
  if [ -n "$o_password_file" ]; then
    _rtopo_read_password "$o_password_file" o_password || return 2
  fi
  if [ -n "$o_sentinel_password_file" ]; then
    _rtopo_read_password "$o_sentinel_password_file" o_sentinel_password || return 2
  fi
  return 0
}

# Reads the first line of FILE into the variable named VAR. Redis's config
# syntax quotes strings, so characters that would need escaping are refused
# rather than escaped.
_rtopo_read_password() {
  local file="$1" var="$2" line=""
  if [ ! -r "$file" ]; then
    _rtopo_log "cannot read the password file $file"
    return 1
  fi
  IFS= read -r line <"$file" || true
  line="${line%$'\r'}"
  if [ "${#line}" -gt 512 ] || ! [[ "$line" =~ ^[[:graph:]]+$ ]] || [[ "$line" == *[\"\\]* ]]; then
    _rtopo_log "$file: the password must be 1..512 printable characters without spaces, '\"' or '\\'"
    return 1
  fi
  printf -v "$var" '%s' "$line"
}

# A random TCP port outside the kernel's ephemeral range: below it, from
# 10000, when there is room, else above it. Ports in $_rtopo_used (space
# separated) and ports something answers on are skipped.
_rtopo_random_port() {
  local low=32768 high=60999 port
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  for _ in $(seq 1 100); do
    if [ "$low" -gt 11000 ]; then
      port=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    elif [ "$high" -lt 64535 ]; then
      port=$((high + 1 + (RANDOM * 32768 + RANDOM) % (65535 - high)))
    else
      port=$((1024 + (RANDOM * 32768 + RANDOM) % (low - 1024)))
    fi
    case " $_rtopo_used " in *" $port "*) continue ;; esac
    if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    echo "$port"
    return 0
  done
  return 1
}

# redis-cli against 127.0.0.1:PORT, authenticated with PASSWORD when it is
# not empty (through REDISCLI_AUTH, not argv), bounded in time.
#   _rtopo_cli PORT PASSWORD ARGS...
_rtopo_cli() {
  local port="$1" password="$2"
  shift 2
  if [ -n "$password" ]; then
    REDISCLI_AUTH="$password" timeout 10 "$o_cli" --no-auth-warning -h 127.0.0.1 -p "$port" "$@"
  else
    timeout 10 "$o_cli" -h 127.0.0.1 -p "$port" "$@"
  fi
}

# The value of FIELD in the INFO-style output on stdin ("field:value" lines).
_rtopo_field() {
  local field="$1" line
  while IFS= read -r line; do
    line="${line%$'\r'}"
    if [ "${line%%:*}" = "$field" ]; then
      echo "${line#*:}"
      return 0
    fi
  done
  return 1
}

# Polls CMD... every 0.1 s until it succeeds, for at most $o_timeout seconds.
#   _rtopo_poll WHAT CMD...
_rtopo_poll() {
  local what="$1" deadline=$((SECONDS + o_timeout))
  shift
  while true; do
    if "$@"; then return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _rtopo_log "timed out after ${o_timeout}s waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

# True when PID is alive and still the redis-server started on PORT: its
# command line names its config file, or (once Redis has set its process
# title) 127.0.0.1:PORT. A recycled pid is never signalled.
_rtopo_is_ours() {
  local pid="$1" port="$2" conf="$3" cmd=""
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  case "$cmd" in
    *"$conf"* | *"127.0.0.1:$port "* | *"127.0.0.1:$port") return 0 ;;
  esac
  return 1
}

# True when the server on PORT answers and is process PID (so that someone
# else's server on that port is never taken for ours).
_rtopo_answers() {
  local port="$1" pid="$2" password="$3" info
  info="$(_rtopo_cli "$port" "$password" INFO server 2>/dev/null)" || return 1
  [ "$(_rtopo_field process_id <<<"$info")" = "$pid" ]
}

# Starts NAME with the config already in $dir/NAME.conf (and EXTRA args, e.g.
# --sentinel), waits until it answers, and records it. Returns 0 when it
# runs, 3 when its port was taken (the caller may try another), 1 otherwise.
#   _rtopo_launch NAME PORT PASSWORD [EXTRA...]
_rtopo_launch() {
  local name="$1" port="$2" password="$3"
  shift 3
  local conf="$dir/$name.conf" log="$dir/$name.log" pid deadline=$((SECONDS + o_timeout))
  # umask 077: Sentinel rewrites its config file, which may hold passwords.
  (
    umask 077
    exec "$o_server" "$conf" "$@" >"$log" 2>&1 </dev/null
  ) &
  pid=$!
  while ! _rtopo_answers "$port" "$pid" "$password"; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      if grep -q "Address already in use" "$log"; then return 3; fi
      _rtopo_log "$name did not start on port $port; its log:"
      sed 's/^/  /' "$log" >&2 || true
      return 1
    fi
    sleep 0.05
  done
  echo "$name $pid $port" >>"$dir/redis-topology.pids"
  return 0
}

# Writes $dir/NAME.conf (mode 0600: it may hold passwords) from stdin, with
# the settings every process shares, and empties its working directory.
_rtopo_write_conf() {
  local name="$1" port="$2"
  rm -rf "${dir:?}/$name"
  mkdir -p "$dir/$name" || return 1
  (
    umask 077
    {
      echo "# written by scripts/redis-topology.sh"
      echo "port $port"
      echo "bind 127.0.0.1"
      echo "dir $dir/$name"
      echo "daemonize no"
      cat
    } >"$dir/$name.conf"
  )
}

# The settings of a data node (not a sentinel): counters only, nothing on disk.
_rtopo_data_conf() {
  echo 'save ""'
  echo "appendonly no"
  # A stopped master does not wait long for its replicas (Redis 7's default
  # is 10 s on SIGTERM).
  echo "shutdown-timeout 1"
  if [ -n "$o_password" ]; then
    echo "requirepass \"$o_password\""
    # Every node may become a replica after a failover.
    echo "masterauth \"$o_password\""
  fi
}

# Starts NAME on the next port of the list $ports (or a random one) with the
# config that CONF_FN prints (called with the port, and the bus port in
# cluster mode); retries taken random ports. Sets _rtopo_port (and
# _rtopo_bus_port).
#   _rtopo_start_node NAME INDEX PASSWORD CONF_FN [EXTRA...]
_rtopo_start_node() {
  local name="$1" index="$2" password="$3" conf_fn="$4"
  shift 4
  local attempt port bus="" rc given="" given_bus=""
  [ -n "$o_ports" ] && given="$(cut -d, -f"$index" <<<"$o_ports")"
  [ -n "$o_bus_ports" ] && given_bus="$(cut -d, -f"$index" <<<"$o_bus_ports")"
  for attempt in $(seq 1 20); do
    port="${given:-$(_rtopo_random_port)}" || return 1
    _rtopo_used="$_rtopo_used $port"
    if [ "$conf_fn" = _rtopo_node_conf ]; then
      bus="${given_bus:-$(_rtopo_random_port)}" || return 1
      _rtopo_used="$_rtopo_used $bus"
    fi
    "$conf_fn" "$port" "$bus" | _rtopo_write_conf "$name" "$port" || return 1
    rc=0
    _rtopo_launch "$name" "$port" "$password" "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
      _rtopo_port="$port"
      _rtopo_bus_port="$bus"
      return 0
    fi
    if [ "$rc" -ne 3 ]; then return 1; fi
    if [ -n "$given" ] || [ -n "$given_bus" ]; then
      _rtopo_log "$name: port $port${bus:+ or $bus} is taken"
      return 1
    fi
    _rtopo_log "$name: port $port${bus:+ or $bus} is taken (attempt $attempt): trying another"
  done
  _rtopo_log "$name: no free port after $attempt attempts"
  return 1
}

# Checks the --ports list: empty, or exactly COUNT distinct ports 1..65535.
_rtopo_check_ports() {
  local list="$1" count="$2" what="$3" p seen=" "
  [ -z "$list" ] && return 0
  local -a ports
  IFS=, read -r -a ports <<<"$list"
  if [ "${#ports[@]}" -ne "$count" ]; then
    _rtopo_log "$what needs $count ports, got '$list'"
    return 2
  fi
  for p in "${ports[@]}"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$p" -gt 65535 ]; then
      _rtopo_log "$what: '$p' is not a port"
      return 2
    fi
    case "$seen" in *" $p "*)
      _rtopo_log "$what: port $p is listed twice"
      return 2
      ;;
    esac
    seen="$seen$p "
  done
}

# The common start: options, DIR, and what an earlier start left there.
_rtopo_begin() {
  dir="$1"
  shift
  if [ -z "$dir" ]; then
    _rtopo_log "a start needs a directory"
    return 2
  fi
  _rtopo_parse "$@" || return $?
  _rtopo_check_ports "$o_ports" "$nports" --ports || return $?
  if [ "$nports" -eq 6 ]; then
    _rtopo_check_ports "$o_bus_ports" 6 --bus-ports || return $?
  elif [ -n "$o_bus_ports" ]; then
    _rtopo_log "--bus-ports is for a cluster"
    return 2
  fi
  mkdir -p "$dir" || return 1
  dir="$(cd "$dir" && pwd)" || return 1
  if [ -f "$dir/redis-topology.pids" ]; then
    _rtopo_log "$dir/redis-topology.pids exists: stopping what it names first"
    redis_topology_stop "$dir" || return 1
  fi
  : >"$dir/redis-topology.pids"
  rm -f "$dir/redis-topology.env"
  _rtopo_used=""
}

# Writes $dir/redis-topology.env from stdin (atomically), plus the password
# file when there is one.
_rtopo_write_env() {
  {
    echo "# written by scripts/redis-topology.sh"
    cat
    echo "REDIS_TOPOLOGY_CLI=$(command -v "$o_cli")"
    if [ -n "$o_password_file" ]; then
      echo "REDIS_TOPOLOGY_PASSWORD_FILE=$(cd "$(dirname "$o_password_file")" && pwd)/$(basename "$o_password_file")"
    fi
  } >"$dir/redis-topology.env.tmp" && mv "$dir/redis-topology.env.tmp" "$dir/redis-topology.env"
}

# Runs FN (a mode's start) with the options and working state as locals of
# this call, so that nothing outlives it and the caller's variables are
# untouched (bash scoping is dynamic: FN and the helpers see them).
#   _rtopo_run FN NUMBER_OF_PORTS DIR [options]
_rtopo_run() {
  local fn="$1" nports="$2" dir="" o_ports="" o_bus_ports="" o_master_name=toolgate o_server=redis-server
  local o_cli="" o_password_file="" o_password="" o_sentinel_password_file=""
  local o_sentinel_password="" o_down_after=2000 o_failover_timeout=10000 o_node_timeout=2000
  local o_timeout=60 _rtopo_used="" _rtopo_port="" _rtopo_bus_port=""
  shift 2
  _rtopo_begin "$@" || return $?
  "$fn"
}

# ---- single -----------------------------------------------------------------------

_rtopo_single_conf() { _rtopo_data_conf; }

redis_topology_start_single() { _rtopo_run _rtopo_single 1 "$@"; }

_rtopo_single() {
  local rc=0
  _rtopo_start_node redis 1 "$o_password" _rtopo_single_conf || rc=1
  if [ "$rc" -ne 0 ]; then
    redis_topology_stop "$dir" || true
    return 1
  fi
  _rtopo_write_env <<EOF
REDIS_TOPOLOGY_MODE=single
REDIS_TOPOLOGY_URL=redis://127.0.0.1:$_rtopo_port
REDIS_TOPOLOGY_PORT=$_rtopo_port
EOF
  echo "redis://127.0.0.1:$_rtopo_port"
}

# ---- sentinel ---------------------------------------------------------------------

_rtopo_master_conf() { _rtopo_data_conf; }

_rtopo_replica_conf() {
  _rtopo_data_conf
  echo "replicaof 127.0.0.1 $_rtopo_master_port"
}

# Sentinel rewrites its config file with what it learns (replicas, other
# sentinels, the master after a failover): NAME.conf must stay writable.
_rtopo_sentinel_conf() {
  echo "sentinel monitor $o_master_name 127.0.0.1 $_rtopo_master_port 2"
  echo "sentinel down-after-milliseconds $o_master_name $o_down_after"
  echo "sentinel failover-timeout $o_master_name $o_failover_timeout"
  echo "sentinel parallel-syncs $o_master_name 1"
  [ -n "$o_password" ] && echo "sentinel auth-pass $o_master_name \"$o_password\""
  if [ -n "$o_sentinel_password" ]; then
    echo "requirepass \"$o_sentinel_password\""
    # What the sentinels use with each other.
    echo "sentinel sentinel-pass \"$o_sentinel_password\""
  fi
  return 0
}

# True when the replica on PORT is connected to its master and in sync.
_rtopo_replica_synced() {
  local info
  info="$(_rtopo_cli "$1" "$o_password" INFO replication 2>/dev/null)" || return 1
  [ "$(_rtopo_field master_link_status <<<"$info")" = up ] &&
    [ "$(_rtopo_field master_sync_in_progress <<<"$info")" = 0 ]
}

# True when the sentinel on PORT knows the master, one replica and the two
# other sentinels, and says a failover can be authorized.
_rtopo_sentinel_ready() {
  local port="$1" out key value replicas="" others=""
  out="$(_rtopo_cli "$port" "$o_sentinel_password" SENTINEL master "$o_master_name" 2>/dev/null)" || return 1
  while IFS= read -r key && IFS= read -r value; do
    case "$key" in
      num-slaves) replicas="$value" ;;
      num-other-sentinels) others="$value" ;;
    esac
  done <<<"$out"
  [ "$replicas" = 1 ] && [ "$others" = 2 ] || return 1
  out="$(_rtopo_cli "$port" "$o_sentinel_password" SENTINEL ckquorum "$o_master_name" 2>/dev/null)" || return 1
  [[ "$out" == OK* ]]
}

redis_topology_start_sentinel() { _rtopo_run _rtopo_sentinel 5 "$@"; }

_rtopo_sentinel() {
  local _rtopo_master_port="" replica_port="" sentinels="" n
  if _rtopo_start_node redis-master 1 "$o_password" _rtopo_master_conf; then
    _rtopo_master_port="$_rtopo_port"
    if _rtopo_start_node redis-replica 2 "$o_password" _rtopo_replica_conf &&
      replica_port="$_rtopo_port" &&
      _rtopo_poll "the replica to sync with the master" _rtopo_replica_synced "$replica_port"; then
      for n in 1 2 3; do
        if ! _rtopo_start_node "redis-sentinel-$n" $((n + 2)) "$o_sentinel_password" \
          _rtopo_sentinel_conf --sentinel; then
          sentinels=""
          break
        fi
        sentinels="${sentinels:+$sentinels,}127.0.0.1:$_rtopo_port"
      done
    fi
  fi
  local ok=0
  if [ -n "$sentinels" ]; then
    ok=1
    local -a list
    IFS=, read -r -a list <<<"$sentinels"
    for n in "${list[@]}"; do
      if ! _rtopo_poll "sentinel $n to know the replica and the other sentinels" \
        _rtopo_sentinel_ready "${n#*:}"; then
        ok=0
        break
      fi
    done
  fi
  if [ "$ok" -ne 1 ]; then
    redis_topology_stop "$dir" || true
    return 1
  fi
  local url="redis+sentinel://$sentinels/$o_master_name"
  _rtopo_write_env <<EOF
REDIS_TOPOLOGY_MODE=sentinel
REDIS_TOPOLOGY_URL=$url
REDIS_TOPOLOGY_MASTER_NAME=$o_master_name
REDIS_TOPOLOGY_MASTER=127.0.0.1:$_rtopo_master_port
REDIS_TOPOLOGY_REPLICAS=127.0.0.1:$replica_port
REDIS_TOPOLOGY_SENTINELS=$sentinels
EOF
  echo "$url"
}

# ---- cluster ----------------------------------------------------------------------

_rtopo_node_conf() {
  local bus="$2"
  _rtopo_data_conf
  echo "cluster-enabled yes"
  echo "cluster-config-file nodes.conf"
  echo "cluster-port $bus"
  echo "cluster-node-timeout $o_node_timeout"
}

# True when the node on PORT has joined a cluster of 6 that covers every
# slot, and, when it is a replica, is in sync with its master.
_rtopo_cluster_node_ready() {
  local port="$1" info
  info="$(_rtopo_cli "$port" "$o_password" CLUSTER INFO 2>/dev/null)" || return 1
  [ "$(_rtopo_field cluster_state <<<"$info")" = ok ] &&
    [ "$(_rtopo_field cluster_known_nodes <<<"$info")" = 6 ] &&
    [ "$(_rtopo_field cluster_slots_assigned <<<"$info")" = 16384 ] || return 1
  info="$(_rtopo_cli "$port" "$o_password" INFO replication 2>/dev/null)" || return 1
  case "$(_rtopo_field role <<<"$info")" in
    master) return 0 ;;
    slave) _rtopo_replica_synced "$port" ;;
    *) return 1 ;;
  esac
}

redis_topology_start_cluster() { _rtopo_run _rtopo_cluster 6 "$@"; }

_rtopo_cluster() {
  local n nodes="" masters="" replicas="" ok=1
  local -a addrs=()
  for n in 1 2 3 4 5 6; do
    if ! _rtopo_start_node "redis-node-$n" "$n" "$o_password" _rtopo_node_conf; then
      ok=0
      break
    fi
    addrs+=("127.0.0.1:$_rtopo_port")
  done
  if [ "$ok" -eq 1 ]; then
    # The first three become masters, each of the others a replica of one.
    local auth=()
    [ -n "$o_password" ] && auth=(env "REDISCLI_AUTH=$o_password")
    if ! ${auth[@]+"${auth[@]}"} timeout "$((o_timeout * 2))" "$o_cli" --no-auth-warning \
      --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
      >"$dir/cluster-create.log" 2>&1 </dev/null; then
      _rtopo_log "redis-cli --cluster create failed; its output:"
      sed 's/^/  /' "$dir/cluster-create.log" >&2 || true
      ok=0
    fi
  fi
  if [ "$ok" -eq 1 ]; then
    for n in "${addrs[@]}"; do
      if ! _rtopo_poll "$n to see cluster_state:ok (and to sync when a replica)" \
        _rtopo_cluster_node_ready "${n#*:}"; then
        ok=0
        break
      fi
    done
  fi
  if [ "$ok" -eq 1 ]; then
    local line addr flags
    local -a f
    while IFS= read -r line; do
      read -r -a f <<<"$line"
      [ "${#f[@]}" -ge 3 ] || continue
      addr="${f[1]%@*}"
      flags="${f[2]}"
      case ",$flags," in
        *,master,*) masters="${masters:+$masters,}$addr" ;;
        *,slave,*) replicas="${replicas:+$replicas,}$addr" ;;
      esac
    done < <(_rtopo_cli "${addrs[0]#*:}" "$o_password" CLUSTER NODES 2>/dev/null)
    if [ "$(tr , '\n' <<<"$masters" | grep -c .)" -ne 3 ] ||
      [ "$(tr , '\n' <<<"$replicas" | grep -c .)" -ne 3 ]; then
      _rtopo_log "expected 3 masters and 3 replicas, got masters '$masters', replicas '$replicas'"
      ok=0
    fi
  fi
  if [ "$ok" -ne 1 ]; then
    redis_topology_stop "$dir" || true
    return 1
  fi
  nodes="$(
    IFS=,
    echo "${addrs[*]}"
  )"
  _rtopo_write_env <<EOF
REDIS_TOPOLOGY_MODE=cluster
REDIS_TOPOLOGY_URL=redis+cluster://$nodes
REDIS_TOPOLOGY_NODES=$nodes
REDIS_TOPOLOGY_MASTERS=$masters
REDIS_TOPOLOGY_REPLICAS=$replicas
EOF
  echo "redis+cluster://$nodes"
}

# ---- stop, status, master -----------------------------------------------------------

# SIGTERM to each "NAME PID PORT" entry that is still ours, then waits for
# each (SIGKILL after 15 s).
#   _rtopo_stop_batch DIR ENTRY...
_rtopo_stop_batch() {
  local dir="$1" entry name pid port waited
  shift
  for entry in "$@"; do
    read -r name pid port <<<"$entry"
    if _rtopo_is_ours "$pid" "$port" "$dir/$name.conf"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for entry in "$@"; do
    read -r name pid port <<<"$entry"
    waited=0
    while _rtopo_is_ours "$pid" "$port" "$dir/$name.conf" && [ "$waited" -lt 150 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if _rtopo_is_ours "$pid" "$port" "$dir/$name.conf"; then
      _rtopo_log "$name (pid $pid) did not stop in 15s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  return 0
}

redis_topology_stop() {
  local dir="${1:-}" name pid port
  local -a sentinels=() data=()
  if [ -z "$dir" ]; then
    _rtopo_log "stop needs a directory"
    return 2
  fi
  [ -f "$dir/redis-topology.pids" ] || return 0
  while read -r name pid port; do
    [ -n "${port:-}" ] || continue
    case "$name" in
      redis-sentinel-*) sentinels+=("$name $pid $port") ;;
      *) data+=("$name $pid $port") ;;
    esac
  done <"$dir/redis-topology.pids"
  # Sentinels first: with the master gone first they would start a failover.
  _rtopo_stop_batch "$dir" ${sentinels[@]+"${sentinels[@]}"}
  _rtopo_stop_batch "$dir" ${data[@]+"${data[@]}"}
  rm -f "$dir/redis-topology.pids" "$dir/redis-topology.env"
  return 0
}

redis_topology_status() {
  local dir="${1:-}" name pid port rc=0
  if [ ! -f "$dir/redis-topology.pids" ]; then
    echo "not running (no $dir/redis-topology.pids)"
    return 1
  fi
  while read -r name pid port; do
    [ -n "${pid:-}" ] || continue
    if _rtopo_is_ours "$pid" "$port" "$dir/$name.conf"; then
      echo "$name: running (pid $pid, 127.0.0.1:$port)"
    else
      echo "$name: gone (pid $pid, 127.0.0.1:$port)"
      rc=1
    fi
  done <"$dir/redis-topology.pids"
  return "$rc"
}

redis_topology_master() {
  local dir="${1:-}" name pid port out="" o_cli="redis-cli" password="" line
  local master_name=""
  if [ ! -f "$dir/redis-topology.env" ]; then
    _rtopo_log "nothing started in '$dir'"
    return 1
  fi
  while IFS= read -r line; do
    case "$line" in
      REDIS_TOPOLOGY_MASTER_NAME=*) master_name="${line#*=}" ;;
      REDIS_TOPOLOGY_CLI=*) o_cli="${line#*=}" ;;
    esac
  done <"$dir/redis-topology.env"
  if [ -z "$master_name" ]; then
    _rtopo_log "$dir holds no sentinel topology"
    return 1
  fi
  # The sentinels' password, if any, is in their config file.
  while read -r name pid port; do
    case "$name" in redis-sentinel-*) ;; *) continue ;; esac
    password="$(sed -n 's/^requirepass "\(.*\)"$/\1/p' "$dir/$name.conf" 2>/dev/null | head -n 1)"
    out="$(_rtopo_cli "$port" "$password" SENTINEL get-master-addr-by-name "$master_name" 2>/dev/null)" || continue
    local -a hp
    mapfile -t hp <<<"$out"
    if [ "${#hp[@]}" -eq 2 ] && [ -n "${hp[1]}" ]; then
      echo "${hp[0]}:${hp[1]}"
      return 0
    fi
  done <"$dir/redis-topology.pids"
  _rtopo_log "no sentinel named a master"
  return 1
}
