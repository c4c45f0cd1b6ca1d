// The Redis counter store's over-limit cache: counter instances Redis
// reported full, each remembered until the retry_after Redis gave, so that
// calls using one are refused without a round trip.
//
// It only ever refuses, and only while Redis itself would refuse (a counter
// full until T has no room before T, whatever else happens), so it can never
// admit a call that Redis would not. Entries past their time are swept out
// now and then, so the cache holds about the counters full right now.
//
// Thread-safe: refusals are looked up on the calling (gRPC) threads, results
// remembered on the store's I/O thread.
#ifndef TOOLGATE_SERVER_COUNTERS_OVER_LIMIT_CACHE_H_
#define TOOLGATE_SERVER_COUNTERS_OVER_LIMIT_CACHE_H_

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
  // `clock` (not owned; outlives the cache) times the entries: in the store,
  // a SteadyClock, which setting the wall clock cannot move.
  explicit OverLimitCache(const Clock* clock) : clock_(clock) {}

  // When one of `checks` is known to be full: the refusal to answer with
  // (full counters with their retry_after; the others has_room, not
  // consulted). Nothing when Redis must be asked.
  std::optional<AcquireResult> Refusal(const std::vector<LimitCheck>& checks);

  // Remembers the counters that a refused call's `result` (one outcome per
  // check) reports full, until their retry_after counted from `asked_at`
  // (clock millis when the call was sent, no later: Redis measured
  // retry_after at some moment after that, so the entry never outlasts the
  // refusal Redis would give). Admitted calls teach nothing.
  void Remember(const std::vector<LimitCheck>& checks, const AcquireResult& result,
                int64_t asked_at);

  // Entries held, expired or not (for tests).
  size_t size() const;

 private:
  // Drops the entries past their time, once every so many Remember()s: as
  // many as there are entries, and at least kSweepEvery.
  void MaybeSweep(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  mutable absl::Mutex mu_;
  // Counter instance -> clock millis until which it is full.
  absl::flat_hash_map<std::string, int64_t> full_until_ ABSL_GUARDED_BY(mu_);
  size_t ops_since_sweep_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_OVER_LIMIT_CACHE_H_
