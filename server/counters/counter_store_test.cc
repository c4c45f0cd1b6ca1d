// One suite of counter-store tests, run against both stores: the in-process
// store (with a manual clock) and the Redis store (against a real
// redis-server started for the suite). Redis-only behaviour is tested in
// redis_store_test.cc.
#include <future>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/counter_testing.h"
#include "server/counters/memory_store.h"
#include "server/counters/redis_store.h"
#include "tests/support/redis_process.h"

namespace toolgate {

extern const char kRedisScript[];  // server/counters/redis_script.lua

namespace {

using counters_testing::AcquireSync;
using counters_testing::kHour;
using counters_testing::kMinute;
using counters_testing::MakeCheck;
using toolgate_test::RedisProcess;

enum class Backend { kMemory, kRedis };

// One redis-server for the parameterized suite (each test uses its own key
// prefix); stopped when the test program exits.
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

class CounterStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    prefix_ = absl::StrCat("t", NextId(), ":");
    if (GetParam() == Backend::kMemory) {
      store_ = std::make_unique<MemoryCounterStore>(&clock_);
    } else {
      RedisProcess* redis = SharedRedis();
      ASSERT_NE(redis, nullptr);
      RedisStoreOptions options;
      options.url = *ParseRedisUrl(redis->url());
      // The deadline is not under test here: 2 s is 10x more than a call
      // needs even in a sanitizer build on a busy machine.
      options.timeout_ms = 2000;
      options.key_prefix = prefix_;
      store_ = std::make_unique<RedisCounterStore>(options);
    }
  }

  absl::StatusOr<AcquireResult> Acquire(std::vector<LimitCheck> checks, bool dry_run = false) {
    return AcquireSync(*store_, std::move(checks), dry_run);
  }

  ManualClock clock_;
  std::string prefix_;
  std::unique_ptr<CounterStore> store_;
};

TEST_P(CounterStoreTest, EachAlgorithmAdmitsUpToMaxThenRefuses) {
  for (Algorithm alg :
       {Algorithm::kSlidingWindow, Algorithm::kFixedWindow, Algorithm::kTokenBucket}) {
    SCOPED_TRACE(AlgorithmName(alg));
    // An hour-long window: a fixed window boundary is unlikely to pass mid-test.
    const LimitCheck check =
        MakeCheck(absl::StrCat("seq-", AlgorithmName(alg), "|*"), alg, kHour, 3);
    for (int64_t expected_remaining : {2, 1, 0}) {
      auto r = Acquire({check});
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_TRUE(r->admitted);
      ASSERT_EQ(r->outcomes.size(), 1u);
      EXPECT_TRUE(r->outcomes[0].has_room);
      EXPECT_EQ(r->outcomes[0].remaining, expected_remaining);
      EXPECT_GT(r->outcomes[0].reset_after_ms, 0);
      EXPECT_LE(r->outcomes[0].reset_after_ms, kHour);
    }
    auto r = Acquire({check});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->admitted);
    EXPECT_FALSE(r->outcomes[0].has_room);
    EXPECT_EQ(r->outcomes[0].remaining, 0);
    EXPECT_GT(r->outcomes[0].retry_after_ms, 0);
    EXPECT_LE(r->outcomes[0].retry_after_ms, kHour);
  }
}

TEST_P(CounterStoreTest, AllOrNothingAcrossLimits) {
  const LimitCheck tight = MakeCheck("tight|*", Algorithm::kSlidingWindow, kMinute, 1);
  const LimitCheck loose = MakeCheck("loose|*", Algorithm::kFixedWindow, kHour, 5);
  auto first = Acquire({tight, loose});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->admitted);
  EXPECT_EQ(first->outcomes[1].remaining, 4);
  for (int i = 0; i < 3; ++i) {
    auto refused = Acquire({tight, loose});
    ASSERT_TRUE(refused.ok()) << refused.status();
    EXPECT_FALSE(refused->admitted);
    EXPECT_FALSE(refused->outcomes[0].has_room);
    EXPECT_TRUE(refused->outcomes[1].has_room);
    // (A store may answer from its over-limit cache without consulting the
    // other limit; then it says so.)
    if (refused->outcomes[1].known) {
      EXPECT_EQ(refused->outcomes[1].remaining, 4) << "a refused call consumed the other limit";
    }
  }
  // The loose limit alone still has exactly 4 units.
  for (int i = 0; i < 4; ++i) {
    auto r = Acquire({loose});
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->admitted) << "call " << i;
  }
  auto r = Acquire({loose});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->admitted);
}

// A refused call still reports when each limit that had room resets.
TEST_P(CounterStoreTest, RefusedCallReportsResetOfLimitsWithRoom) {
  const LimitCheck log = MakeCheck("log|*", Algorithm::kSlidingWindow, kMinute, 5);
  const LimitCheck full = MakeCheck("full|*", Algorithm::kFixedWindow, kHour, 1);
  ASSERT_TRUE(Acquire({log, full})->admitted);
  auto refused = Acquire({log, full});
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->admitted);
  ASSERT_TRUE(refused->outcomes[0].known);
  EXPECT_TRUE(refused->outcomes[0].has_room);
  EXPECT_EQ(refused->outcomes[0].remaining, 4);
  EXPECT_GT(refused->outcomes[0].reset_after_ms, 0);
  EXPECT_LE(refused->outcomes[0].reset_after_ms, kMinute);
  EXPECT_FALSE(refused->outcomes[1].has_room);
  EXPECT_GT(refused->outcomes[1].retry_after_ms, 0);
}

TEST_P(CounterStoreTest, DryRunDecidesButConsumesNothing) {
  const LimitCheck check = MakeCheck("dry|g|a", Algorithm::kSlidingWindow, kMinute, 2);
  for (int i = 0; i < 5; ++i) {
    auto r = Acquire({check}, /*dry_run=*/true);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->admitted);
    EXPECT_EQ(r->outcomes[0].remaining, 1);  // What a real call would leave.
  }
  ASSERT_TRUE(Acquire({check})->admitted);
  ASSERT_TRUE(Acquire({check})->admitted);
  auto dry = Acquire({check}, /*dry_run=*/true);
  ASSERT_TRUE(dry.ok());
  EXPECT_FALSE(dry->admitted);
  EXPECT_GT(dry->outcomes[0].retry_after_ms, 0);
}

TEST_P(CounterStoreTest, ScopesKeepSeparateCounts) {
  // Keys as server/engine/counter_key.h builds them for each scope.
  enum Scope { kGrant, kSession, kGlobal };
  auto check = [&](Scope scope, const std::string& grant, const std::string& session) {
    std::string key = "scoped|*";
    if (scope == kGrant) key = "scoped|g|" + grant;
    if (scope == kSession) {
      key = "scoped|s|" + std::to_string(grant.size()) + ":" + grant + "|" + session;
    }
    return MakeCheck(key, Algorithm::kSlidingWindow, kMinute, 1);
  };
  // grant: one per grant.
  EXPECT_TRUE(Acquire({check(kGrant, "alice", "")})->admitted);
  EXPECT_FALSE(Acquire({check(kGrant, "alice", "")})->admitted);
  EXPECT_TRUE(Acquire({check(kGrant, "bob", "")})->admitted);
  // session: one per (grant, session).
  EXPECT_TRUE(Acquire({check(kSession, "alice", "s1")})->admitted);
  EXPECT_FALSE(Acquire({check(kSession, "alice", "s1")})->admitted);
  EXPECT_TRUE(Acquire({check(kSession, "alice", "s2")})->admitted);
  EXPECT_TRUE(Acquire({check(kSession, "bob", "s1")})->admitted);
  // global: one for everybody.
  EXPECT_TRUE(Acquire({check(kGlobal, "", "")})->admitted);
  EXPECT_FALSE(Acquire({check(kGlobal, "", "")})->admitted);
}

TEST_P(CounterStoreTest, ChecksNamingOneKeyShareItsCount) {
  // Two tools' limits naming the same counter resolve to the same key.
  const std::string key = "web|g|alice";
  const LimitCheck from_search = MakeCheck(key, Algorithm::kFixedWindow, kHour, 3);
  const LimitCheck from_fetch = MakeCheck(key, Algorithm::kFixedWindow, kHour, 3);
  EXPECT_TRUE(Acquire({from_search})->admitted);
  EXPECT_TRUE(Acquire({from_fetch})->admitted);
  auto third = Acquire({from_search});
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->admitted);
  EXPECT_EQ(third->outcomes[0].remaining, 0);
  EXPECT_FALSE(Acquire({from_fetch})->admitted);
}

TEST_P(CounterStoreTest, TokenBucketBurstThenRefillRate) {
  // 1 token per minute, bursts of 4.
  const LimitCheck check = MakeCheck("bucket|*", Algorithm::kTokenBucket, kMinute, 1, 4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Acquire({check})->admitted) << i;
  auto r = Acquire({check});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->admitted);
  // The next token arrives one minute after the bucket was full, minus the
  // (short) time this test has taken: 10 s is 10x more than a busy machine
  // needs for five calls.
  EXPECT_GT(r->outcomes[0].retry_after_ms, kMinute - 10'000);
  EXPECT_LE(r->outcomes[0].retry_after_ms, kMinute);
}

TEST_P(CounterStoreTest, MixedAlgorithmsInOneCallAreAllOrNothing) {
  const LimitCheck a = MakeCheck("mix-a|*", Algorithm::kTokenBucket, kMinute, 10, 2);
  const LimitCheck b = MakeCheck("mix-b|*", Algorithm::kSlidingWindow, kMinute, 5);
  const LimitCheck c = MakeCheck("mix-c|*", Algorithm::kFixedWindow, kHour, 5);
  EXPECT_TRUE(Acquire({a, b, c})->admitted);
  EXPECT_TRUE(Acquire({a, b, c})->admitted);
  auto refused = Acquire({a, b, c});
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->admitted);
  EXPECT_FALSE(refused->outcomes[0].has_room);
  EXPECT_EQ(refused->outcomes[1].remaining, 3);
  EXPECT_EQ(refused->outcomes[2].remaining, 3);
}

INSTANTIATE_TEST_SUITE_P(Stores, CounterStoreTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis),
                         [](const auto& info) {
                           return info.param == Backend::kMemory ? "InProcess" : "Redis";
                         });

}  // namespace
}  // namespace toolgate
