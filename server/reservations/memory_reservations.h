// In-process reservation store, for a single server. Time comes from the
// Clock given (tests move it by hand); a sweeper thread records expiries
// every `sweep_ms` (Sweep() does it at once). Settled reservations are kept
// until their deadline, to answer a repeated settlement, but at most
// max_open of them: past that the oldest are forgotten first (a late repeat
// then finds nothing: NOT_FOUND).
#ifndef TOOLGATE_SERVER_RESERVATIONS_MEMORY_RESERVATIONS_H_
#define TOOLGATE_SERVER_RESERVATIONS_MEMORY_RESERVATIONS_H_

#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/base/clock.h"
#include "server/reservations/reservation_store.h"

namespace toolgate {

class MemoryReservationStore final : public ReservationStore {
 public:
  // `clock` must outlive the store.
  MemoryReservationStore(const Clock* clock, ReservationOptions options,
                         ReservationExpiredFn on_expired, int64_t sweep_ms = 100);
  ~MemoryReservationStore() override;

  void Create(NewReservation reservation, Callback<std::string> done) override;
  void Settle(std::string id, SettleOutcome outcome, std::optional<int64_t> cost,
              Callback<Settlement> done) override;
  void Revert(std::string id, SettleOutcome outcome, Callback<bool> done) override;
  int64_t open() const override;
  absl::string_view kind() const override { return "in_process"; }

  // Records the expiries that are due (and forgets them), now.
  void Sweep();

 private:
  enum class State { kReserved, kSucceeded, kFailed };
  using ByDeadline = std::multimap<int64_t, std::string>;
  struct Record {
    std::string decision_id;
    std::vector<ReservedLimit> limits;  // Kept: a reverted settlement settles again.
    int64_t deadline = 0;
    State state = State::kReserved;
    std::optional<int64_t> cost;
    ByDeadline::iterator in_deadlines;
    ByDeadline::iterator in_settled;  // When settled.
  };
  // Forgets `it` (mu_ held).
  void Forget(absl::flat_hash_map<std::string, Record>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const ReservationOptions options_;
  const ReservationExpiredFn on_expired_;
  const int64_t sweep_ms_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  // Deadline -> id, of every record (for the sweep) and of the settled ones
  // (the first forgotten when too many are kept).
  ByDeadline deadlines_ ABSL_GUARDED_BY(mu_);
  ByDeadline settled_ ABSL_GUARDED_BY(mu_);
  int64_t open_ ABSL_GUARDED_BY(mu_) = 0;  // Records in state kReserved.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread sweeper_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_RESERVATIONS_MEMORY_RESERVATIONS_H_
