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
// `toolgate:{wait_for_background_task_rate|g|agent-7}:s:60000` (algorithms:
// s, b, f2, t2; see redis_script_codec.h). Every key carries
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
// Topologies (RedisUrl::mode):
// - One server (redis://): one connection.
// - Sentinel (redis+sentinel://): one connection, to the master a
//   SentinelWatcher (server/redis/sentinel.h) names. When the sentinels name
//   another master (+switch-master, or the periodic inquiry), the connection
//   is dropped and opened to the new one at once; READONLY, LOADING,
//   MASTERDOWN or a lost connection drop it too and ask the sentinels again.
//   Each new connection checks with ROLE that it reached a master. Calls
//   meanwhile fail within their deadline (the failure mode decides).
//   Replication is asynchronous: increments the old master had not yet sent
//   to the replica are lost in a failover (calls they counted may then be
//   admitted again: a short over-admission window). `wait_replicas` closes
//   it: once a script run's reply shows admissions, a WAIT is sent (one
//   outstanding per connection, covering every run written before it: a
//   WAIT blocks the connection, so it is sent only for admissions, one at a
//   time), and an admitted call is answered only once that many replicas
//   have its writes (else UNAVAILABLE: the failure mode decides; the units
//   stay counted on the master). Refusals and dry runs are answered at once.
// - Cluster (redis+cluster://): one connection per master, learned from
//   CLUSTER SLOTS (asked of any node, at start, every `cluster_refresh_ms`,
//   and after MOVED, CLUSTERDOWN or a lost node). Each limit's key goes to
//   the master of its hash slot (the `{...}` hash tag: one counter instance,
//   one slot); calls are batched per slot. MOVED: the part is sent where it
//   says and the map refreshed; ASK: sent once more there after ASKING;
//   TRYAGAIN (a slot migrating): sent again shortly; at most kMaxRedirects
//   times, within the call's deadline.
//
// Cross-slot calls (Cluster): a call whose limits are in several slots is
// sent as one part per slot, each of which checks and consumes its limits
// atomically (a reservation). If every part admits, the call is admitted. If
// any part refuses, fails or is late, the call is refused (or fails), and
// every part that did consume is given back by a refund script run
// (redis_script_codec.h: exact for every algorithm, at the admission's
// Redis time), as soon as its answer is known. So: never over-admission, and
// a refused call consumes nothing once its refunds ran. What a concurrent
// observer can see: between a part's reservation and its refund (one round
// trip), that slot's counter holds the unit, and a call there may be refused
// for it (under-admission, never over-admission). A refund that cannot be
// delivered (its node lost) leaves the unit counted until its window ends;
// it is logged and counted (refund_failures).
#ifndef TOOLGATE_SERVER_COUNTERS_REDIS_STORE_H_
#define TOOLGATE_SERVER_COUNTERS_REDIS_STORE_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/base/wakeup.h"
#include "server/counters/counter_store.h"
#include "server/counters/over_limit_cache.h"
#include "server/counters/redis_script_codec.h"
#include "server/redis/backoff.h"
#include "server/redis/cluster.h"
#include "server/redis/connection.h"
#include "server/redis/sentinel.h"
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
  // WAIT for this many replicas after each script run (0: do not).
  int64_t wait_replicas = 0;
  int64_t sentinel_recheck_ms = 1000;   // Sentinel: how often the sentinels are asked.
  int64_t cluster_refresh_ms = 10'000;  // Cluster: how often the slot map is asked for.
};

class RedisCounterStore final : public CounterStore {
 public:
  // Starts the I/O thread. The connection is opened in the background: the
  // server starts even while Redis is down (calls then get UNAVAILABLE).
  explicit RedisCounterStore(RedisStoreOptions options);
  ~RedisCounterStore() override;

  void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) override;
  void Refund(std::vector<LimitCheck> checks, int64_t consumed_at_ms,
              RefundCallback done) override;

  CounterStoreStatus Status() const override;

  const RedisUrl& url() const { return options_.url; }

  // The Redis key of a counter instance.
  std::string RedisKey(const LimitCheck& check) const;

 private:
  struct Request;  // A call: its limits, callback and deadline.
  struct Part;     // What one script call carries: a call's limits of one slot, or a refund.
  struct Pending;  // A command written, waiting for its reply.
  struct Node;     // One Redis server and the connection to it.
  using PartList = std::vector<std::unique_ptr<Part>>;

  void Run();
  // Queues new calls: split by slot (Cluster), routed, batched.
  void Submit(std::vector<std::shared_ptr<Request>>& requests, int64_t now);
  // Sends `parts` (each of one slot; routed by slot in a Cluster).
  void Route(PartList parts, int64_t now);
  // Sends `parts`, all of `slot`, to `node`, in as few script runs as the
  // per-command limits allow (after ASKING when `asking`).
  void SendTo(Node& node, PartList parts, bool asking, int64_t now);
  void SendScript(Node& node, PartList parts, bool use_eval);
  void SendInternal(Node& node, int kind, const std::vector<std::string>& argv);
  void Append(Node& node, std::unique_ptr<Pending> pending);
  Node& NodeAt(const RedisHost& address);
  // "host:port: " to put before a node's errors ("" with one server).
  std::string Where(const Node& node) const;
  // Opens the node's connection if its backoff allows; false when it is not open.
  bool EnsureConnection(Node& node, int64_t now);
  void Connect(Node& node, int64_t now);
  void Drop(Node& node, absl::string_view why, int64_t now);
  // Writes what is queued (after a WAIT for the scripts not yet covered by one).
  void Flush(Node& node);
  // --redis-wait-replicas: appends a WAIT covering every script written, if
  // none is outstanding and admissions are held that no WAIT covers yet.
  void MaybeWait(Node& node);
  void ReadReplies(Node& node, int64_t now);
  void HandleReply(Node& node, const redisReply& reply, int64_t now);
  void HandleScriptReply(Node& node, std::unique_ptr<Pending> p, const redisReply& reply,
                         int64_t now);
  void HandleSlots(Node& node, const redisReply& reply, int64_t now);
  // A part's answer: completes its call (at once for a call of one part;
  // once every part answered for a cross-slot call), or refunds it.
  void Finish(std::unique_ptr<Part> part, absl::StatusOr<AcquireResult> result, int64_t stamp,
              int64_t now);
  void FailParts(PartList& parts, const absl::Status& status, int64_t now);
  // Gives back, in their slot, the units `checks` consumed at Redis time `stamp`.
  void Refund(std::vector<LimitCheck> checks, int64_t stamp, int64_t now);
  void Complete(Request& req, absl::StatusOr<AcquireResult> result,
                const std::vector<LimitCheck>& checks);
  // Cluster: asks a node for the slot map (at most every kSlotsMinIntervalMillis).
  void RequestSlots(int64_t now);
  // Sentinel: follows the master the sentinels name.
  void FollowMaster(int64_t now);
  // Logs a call failed by a counter key's content (WRONGTYPE, corrupt), at
  // most once every kKeyErrorLogMillis, with how many more there were.
  void LogKeyError(const absl::Status& error, int64_t now);
  void ExpireOverdue(int64_t now);
  // How long the I/O thread may sleep: until the next deadline, reconnect or retry.
  int64_t WaitMs(int64_t now) const;
  void UpdateConnected();
  void Shutdown();
  // The calls of `parts`, as the codec takes them (in calls_).
  absl::Span<const ScriptCall* const> Calls(const PartList& parts);

  const RedisStoreOptions options_;
  const RedisMode mode_;
  const RedisScriptCodec codec_;
  OverLimitCache cache_;

  // Submission queue (any thread -> I/O thread).
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Request>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<Wakeup> wakeup_;  // Null when it could not be created: no I/O thread.
  std::string start_error_;         // Then, why.
  std::unique_ptr<SentinelWatcher> sentinel_;  // Sentinel only.

  // I/O thread state.
  std::vector<std::unique_ptr<Node>> nodes_;  // Single, Sentinel: one. Cluster: seeds, masters.
  absl::flat_hash_map<std::string, int> node_index_;  // "host:port" -> nodes_ index.
  std::vector<int> slot_owner_;               // Cluster: node index per slot; -1: unknown.
  bool slots_known_ = false;
  int slots_asked_of_ = -1;                   // The node a CLUSTER SLOTS is pending on.
  int64_t slots_asked_at_ = 0;
  int64_t slots_refreshed_at_ = 0;
  size_t next_slots_node_ = 0;
  PartList unrouted_;                         // Cluster: parts waiting for the slot map.
  std::vector<std::pair<int64_t, std::unique_ptr<Part>>> retry_;  // TRYAGAIN: when, what.
  uint64_t master_generation_ = 0;            // Sentinel: the watcher's, last acted on.
  std::string command_;                       // The command being formatted.
  std::vector<const ScriptCall*> calls_;
  int64_t last_key_error_log_ = 0;
  uint64_t key_errors_unlogged_ = 0;
  int64_t last_refund_failure_log_ = 0;
  bool logged_poll_error_ = false;
  bool shutting_down_ = false;
  absl::BitGen rng_;

  std::atomic<uint64_t> checks_{0}, commands_{0}, round_trips_{0}, cache_hits_{0}, timeouts_{0},
      failures_{0}, reconnects_{0}, script_reloads_{0}, redirects_{0}, refunds_{0},
      refund_failures_{0}, topology_changes_{0};
  std::atomic<bool> connected_{false};
  mutable absl::Mutex error_mu_;
  std::string shared_error_ ABSL_GUARDED_BY(error_mu_);
  std::string shared_master_ ABSL_GUARDED_BY(error_mu_);  // Sentinel: "host:port".

  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_REDIS_STORE_H_
