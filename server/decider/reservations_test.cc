// Tests of reservations in the Decider: an admitted call's `settle:
// required` units reserved, Settle giving them back (FAILED), keeping them
// (SUCCEEDED), correcting a cost down; what a store that is full or fails
// does. Over the in-process counter and reservation stores, a manual clock.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/decider/decider.h"
#include "server/policy/loader.h"
#include "server/reservations/memory_reservations.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-r"
default: deny
tools:
  search:
    limits:
      - {counter: searches, window: 1h, max: 2, settle: required}
      - {counter: search_calls, window: 1h, max: 1000}
  charge:
    limits:
      - {counter: spend, window: 1h, max: 10, cost_from: /amount, settle: required}
      - {counter: charges, window: 1h, max: 100, settle: required}
  read:
    limits:
      - {counter: reads, window: 1h, max: 5}
)";

// The in-process counter store, whose refunds can be made to fail.
class RefundFaults final : public CounterStore {
 public:
  explicit RefundFaults(CounterStore* store) : store_(store) {}
  void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) override {
    store_->Acquire(std::move(checks), dry_run, std::move(done));
  }
  void Refund(std::vector<LimitCheck> checks, int64_t at, RefundCallback done) override {
    if (fail) return std::move(done)(absl::UnavailableError("refunds are down"));
    store_->Refund(std::move(checks), at, std::move(done));
  }
  CounterStoreStatus Status() const override { return store_->Status(); }
  bool fail = false;

 private:
  CounterStore* const store_;
};

class DeciderReservationsTest : public ::testing::Test {
 protected:
  DeciderReservationsTest()
      : counters_(&clock_), faults_(&counters_), decider_(&faults_, Engine(), ArgsLimits()) {
    auto p = LoadPolicyFromSources({{"p.yaml", kPolicy}});
    EXPECT_TRUE(p.ok()) << p.status();
    policy_ = *p;
    Open();
  }

  void Open(ReservationOptions options = {}) {
    reservations_ = std::make_unique<MemoryReservationStore>(&clock_, options, nullptr);
    ReservationObserver observer;
    observer.settled = [this](const SettlementEvent& e) {
      events_.push_back(std::string(e.result));
    };
    observer.not_reserved = [this](absl::string_view why, absl::string_view) {
      events_.push_back(absl::StrCat("not_reserved:", why));
    };
    decider_.set_reservations(reservations_.get(), observer);
  }

  v1::CheckResponse Decide(const std::string& tool, const std::string& amount = "",
                           bool reserve = true, bool dry_run = false) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant("g");
    if (!amount.empty()) {
      (*req.mutable_args()->mutable_fields())["amount"].set_number_value(std::stod(amount));
    }
    v1::CheckResponse resp;
    DecisionTask task;
    task.policy = policy_;
    task.request = &req;
    task.response = &resp;
    task.reserve = reserve;
    task.dry_run = dry_run;
    task.decision_id = "dec-" + std::to_string(++decisions_);
    bool done = false;
    decider_.Decide(task, [&done] { done = true; });
    EXPECT_TRUE(done);
    return resp;
  }

  absl::StatusOr<Settlement> Settle(const std::string& id, SettleOutcome o,
                                    std::optional<int64_t> cost = std::nullopt) {
    absl::StatusOr<Settlement> out = absl::UnknownError("not answered");
    decider_.Settle(id, o, cost, [&out](absl::StatusOr<Settlement> s) { out = std::move(s); });
    return out;
  }

  ManualClock clock_;
  MemoryCounterStore counters_;
  RefundFaults faults_;
  Decider decider_;
  std::unique_ptr<MemoryReservationStore> reservations_;
  std::shared_ptr<const Policy> policy_;
  std::vector<std::string> events_;
  int decisions_ = 0;
};

TEST_F(DeciderReservationsTest, FailedGivesBackAndSucceededKeeps) {
  const v1::CheckResponse a = Decide("search");
  ASSERT_EQ(a.decision(), v1::DECISION_ALLOW) << a.reason();
  EXPECT_TRUE(IsReservationId(a.reservation_id())) << a.reservation_id();
  const v1::CheckResponse b = Decide("search");
  ASSERT_EQ(b.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search").decision(), v1::DECISION_RATE_LIMITED);

  auto failed = Settle(a.reservation_id(), SettleOutcome::kFailed);
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_FALSE(failed->already_settled);
  EXPECT_EQ(failed->decision_id, "dec-1");
  EXPECT_EQ(Decide("search").decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search").decision(), v1::DECISION_RATE_LIMITED);

  ASSERT_TRUE(Settle(b.reservation_id(), SettleOutcome::kSucceeded).ok());
  EXPECT_EQ(Decide("search").decision(), v1::DECISION_RATE_LIMITED);
  auto again = Settle(a.reservation_id(), SettleOutcome::kFailed);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_settled);
  EXPECT_EQ(Decide("search").decision(), v1::DECISION_RATE_LIMITED);  // Not given back twice.
  EXPECT_THAT(events_, ::testing::ElementsAre("failed", "succeeded", "duplicate"));
}

TEST_F(DeciderReservationsTest, OnlyCallsThatCanSettleGetOne) {
  EXPECT_TRUE(Decide("read").reservation_id().empty());
  EXPECT_TRUE(Decide("search", "", /*reserve=*/false).reservation_id().empty());
  EXPECT_TRUE(Decide("search", "", true, /*dry_run=*/true).reservation_id().empty());
  EXPECT_EQ(reservations_->open(), 0);
}

TEST_F(DeciderReservationsTest, ACostIsCorrectedDownForArgumentCostsOnly) {
  const v1::CheckResponse r = Decide("charge", "8");
  ASSERT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  EXPECT_EQ(Decide("charge", "3").decision(), v1::DECISION_RATE_LIMITED);
  auto high = Settle(r.reservation_id(), SettleOutcome::kSucceeded, 9);
  EXPECT_EQ(high.status().code(), absl::StatusCode::kInvalidArgument);
  auto s = Settle(r.reservation_id(), SettleOutcome::kSucceeded, 2);
  ASSERT_TRUE(s.ok()) << s.status();
  const v1::CheckResponse three = Decide("charge", "3");
  EXPECT_EQ(three.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(three.limits_size(), 2);
  EXPECT_EQ(three.limits(0).remaining(), 5);   // 10 - 2 - 3.
  EXPECT_EQ(three.limits(1).remaining(), 98);  // The fixed cost of 1 each is kept.
}

TEST_F(DeciderReservationsTest, AFullStoreCommitsTheUnitsAndSaysSo) {
  ReservationOptions options;
  options.max_open = 1;
  Open(options);
  EXPECT_FALSE(Decide("search").reservation_id().empty());
  const v1::CheckResponse r = Decide("search");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_TRUE(r.reservation_id().empty());
  EXPECT_THAT(r.reason(), HasSubstr("no reservation"));
  EXPECT_THAT(r.reason(), HasSubstr("--max-open-reservations"));
  EXPECT_THAT(events_, ::testing::ElementsAre("not_reserved:full"));
}

TEST_F(DeciderReservationsTest, UnitsThatCannotBeGivenBackLeaveTheReservationOpen) {
  const std::string id = Decide("search").reservation_id();
  faults_.fail = true;
  auto s = Settle(id, SettleOutcome::kFailed);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(), HasSubstr("open again"));
  faults_.fail = false;
  auto retry = Settle(id, SettleOutcome::kFailed);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->already_settled);
}

TEST_F(DeciderReservationsTest, UnknownAndExpiredAreNotFound) {
  ReservationOptions options;
  options.timeout_ms = 1000;
  Open(options);
  const std::string id = Decide("search").reservation_id();
  clock_.Advance(1000);
  EXPECT_EQ(Settle(id, SettleOutcome::kFailed).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Settle(NewReservationId(), SettleOutcome::kFailed).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(events_, ::testing::ElementsAre("not_found", "not_found"));
}

}  // namespace
}  // namespace toolgate
