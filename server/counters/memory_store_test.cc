// Tests of the in-process counter store: exact admission at window edges for
// every algorithm, all-or-nothing, dry runs, expiry and concurrency. Time is a
// ManualClock: nothing here sleeps.
#include "server/counters/memory_store.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/base/clock.h"

namespace toolgate {
namespace {

// 2023-11-15T00:00:00Z: a multiple of every window used below.
constexpr int64_t kT0 = 19'676 * int64_t{86'400'000};

LimitCheck Limit(std::string key, Algorithm algorithm, int64_t window_ms, int64_t max,
                 int64_t burst = 0) {
  LimitCheck c;
  c.key = std::move(key);
  c.algorithm = algorithm;
  c.window_ms = window_ms;
  c.max = max;
  c.burst = burst > 0 ? burst : max;
  return c;
}

LimitCheck Sliding(std::string key, int64_t window_ms, int64_t max) {
  return Limit(std::move(key), Algorithm::kSlidingWindow, window_ms, max);
}
LimitCheck Fixed(std::string key, int64_t window_ms, int64_t max) {
  return Limit(std::move(key), Algorithm::kFixedWindow, window_ms, max);
}
LimitCheck Bucket(std::string key, int64_t window_ms, int64_t max, int64_t burst) {
  return Limit(std::move(key), Algorithm::kTokenBucket, window_ms, max, burst);
}

class MemoryStoreTest : public ::testing::Test {
 protected:
  // One limit; returns its outcome and whether the call was admitted.
  LimitOutcome One(const LimitCheck& check, bool dry_run = false, bool* admitted = nullptr) {
    AcquireResult r = store_.AcquireNow({check}, dry_run);
    EXPECT_EQ(r.outcomes.size(), 1u);
    EXPECT_EQ(r.admitted, r.outcomes.empty() ? false : r.outcomes[0].has_room);
    if (admitted) *admitted = r.admitted;
    return r.outcomes.empty() ? LimitOutcome{} : r.outcomes[0];
  }
  bool Admit(const LimitCheck& check) { return store_.AcquireNow({check}, false).admitted; }
  bool WouldAdmit(const LimitCheck& check) { return store_.AcquireNow({check}, true).admitted; }
  void At(int64_t t) { clock_.Set(t); }

  ManualClock clock_{kT0};
  MemoryCounterStore store_{&clock_};
};

// ---------------------------------------------------------------------------
// sliding_window

TEST_F(MemoryStoreTest, SlidingWindowEdges) {
  const LimitCheck c = Sliding("k", 1000, 3);
  At(kT0);
  LimitOutcome o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 2);
  EXPECT_EQ(o.reset_after_ms, 1000);
  At(kT0 + 1);
  EXPECT_EQ(One(c).remaining, 1);
  At(kT0 + 2);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_EQ(o.reset_after_ms, 1000);

  At(kT0 + 999);
  bool admitted = true;
  o = One(c, false, &admitted);
  EXPECT_FALSE(admitted);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_EQ(o.retry_after_ms, 1);  // the call at kT0 leaves the window at kT0+1000
  EXPECT_EQ(o.reset_after_ms, 3);  // the last one (kT0+2) leaves at kT0+1002

  // Admitted exactly at the returned time, not 1 ms before.
  At(kT0 + 999 + o.retry_after_ms - 1);
  EXPECT_FALSE(WouldAdmit(c));
  At(kT0 + 999 + o.retry_after_ms);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  // Full again: the next slot is when kT0+1 leaves.
  o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 1);
  At(kT0 + 1001);
  EXPECT_TRUE(Admit(c));
  At(kT0 + 1002);
  EXPECT_TRUE(Admit(c));
  EXPECT_FALSE(WouldAdmit(c));
}

TEST_F(MemoryStoreTest, SlidingWindowRetryAfterLongGap) {
  const LimitCheck c = Sliding("k", 60'000, 2);
  At(kT0);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 40'000);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 50'000);
  LimitOutcome o = One(c);
  ASSERT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 10'000);
  EXPECT_EQ(o.reset_after_ms, 50'000);
  At(kT0 + 59'999);
  EXPECT_FALSE(WouldAdmit(c));
  At(kT0 + 60'000);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
}

TEST_F(MemoryStoreTest, SlidingWindowNeverOverAdmitsAndNeverUnderAdmits) {
  // A long random sequence of calls; a brute-force model checks every answer.
  constexpr int64_t kWindow = 1000;
  constexpr int64_t kMax = 5;
  const LimitCheck c = Sliding("k", kWindow, kMax);
  std::mt19937_64 rng(42);
  std::vector<int64_t> admitted;
  int64_t now = kT0 + 123;
  int refused = 0;
  // How many admitted calls lie in (t - window, t], for t >= every call.
  auto in_window = [&](int64_t t) {
    int64_t n = 0;
    for (auto it = admitted.rbegin(); it != admitted.rend() && *it > t - kWindow; ++it) ++n;
    return n;
  };
  for (int i = 0; i < 4000; ++i) {
    // Mostly bursts, sometimes gaps up to 1.5 windows.
    const int r = static_cast<int>(rng() % 100);
    now += r < 60 ? static_cast<int64_t>(rng() % 5) : r < 95 ? static_cast<int64_t>(rng() % 300)
                                                             : static_cast<int64_t>(rng() % 1500);
    At(now);
    const bool dry = rng() % 10 == 0;
    AcquireResult res = store_.AcquireNow({c}, dry);
    ASSERT_EQ(res.outcomes.size(), 1u);
    const LimitOutcome& o = res.outcomes[0];
    const int64_t before = in_window(now);
    // Admitted exactly when there is room: no over- and no under-admission.
    ASSERT_EQ(res.admitted, before < kMax) << "call " << i << " at +" << now - kT0;
    if (res.admitted) {
      ASSERT_EQ(o.remaining, kMax - before - 1);
      if (!dry) admitted.push_back(now);
    } else {
      ++refused;
      ASSERT_EQ(o.remaining, 0);
      // retry_after: the earliest later time at which the window has room.
      int64_t t = now + 1;
      while (in_window(t) >= kMax) ++t;
      ASSERT_EQ(o.retry_after_ms, t - now) << "call " << i;
    }
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(admitted.size(), 1000u);
  // No interval of length `window` ever holds more than `max` admitted calls.
  for (size_t i = 0; i < admitted.size(); ++i) {
    const auto end = std::lower_bound(admitted.begin(), admitted.end(), admitted[i] + kWindow);
    ASSERT_LE(end - (admitted.begin() + static_cast<long>(i)), kMax)
        << "window starting at +" << admitted[i] - kT0;
  }
}

// ---------------------------------------------------------------------------
// fixed_window

TEST_F(MemoryStoreTest, FixedWindowIsCalendarAligned) {
  const LimitCheck c = Fixed("k", 60'000, 2);
  const int64_t boundary = kT0 + 60'000;  // kT0 is a multiple of a minute
  ASSERT_EQ(boundary % 60'000, 0);
  At(kT0 + 45'000);
  LimitOutcome o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 1);
  EXPECT_EQ(o.reset_after_ms, 15'000);  // until the boundary, not a full window
  At(kT0 + 50'000);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_EQ(o.reset_after_ms, 10'000);
  At(kT0 + 50'001);
  o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, boundary - (kT0 + 50'001));
  EXPECT_EQ(o.reset_after_ms, boundary - (kT0 + 50'001));
  At(boundary - 1);
  o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 1);
  // The count resets exactly at the boundary.
  At(boundary);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 1);
  EXPECT_EQ(o.reset_after_ms, 60'000);
  EXPECT_TRUE(Admit(c));
  EXPECT_FALSE(WouldAdmit(c));
}

TEST_F(MemoryStoreTest, FixedWindowDayBoundaryIsUtcMidnight) {
  const int64_t day = 86'400'000;
  const LimitCheck c = Fixed("k", day, 1);
  const int64_t midnight = (kT0 / day + 1) * day;
  At(midnight - 5);
  EXPECT_TRUE(Admit(c));
  LimitOutcome o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 5);
  At(midnight);
  EXPECT_TRUE(Admit(c));
  // Up to 2*max around a boundary is the documented price of fixed windows.
}

TEST_F(MemoryStoreTest, FixedWindowSkippedWindowsReset) {
  const LimitCheck c = Fixed("k", 1000, 1);
  At(kT0 + 10);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 5'500);  // several windows later
  LimitOutcome o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.reset_after_ms, 500);
  o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 500);
}

// ---------------------------------------------------------------------------
// token_bucket

TEST_F(MemoryStoreTest, TokenBucketBurstThenExactRefill) {
  // 2 per second (one token every 500 ms), bursts of 4.
  const LimitCheck c = Bucket("k", 1000, 2, 4);
  At(kT0);
  LimitOutcome o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 3);
  EXPECT_EQ(o.reset_after_ms, 500);  // one token to refill
  EXPECT_EQ(One(c).remaining, 2);
  EXPECT_EQ(One(c).remaining, 1);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_EQ(o.reset_after_ms, 2000);  // four tokens to refill
  o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_EQ(o.retry_after_ms, 500);
  EXPECT_EQ(o.reset_after_ms, 2000);

  At(kT0 + 499);
  o = One(c);
  EXPECT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 1);
  At(kT0 + 500);
  o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  // Long idle: refills to the burst, never beyond.
  At(kT0 + 1'000'000);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Admit(c)) << i;
  EXPECT_FALSE(WouldAdmit(c));
}

TEST_F(MemoryStoreTest, TokenBucketRefillIsExactWithoutDrift) {
  // 3 per second: a token every 333.33 ms; integer arithmetic must not drift.
  // Burst 2, drained at once, so the bucket never overflows while we call
  // every millisecond.
  const LimitCheck c = Bucket("k", 1000, 3, 2);
  At(kT0);
  ASSERT_TRUE(Admit(c));
  ASSERT_TRUE(Admit(c));
  std::vector<int64_t> times;
  auto nth = [](int64_t k) { return (k * 1000 + 2) / 3; };  // ceil(k * 1000 / 3)
  for (int64_t t = 1; t <= 10'000; ++t) {
    At(kT0 + t);
    bool admitted = false;
    LimitOutcome o = One(c, false, &admitted);
    if (admitted) {
      times.push_back(t);
      EXPECT_EQ(o.remaining, 0);
    } else {
      // retry_after points exactly at the next admission.
      ASSERT_EQ(t + o.retry_after_ms, nth(static_cast<int64_t>(times.size()) + 1)) << "at +" << t;
    }
  }
  // The k-th call after the burst (from 1) is admitted at ceil(k * 1000 / 3) ms.
  ASSERT_EQ(times.size(), 30u);
  for (size_t k = 0; k < times.size(); ++k) {
    EXPECT_EQ(times[k], nth(static_cast<int64_t>(k) + 1)) << k;
  }
}

TEST_F(MemoryStoreTest, TokenBucketFullBucketDiscardsRefill) {
  // Capacity one token: refill that arrives while the bucket is full is lost,
  // so calls every millisecond get one token per 334 ms, not 333.33.
  const LimitCheck c = Bucket("k", 1000, 3, 1);
  At(kT0);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 333);
  EXPECT_FALSE(WouldAdmit(c));
  At(kT0 + 334);
  ASSERT_TRUE(Admit(c));  // the bucket filled at +333.33 and held 1 token
  LimitOutcome o = One(c);
  ASSERT_FALSE(o.has_room);
  EXPECT_EQ(o.retry_after_ms, 334);
}

TEST_F(MemoryStoreTest, TokenBucketRetryAfterIsExact) {
  // 5 per minute, burst 2: a token every 12 s.
  const LimitCheck c = Bucket("k", 60'000, 5, 2);
  At(kT0);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 3'000);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 4'000);
  LimitOutcome o = One(c);
  ASSERT_FALSE(o.has_room);
  // Refilling since kT0: 4 s of 12 s for the first token.
  EXPECT_EQ(o.retry_after_ms, 8'000);
  EXPECT_EQ(o.reset_after_ms, 20'000);
  At(kT0 + 11'999);
  EXPECT_FALSE(WouldAdmit(c));
  At(kT0 + 12'000);
  EXPECT_TRUE(Admit(c));
  EXPECT_FALSE(WouldAdmit(c));
}

// ---------------------------------------------------------------------------
// All or nothing, dry run.

TEST_F(MemoryStoreTest, AllOrNothingOverTwoLimits) {
  const LimitCheck a = Sliding("a", 1000, 1);
  const LimitCheck b = Sliding("b", 1000, 5);
  At(kT0);
  ASSERT_TRUE(Admit(a));  // a is now full
  AcquireResult r = store_.AcquireNow({b, a}, false);
  EXPECT_FALSE(r.admitted);
  ASSERT_EQ(r.outcomes.size(), 2u);
  EXPECT_TRUE(r.outcomes[0].has_room);
  EXPECT_EQ(r.outcomes[0].remaining, 5);  // nothing taken
  EXPECT_FALSE(r.outcomes[1].has_room);
  EXPECT_EQ(r.outcomes[1].retry_after_ms, 1000);
  // b was not consumed: five calls still fit.
  for (int i = 0; i < 5; ++i) {
    LimitOutcome o = One(b);
    ASSERT_TRUE(o.has_room) << i;
    EXPECT_EQ(o.remaining, 4 - i);
  }
  EXPECT_FALSE(WouldAdmit(b));
}

TEST_F(MemoryStoreTest, AllOrNothingAcrossAlgorithms) {
  const LimitCheck f = Fixed("f", 1000, 3);
  const LimitCheck t = Bucket("t", 1000, 1, 1);
  At(kT0);
  ASSERT_TRUE(Admit(t));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(store_.AcquireNow({f, t}, false).admitted);
  // The fixed window was never charged.
  EXPECT_EQ(One(f, true).remaining, 2);
  At(kT0 + 1000);
  AcquireResult r = store_.AcquireNow({f, t}, false);
  EXPECT_TRUE(r.admitted);
  EXPECT_EQ(r.outcomes[0].remaining, 2);
  EXPECT_EQ(r.outcomes[1].remaining, 0);
}

TEST_F(MemoryStoreTest, DryRunConsumesNothingButDecidesTheSame) {
  for (const LimitCheck& c : {Sliding("s", 1000, 2), Fixed("f", 1000, 2), Bucket("b", 1000, 2, 2)}) {
    SCOPED_TRACE(c.key);
    At(kT0 + 100);
    for (int i = 0; i < 10; ++i) {
      LimitOutcome o = One(c, /*dry_run=*/true);
      EXPECT_TRUE(o.has_room);
      EXPECT_EQ(o.remaining, 1);  // as if this call were taken
    }
    LimitOutcome real = One(c);
    EXPECT_TRUE(real.has_room);
    EXPECT_EQ(real.remaining, 1);
    ASSERT_TRUE(Admit(c));
    // Full: a dry run reports the same refusal as a real call would.
    bool dry_admitted = true, real_admitted = true;
    LimitOutcome dry = One(c, true, &dry_admitted);
    LimitOutcome refused = One(c, false, &real_admitted);
    EXPECT_FALSE(dry_admitted);
    EXPECT_FALSE(real_admitted);
    EXPECT_EQ(dry.retry_after_ms, refused.retry_after_ms);
    EXPECT_EQ(dry.reset_after_ms, refused.reset_after_ms);
    EXPECT_GT(dry.retry_after_ms, 0);
  }
}

TEST_F(MemoryStoreTest, DryRunOnNewKeyCreatesNoCounter) {
  At(kT0);
  for (int i = 0; i < 100; ++i) One(Sliding("dry" + std::to_string(i), 1000, 1), true);
  EXPECT_EQ(store_.KeyCount(), 0u);
}

TEST_F(MemoryStoreTest, CallbackFormRunsOnce) {
  int calls = 0;
  AcquireResult got;
  store_.Acquire({Sliding("k", 1000, 1)}, false, [&](absl::StatusOr<AcquireResult> r) {
    ++calls;
    ASSERT_TRUE(r.ok());
    got = *r;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(got.admitted);
  EXPECT_FALSE(WouldAdmit(Sliding("k", 1000, 1)));
}

TEST_F(MemoryStoreTest, EmptyCheckListIsAdmitted) {
  AcquireResult r = store_.AcquireNow({}, false);
  EXPECT_TRUE(r.admitted);
  EXPECT_TRUE(r.outcomes.empty());
}

// ---------------------------------------------------------------------------
// Keys: identity, definition changes, expiry.

TEST_F(MemoryStoreTest, KeysAreIndependent) {
  At(kT0);
  ASSERT_TRUE(Admit(Sliding("x", 1000, 1)));
  EXPECT_FALSE(WouldAdmit(Sliding("x", 1000, 1)));
  EXPECT_TRUE(Admit(Sliding("y", 1000, 1)));
  EXPECT_EQ(store_.KeyCount(), 2u);
}

TEST_F(MemoryStoreTest, ChangedDefinitionStartsFresh) {
  At(kT0);
  ASSERT_TRUE(Admit(Sliding("k", 1000, 1)));
  ASSERT_FALSE(WouldAdmit(Sliding("k", 1000, 1)));
  // Same key, different window: a new counter.
  LimitOutcome o = One(Sliding("k", 2000, 1));
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_FALSE(WouldAdmit(Sliding("k", 2000, 1)));
  // Same key and window, different algorithm: a new counter.
  EXPECT_TRUE(Admit(Fixed("k", 2000, 1)));
  EXPECT_FALSE(WouldAdmit(Fixed("k", 2000, 1)));
  EXPECT_TRUE(Admit(Bucket("k", 2000, 1, 1)));
  EXPECT_FALSE(WouldAdmit(Bucket("k", 2000, 1, 1)));
}

TEST_F(MemoryStoreTest, RaisedMaxKeepsTheCount) {
  At(kT0);
  ASSERT_TRUE(Admit(Sliding("k", 1000, 2)));
  ASSERT_TRUE(Admit(Sliding("k", 1000, 2)));
  ASSERT_FALSE(WouldAdmit(Sliding("k", 1000, 2)));
  // A policy that raises max to 3 allows one more, not three more.
  LimitOutcome o = One(Sliding("k", 1000, 3));
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);
  EXPECT_FALSE(WouldAdmit(Sliding("k", 1000, 3)));
}

TEST_F(MemoryStoreTest, IdleKeysAreRemovedAfterTheirWindow) {
  At(kT0);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(Admit(Sliding("s" + std::to_string(i), 1000, 5)));
    ASSERT_TRUE(Admit(Fixed("f" + std::to_string(i), 1000, 5)));
    ASSERT_TRUE(Admit(Bucket("b" + std::to_string(i), 1000, 5, 5)));
  }
  ASSERT_EQ(store_.KeyCount(), 120u);
  // Many operations (on other, fresh keys, dry run so they add nothing)
  // before the windows end: nothing is dropped.
  auto churn = [&] {
    for (int i = 0; i < 4000; ++i) One(Sliding("probe" + std::to_string(i), 1000, 1), true);
  };
  At(kT0 + 199);  // the bucket refills 5 per second: one token in 200 ms
  churn();
  EXPECT_EQ(store_.KeyCount(), 120u);
  At(kT0 + 999);
  churn();
  EXPECT_EQ(store_.KeyCount(), 80u);  // the buckets are full again
  // After the window, every idle key goes; an active one stays.
  At(kT0 + 1000);
  ASSERT_TRUE(Admit(Sliding("live", 1000, 5)));
  churn();
  EXPECT_EQ(store_.KeyCount(), 1u);
  // A removed key behaves like a new one.
  LimitOutcome o = One(Sliding("s0", 1000, 5));
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 4);
}

TEST_F(MemoryStoreTest, ActiveSlidingKeyIsNotRemovedEarly) {
  const LimitCheck c = Sliding("k", 1000, 2);
  At(kT0);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 900);
  ASSERT_TRUE(Admit(c));
  At(kT0 + 1500);  // the first call left the window; the second has not
  for (int i = 0; i < 4000; ++i) One(Sliding("probe" + std::to_string(i), 1000, 1), true);
  EXPECT_EQ(store_.KeyCount(), 1u);
  LimitOutcome o = One(c);
  EXPECT_TRUE(o.has_room);
  EXPECT_EQ(o.remaining, 0);  // the kT0+900 call still counts
}

// ---------------------------------------------------------------------------
// Concurrency.

TEST(MemoryStoreConcurrency, ManyThreadsOneKeyAdmitExactlyMax) {
  ManualClock clock(kT0);  // never moves
  MemoryCounterStore store(&clock);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  constexpr int64_t kMax = 1234;
  for (Algorithm algorithm :
       {Algorithm::kSlidingWindow, Algorithm::kFixedWindow, Algorithm::kTokenBucket}) {
    const LimitCheck c = Limit("shared" + std::to_string(static_cast<int>(algorithm)), algorithm,
                               60'000, kMax);
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) {
          if (store.AcquireNow({c}, false).admitted) admitted.fetch_add(1);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(admitted.load(), kMax) << AlgorithmName(algorithm);
  }
}

TEST(MemoryStoreConcurrency, AllOrNothingUnderContention) {
  // Every call takes two limits, one shared by all and one per thread, in
  // varying orders; the totals must match exactly.
  ManualClock clock(kT0);
  MemoryCounterStore store(&clock);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  const LimitCheck shared = Sliding("shared", 60'000, 1000);
  std::vector<int> admitted(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const LimitCheck mine = Sliding("mine" + std::to_string(t), 60'000, 150);
      for (int i = 0; i < kPerThread; ++i) {
        std::vector<LimitCheck> checks =
            i % 2 ? std::vector<LimitCheck>{shared, mine} : std::vector<LimitCheck>{mine, shared};
        if (store.AcquireNow(checks, false).admitted) ++admitted[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // 8 * 150 > 1000: the shared limit binds, and is used up exactly.
  int total = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_LE(admitted[t], 150);
    total += admitted[t];
    // Each thread's own counter was charged exactly for its admitted calls.
    const LimitCheck mine = Sliding("mine" + std::to_string(t), 60'000, 150);
    AcquireResult r = store.AcquireNow({mine}, true);
    EXPECT_EQ(r.admitted, admitted[t] < 150) << t;
    if (r.admitted) {
      EXPECT_EQ(r.outcomes[0].remaining, 150 - admitted[t] - 1) << t;
    }
  }
  EXPECT_EQ(total, 1000);
  EXPECT_FALSE(store.AcquireNow({shared}, true).admitted);
}

}  // namespace
}  // namespace toolgate
