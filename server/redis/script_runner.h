// Runs one Lua script's operations in Redis, in order, off the decision path,
// for the stores whose work is rare next to checks (approvals,
// reservations): a queue (at most `max_queue` operations), one worker thread
// and synchronous connections (client.h). Every operation has a deadline
// (`timeout_ms` from when it was queued): a connection that cannot be made,
// or a reply that does not come, fails it with UNAVAILABLE or
// DEADLINE_EXCEEDED; it never hangs. Callbacks run on the worker thread and
// must be short (another operation waits behind them).
//
// Any topology: one server, Sentinel (the master asked for again after a
// lost connection or READONLY), Cluster (each key's slot is followed by
// MOVED to its master; one connection per master; ASK is followed as
// MOVED, once the migration is done). The script is run with EVALSHA and
// sent again on NOSCRIPT.
//
// `tick`, when set, runs on the worker every `tick_ms` (sweeps of what is
// due), from the start (possibly before the constructor returns); it is
// handed the runner, to call RunNow.
#ifndef TOOLGATE_SERVER_REDIS_SCRIPT_RUNNER_H_
#define TOOLGATE_SERVER_REDIS_SCRIPT_RUNNER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/redis/client.h"
#include "server/redis/url.h"

namespace toolgate {

class RedisScriptRunner;

struct ScriptRunnerOptions {
  RedisUrl url;
  std::string script;  // The Lua text.
  std::string name;    // For messages: "approval store", "reservation store".
  int64_t timeout_ms = 1000;
  size_t max_queue = 1024;
  int64_t tick_ms = 0;                           // 0: no tick.
  std::function<void(RedisScriptRunner&)> tick;  // Runs on the worker thread.
};

class RedisScriptRunner {
 public:
  using ReplyFn = absl::AnyInvocable<void(absl::StatusOr<RedisReplyPtr>) &&>;

  // Starts the worker thread.
  explicit RedisScriptRunner(ScriptRunnerOptions options);
  // Answers what is still queued (UNAVAILABLE, "shutting down") and joins
  // the worker.
  ~RedisScriptRunner();

  // Queues a run of the script with `keys` and `args`; `done` runs once, on
  // the worker thread (or here, when the queue is full or stopping).
  void Submit(std::vector<std::string> keys, std::vector<std::string> args, ReplyFn done);

  // Runs the script now (worker thread only: from `tick` or a callback).
  absl::StatusOr<RedisReplyPtr> RunNow(const std::vector<std::string>& keys,
                                       const std::vector<std::string>& args, int64_t deadline_ms);

  // Stops taking operations; what is queued is answered UNAVAILABLE.
  void Stop();

  const ScriptRunnerOptions& options() const { return options_; }

 private:
  struct Op {
    std::vector<std::string> keys, args;
    int64_t deadline = 0;
    ReplyFn done;
  };
  void Worker();
  // The connection to `at`, made within `deadline_ms` if there is none.
  absl::StatusOr<RedisClient*> ClientFor(const RedisUrl& at, int64_t deadline_ms);
  // Where a command on `key` goes now.
  RedisUrl TargetFor(const std::string& key) const;

  const ScriptRunnerOptions options_;
  const std::string sha_;

  mutable absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Worker thread state.
  // Open connections by "host:port" (one server and Sentinel: one entry).
  std::map<std::string, std::unique_ptr<RedisClient>> clients_;
  RedisUrl default_target_;  // One server; Sentinel: the URL (its master); Cluster: a seed.
  size_t next_seed_ = 0;     // Cluster: the seed to try next.
  // Cluster: the master each slot was last redirected to.
  absl::flat_hash_map<int, RedisHost> slot_masters_;
  int64_t next_connect_at_ = 0;
  std::string last_error_;
  int64_t last_tick_ = 0;

  std::thread worker_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_SCRIPT_RUNNER_H_
