// Helpers for tests of counter stores.
#ifndef TOOLGATE_SERVER_COUNTERS_COUNTER_TESTING_H_
#define TOOLGATE_SERVER_COUNTERS_COUNTER_TESTING_H_

#include <future>
#include <string>
#include <utility>
#include <vector>

#include "server/counters/counter_store.h"

namespace toolgate {
namespace counters_testing {

inline constexpr int64_t kMinute = 60'000;
inline constexpr int64_t kHour = 3'600'000;

inline LimitCheck MakeCheck(const std::string& key, Algorithm alg, int64_t window, int64_t max,
                            int64_t burst = 0) {
  LimitCheck c;
  c.key = key;
  c.algorithm = alg;
  c.window_ms = window;
  c.max = max;
  c.burst = burst > 0 ? burst : max;
  return c;
}

inline absl::StatusOr<AcquireResult> AcquireSync(CounterStore& store,
                                                 std::vector<LimitCheck> checks,
                                                 bool dry_run = false) {
  std::promise<absl::StatusOr<AcquireResult>> promise;
  auto future = promise.get_future();
  store.Acquire(std::move(checks), dry_run,
                [&promise](absl::StatusOr<AcquireResult> r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace counters_testing
}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_COUNTER_TESTING_H_
