// Costs and refunds, against both stores (the in-process store with a manual
// clock, the Redis store against a real redis-server): a call takes its cost
// of every limit, all or nothing; a refund gives back what an admission took.
#include <future>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/redis/cluster.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/counter_testing.h"
#include "server/counters/memory_store.h"
#include "server/counters/redis_store.h"
#include "tests/support/redis_process.h"
#include "tests/support/redis_topology.h"

namespace toolgate {
namespace {

using counters_testing::AcquireSync;
using counters_testing::kHour;
using counters_testing::kMinute;
using counters_testing::MakeCheck;
using toolgate_test::RedisProcess;

constexpr int64_t kDay = 24 * kHour;

enum class Backend { kMemory, kRedis };

RedisProcess* SharedRedis() {
  static std::unique_ptr<RedisProcess> redis = [] {
    auto r = RedisProcess::Start();
    if (!r.ok()) {
      ADD_FAILURE() << "cannot start redis-server: " << r.status();
      return std::unique_ptr<RedisProcess>();
    }
    return *std::move(r);
  }();
  return redis.get();
}

int NextId() {
  static std::atomic<int> id{0};
  return ++id;
}

LimitCheck WithCost(LimitCheck c, int64_t cost) {
  c.cost = cost;
  return c;
}

absl::Status RefundSync(CounterStore& store, std::vector<LimitCheck> checks, int64_t at) {
  std::promise<absl::Status> promise;
  auto future = promise.get_future();
  store.Refund(std::move(checks), at, [&promise](absl::Status s) { promise.set_value(s); });
  return future.get();
}

class CounterCostTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    clock_.Set(1'764'000'000'000);  // Any time; the middle of a day is not needed.
    if (GetParam() == Backend::kMemory) {
      store_ = std::make_unique<MemoryCounterStore>(&clock_);
    } else {
      RedisProcess* redis = SharedRedis();
      ASSERT_NE(redis, nullptr);
      RedisStoreOptions options;
      options.url = *ParseRedisUrl(redis->url());
      options.timeout_ms = 2000;  // Not under test: ample on a busy machine.
      options.key_prefix = absl::StrCat("c", NextId(), ":");
      store_ = std::make_unique<RedisCounterStore>(options);
    }
  }

  absl::StatusOr<AcquireResult> Take(const LimitCheck& check, int64_t cost, bool dry_run = false) {
    return AcquireSync(*store_, {WithCost(check, cost)}, dry_run);
  }

  // The limits a spend cap of 10000 can be written with: a sliding window
  // kept as an exact log (max <= 1024 in Redis: here 1000 units, costs
  // scaled), as buckets (Redis, max above 1024), a fixed window, a bucket.
  struct Case {
    std::string name;
    LimitCheck check;
    int64_t scale;  // Costs are given for a cap of 10000; divided by this.
  };
  std::vector<Case> Cases(const std::string& tag) {
    return {
        {"sliding_log", MakeCheck(tag + "log|*", Algorithm::kSlidingWindow, kDay, 1000), 10},
        {"sliding_buckets", MakeCheck(tag + "big|*", Algorithm::kSlidingWindow, kDay, 10000), 1},
        // An hour: a fixed window's end is unlikely to pass mid-test.
        {"fixed", MakeCheck(tag + "fixed|*", Algorithm::kFixedWindow, kHour, 10000), 1},
        {"token_bucket", MakeCheck(tag + "bucket|*", Algorithm::kTokenBucket, kDay, 10000), 1},
    };
  }

  ManualClock clock_;
  std::unique_ptr<CounterStore> store_;
};

TEST_P(CounterCostTest, CostsAddUpToMaxAndRemainingIsInUnits) {
  for (const Case& c : Cases("spend-")) {
    SCOPED_TRACE(c.name);
    const int64_t s = c.scale;
    auto r = Take(c.check, 4000 / s);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
    EXPECT_EQ(r->outcomes[0].remaining, 6000 / s);
    EXPECT_GT(r->outcomes[0].consumed_at_ms, 0);
    r = Take(c.check, 5000 / s);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
    EXPECT_EQ(r->outcomes[0].remaining, 1000 / s);
    r = Take(c.check, 2000 / s);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->admitted) << "2000 does not fit in the 1000 left";
    EXPECT_FALSE(r->outcomes[0].has_room);
    EXPECT_EQ(r->outcomes[0].remaining, 1000 / s);
    EXPECT_GT(r->outcomes[0].retry_after_ms, 0);
    EXPECT_LE(r->outcomes[0].retry_after_ms, kDay + kDay / 64 + 1);
    EXPECT_EQ(r->outcomes[0].consumed_at_ms, 0);
    r = Take(c.check, 1000 / s);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted) << "exactly the 1000 left";
    EXPECT_EQ(r->outcomes[0].remaining, 0);
    r = Take(c.check, 1);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->admitted);
    // A cost of 0 is always admitted, even by a full limit, and takes nothing.
    r = Take(c.check, 0);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
    EXPECT_TRUE(r->outcomes[0].has_room);
    EXPECT_EQ(r->outcomes[0].remaining, 0);
  }
}

TEST_P(CounterCostTest, ARefusedCostConsumesNothingOfTheOtherLimits) {
  const LimitCheck budget = MakeCheck("budget|*", Algorithm::kSlidingWindow, kHour, 100);
  const LimitCheck calls = MakeCheck("calls|*", Algorithm::kFixedWindow, kHour, 10);
  auto r = AcquireSync(*store_, {WithCost(budget, 90), calls});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
  r = AcquireSync(*store_, {WithCost(budget, 20), calls});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->admitted);
  EXPECT_EQ(r->outcomes[1].remaining, 9) << "the refused call took no call unit";
  r = AcquireSync(*store_, {WithCost(budget, 10), calls});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
  EXPECT_EQ(r->outcomes[0].remaining, 0);
  EXPECT_EQ(r->outcomes[1].remaining, 8);
}

TEST_P(CounterCostTest, DryRunsTakeNothingAndRecordNoTime) {
  const LimitCheck cap = MakeCheck("dry|*", Algorithm::kSlidingWindow, kHour, 10);
  auto r = Take(cap, 7, /*dry_run=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
  EXPECT_EQ(r->outcomes[0].remaining, 3);
  EXPECT_EQ(r->outcomes[0].consumed_at_ms, 0);
  r = Take(cap, 10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
}

TEST_P(CounterCostTest, ARefundGivesBackWhatTheAdmissionTook) {
  for (const Case& c : Cases("refund-")) {
    SCOPED_TRACE(c.name);
    const int64_t max = 10000 / c.scale;
    auto first = Take(c.check, 3 * max / 10);
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_TRUE(first->admitted);
    auto second = Take(c.check, 7 * max / 10);
    ASSERT_TRUE(second.ok()) << second.status();
    ASSERT_TRUE(second->admitted);
    const int64_t at = second->outcomes[0].consumed_at_ms;
    ASSERT_GT(at, 0);
    auto full = Take(c.check, 1);
    ASSERT_TRUE(full.ok()) << full.status();
    ASSERT_FALSE(full->admitted);

    // Part of it back (a cost corrected down), then the rest.
    ASSERT_TRUE(RefundSync(*store_, {WithCost(c.check, 2 * max / 10)}, at).ok());
    auto r = Take(c.check, 0, /*dry_run=*/true);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcomes[0].remaining, 2 * max / 10);
    ASSERT_TRUE(RefundSync(*store_, {WithCost(c.check, 5 * max / 10)}, at).ok());
    r = Take(c.check, 0, /*dry_run=*/true);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcomes[0].remaining, 7 * max / 10);
    // The call that needed those units now fits, and exactly them.
    r = Take(c.check, 7 * max / 10);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
    EXPECT_EQ(r->outcomes[0].remaining, 0);
  }
}

TEST_P(CounterCostTest, ARefundNeverGivesMoreThanWasTaken) {
  for (const Case& c : Cases("over-")) {
    SCOPED_TRACE(c.name);
    const int64_t max = 10000 / c.scale;
    auto r = Take(c.check, max / 10);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->admitted);
    ASSERT_TRUE(RefundSync(*store_, {WithCost(c.check, max)}, r->outcomes[0].consumed_at_ms).ok());
    r = Take(c.check, 0, /*dry_run=*/true);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcomes[0].remaining, max) << "back to full, not beyond";
    r = Take(c.check, max);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
    r = Take(c.check, 1);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->admitted);
  }
}

TEST_P(CounterCostTest, ARefundOfACounterThatDoesNotExistCreatesNothing) {
  const LimitCheck none = MakeCheck("never|*", Algorithm::kFixedWindow, kHour, 5);
  ASSERT_TRUE(RefundSync(*store_, {WithCost(none, 3)}, 1'764'000'000'000).ok());
  auto r = Take(none, 0, /*dry_run=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcomes[0].remaining, 5);
  if (GetParam() == Backend::kMemory) {
    EXPECT_EQ(static_cast<MemoryCounterStore&>(*store_).KeyCount(), 0u);
  }
}

TEST_P(CounterCostTest, ACheaperCallIsAdmittedAfterAnExpensiveOneWasRefused) {
  // (The Redis store's over-limit cache remembers the refused cost, not
  // "full".)
  const LimitCheck cap = MakeCheck("cheap|*", Algorithm::kSlidingWindow, kHour, 10);
  auto r = Take(cap, 6);
  ASSERT_TRUE(r.ok() && r->admitted);
  for (int i = 0; i < 3; ++i) {
    r = Take(cap, 5);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->admitted);
    EXPECT_EQ(r->outcomes[0].remaining, 4);
  }
  r = Take(cap, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
}

INSTANTIATE_TEST_SUITE_P(Stores, CounterCostTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis),
                         [](const auto& info) {
                           return info.param == Backend::kMemory ? "InProcess" : "Redis";
                         });

// In process, where time can be moved: when room comes back, and what a
// refund after the window moved on cannot undo.
class MemoryCostTest : public ::testing::Test {
 protected:
  void SetUp() override { clock_.Set(1'764'000'000'000); }
  ManualClock clock_;
  MemoryCounterStore store_{&clock_};
};

TEST_F(MemoryCostTest, RetryAfterIsWhenEnoughUnitsForThisCostHaveLeft) {
  const LimitCheck cap = MakeCheck("retry|*", Algorithm::kSlidingWindow, kMinute, 10);
  const int64_t t0 = clock_.NowMillis();
  ASSERT_TRUE(store_.AcquireNow({WithCost(cap, 4)}, false).admitted);
  clock_.Advance(10'000);
  ASSERT_TRUE(store_.AcquireNow({WithCost(cap, 4)}, false).admitted);
  clock_.Advance(10'000);
  ASSERT_TRUE(store_.AcquireNow({WithCost(cap, 2)}, false).admitted);
  // Full. A cost of 3 fits once the first 4 have left (t0 + 1 min); a cost
  // of 5 once the second 4 have too (t0 + 10 s + 1 min); 10 once all have.
  const int64_t now = clock_.NowMillis();
  AcquireResult r = store_.AcquireNow({WithCost(cap, 3)}, false);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.outcomes[0].retry_after_ms, t0 + kMinute - now);
  r = store_.AcquireNow({WithCost(cap, 5)}, false);
  EXPECT_EQ(r.outcomes[0].retry_after_ms, t0 + 10'000 + kMinute - now);
  r = store_.AcquireNow({WithCost(cap, 10)}, false);
  EXPECT_EQ(r.outcomes[0].retry_after_ms, t0 + 20'000 + kMinute - now);
  clock_.Advance(t0 + 10'000 + kMinute - now);
  EXPECT_TRUE(store_.AcquireNow({WithCost(cap, 5)}, false).admitted);
}

TEST_F(MemoryCostTest, RetryAfterOfATokenBucketCountsThisCallsTokens) {
  // 60 tokens a minute: one a second; burst 10.
  const LimitCheck b = MakeCheck("tb|*", Algorithm::kTokenBucket, kMinute, 60, 10);
  ASSERT_TRUE(store_.AcquireNow({WithCost(b, 10)}, false).admitted);
  AcquireResult r = store_.AcquireNow({WithCost(b, 4)}, false);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.outcomes[0].retry_after_ms, 4000);
  clock_.Advance(4000);
  EXPECT_TRUE(store_.AcquireNow({WithCost(b, 4)}, false).admitted);
}

TEST_F(MemoryCostTest, ARefundAfterTheWindowMovedOnGivesNothingBack) {
  const LimitCheck cap = MakeCheck("late|*", Algorithm::kSlidingWindow, kMinute, 10);
  AcquireResult first = store_.AcquireNow({WithCost(cap, 6)}, false);
  ASSERT_TRUE(first.admitted);
  clock_.Advance(30'000);
  ASSERT_TRUE(store_.AcquireNow({WithCost(cap, 4)}, false).admitted);
  clock_.Advance(31'000);  // The first admission has left the window.
  store_.RefundNow({WithCost(cap, 6)}, first.outcomes[0].consumed_at_ms);
  AcquireResult r = store_.AcquireNow({WithCost(cap, 0)}, true);
  EXPECT_EQ(r.outcomes[0].remaining, 6) << "only the second admission's 4 count; nothing more";

  // A fixed window that rolled over: its new count is not touched.
  const LimitCheck fixed = MakeCheck("late-fixed|*", Algorithm::kFixedWindow, kMinute, 10);
  clock_.Set((clock_.NowMillis() / kMinute + 1) * kMinute + 1000);
  AcquireResult old = store_.AcquireNow({WithCost(fixed, 5)}, false);
  clock_.Advance(kMinute);
  ASSERT_TRUE(store_.AcquireNow({WithCost(fixed, 8)}, false).admitted);
  store_.RefundNow({WithCost(fixed, 5)}, old.outcomes[0].consumed_at_ms);
  r = store_.AcquireNow({WithCost(fixed, 0)}, true);
  EXPECT_EQ(r.outcomes[0].remaining, 2);
}

TEST_F(MemoryCostTest, ARefundInTheMiddleOfTheLogKeepsLaterRetryTimesExact) {
  const LimitCheck cap = MakeCheck("mid|*", Algorithm::kSlidingWindow, kMinute, 10);
  const int64_t t0 = clock_.NowMillis();
  ASSERT_TRUE(store_.AcquireNow({WithCost(cap, 3)}, false).admitted);
  clock_.Advance(10'000);
  AcquireResult mid = store_.AcquireNow({WithCost(cap, 5)}, false);
  ASSERT_TRUE(mid.admitted);
  clock_.Advance(10'000);
  ASSERT_TRUE(store_.AcquireNow({WithCost(cap, 2)}, false).admitted);
  store_.RefundNow({WithCost(cap, 5)}, mid.outcomes[0].consumed_at_ms);
  // 5 used: 3 at t0, 2 at t0 + 20 s. A cost of 8 needs 3 to leave: the
  // first entry, at t0 + 1 min.
  const int64_t now = clock_.NowMillis();
  AcquireResult r = store_.AcquireNow({WithCost(cap, 8)}, false);
  EXPECT_FALSE(r.admitted);
  EXPECT_EQ(r.outcomes[0].remaining, 5);
  EXPECT_EQ(r.outcomes[0].retry_after_ms, t0 + kMinute - now);
  EXPECT_TRUE(store_.AcquireNow({WithCost(cap, 5)}, false).admitted);
}

// A Redis Cluster: a call whose limits sit in different slots takes its cost
// in each slot (each script run records its own Redis time), and a refund
// grouped by those times gives every slot its units back.
TEST(RedisClusterCostTest, CostsAndRefundsAcrossSlots) {
  auto cluster = toolgate_test::RedisClusterSet::Start(3, 0);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  RedisStoreOptions options;
  options.url = *ParseRedisUrl((*cluster)->url());
  options.timeout_ms = 2000;
  RedisCounterStore store(options);
  // Counter keys whose hash tags land in different slots.
  const LimitCheck a = WithCost(MakeCheck("alpha|*", Algorithm::kSlidingWindow, kHour, 10), 6);
  const LimitCheck b = WithCost(MakeCheck("omega|*", Algorithm::kFixedWindow, kHour, 10), 6);
  ASSERT_NE(KeySlot(store.RedisKey(a)), KeySlot(store.RedisKey(b)));
  absl::StatusOr<AcquireResult> r;
  // The store follows MOVED from whichever seed it starts with.
  for (int i = 0; i < 100; ++i) {
    r = AcquireSync(store, {a, b});
    if (r.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->admitted);
  auto refused = AcquireSync(store, {a, b});
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->admitted);
  // Give back, grouped by each limit's recorded time.
  std::map<int64_t, std::vector<LimitCheck>> by_time;
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_GT(r->outcomes[i].consumed_at_ms, 0);
    by_time[r->outcomes[i].consumed_at_ms].push_back(i == 0 ? a : b);
  }
  for (auto& [at, checks] : by_time) ASSERT_TRUE(RefundSync(store, checks, at).ok());
  auto again = AcquireSync(store, {a, b});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->admitted) << "both slots had their 6 units back";
  EXPECT_EQ(again->outcomes[0].remaining, 4);
  EXPECT_EQ(again->outcomes[1].remaining, 4);
}

}  // namespace
}  // namespace toolgate
