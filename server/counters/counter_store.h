// The counter store: where rate-limit counters live.
//
// One interface, two implementations: in-process (memory_store.h), for a
// single server, and Redis, for a fleet sharing one set of limits. A call is
// admitted only if every one of its limits has room, and then consumes one
// unit of each, atomically: a refused call consumes nothing.
#ifndef TOOLGATE_SERVER_COUNTERS_COUNTER_STORE_H_
#define TOOLGATE_SERVER_COUNTERS_COUNTER_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/counters/algorithm.h"

namespace toolgate {

// One limit to check, with the identity of the counter instance it uses.
struct LimitCheck {
  // Counter instance: counter name plus the scope's value
  // (server/engine/counter_key.h builds it).
  std::string key;
  Algorithm algorithm = Algorithm::kSlidingWindow;
  int64_t window_ms = 0;
  int64_t max = 0;
  int64_t burst = 0;  // Token bucket capacity.
};

struct LimitOutcome {
  bool has_room = false;       // This limit alone would admit the call.
  int64_t remaining = 0;       // Units left (after this call, if admitted).
  int64_t reset_after_ms = 0;  // Until the counter is back to its full allowance.
  int64_t retry_after_ms = 0;  // When !has_room: until it has room again.
  bool known = true;           // False when the store did not consult this limit
                               // (another limit refused the call from a cache).
};

struct AcquireResult {
  bool admitted = false;               // Every limit had room (and, unless dry run, was consumed).
  std::vector<LimitOutcome> outcomes;  // One per LimitCheck, same order.
};

class CounterStore {
 public:
  using Callback = absl::AnyInvocable<void(absl::StatusOr<AcquireResult>) &&>;

  virtual ~CounterStore() = default;

  // Checks every limit; if all have room and `dry_run` is false, consumes one
  // unit of each. `done` runs exactly once, possibly on another thread and
  // possibly before Acquire returns. A non-OK status means the store could
  // not decide (the caller applies its failure mode); nothing was consumed.
  virtual void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) = 0;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_COUNTER_STORE_H_
