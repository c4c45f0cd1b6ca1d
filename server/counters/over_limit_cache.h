// The Redis counter store's over-limit cache: counter instances Redis
// reported full, each remembered until the retry_after Redis gave, so that
// calls using one are refused without a round trip.
//
// It only ever refuses, and only what Redis said it would refuse:
// - an entry holds the limit's definition (algorithm, window, max, burst)
//   and refuses only calls whose limit has that same definition, so a
//   revision that changes a limit (a higher max after a reload, say) asks
//   Redis at once;
// - an entry holds the cost Redis refused, and refuses only calls costing
//   at least that much (a cheaper call may fit; a call of cost 0 always
//   does);
// - what Redis knows can change in ways the cache cannot see (an operator
//   deletes the key, another server's revision counts differently), so an
//   entry is checked with Redis again every `recheck_ms` (default 100 ms):
//   the first call on it after that goes to Redis (calls meanwhile are
//   still refused), and Redis's answer renews the entry or drops it (a
//   limit with room drops it). A call that Redis would admit is refused by
//   the cache for at most recheck_ms plus one round trip.
// Entries past their time are swept out now and then, so the cache holds
// about the counters full right now.
//
// Thread-safe: refusals are looked up on the calling (gRPC) threads, results
// remembered on the store's I/O thread.
#ifndef TOOLGATE_SERVER_COUNTERS_OVER_LIMIT_CACHE_H_
#define TOOLGATE_SERVER_COUNTERS_OVER_LIMIT_CACHE_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/base/clock.h"
#include "server/counters/counter_store.h"

namespace toolgate {

class OverLimitCache {
 public:
  static constexpr int64_t kDefaultRecheckMs = 100;

  // `clock` (not owned; outlives the cache) times the entries: in the store,
  // a SteadyClock, which setting the wall clock cannot move.
  explicit OverLimitCache(const Clock* clock, int64_t recheck_ms = kDefaultRecheckMs)
      : clock_(clock), recheck_ms_(recheck_ms) {}

  // When one of `checks` is known to be full: the refusal to answer with
  // (full counters with their retry_after; the others has_room, not
  // consulted). Nothing when Redis must be asked: no entry of the same
  // definition refuses, or each that would is due for its re-check (which
  // this call then is: the next re-check is recheck_ms later).
  std::optional<AcquireResult> Refusal(const std::vector<LimitCheck>& checks);

  // Learns from Redis's `result` for `checks` (one outcome per check):
  // counters reported full are remembered until their retry_after counted
  // from `asked_at` (clock millis when the call was sent, no later: Redis
  // measured retry_after at some moment after that, so the entry never
  // outlasts the refusal Redis would give); counters reported with room
  // are forgotten.
  void Remember(const std::vector<LimitCheck>& checks, const AcquireResult& result,
                int64_t asked_at);

  // Forgets `checks`' counters (units were just given back to them).
  void Forget(const std::vector<LimitCheck>& checks);

  // Entries held, expired or not (for tests).
  size_t size() const;

 private:
  struct Entry {
    // The limit's definition, as the refusal was learned for.
    Algorithm algorithm;
    int64_t window_ms;
    int64_t max;
    int64_t burst;
    int64_t cost;        // The cost refused: calls costing less are asked of Redis.
    int64_t remaining;   // As Redis reported it.
    int64_t full_until;  // Clock millis.
    int64_t recheck_at;  // Clock millis: from then on, the next call asks Redis.
    bool Matches(const LimitCheck& c) const {
      return algorithm == c.algorithm && window_ms == c.window_ms && max == c.max &&
             burst == c.burst;
    }
    bool Refuses(const LimitCheck& c) const { return Matches(c) && c.cost > 0 && c.cost >= cost; }
  };

  // Drops the entries past their time, once every so many Remember()s: as
  // many as there are entries, and at least kSweepEvery.
  void MaybeSweep(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const int64_t recheck_ms_;
  mutable absl::Mutex mu_;
  // Counter instance -> its entry.
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // entries_.size(), read without the lock to skip it when there is nothing
  // to look up or forget.
  std::atomic<size_t> count_{0};
  size_t ops_since_sweep_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_OVER_LIMIT_CACHE_H_
