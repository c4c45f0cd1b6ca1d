// A real redis-server for tests, with no persistence, killed and reaped on
// destruction. Tests can kill it and start it again on the same port (a
// restart empties its script cache).
//
// redis-server cannot listen on port 0 (to Redis, port 0 means "no TCP"), so
// the port is picked at random below the kernel's ephemeral port range
// (/proc/sys/net/ipv4/ip_local_port_range): the kernel never hands those out
// to outgoing connections or to other tests' port-0 listeners. When another
// process already has the port, redis-server says so in its log and exits,
// and another port is tried. Readiness is asked of the server itself (PING,
// and INFO's process_id, so that a server someone else runs on the port is
// never mistaken for ours); nothing sleeps to let it start.
#ifndef TOOLGATE_TESTS_SUPPORT_REDIS_PROCESS_H_
#define TOOLGATE_TESTS_SUPPORT_REDIS_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct redisContext;

namespace toolgate_test {

// The kernel's ephemeral port range (first, last); 32768..60999 when it
// cannot be read.
std::pair<int, int> EphemeralPortRange();

// A random TCP port outside the ephemeral range, for servers that cannot bind
// port 0: below it (from 10000) when there is room, else above it.
int PortOutsideEphemeralRange();

// How a RedisProcess runs, beyond the defaults (no persistence, loopback only).
struct RedisOptions {
  // More redis-server arguments, e.g. {"--replicaof", "127.0.0.1", "6379"}.
  std::vector<std::string> args;
  // A Redis Cluster node: cluster-enabled, its nodes file in the process's
  // own directory, and a cluster bus port of its own, also outside the
  // ephemeral range (both ports must be free; a taken one means another
  // pair is tried).
  bool cluster = false;
  // A sentinel (redis-server CONFIG --sentinel): this configuration, which
  // Sentinel rewrites as it learns, goes in a file in the process's
  // directory. Empty: a data server.
  std::string sentinel_config;
};

class RedisProcess {
 public:
  // Starts redis-server (from PATH) and waits until it answers PING.
  static absl::StatusOr<std::unique_ptr<RedisProcess>> Start(RedisOptions options = {});
  ~RedisProcess();
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  int port() const { return port_; }
  // The cluster bus port (0 unless options.cluster).
  int cluster_port() const { return cluster_port_; }
  // "127.0.0.1:PORT".
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // False once killed (and until restarted).
  bool running() const { return pid_ > 0; }
  // Everything redis-server logged so far (for failure messages).
  std::string log() const;
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // SIGKILL, and reap.
  void Kill();
  // Starts again on the same port (after Kill) and waits for PING.
  absl::Status Restart();

  // Runs one command on a fresh connection; the reply as text (integers in
  // decimal, arrays joined by '\n'); errors as a non-OK status.
  absl::StatusOr<std::string> Command(const std::vector<std::string>& argv) const;
  // Every key matching `pattern` (SCAN).
  absl::StatusOr<std::vector<std::string>> Keys(const std::string& pattern = "*") const;
  // Every key matching `pattern` with its PTTL (-1: no expiry), all read in
  // one script run, so at one moment of Redis's clock: a key that is listed
  // cannot expire before its TTL is read.
  absl::StatusOr<std::map<std::string, int64_t>> KeysWithTtl(const std::string& pattern) const;

 private:
  RedisProcess() = default;
  // Starts redis-server on port_ and waits for it. ALREADY_EXISTS when the
  // port is taken (another port may work).
  absl::Status Launch();

  RedisOptions options_;
  int port_ = 0;
  int cluster_port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
};

// Every command a redis-server executes, as MONITOR reports it: including
// the commands a Lua script runs (client "lua"), with their arguments. So a
// test can see exactly which keys were written and which expiry each was
// given, however fast they expire afterwards.
class RedisMonitor {
 public:
  struct Command {
    std::string client;             // "lua" for commands run by a script
    std::vector<std::string> args;  // args[0], the command's name, in upper case
  };

  // Connects and starts monitoring; commands executed after this returns are
  // all seen.
  static absl::StatusOr<std::unique_ptr<RedisMonitor>> Start(const RedisProcess& redis);
  ~RedisMonitor();
  RedisMonitor(const RedisMonitor&) = delete;
  RedisMonitor& operator=(const RedisMonitor&) = delete;

  // Every command seen so far, once every command Redis executed before this
  // call has been seen (a marker command is sent and waited for).
  absl::StatusOr<std::vector<Command>> Sync(absl::Duration timeout = absl::Seconds(30));

 private:
  RedisMonitor(const RedisProcess& redis, redisContext* ctx);
  void Run();

  const RedisProcess& redis_;
  redisContext* ctx_;
  std::thread reader_;
  std::mutex mu_;
  std::vector<Command> commands_;  // Guarded by mu_.
  std::string error_;              // Guarded by mu_: why reading stopped.
  bool stopped_ = false;           // Guarded by mu_.
  int syncs_ = 0;
};

// What Lua scripts wrote, from MONITOR's record.
struct ScriptWrites {
  std::set<std::string> keys;  // Every key a script wrote (SET, INCRBY, RPUSH, HSET, ...).
  // Keys whose last write left them without an expiry of the script's: not
  // a SET ... PX, not followed by a PEXPIRE, and not an INCR or INCRBY
  // (which keep the expiry) of a key given one before.
  std::set<std::string> without_expiry;
  // Every expiry a script gave (PEXPIRE, SET ... PX): (key, milliseconds).
  std::vector<std::pair<std::string, int64_t>> expiries;
};
ScriptWrites WritesByScripts(const std::vector<RedisMonitor::Command>& commands);

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_SUPPORT_REDIS_PROCESS_H_
