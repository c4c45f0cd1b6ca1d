// Redis counter store: one set of limits shared by every server of a fleet.
//
// Calls are decided by a Lua script (redis_script.lua) that checks all of a
// call's limits and consumes them only if all have room, atomically, timed by
// the Redis server's clock (TIME), so servers with skewed clocks still agree.
// One EVALSHA decides a batch of calls (each on its own, in order): at most
// one command per call, and under load far fewer.
//
// Threading: Acquire() only queues the call and returns; one I/O thread owns
// the connection. It writes every queued call in one pipeline (one write,
// and as few script runs as possible, for many calls) and matches replies in
// order as they arrive, so gRPC threads never wait on Redis.
//
// Failures: every call has a deadline (`timeout_ms`). A call that is not
// answered in time, or while Redis is unreachable, completes with
// DEADLINE_EXCEEDED or UNAVAILABLE (the engine's failure mode then decides);
// it never hangs. Lost connections are re-established with jittered
// exponential backoff; READONLY and LOADING replies (a replica after a
// failover, a restarting server) drop the connection too. NOSCRIPT (script
// cache emptied by a restart or failover) is answered by resending the call
// with EVAL, which loads the script again.
//
// Keys: `<prefix>{<counter>|<scope>|<value>}:<algorithm>:<window_ms>`, e.g.
// `toolgate:{wait_for_background_task_rate|g|agent-7}:s:60000`. Every key carries
// an expiry no later than the end of its window. The braces are a Redis
// Cluster hash tag: all of one counter instance's data is in one slot.
//
// Over-limit cache: a key Redis reported full is remembered until its
// retry_after has passed, and calls using it (with the same limit
// definition) are refused locally without a round trip; every
// `over_limit_recheck_ms` (100 ms) one call on it asks Redis again, whose
// answer renews or drops the entry (over_limit_cache.h). It only ever
// refuses, so it can never admit a call that Redis would not.
//
// Connection setup: AUTH and SELECT as the URL asks, then SCRIPT LOAD; the
// connection counts as connected (logged, backoff reset) only once all of
// them succeeded. A refused AUTH (or NOAUTH) drops it with "authentication
// failed" and the usual backoff.
//
// The parts: the script's command and reply in redis_script_codec.h, the
// over-limit cache in over_limit_cache.h, the connection, protocol and
// backoff in server/redis/; this class runs the I/O thread (batching,
// pipelining, deadlines, reconnection).
#ifndef TOOLGATE_SERVER_COUNTERS_REDIS_STORE_H_
#define TOOLGATE_SERVER_COUNTERS_REDIS_STORE_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/base/wakeup.h"
#include "server/counters/counter_store.h"
#include "server/counters/over_limit_cache.h"
#include "server/counters/redis_script_codec.h"
#include "server/redis/backoff.h"
#include "server/redis/connection.h"
#include "server/redis/url.h"

namespace toolgate {

// Optional measurements of the store's Redis work (for metrics). Called on
// the store's I/O thread; must be cheap and must not block.
class RedisStoreObserver {
 public:
  virtual ~RedisStoreObserver() = default;
  // A call's command answered: microseconds from its write to its reply.
  virtual void OnRedisReply(int64_t latency_us) = 0;
  // One pipelined write carrying `commands` commands.
  virtual void OnRedisPipeline(size_t commands) = 0;
};

struct RedisStoreOptions {
  RedisUrl url;
  RedisStoreObserver* observer = nullptr;  // Not owned; outlives the store. May be null.
  int64_t timeout_ms = 25;        // Deadline of each call, from Acquire().
  bool over_limit_cache = true;   // Refuse known-full keys locally.
  // How often a cached refusal is checked with Redis again.
  int64_t over_limit_recheck_ms = OverLimitCache::kDefaultRecheckMs;
  std::string key_prefix = "toolgate:";
  // Sliding windows up to this max use an exact log; larger ones use 64
  // buckets per window (bounded memory, never over-admits).
  int64_t exact_log_max = 1024;
};

class RedisCounterStore final : public CounterStore {
 public:
  // Starts the I/O thread. The connection is opened in the background: the
  // server starts even while Redis is down (calls then get UNAVAILABLE).
  explicit RedisCounterStore(RedisStoreOptions options);
  ~RedisCounterStore() override;

  void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) override;

  CounterStoreStatus Status() const override;

  const RedisUrl& url() const { return options_.url; }

  // The Redis key of a counter instance.
  std::string RedisKey(const LimitCheck& check) const;

 private:
  struct Request;  // A call: its ScriptCall, callback and deadline.
  struct Pending;  // A command written, waiting for its reply.

  void Run();
  void Connect(int64_t now);
  void Drop(absl::string_view why, int64_t now);
  // Queues `batch` in as few script runs as the per-command limits allow.
  void SendAll(std::vector<std::unique_ptr<Request>>& batch);
  void Send(std::vector<std::unique_ptr<Request>> requests, bool use_eval);
  void SendInternal(const std::vector<std::string>& argv);
  void Append(std::vector<std::unique_ptr<Request>> requests);  // Queues command_.
  void Flush();
  void ReadReplies(int64_t now);
  void HandleReply(const redisReply& reply, int64_t now);
  void Complete(Request& req, absl::StatusOr<AcquireResult> result);
  // Logs a call failed by a counter key's content (WRONGTYPE, corrupt), at
  // most once every kKeyErrorLogMillis, with how many more there were.
  void LogKeyError(const absl::Status& error, int64_t now);
  void ExpireOverdue(int64_t now);
  // How long the I/O thread may sleep: until the next deadline or reconnect.
  int64_t WaitMs(int64_t now) const;
  void Shutdown();
  // The calls of `requests`, as the codec takes them (in calls_).
  absl::Span<const ScriptCall* const> Calls(const std::vector<std::unique_ptr<Request>>& requests);

  const RedisStoreOptions options_;
  const RedisScriptCodec codec_;
  OverLimitCache cache_;

  // Submission queue (any thread -> I/O thread).
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Request>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<Wakeup> wakeup_;  // Null when it could not be created: no I/O thread.
  std::string start_error_;         // Then, why.

  // I/O thread state.
  std::unique_ptr<RedisConnection> conn_;
  std::string command_;                     // The command being formatted.
  std::vector<const ScriptCall*> calls_;    // The calls of the command being formatted or read.
  std::deque<std::unique_ptr<Pending>> inflight_;
  bool wrote_since_flush_ = false;
  size_t commands_since_flush_ = 0;
  int64_t next_connect_at_ = 0;
  int64_t connect_started_ = 0;
  // Replies still due to the connection's setup commands (AUTH, SELECT,
  // SCRIPT LOAD); connected once none is.
  size_t setup_pending_ = 0;
  int64_t last_key_error_log_ = 0;
  uint64_t key_errors_unlogged_ = 0;
  Backoff backoff_;
  std::string last_error_ = "not connected yet";
  int64_t last_error_log_ = 0;
  bool logged_poll_error_ = false;
  absl::BitGen rng_;

  std::atomic<uint64_t> checks_{0}, commands_{0}, round_trips_{0}, cache_hits_{0}, timeouts_{0},
      failures_{0}, reconnects_{0}, script_reloads_{0};
  std::atomic<bool> connected_{false};
  mutable absl::Mutex error_mu_;
  std::string shared_error_ ABSL_GUARDED_BY(error_mu_);

  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_REDIS_STORE_H_
