// In-process counter store: exact, lock-sharded, for a single server.
//
// Algorithms (all integer millisecond arithmetic):
// - sliding_window: a log of admissions (time, cost); a call of cost c is
//   admitted when the costs admitted in the last `window` sum to at most
//   max - c. Exact: no interval of length `window` ever holds more than `max`
//   units. Each entry also holds the running total of the log up to it, so
//   the sum in the window and the time enough room is back are found
//   without walking the log. Memory: one entry per admission (per
//   millisecond) still inside the window.
// - fixed_window: a count per calendar-aligned window (multiples of the window
//   since the Unix epoch, UTC); cheapest, but up to 2*max can pass around a
//   boundary.
// - token_bucket: holds up to `burst` tokens, refilled continuously at `max`
//   per `window`; a call takes `cost` tokens.
// Refund gives back what an admission took, while it still counts.
//
// Idle counter instances are dropped once their window has passed, in small
// steps amortized over calls, so memory follows the active key set.
#ifndef TOOLGATE_SERVER_COUNTERS_MEMORY_STORE_H_
#define TOOLGATE_SERVER_COUNTERS_MEMORY_STORE_H_

#include <array>
#include <deque>
#include <memory>

#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/base/clock.h"
#include "server/counters/counter_store.h"

namespace toolgate {

class MemoryCounterStore final : public CounterStore {
 public:
  // `clock` must outlive the store.
  explicit MemoryCounterStore(const Clock* clock);

  void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) override;
  void Refund(std::vector<LimitCheck> checks, int64_t consumed_at_ms, RefundCallback done) override;

  // Synchronous form of Acquire (the in-process store never waits).
  AcquireResult AcquireNow(const std::vector<LimitCheck>& checks, bool dry_run);
  // Synchronous form of Refund.
  void RefundNow(const std::vector<LimitCheck>& checks, int64_t consumed_at_ms);

  // Number of live counter instances (for tests and status).
  size_t KeyCount() const;

  CounterStoreStatus Status() const override;

 private:
  struct Entry {
    int64_t at;     // Admission time (ms).
    int64_t cost;   // Units it holds (admissions of one ms merged; 0 once refunded).
    int64_t total;  // Running total of the log's costs up to and including this one.
  };
  struct Counter {
    Algorithm algorithm = Algorithm::kSlidingWindow;
    int64_t window_ms = 0;
    int64_t expires_at = 0;  // After this, the counter is back to full allowance.
    // sliding_window: admissions, oldest first.
    std::deque<Entry> log;
    // The units in the log (after expired entries are dropped).
    int64_t LogSum() const {
      return log.empty() ? 0 : log.back().total - log.front().total + log.front().cost;
    }
    // fixed_window: index of the current window and its count.
    int64_t window_index = 0;
    int64_t count = 0;
    // token_bucket: the level, scaled so that one token is window_ms units
    // and each millisecond adds `max` units (exact integer refill).
    int64_t units = 0;
    int64_t refilled_at = 0;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    // Node-based: pointers to counters stay valid while others are inserted.
    absl::node_hash_map<std::string, Counter> counters ABSL_GUARDED_BY(mu);
    size_t ops_since_sweep ABSL_GUARDED_BY(mu) = 0;
  };

  // The shards a call's counters live in, each locked once, in index order
  // (so two calls cannot deadlock), until destruction.
  class LockedShards {
   public:
    LockedShards(std::array<Shard, kShards>& shards, const std::vector<LimitCheck>& checks);
    ~LockedShards();
    LockedShards(const LockedShards&) = delete;
    LockedShards& operator=(const LockedShards&) = delete;
    Shard& shard_of(size_t i) { return shards_[shard_of_[i]]; }
    const std::string& key(size_t i) const { return key_[i]; }
    // Calls f(shard) for every locked shard.
    template <typename F>
    void ForEach(F f) {
      for (size_t s = 0; s < kShards; ++s) {
        if (used_[s]) f(shards_[s]);
      }
    }

   private:
    std::array<Shard, kShards>& shards_;
    std::array<bool, kShards> used_{};
    std::vector<size_t> shard_of_;
    std::vector<std::string> key_;
  };

  static LimitOutcome Evaluate(Counter& c, const LimitCheck& check, int64_t now);
  static void Consume(Counter& c, const LimitCheck& check, int64_t now);
  static void GiveBack(Counter& c, const LimitCheck& check, int64_t at, int64_t now);
  static void SweepLocked(Shard& shard, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  static size_t ShardOf(const std::string& key);
  static std::string StorageKey(const LimitCheck& check);

  const Clock* clock_;
  std::array<Shard, kShards> shards_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_MEMORY_STORE_H_
