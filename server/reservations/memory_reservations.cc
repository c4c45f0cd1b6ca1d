#include "server/reservations/memory_reservations.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace toolgate {

MemoryReservationStore::MemoryReservationStore(const Clock* clock, ReservationOptions options,
                                               ReservationExpiredFn on_expired, int64_t sweep_ms)
    : clock_(clock), options_(options), on_expired_(std::move(on_expired)), sweep_ms_(sweep_ms) {
  sweeper_ = std::thread([this] {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(sweep_ms_));
        if (stopping_) return;
      }
      Sweep();
    }
  });
}

MemoryReservationStore::~MemoryReservationStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  sweeper_.join();
}

void MemoryReservationStore::Forget(absl::flat_hash_map<std::string, Record>::iterator it) {
  if (it->second.state == State::kReserved) {
    --open_;
  } else {
    settled_.erase(it->second.in_settled);
  }
  deadlines_.erase(it->second.in_deadlines);
  records_.erase(it);
}

void MemoryReservationStore::Sweep() {
  std::vector<std::pair<std::string, std::string>> expired;  // id, decision id
  {
    absl::MutexLock lock(&mu_);
    // Nothing held, nothing to do (and no clock to read, every sweep_ms).
    if (deadlines_.empty()) return;
    const int64_t now = clock_->NowMillis();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto it = records_.find(deadlines_.begin()->second);
      if (it->second.state == State::kReserved) {
        expired.emplace_back(it->first, std::move(it->second.decision_id));
      }
      Forget(it);
    }
  }
  if (on_expired_) {
    for (const auto& [id, decision_id] : expired) on_expired_(id, decision_id);
  }
}

void MemoryReservationStore::Create(NewReservation r, Callback<std::string> done) {
  Sweep();
  std::string id = NewReservationId();
  bool full = false;
  {
    absl::MutexLock lock(&mu_);
    full = open_ >= options_.max_open;
    if (!full) {
      // Room for it among the settled ones kept (at most max_open of them).
      while (static_cast<int64_t>(settled_.size()) >= options_.max_open) {
        Forget(records_.find(settled_.begin()->second));
      }
      Record& rec = records_[id];
      rec.decision_id = std::move(r.decision_id);
      rec.limits = std::move(r.limits);
      rec.deadline = clock_->NowMillis() + options_.timeout_ms;
      rec.in_deadlines = deadlines_.emplace(rec.deadline, id);
      ++open_;
    }
  }
  if (full) {
    std::move(done)(absl::ResourceExhaustedError(absl::StrCat(
        options_.max_open, " reservations are open already (--max-open-reservations)")));
    return;
  }
  std::move(done)(std::move(id));
}

void MemoryReservationStore::Settle(std::string id, SettleOutcome outcome,
                                    std::optional<int64_t> cost, Callback<Settlement> done) {
  absl::StatusOr<Settlement> out;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end() || clock_->NowMillis() >= it->second.deadline) {
      out = absl::NotFoundError(
          absl::StrCat("reservation ", id, " is unknown or past its settlement timeout"));
    } else {
      Record& rec = it->second;
      Settlement s;
      s.decision_id = rec.decision_id;
      if (rec.state != State::kReserved) {
        s.already_settled = true;
        s.outcome =
            rec.state == State::kFailed ? SettleOutcome::kFailed : SettleOutcome::kSucceeded;
        s.cost = rec.cost;
        out = std::move(s);
      } else {
        absl::Status refused;
        if (outcome == SettleOutcome::kSucceeded && cost.has_value()) {
          for (const ReservedLimit& l : rec.limits) {
            if (l.cost_from && *cost > l.check.cost) {
              refused = absl::InvalidArgumentError(
                  absl::StrCat("cost ", *cost, " is more than the ", l.check.cost,
                               " units reserved; a settlement can only correct a cost downward"));
              break;
            }
          }
        }
        if (!refused.ok()) {
          out = std::move(refused);
        } else {
          rec.state = outcome == SettleOutcome::kFailed ? State::kFailed : State::kSucceeded;
          rec.cost = cost;
          rec.in_settled = settled_.emplace(rec.deadline, it->first);
          --open_;
          s.outcome = outcome;
          s.cost = cost;
          s.limits = rec.limits;
          out = std::move(s);
        }
      }
    }
  }
  std::move(done)(std::move(out));
}

void MemoryReservationStore::Revert(std::string id, SettleOutcome outcome, Callback<bool> done) {
  bool reverted = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    const State settled = outcome == SettleOutcome::kFailed ? State::kFailed : State::kSucceeded;
    if (it != records_.end() && it->second.state == settled &&
        clock_->NowMillis() < it->second.deadline) {
      it->second.state = State::kReserved;
      it->second.cost.reset();
      settled_.erase(it->second.in_settled);
      ++open_;
      reverted = true;
    }
  }
  std::move(done)(reverted);
}

int64_t MemoryReservationStore::open() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

}  // namespace toolgate
