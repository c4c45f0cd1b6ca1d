// ApprovalHub over the in-process store: waits answered by events, by
// polling, at their deadline, by cancellation; the bounds.
#include "server/approvals/approval_hub.h"

#include <future>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/approvals/memory_approvals.h"
#include "server/base/clock.h"

namespace toolgate {
namespace {

int64_t Now() { return SteadyClock::Get()->NowMillis(); }

class ApprovalHubTest : public ::testing::Test {
 protected:
  // `wire_events`: the store's fleet events reach the hub.
  void Open(bool wire_events, ApprovalHubOptions options = {}) {
    ApprovalEvents events;
    if (wire_events) {
      events.fleet = [this](v1::ApprovalEventKind k, const v1::Approval& a) {
        if (hub_ != nullptr) hub_->OnEvent(k, a);
      };
    }
    store_ = std::make_unique<MemoryApprovalStore>(SystemClock::Get(), ApprovalLimits(),
                                                   std::move(events), 0);
    hub_ = std::make_unique<ApprovalHub>(store_.get(), options);
    NewApproval n;
    n.binding = {"g", "t", "", "", "d"};
    n.ttl_ms = 60'000;
    store_->Create(std::move(n), [this](absl::StatusOr<CreatedApproval> c) { id_ = c->approval.id(); });
  }
  void TearDown() override {
    if (hub_ != nullptr) hub_->Stop();
    store_.reset();
    hub_.reset();
  }

  // Starts a wait; its answer arrives in the returned future.
  std::future<absl::StatusOr<v1::Approval>> Wait(const std::string& id, int64_t ms,
                                                 uint64_t* handle = nullptr) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<v1::Approval>>>();
    auto future = promise->get_future();
    const uint64_t h = hub_->Wait(id, Now() + ms, [promise](absl::StatusOr<v1::Approval> a) {
      promise->set_value(std::move(a));
    });
    if (handle != nullptr) *handle = h;
    return future;
  }
  void Decide(bool approve) {
    store_->Decide(id_, approve, "alice", "", [](absl::StatusOr<v1::Approval> a) {
      EXPECT_TRUE(a.ok()) << a.status();
    });
  }

  std::unique_ptr<MemoryApprovalStore> store_;
  std::unique_ptr<ApprovalHub> hub_;
  std::string id_;
};

TEST_F(ApprovalHubTest, AWaitEndsWithTheDecision) {
  Open(true);
  auto waited = Wait(id_, 60'000);
  EXPECT_EQ(waited.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  Decide(false);
  auto a = waited.get();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->state(), v1::APPROVAL_STATE_DENIED);
  EXPECT_EQ(hub_->waiting(), 0u);
  // Decided already: answered at once.
  EXPECT_EQ(Wait(id_, 60'000).get()->state(), v1::APPROVAL_STATE_DENIED);
}

TEST_F(ApprovalHubTest, AMissedEventIsCaughtByPolling) {
  ApprovalHubOptions options;
  options.poll_ms = 20;
  Open(/*wire_events=*/false, options);
  auto waited = Wait(id_, 60'000);
  Decide(true);
  auto a = waited.get();
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->state(), v1::APPROVAL_STATE_APPROVED);
}

TEST_F(ApprovalHubTest, AWaitEndsAtItsDeadlineStillPending) {
  Open(true);
  const int64_t start = Now();
  auto a = Wait(id_, 100).get();
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->state(), v1::APPROVAL_STATE_PENDING);
  EXPECT_GE(Now() - start, 100);
}

TEST_F(ApprovalHubTest, CancelUnknownBoundsAndStop) {
  ApprovalHubOptions options;
  options.max_waiters = 2;
  Open(true, options);
  uint64_t handle = 0;
  auto cancelled = Wait(id_, 60'000, &handle);
  ASSERT_NE(handle, 0u);
  auto second = Wait(id_, 60'000);
  auto third = Wait(id_, 60'000);
  EXPECT_EQ(third.get().status().code(), absl::StatusCode::kResourceExhausted);
  hub_->Cancel(handle);
  EXPECT_EQ(cancelled.get().status().code(), absl::StatusCode::kCancelled);
  hub_->Cancel(handle);  // Twice: nothing.
  EXPECT_EQ(Wait("apr_0123456789abcdef0123456789abcdef", 60'000).get().status().code(),
            absl::StatusCode::kNotFound);
  hub_->Stop();
  EXPECT_EQ(second.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Wait(id_, 60'000).get().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ApprovalHubTest, WatchersSeeEventsUntilTheyLeave) {
  Open(true);
  std::vector<v1::ApprovalEventKind> seen;
  const uint64_t w = hub_->Watch([&seen](v1::ApprovalEventKind k, const v1::Approval&) { seen.push_back(k); });
  ASSERT_NE(w, 0u);
  Decide(true);
  hub_->Unwatch(w);
  store_->Redeem(id_, {"g", "t", "", "", "d"}, "x", false, [](absl::StatusOr<RedeemResult>) {});
  EXPECT_THAT(seen, ::testing::ElementsAre(v1::APPROVAL_EVENT_APPROVED));
}

}  // namespace
}  // namespace toolgate
