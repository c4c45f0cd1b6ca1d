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

class OverLimitCacheTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  OverLimitCache cache_{&clock_};
};

TEST_F(OverLimitCacheTest, EmptyCacheRefusesNothing) {
  EXPECT_FALSE(cache_.Refusal({Check("a")}).has_value());
}

TEST_F(OverLimitCacheTest, RefusesUntilRetryAfterThenAsksRedisAgain) {
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
