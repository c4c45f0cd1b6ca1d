// One suite over both approval stores: in process, and Redis (a real
// redis-server). Expiry is real time (short TTLs), waited for by polling.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/approvals/memory_approvals.h"
#include "server/approvals/redis_approvals.h"
#include "server/base/clock.h"
#include "tests/support/redis_process.h"
#include "tests/support/redis_topology.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

template <typename T, typename Fn>
absl::StatusOr<T> Sync(Fn&& fn) {
  std::promise<absl::StatusOr<T>> promise;
  auto future = promise.get_future();
  fn([&promise](absl::StatusOr<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}

// Polls `cond` every 10 ms for up to `seconds`.
template <typename Fn>
bool PollFor(Fn cond, int seconds = 20) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

// Events seen, thread-safe.
struct EventLog {
  absl::Mutex mu;
  std::vector<std::pair<v1::ApprovalEventKind, std::string>> events ABSL_GUARDED_BY(mu);
  ApprovalEventFn Fn() {
    return [this](v1::ApprovalEventKind k, const v1::Approval& a) {
      absl::MutexLock lock(&mu);
      events.emplace_back(k, a.id());
    };
  }
  int Count(v1::ApprovalEventKind k, const std::string& id) {
    absl::MutexLock lock(&mu);
    int n = 0;
    for (const auto& e : events) n += e.first == k && e.second == id;
    return n;
  }
};

ApprovalBinding Binding(std::string grant = "agent-1", std::string args = "{\"a\":1}") {
  return ApprovalBinding{std::move(grant), "run_command", "shell", "s-1", args};
}

NewApproval Make(ApprovalBinding b, int64_t ttl_ms = 60'000) {
  NewApproval n;
  n.args_json = b.args_digest;  // Any text: the store keeps it as it is.
  n.binding = std::move(b);
  n.rule = "tools.run_command";
  n.reason = "needs a human";
  n.policy_version = "rev-1";
  n.request_id = "req-1";
  n.ttl_ms = ttl_ms;
  return n;
}

using toolgate_test::RedisProcess;

class ApprovalStoreTest : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
    if (GetParam() == "redis") {
      auto redis = RedisProcess::Start();
      ASSERT_TRUE(redis.ok()) << redis.status();
      redis_ = *std::move(redis);
    }
  }

  std::unique_ptr<ApprovalStore> Open(ApprovalLimits limits = {}, EventLog* local = nullptr,
                                      EventLog* fleet = nullptr, int64_t sweep_ms = 50) {
    ApprovalEvents events;
    if (local != nullptr) events.local = local->Fn();
    if (fleet != nullptr) events.fleet = fleet->Fn();
    if (GetParam() == "memory") {
      return std::make_unique<MemoryApprovalStore>(SystemClock::Get(), limits, std::move(events),
                                                   sweep_ms);
    }
    RedisApprovalOptions o;
    o.url = *ParseRedisUrl(redis_->url());
    o.limits = limits;
    o.events = std::move(events);
    o.sweep_ms = sweep_ms;
    auto store = std::make_unique<RedisApprovalStore>(std::move(o));
    if (fleet != nullptr) {
      RedisApprovalStore* r = store.get();
      EXPECT_TRUE(PollFor([r] { return r->subscribed(); }));
    }
    return store;
  }

  static absl::StatusOr<CreatedApproval> Create(ApprovalStore& s, NewApproval n) {
    return Sync<CreatedApproval>([&](auto cb) { s.Create(std::move(n), std::move(cb)); });
  }
  static absl::StatusOr<RedeemResult> Redeem(ApprovalStore& s, const std::string& id,
                                             ApprovalBinding b, bool dry_run = false,
                                             std::string decision = "d-1") {
    return Sync<RedeemResult>(
        [&](auto cb) { s.Redeem(id, std::move(b), decision, dry_run, std::move(cb)); });
  }
  static absl::StatusOr<v1::Approval> Decide(ApprovalStore& s, const std::string& id, bool approve,
                                             std::string note = "") {
    return Sync<v1::Approval>([&](auto cb) { s.Decide(id, approve, "alice", note, std::move(cb)); });
  }
  static absl::StatusOr<v1::Approval> Get(ApprovalStore& s, const std::string& id) {
    return Sync<v1::Approval>([&](auto cb) { s.Get(id, std::move(cb)); });
  }
  static absl::StatusOr<std::vector<v1::Approval>> List(ApprovalStore& s, ApprovalFilter f) {
    return Sync<std::vector<v1::Approval>>([&](auto cb) { s.List(f, std::move(cb)); });
  }

  std::unique_ptr<RedisProcess> redis_;
};

TEST_P(ApprovalStoreTest, TheSameCallWhilePendingGetsTheSameApproval) {
  auto store = Open();
  auto a = Create(*store, Make(Binding()));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->created);
  EXPECT_TRUE(IsApprovalId(a->approval.id())) << a->approval.id();
  EXPECT_EQ(a->approval.state(), v1::APPROVAL_STATE_PENDING);
  EXPECT_EQ(a->approval.grant(), "agent-1");
  EXPECT_EQ(a->approval.rule(), "tools.run_command");
  EXPECT_EQ(a->approval.request_id(), "req-1");
  EXPECT_GT(a->approval.expires_at().seconds(), a->approval.created_at().seconds() + 50);
  auto again = Create(*store, Make(Binding()));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->approval.id(), a->approval.id());
  auto other = Create(*store, Make(Binding("agent-1", "{\"a\":2}")));
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->created);
  EXPECT_NE(other->approval.id(), a->approval.id());
}

TEST_P(ApprovalStoreTest, AnApprovalAdmitsItsOwnCallOnce) {
  auto store = Open();
  const std::string id = Create(*store, Make(Binding()))->approval.id();
  auto pending = Redeem(*store, id, Binding());
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->outcome, RedeemOutcome::kPending);
  auto approved = Decide(*store, id, true, "looks fine");
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::APPROVAL_STATE_APPROVED);
  EXPECT_EQ(approved->decided_by(), "alice");
  EXPECT_EQ(approved->note(), "looks fine");

  // Every binding is checked, before the state.
  struct Case {
    ApprovalBinding b;
    std::string field;
  } cases[] = {{Binding("agent-2"), "grant"},
               {{"agent-1", "other_tool", "shell", "s-1", "{\"a\":1}"}, "tool"},
               {{"agent-1", "run_command", "other", "s-1", "{\"a\":1}"}, "server"},
               {{"agent-1", "run_command", "shell", "s-2", "{\"a\":1}"}, "session"},
               {Binding("agent-1", "{\"a\":3}"), "arguments"}};
  for (const Case& c : cases) {
    auto r = Redeem(*store, id, c.b);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->outcome, RedeemOutcome::kMismatch) << c.field;
    EXPECT_EQ(r->field, c.field);
    EXPECT_THAT(DescribeRedeemFailure(*r, id), HasSubstr("different " + c.field));
  }
  // A dry run consumes nothing.
  ASSERT_EQ(Redeem(*store, id, Binding(), /*dry_run=*/true)->outcome, RedeemOutcome::kRedeemed);
  auto used = Redeem(*store, id, Binding(), false, "decision-7");
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(used->outcome, RedeemOutcome::kRedeemed);
  EXPECT_EQ(used->approval.state(), v1::APPROVAL_STATE_USED);
  EXPECT_EQ(used->approval.used_by_decision(), "decision-7");
  auto twice = Redeem(*store, id, Binding());
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->outcome, RedeemOutcome::kUsed);
  EXPECT_THAT(DescribeRedeemFailure(*twice, id), HasSubstr("already used"));
  // Used: the same call asks for a new approval.
  auto fresh = Create(*store, Make(Binding()));
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->created);
  EXPECT_NE(fresh->approval.id(), id);
}

TEST_P(ApprovalStoreTest, AReleasedRedemptionCanBeUsedAgain) {
  auto store = Open();
  const std::string id = Create(*store, Make(Binding()))->approval.id();
  ASSERT_TRUE(Decide(*store, id, true).ok());
  ASSERT_EQ(Redeem(*store, id, Binding(), false, "d-1")->outcome, RedeemOutcome::kRedeemed);
  auto release = [&](const std::string& decision) {
    return Sync<bool>([&](auto cb) { store->Release(id, decision, std::move(cb)); });
  };
  // Not the decision that used it: nothing changes.
  EXPECT_FALSE(*release("d-other"));
  EXPECT_EQ(Get(*store, id)->state(), v1::APPROVAL_STATE_USED);
  EXPECT_TRUE(*release("d-1"));
  // Recorded once answered.
  EXPECT_EQ(Get(*store, id)->state(), v1::APPROVAL_STATE_APPROVED);
  EXPECT_EQ(Redeem(*store, id, Binding(), false, "d-2")->outcome, RedeemOutcome::kRedeemed);
  EXPECT_EQ(Redeem(*store, id, Binding(), false, "d-3")->outcome, RedeemOutcome::kUsed);
}

TEST_P(ApprovalStoreTest, ADeniedApprovalSaysWhoDeniedIt) {
  auto store = Open();
  const std::string id = Create(*store, Make(Binding()))->approval.id();
  ASSERT_TRUE(Decide(*store, id, false, "not on prod").ok());
  auto r = Redeem(*store, id, Binding());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, RedeemOutcome::kDenied);
  EXPECT_THAT(DescribeRedeemFailure(*r, id), HasSubstr("denied by alice: not on prod"));
  auto again = Decide(*store, id, true);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("is denied (decided by alice)"));
  EXPECT_EQ(Decide(*store, "apr_00000000000000000000000000000000", true).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Get(*store, "apr_00000000000000000000000000000000").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Redeem(*store, "apr_00000000000000000000000000000000", Binding())->outcome,
            RedeemOutcome::kNotFound);
}

TEST_P(ApprovalStoreTest, ApprovalsExpireAndTheSweepRecordsItOnce) {
  EventLog local, fleet;
  auto store = Open({}, &local, &fleet);
  const std::string pending = Create(*store, Make(Binding(), 300))->approval.id();
  const std::string approved = Create(*store, Make(Binding("agent-2"), 300))->approval.id();
  ASSERT_TRUE(Decide(*store, approved, true).ok());
  ASSERT_TRUE(PollFor([&] { return Get(*store, pending)->state() == v1::APPROVAL_STATE_EXPIRED; }));
  ASSERT_TRUE(PollFor([&] { return Get(*store, approved)->state() == v1::APPROVAL_STATE_EXPIRED; }));
  EXPECT_EQ(Redeem(*store, approved, Binding("agent-2"))->outcome, RedeemOutcome::kExpired);
  EXPECT_EQ(Decide(*store, pending, true).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(PollFor([&] { return local.Count(v1::APPROVAL_EVENT_EXPIRED, pending) == 1; }));
  ASSERT_TRUE(PollFor([&] { return fleet.Count(v1::APPROVAL_EVENT_EXPIRED, approved) == 1; }));
  EXPECT_EQ(local.Count(v1::APPROVAL_EVENT_CREATED, pending), 1);
  EXPECT_EQ(local.Count(v1::APPROVAL_EVENT_APPROVED, approved), 1);
  // Expired: the same call gets a new approval.
  auto fresh = Create(*store, Make(Binding(), 300));
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->created);
}

TEST_P(ApprovalStoreTest, OpenApprovalsAreBoundedInAllAndPerGrant) {
  ApprovalLimits limits;
  limits.max_open = 4;
  limits.max_open_per_grant = 2;
  auto store = Open(limits);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Create(*store, Make(Binding("a", absl::StrCat(i)))).ok());
  }
  auto third = Create(*store, Make(Binding("a", "2")));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("--max-open-approvals-per-grant"));
  // The same call as an open one is still answered.
  EXPECT_TRUE(Create(*store, Make(Binding("a", "1"))).ok());
  // A denial closes one: room again.
  const std::string id = Create(*store, Make(Binding("a", "0")))->approval.id();
  ASSERT_TRUE(Decide(*store, id, false).ok());
  EXPECT_TRUE(Create(*store, Make(Binding("a", "2"))).ok());
  ASSERT_TRUE(Create(*store, Make(Binding("b", "0"))).ok());
  ASSERT_TRUE(Create(*store, Make(Binding("b", "1"))).ok());
  auto over = Create(*store, Make(Binding("c", "0")));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(), HasSubstr("--max-open-approvals)"));
}

TEST_P(ApprovalStoreTest, ListFiltersNewestFirst) {
  auto store = Open();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Create(*store, Make(Binding(i % 2 ? "odd" : "even", absl::StrCat(i))))
                      ->approval.id());
  }
  ASSERT_TRUE(Decide(*store, ids[4], true).ok());
  auto all = List(*store, {});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 5u);
  // Created within the same millisecond, the order may tie: only check membership.
  ApprovalFilter even;
  even.grant = "even";
  auto evens = List(*store, even);
  ASSERT_EQ(evens->size(), 3u);
  for (const v1::Approval& a : *evens) EXPECT_EQ(a.grant(), "even");
  ApprovalFilter approved;
  approved.state = v1::APPROVAL_STATE_APPROVED;
  auto only = List(*store, approved);
  ASSERT_EQ(only->size(), 1u);
  EXPECT_EQ(only->front().id(), ids[4]);
  ApprovalFilter two;
  two.limit = 2;
  EXPECT_EQ(List(*store, two)->size(), 2u);
  ApprovalFilter tool;
  tool.tool = "nothing";
  EXPECT_TRUE(List(*store, tool)->empty());
}

TEST_P(ApprovalStoreTest, EventsReachTheFleet) {
  EventLog local, fleet;
  auto store = Open({}, &local, &fleet);
  const std::string id = Create(*store, Make(Binding()))->approval.id();
  ASSERT_TRUE(Decide(*store, id, true).ok());
  ASSERT_EQ(Redeem(*store, id, Binding())->outcome, RedeemOutcome::kRedeemed);
  for (auto k : {v1::APPROVAL_EVENT_CREATED, v1::APPROVAL_EVENT_APPROVED, v1::APPROVAL_EVENT_USED}) {
    EXPECT_TRUE(PollFor([&] { return fleet.Count(k, id) == 1; })) << ApprovalEventName(k);
    EXPECT_EQ(local.Count(k, id), 1) << ApprovalEventName(k);
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, ApprovalStoreTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

// ---- Redis only ----

TEST(RedisApprovalStoreTest, TwoServersShareApprovals) {
  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  EventLog fleet_b, local_a, local_b;
  auto open = [&](EventLog* local, EventLog* fleet) {
    RedisApprovalOptions o;
    o.url = *ParseRedisUrl((*redis)->url());
    o.events.local = local->Fn();
    if (fleet != nullptr) o.events.fleet = fleet->Fn();
    return std::make_unique<RedisApprovalStore>(std::move(o));
  };
  auto a = open(&local_a, nullptr);
  auto b = open(&local_b, &fleet_b);
  ASSERT_TRUE(PollFor([&] { return b->subscribed(); }));
  auto created = ApprovalStoreTest::Create(*a, Make(Binding()));
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string id = created->approval.id();
  // B learns of A's approval, and can decide it; A redeems.
  ASSERT_TRUE(PollFor([&] { return fleet_b.Count(v1::APPROVAL_EVENT_CREATED, id) == 1; }));
  EXPECT_EQ(ApprovalStoreTest::Create(*b, Make(Binding()))->approval.id(), id);
  ASSERT_TRUE(ApprovalStoreTest::Decide(*b, id, true).ok());
  EXPECT_EQ(ApprovalStoreTest::Redeem(*a, id, Binding())->outcome, RedeemOutcome::kRedeemed);
  EXPECT_EQ(ApprovalStoreTest::Redeem(*b, id, Binding())->outcome, RedeemOutcome::kUsed);
  // Each event is local to the one server that caused it.
  EXPECT_EQ(local_a.Count(v1::APPROVAL_EVENT_CREATED, id), 1);
  EXPECT_EQ(local_b.Count(v1::APPROVAL_EVENT_CREATED, id), 0);
  EXPECT_EQ(local_b.Count(v1::APPROVAL_EVENT_APPROVED, id), 1);
  EXPECT_EQ(local_a.Count(v1::APPROVAL_EVENT_USED, id), 1);
  // Every key of the approvals carries one hash tag, and an expiry or is an index.
  auto keys = (*redis)->Keys("*");
  ASSERT_TRUE(keys.ok());
  for (const std::string& k : *keys) EXPECT_THAT(k, HasSubstr("toolgate:{approvals}:"));
}

TEST(RedisApprovalStoreTest, UnreachableRedisFailsWithinTheDeadline) {
  RedisApprovalOptions o;
  o.url = *ParseRedisUrl("redis://127.0.0.1:1");
  o.timeout_ms = 300;
  RedisApprovalStore store(std::move(o));
  const auto start = std::chrono::steady_clock::now();
  auto r = ApprovalStoreTest::Create(store, Make(Binding()));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(RedisApprovalStoreTest, ARestartedRedisIsReconnectedAndTheScriptReloaded) {
  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  RedisApprovalOptions o;
  o.url = *ParseRedisUrl((*redis)->url());
  RedisApprovalStore store(std::move(o));
  ASSERT_TRUE(ApprovalStoreTest::Create(store, Make(Binding())).ok());
  ASSERT_TRUE((*redis)->Command({"SCRIPT", "FLUSH"}).ok());
  ASSERT_TRUE((*redis)->Command({"CLIENT", "KILL", "TYPE", "normal"}).ok());
  // The first call after may see the lost connection; within a few, it works.
  EXPECT_TRUE(PollFor([&] { return ApprovalStoreTest::Create(store, Make(Binding("x"))).ok(); }));
  EXPECT_TRUE(ApprovalStoreTest::Create(store, Make(Binding("y"))).ok());
}

TEST(RedisApprovalStoreTest, AClusterKeepsApprovalsInOneSlotAndSpreadsEvents) {
  auto cluster = toolgate_test::RedisClusterSet::Start(3, 0);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EventLog fleet;
  auto open = [&](EventLog* events) {
    RedisApprovalOptions o;
    o.url = *ParseRedisUrl((*cluster)->url());
    if (events != nullptr) o.events.fleet = events->Fn();
    return std::make_unique<RedisApprovalStore>(std::move(o));
  };
  // Two stores: whichever seed they start from, MOVED takes them to the
  // approvals' slot, and events published there reach a subscriber on any node.
  auto a = open(nullptr);
  auto b = open(&fleet);
  ASSERT_TRUE(PollFor([&] { return b->subscribed(); }));
  auto created = ApprovalStoreTest::Create(*a, Make(Binding()));
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string id = created->approval.id();
  ASSERT_TRUE(ApprovalStoreTest::Decide(*b, id, true).ok());
  EXPECT_EQ(ApprovalStoreTest::Redeem(*a, id, Binding())->outcome, RedeemOutcome::kRedeemed);
  EXPECT_EQ(ApprovalStoreTest::Redeem(*b, id, Binding())->outcome, RedeemOutcome::kUsed);
  EXPECT_TRUE(PollFor([&] { return fleet.Count(v1::APPROVAL_EVENT_CREATED, id) == 1; }));
  EXPECT_TRUE(PollFor([&] { return fleet.Count(v1::APPROVAL_EVENT_USED, id) == 1; }));
}

}  // namespace
}  // namespace toolgate
