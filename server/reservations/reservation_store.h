// Where reservations live: in process (memory_reservations.h) for one
// server, or in Redis (redis_reservations.h) shared by a fleet.
//
// A reservation holds the units an admitted call took of its limits with
// `settle: required`, until the gateway reports how the call went
// (DecisionService.Settle):
//
//   reserved --settle FAILED-----> failed      (the caller gives the units back)
//      |     --settle SUCCEEDED--> succeeded   (kept; `cost` may correct them down)
//      '-----(timeout)-----------> expired     (kept: committed)
//
// Exactly one settlement wins, across servers; a later one finds the state
// (already settled). Past its deadline (--settlement-timeout from creation)
// a reservation is unknown to Settle (NOT_FOUND) whatever its state, and
// soon forgotten. The store records states only: giving units back is the
// counter store's (CounterStore::Refund), asked by whoever settled.
//
// Bound: at most `max_open` reservations created by this server and not yet
// past their deadline or settled here (each holds its limits' keys); past
// it Create answers RESOURCE_EXHAUSTED. In Redis, a reservation settled by
// another server counts here until its deadline.
#ifndef TOOLGATE_SERVER_RESERVATIONS_RESERVATION_STORE_H_
#define TOOLGATE_SERVER_RESERVATIONS_RESERVATION_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/counters/counter_store.h"

namespace toolgate {

// One limit's reserved units: `check` as it was acquired (its `cost` is
// the units taken), when the store recorded them, and whether the cost
// came from the arguments (`cost_from`: Settle's `cost` corrects it).
struct ReservedLimit {
  LimitCheck check;
  int64_t consumed_at_ms = 0;
  bool cost_from = false;
};

struct NewReservation {
  std::string decision_id;  // The decision that reserved (for the log).
  std::vector<ReservedLimit> limits;
};

enum class SettleOutcome { kSucceeded, kFailed };

// "succeeded", "failed".
absl::string_view SettleOutcomeName(SettleOutcome outcome);

struct Settlement {
  // False: this call settled it (the caller gives back what is due);
  // true: it had been settled already, as `outcome` and `cost` say.
  bool already_settled = false;
  SettleOutcome outcome = SettleOutcome::kSucceeded;
  std::optional<int64_t> cost;
  std::string decision_id;
  // When !already_settled: what was reserved.
  std::vector<ReservedLimit> limits;
};

struct ReservationOptions {
  int64_t timeout_ms = 300'000;  // --settlement-timeout.
  int64_t max_open = 100'000;    // --max-open-reservations.
};

// A reservation that was never settled, committed by its timeout: reported
// once, by the server that created it (when it is still running).
using ReservationExpiredFn =
    std::function<void(const std::string& id, const std::string& decision_id)>;

class ReservationStore {
 public:
  template <typename T>
  using Callback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

  virtual ~ReservationStore() = default;

  // Records a reservation and answers its id once it is recorded (a Settle
  // on any server that shares the store finds it). RESOURCE_EXHAUSTED past
  // max_open.
  virtual void Create(NewReservation reservation, Callback<std::string> done) = 0;

  // Settles `id` (IsReservationId) once: NOT_FOUND when unknown or past its
  // deadline; INVALID_ARGUMENT when `outcome` is SUCCEEDED with a `cost`
  // above the units reserved of a limit whose cost came from the arguments
  // (nothing changes then). Otherwise the settlement (see Settlement).
  virtual void Settle(std::string id, SettleOutcome outcome, std::optional<int64_t> cost,
                      Callback<Settlement> done) = 0;

  // Takes back this server's settlement of `id` as `outcome` whose units
  // could not be given back, so that a retry can: `id` is reserved again
  // (true) if it is still settled so and not past its deadline.
  virtual void Revert(std::string id, SettleOutcome outcome, Callback<bool> done) = 0;

  // Reservations counted against max_open now.
  virtual int64_t open() const = 0;

  // "in_process" or "redis".
  virtual absl::string_view kind() const = 0;
};

// "rsv_" and 32 random hex digits.
std::string NewReservationId();
bool IsReservationId(absl::string_view id);

// The most limits one reservation holds (a call's limits are far fewer).
inline constexpr size_t kMaxReservedLimits = 64;

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_RESERVATIONS_RESERVATION_STORE_H_
