// The counter store: where rate-limit counters live.
//
// One interface, two implementations: in-process (memory_store.h), for a
// single server, and Redis, for a fleet sharing one set of limits. A call is
// admitted only if every one of its limits has room for its cost, and then
// consumes that cost of each, atomically: a refused call consumes nothing.
// What an admission consumed can be given back (Refund), exactly.
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
  // Units this call takes: 0 (always has room, consumes nothing) up to the
  // limit's capacity (max; burst for a token bucket). For Refund: the units
  // to give back.
  int64_t cost = 1;
};

struct LimitOutcome {
  bool has_room = false;       // This limit alone would admit the call.
  int64_t remaining = 0;       // Units left (after this call, if admitted).
  int64_t reset_after_ms = 0;  // Until the counter is back to its full allowance.
  int64_t retry_after_ms = 0;  // When !has_room: until it has room again.
  bool known = true;           // False when the store did not consult this limit
                               // (another limit refused the call from a cache).
  // When the call was admitted and not a dry run: the store's time (ms) the
  // admission was recorded at (Redis: its TIME; limits in different Redis
  // Cluster slots may differ). Refund takes it back.
  int64_t consumed_at_ms = 0;
};

struct AcquireResult {
  bool admitted = false;               // Every limit had room (and, unless dry run, was consumed).
  std::vector<LimitOutcome> outcomes;  // One per LimitCheck, same order.
};

// What a store reports about itself, for status, metrics and logs.
struct CounterStoreStatus {
  std::string kind;        // "in_process" or "redis".
  std::string address;     // Redis: its URL without the password.
  bool connected = false;  // In process: always.
  uint64_t keys = 0;       // In process: counter instances held.
  // Redis only:
  uint64_t checks = 0;          // Acquire() calls.
  uint64_t commands = 0;        // Commands written (EVALSHA/EVAL, AUTH, SELECT).
  uint64_t round_trips = 0;     // Pipelined writes (each carries one or more commands).
  uint64_t cache_hits = 0;      // Calls refused by the over-limit cache.
  uint64_t timeouts = 0;        // Calls answered DEADLINE_EXCEEDED.
  uint64_t failures = 0;        // Calls answered UNAVAILABLE or with a Redis error.
  uint64_t connects = 0;        // Connections opened.
  uint64_t script_reloads = 0;  // NOSCRIPT replies answered with EVAL.
  uint64_t redirects = 0;       // Cluster: MOVED, ASK and TRYAGAIN replies followed.
  uint64_t refunds = 0;         // Refunds sent: Refund() calls, and cross-slot calls refused (Cluster).
  uint64_t refund_failures = 0; // Refunds that could not be delivered (units stay counted).
  uint64_t topology_changes = 0;  // Sentinel: masters followed; Cluster: slot maps that changed.
  std::string last_error;       // Why the last connection failed or was dropped.

  // One line for logs: "redis: checks=.. commands=.. ..." or "in process: N keys".
  std::string Summary() const;
};

class CounterStore {
 public:
  using Callback = absl::AnyInvocable<void(absl::StatusOr<AcquireResult>) &&>;

  virtual ~CounterStore() = default;

  // Checks every limit; if all have room and `dry_run` is false, consumes one
  // unit of each. A non-OK status means the store could not decide (the
  // caller applies its failure mode); nothing was consumed.
  //
  // `done` runs exactly once: on the calling thread before Acquire returns
  // (the in-process store; the Redis store when its over-limit cache or its
  // shutdown answers), or on the store's I/O thread. On the I/O thread every
  // other call waiting for Redis waits for `done` to return, so `done` must
  // be short and must never block: no I/O, no waiting on locks that are held
  // for long, no waiting for another Acquire. Finishing a gRPC call
  // (serializing its answer, recording metrics, queueing a decision-log
  // entry) is within that bound; anything slower must be handed to another
  // thread. `done` may call Acquire again.
  virtual void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) = 0;

  using RefundCallback = absl::AnyInvocable<void(absl::Status) &&>;

  // Gives back `cost` units of each of `checks` that an admission recorded
  // at store time `consumed_at_ms` (its LimitOutcome::consumed_at_ms) took.
  // Exact and all or nothing per store run; it never gives back more than
  // that admission took, nothing of a unit that has since left its window
  // (a sliding window's entry that expired, a fixed window that rolled
  // over), and never creates a counter. A token bucket gets the tokens back
  // at once (capped at its burst). `done` runs once, as for Acquire (same
  // rules), after the units are back: a call decided after that sees them.
  virtual void Refund(std::vector<LimitCheck> checks, int64_t consumed_at_ms,
                      RefundCallback done) = 0;

  // A snapshot of the store's state and counts. Thread-safe.
  virtual CounterStoreStatus Status() const = 0;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_COUNTER_STORE_H_
