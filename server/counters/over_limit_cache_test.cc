#include "server/counters/over_limit_cache.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"

namespace toolgate {
namespace {

LimitCheck Check(const std::string& key) {
  return LimitCheck{key, Algorithm::kSlidingWindow, /*window_ms=*/60'000, /*max=*/1};
}

// What Redis answers for a call with one limit, refused for `retry_after_ms`.
AcquireResult Refused(int64_t retry_after_ms) {
  AcquireResult r;
  r.admitted = false;
  r.outcomes.resize(1);
  r.outcomes[0].has_room = false;
  r.outcomes[0].retry_after_ms = retry_after_ms;
  r.outcomes[0].reset_after_ms = retry_after_ms;
  return r;
}

// What Redis answers for an admitted call with one limit.
AcquireResult Admitted() {
  AcquireResult r;
  r.admitted = true;
  r.outcomes.resize(1);
  r.outcomes[0].has_room = true;
  r.outcomes[0].remaining = 1;
  return r;
}

class OverLimitCacheTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  OverLimitCache cache_{&clock_};  // Re-checks every 100 ms.
  // For tests of retry_after alone: re-checks once an hour.
  OverLimitCache rarely_rechecked_{&clock_, /*recheck_ms=*/3'600'000};
};

TEST_F(OverLimitCacheTest, EmptyCacheRefusesNothing) {
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
}

TEST_F(OverLimitCacheTest, RefusesUntilRetryAfterThenAsksRedisAgain) {
  OverLimitCache& cache_ = rarely_rechecked_;
  cache_.Remember({Check("a")}, Refused(500), clock_.NowMillis());
  std::optional<AcquireResult> r = cache_.Refusal({Check("a")});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->admitted);
  ASSERT_EQ(r->outcomes.size(), 1u);
  EXPECT_FALSE(r->outcomes[0].has_room);
  EXPECT_TRUE(r->outcomes[0].known);
  EXPECT_EQ(r->outcomes[0].remaining, 0);
  EXPECT_EQ(r->outcomes[0].retry_after_ms, 500);

  clock_.Advance(200);
  r = cache_.Refusal({Check("a")});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].retry_after_ms, 300) << "counts down with the clock";
  EXPECT_EQ(r->outcomes[0].reset_after_ms, 300);

  clock_.Advance(299);
  EXPECT_TRUE(cache_.Refusal({Check("a")}).has_value());
  clock_.Advance(1);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value()) << "from retry_after on, Redis decides";
}

// The reply arrives a round trip after the call was sent; Redis measured
// retry_after somewhere in between. Counting from the sending keeps the
// cache from refusing past the moment Redis would admit again.
TEST_F(OverLimitCacheTest, RetryAfterCountsFromWhenTheCallWasSent) {
  const int64_t sent = clock_.NowMillis();
  clock_.Advance(40);  // The round trip.
  cache_.Remember({Check("a")}, Refused(100), sent);
  std::optional<AcquireResult> r = cache_.Refusal({Check("a")});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].retry_after_ms, 60);
  clock_.Advance(60);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
  // A reply later than its own retry_after teaches nothing.
  const int64_t sent_long_ago = clock_.NowMillis();
  clock_.Advance(500);
  cache_.Remember({Check("b")}, Refused(100), sent_long_ago);
  EXPECT_FALSE(cache_.Refusal({Check("b")}).has_value());
  EXPECT_EQ(cache_.size(), 1u);
}

TEST_F(OverLimitCacheTest, OtherCountersAreNotConsulted) {
  cache_.Remember({Check("full")}, Refused(1000), clock_.NowMillis());
  EXPECT_FALSE(cache_.Refusal({Check("other")}).has_value());
  std::optional<AcquireResult> r = cache_.Refusal({Check("other"), Check("full")});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->admitted);
  ASSERT_EQ(r->outcomes.size(), 2u);
  EXPECT_TRUE(r->outcomes[0].has_room);
  EXPECT_FALSE(r->outcomes[0].known) << "Redis was not asked about it";
  EXPECT_FALSE(r->outcomes[1].has_room);
  EXPECT_EQ(r->outcomes[1].retry_after_ms, 1000);
}

// Redis is asked again every 100 ms: one call then goes to Redis (the
// others are still refused), and its answer renews or drops the entry.
TEST_F(OverLimitCacheTest, OneCallPerIntervalRechecksWithRedis) {
  EXPECT_EQ(OverLimitCache::kDefaultRecheckMs, 100);
  cache_.Remember({Check("a")}, Refused(3'600'000), clock_.NowMillis());
  clock_.Advance(99);
  EXPECT_TRUE(cache_.Refusal({Check("a")}).has_value());
  clock_.Advance(1);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value()) << "the re-check goes to Redis";
  // Until its answer, and for 100 ms, the others are still refused.
  EXPECT_TRUE(cache_.Refusal({Check("a")}).has_value());
  clock_.Advance(99);
  EXPECT_TRUE(cache_.Refusal({Check("a")}).has_value());
  clock_.Advance(1);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value()) << "the next re-check";
  // Redis still refuses: renewed (the next re-check 100 ms after the answer).
  clock_.Advance(5);
  cache_.Remember({Check("a")}, Refused(3'500'000), clock_.NowMillis() - 5);
  clock_.Advance(99);
  std::optional<AcquireResult> r = cache_.Refusal({Check("a")});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].retry_after_ms, 3'500'000 - 104);
  clock_.Advance(1);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
  EXPECT_EQ(cache_.size(), 1u);
}

// An operator deleted the key (or the window moved on early): Redis admits
// the re-check, and the entry is gone at once.
TEST_F(OverLimitCacheTest, RedisAdmittingTheRecheckDropsTheEntry) {
  cache_.Remember({Check("a")}, Refused(3'600'000), clock_.NowMillis());
  clock_.Advance(100);
  ASSERT_FALSE(cache_.Refusal({Check("a")}).has_value());
  cache_.Remember({Check("a")}, Admitted(), clock_.NowMillis());
  EXPECT_EQ(cache_.size(), 0u);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
  // So does a refused call whose other limit refused it, this one with room.
  cache_.Remember({Check("b")}, Refused(3'600'000), clock_.NowMillis());
  AcquireResult refused_by_other = Refused(1000);
  refused_by_other.outcomes.resize(2);
  refused_by_other.outcomes[1].has_room = true;
  cache_.Remember({Check("c"), Check("b")}, refused_by_other, clock_.NowMillis());
  EXPECT_FALSE(cache_.Refusal({Check("b")}).has_value());
  EXPECT_TRUE(cache_.Refusal({Check("c")}).has_value());
}

// A limit whose definition changed (a reload raised max from 2 to 100 an
// hour): its calls go to Redis at once, whatever the old entry says.
TEST_F(OverLimitCacheTest, AChangedDefinitionIsNeverRefusedByTheOldEntry) {
  const LimitCheck old_limit{"rate|g|a", Algorithm::kSlidingWindow, 3'600'000, 2, 2};
  cache_.Remember({old_limit}, Refused(3'597'000), clock_.NowMillis());
  ASSERT_TRUE(cache_.Refusal({old_limit}).has_value());
  LimitCheck raised = old_limit;
  raised.max = 100;
  raised.burst = 100;
  EXPECT_FALSE(cache_.Refusal({raised}).has_value());
  LimitCheck other = old_limit;
  other.window_ms = 60'000;
  EXPECT_FALSE(cache_.Refusal({other}).has_value());
  other = old_limit;
  other.algorithm = Algorithm::kFixedWindow;
  EXPECT_FALSE(cache_.Refusal({other}).has_value());
  other = old_limit;
  other.burst = 3;
  EXPECT_FALSE(cache_.Refusal({other}).has_value());
  // The old definition (a revision still pinned) is still refused, and the
  // new one's room does not speak for it.
  cache_.Remember({raised}, Admitted(), clock_.NowMillis());
  EXPECT_TRUE(cache_.Refusal({old_limit}).has_value());
  // Redis refusing the new definition replaces the entry.
  cache_.Remember({raised}, Refused(1000), clock_.NowMillis());
  EXPECT_FALSE(cache_.Refusal({old_limit}).has_value());
  std::optional<AcquireResult> r = cache_.Refusal({raised});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].retry_after_ms, 1000);
}

// A call with a refusing entry and one due for its re-check is refused, and
// does not use up the re-check (no Redis answer will come for it).
TEST_F(OverLimitCacheTest, ARefusedCallDoesNotUseUpAnotherEntrysRecheck) {
  cache_.Remember({Check("a")}, Refused(3'600'000), clock_.NowMillis());
  clock_.Advance(50);
  cache_.Remember({Check("b")}, Refused(3'600'000), clock_.NowMillis());
  clock_.Advance(50);  // "a" is due; "b" is not.
  std::optional<AcquireResult> r = cache_.Refusal({Check("a"), Check("b")});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->outcomes[1].has_room);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value()) << "a's re-check still to do";
}

TEST_F(OverLimitCacheTest, OnlyFullLimitsOfRefusedCallsAreRemembered) {
  AcquireResult admitted;
  admitted.admitted = true;
  admitted.outcomes.resize(1);
  admitted.outcomes[0].has_room = true;
  cache_.Remember({Check("a")}, admitted, clock_.NowMillis());

  // Refused: "b" full, "c" had room (another limit refused the call), "d"
  // full but with nothing to wait for.
  AcquireResult refused = Refused(700);
  refused.outcomes.resize(3);
  refused.outcomes[1].has_room = true;
  refused.outcomes[2].has_room = false;
  refused.outcomes[2].retry_after_ms = 0;
  cache_.Remember({Check("b"), Check("c"), Check("d")}, refused, clock_.NowMillis());

  EXPECT_EQ(cache_.size(), 1u);
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
  EXPECT_TRUE(cache_.Refusal({Check("b")}).has_value());
  EXPECT_FALSE(cache_.Refusal({Check("c")}).has_value());
  EXPECT_FALSE(cache_.Refusal({Check("d")}).has_value());
}

TEST_F(OverLimitCacheTest, ALaterRefusalMovesTheTime) {
  OverLimitCache& cache_ = rarely_rechecked_;
  cache_.Remember({Check("a")}, Refused(100), clock_.NowMillis());
  cache_.Remember({Check("a")}, Refused(900), clock_.NowMillis());
  clock_.Advance(500);
  std::optional<AcquireResult> r = cache_.Refusal({Check("a")});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].retry_after_ms, 400);
}

TEST_F(OverLimitCacheTest, ExpiredEntriesAreSweptOut) {
  for (int i = 0; i < 10; ++i)
    cache_.Remember({Check(absl::StrCat("old", i))}, Refused(100), clock_.NowMillis());
  EXPECT_EQ(cache_.size(), 10u);
  clock_.Advance(100);
  // A sweep runs once every 64 Remember()s (or as many as there are entries).
  for (int i = 10; i < 64; ++i)
    cache_.Remember({Check("live")}, Refused(10'000), clock_.NowMillis());
  EXPECT_EQ(cache_.size(), 1u);
  EXPECT_TRUE(cache_.Refusal({Check("live")}).has_value());
}

}  // namespace
}  // namespace toolgate
