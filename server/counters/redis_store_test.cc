// Tests of what only the Redis store does: deadlines, failures and
// recovery, script reloads, the over-limit cache, key expiry, pipelining and
// batching, against a real redis-server per test.
#include "server/counters/redis_store.h"

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
#include "tests/support/redis_process.h"

namespace toolgate {

extern const char kRedisScript[];  // server/counters/redis_script.lua

namespace {

using counters_testing::AcquireSync;
using counters_testing::kHour;
using counters_testing::kMinute;
using counters_testing::MakeCheck;
using toolgate_test::RedisProcess;

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    options_.url = *ParseRedisUrl(redis_->url());
    options_.timeout_ms = 2000;  // As above; tests of the deadline set their own.
  }
  std::unique_ptr<RedisCounterStore> MakeStore() {
    return std::make_unique<RedisCounterStore>(options_);
  }
  int64_t EvalCalls() {
    auto info = redis_->Command({"INFO", "commandstats"});
    int64_t calls = 0;
    for (absl::string_view name : {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="}) {
      size_t pos = info->find(std::string(name));
      if (pos != std::string::npos) calls += std::stoll(info->substr(pos + name.size()));
    }
    return calls;
  }

  std::unique_ptr<RedisProcess> redis_;
  RedisStoreOptions options_;
};

TEST_F(RedisStoreTest, SlidingWindowReadmitsExactlyAfterRetryAfter) {
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("edge|*", Algorithm::kSlidingWindow, 400, 2);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  // Redis and this test read the same clock (the system's real-time clock),
  // so what happened when is known by ordering: the refusal was decided
  // between refused_at and refused_by.
  const absl::Time refused_at = absl::Now();
  auto refused = AcquireSync(*store, {check}, /*dry_run=*/true);
  const absl::Time refused_by = absl::Now();
  ASSERT_TRUE(refused.ok());
  ASSERT_FALSE(refused->admitted);
  const int64_t retry = refused->outcomes[0].retry_after_ms;
  ASSERT_GT(retry, 0);
  ASSERT_LE(retry, 400);
  // Poll (dry runs) until admitted: not before retry_after, and every call
  // that started once retry_after had passed is admitted.
  absl::Time admitted_at;
  int polls = 0;
  while (true) {
    const absl::Time sent = absl::Now();
    auto r = AcquireSync(*store, {check}, /*dry_run=*/true);
    ASSERT_TRUE(r.ok());
    ++polls;
    if (r->admitted) {
      admitted_at = absl::Now();
      break;
    }
    // Refused, so decided before retry_after had passed (by Redis, or by the
    // over-limit cache, which counts from when the refusal arrived).
    EXPECT_LT(absl::ToInt64Milliseconds(sent - refused_by), retry + 2)  // ms rounding of TIME
        << "refused after retry_after (poll " << polls << ")";
    // 10x the longest retry_after (the window, 400 ms).
    ASSERT_LT(absl::Now() - refused_at, 10 * absl::Milliseconds(400));
    absl::SleepFor(absl::Milliseconds(1));
  }
  const int64_t waited = absl::ToInt64Milliseconds(admitted_at - refused_at);
  EXPECT_GE(waited, retry - 2);  // ms rounding of TIME
  std::cout << "retry_after " << retry << " ms; admitted " << waited << " ms after the refusal ("
            << polls << " polls)\n";
}

TEST_F(RedisStoreTest, LargeLimitsUseBoundedBucketsAndNeverOverAdmit) {
  options_.exact_log_max = 4;
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("big|*", Algorithm::kSlidingWindow, kMinute, 20);
  EXPECT_TRUE(absl::EndsWith(store->RedisKey(check), ":b:60000")) << store->RedisKey(check);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(AcquireSync(*store, {check})->admitted) << i;
  auto r = AcquireSync(*store, {check});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->admitted);
  // A minute after the first call, less the time 21 calls took (5 s: 10x
  // more than a busy machine needs for them).
  EXPECT_GT(r->outcomes[0].retry_after_ms, kMinute - 5'000);
  // Memory is a hash of at most 65 buckets, whatever max is.
  auto len = redis_->Command({"HLEN", store->RedisKey(check)});
  ASSERT_TRUE(len.ok());
  EXPECT_LE(std::stoi(*len), 65);
}

TEST_F(RedisStoreTest, ReloadsTheScriptAfterTheCacheIsFlushed) {
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("flush|*", Algorithm::kFixedWindow, kHour, 10);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  ASSERT_TRUE(redis_->Command({"SCRIPT", "FLUSH"}).ok());
  auto r = AcquireSync(*store, {check});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
  EXPECT_EQ(r->outcomes[0].remaining, 8);
  EXPECT_GE(store->Status().script_reloads, 1u);
}

TEST_F(RedisStoreTest, OverLimitCacheRefusesLocallyUntilRetryAfter) {
  // No re-check with Redis during the test (redis_store_faults_test.cc
  // tests the re-check), however slow the machine.
  options_.over_limit_recheck_ms = kHour;
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("hot|*", Algorithm::kSlidingWindow, kMinute, 1);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  ASSERT_FALSE(AcquireSync(*store, {check})->admitted);  // Learns the key is full.
  const int64_t evals_before = EvalCalls();
  for (int i = 0; i < 10; ++i) {
    auto r = AcquireSync(*store, {check});
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->admitted);
    EXPECT_GT(r->outcomes[0].retry_after_ms, 0);
  }
  EXPECT_EQ(EvalCalls(), evals_before) << "cached refusals must not reach Redis";
  EXPECT_EQ(store->Status().cache_hits, 10u);

  // A call that also uses a key with room is still refused (the full key
  // decides), and the other key is reported as not consulted.
  const LimitCheck other = MakeCheck("cold|*", Algorithm::kSlidingWindow, kMinute, 5);
  auto r = AcquireSync(*store, {other, check});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->admitted);
  EXPECT_FALSE(r->outcomes[0].known);
  // And it consumed nothing of the other key.
  auto o = AcquireSync(*store, {other});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->outcomes[0].remaining, 4);
}

TEST_F(RedisStoreTest, WithoutTheCacheEveryCallAsksRedis) {
  options_.over_limit_cache = false;
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("nocache|*", Algorithm::kSlidingWindow, kMinute, 1);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  const int64_t evals_before = EvalCalls();
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(AcquireSync(*store, {check})->admitted);
  EXPECT_EQ(EvalCalls(), evals_before + 5);
  EXPECT_EQ(store->Status().cache_hits, 0u);
}

TEST_F(RedisStoreTest, PausedRedisAnswersWithinTheDeadline) {
  options_.timeout_ms = 50;
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("slow|*", Algorithm::kSlidingWindow, kMinute, 100);
  ASSERT_TRUE(AcquireSync(*store, {check}).ok());  // Connected.
  // Paused (scripts wait) until the test says so, however long the calls
  // below take.
  ASSERT_TRUE(redis_->Command({"CLIENT", "PAUSE", "100000", "WRITE"}).ok());
  for (int i = 0; i < 5; ++i) {
    const absl::Time start = absl::Now();
    auto r = AcquireSync(*store, {check});
    const absl::Duration took = absl::Now() - start;
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
    // 10x the 50 ms deadline: answered by the deadline, not by Redis.
    EXPECT_LT(took, 10 * absl::Milliseconds(50)) << "call " << i;
  }
  // Once the pause ends, Redis decides again.
  ASSERT_TRUE(redis_->Command({"CLIENT", "UNPAUSE"}).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);  // Only a guard against hangs.
  bool decided = false;
  while (!decided && absl::Now() < deadline) decided = AcquireSync(*store, {check}).ok();
  EXPECT_TRUE(decided);
}

TEST_F(RedisStoreTest, RedisDownFailsFastAndRecoversAfterRestart) {
  options_.timeout_ms = 100;
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("down|*", Algorithm::kSlidingWindow, kMinute, 100);
  ASSERT_TRUE(AcquireSync(*store, {check}).ok());
  redis_->Kill();
  for (int i = 0; i < 20; ++i) {
    const absl::Time start = absl::Now();
    auto r = AcquireSync(*store, {check});
    EXPECT_FALSE(r.ok());
    // 10x the 100 ms deadline: no call waits for Redis to come back.
    EXPECT_LT(absl::Now() - start, 10 * absl::Milliseconds(100)) << "call " << i;
  }
  EXPECT_FALSE(store->Status().connected);
  ASSERT_TRUE(redis_->Restart().ok());  // Empty: no scripts, no keys.
  const absl::Time restarted = absl::Now();
  while (!AcquireSync(*store, {check}).ok()) {
    // 10x the longest reconnection backoff (400 ms, jittered up to 600 ms).
    ASSERT_LT(absl::Now() - restarted, 10 * absl::Milliseconds(600))
        << "not decided by Redis after the restart";
    absl::SleepFor(absl::Milliseconds(5));
  }
}

TEST_F(RedisStoreTest, EveryKeyExpiresWithItsWindow) {
  auto store = MakeStore();
  const int64_t window = 500;
  std::vector<LimitCheck> checks = {
      MakeCheck("exp-s|*", Algorithm::kSlidingWindow, window, 3),
      MakeCheck("exp-f|*", Algorithm::kFixedWindow, window, 3),
      MakeCheck("exp-t|*", Algorithm::kTokenBucket, window, 3),
  };
  options_.exact_log_max = 1;
  auto bucketed = MakeStore();
  const LimitCheck bucket = MakeCheck("exp-b|*", Algorithm::kSlidingWindow, window, 3);
  // A key may expire before the test could list it (a fixed window ends on
  // a calendar boundary, maybe at once): what was written, and the expiry
  // each key was given, come from MONITOR.
  auto monitor = toolgate_test::RedisMonitor::Start(*redis_);
  ASSERT_TRUE(monitor.ok()) << monitor.status();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(AcquireSync(*store, checks)->admitted);
    ASSERT_TRUE(AcquireSync(*bucketed, {bucket})->admitted);
  }
  auto commands = (*monitor)->Sync();
  ASSERT_TRUE(commands.ok()) << commands.status();
  const toolgate_test::ScriptWrites writes = toolgate_test::WritesByScripts(*commands);
  EXPECT_EQ(writes.keys,
            (std::set<std::string>{store->RedisKey(checks[0]), store->RedisKey(checks[1]),
                                   store->RedisKey(checks[2]), bucketed->RedisKey(bucket)}));
  EXPECT_TRUE(absl::EndsWith(bucketed->RedisKey(bucket), ":b:500")) << bucketed->RedisKey(bucket);
  EXPECT_THAT(writes.without_expiry, ::testing::IsEmpty()) << "keys left without an expiry";
  for (const auto& [key, ms] : writes.expiries) {
    EXPECT_GT(ms, 0) << key;
    EXPECT_LE(ms, window + window / 64 + 1) << key;
  }
  // What Redis holds now agrees, at one moment of its clock (-1: no expiry;
  // 0: expiring this millisecond).
  auto now = redis_->KeysWithTtl("toolgate:*");
  ASSERT_TRUE(now.ok()) << now.status();
  for (const auto& [key, ttl] : *now) {
    EXPECT_TRUE(writes.keys.count(key)) << key;
    EXPECT_GE(ttl, 0) << key << " has no expiry";
    EXPECT_LE(ttl, window + window / 64 + 1) << key;
  }
  // Nothing outlives the window (Redis expires keys lazily and by sampling:
  // poll, for 10x the window).
  auto keys = redis_->Keys("toolgate:*");
  ASSERT_TRUE(keys.ok());
  const absl::Time deadline = absl::Now() + 10 * absl::Milliseconds(window);
  while (!keys->empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    keys = redis_->Keys("toolgate:*");
    ASSERT_TRUE(keys.ok());
  }
  EXPECT_TRUE(keys->empty()) << keys->size() << " keys left, e.g. " << keys->front();
}

// A key that holds a value of another type (written by something other than
// toolgate) fails the calls that use it, with a clear error and nothing
// consumed, and no other call: not even one decided in the same script run.
TEST_F(RedisStoreTest, KeyOfAnotherTypeFailsOnlyItsCall) {
  auto store = MakeStore();
  const LimitCheck good = MakeCheck("good|*", Algorithm::kSlidingWindow, kMinute, 5);
  const LimitCheck bad = MakeCheck("bad|*", Algorithm::kSlidingWindow, kMinute, 5);
  const LimitCheck fixed = MakeCheck("fixed|*", Algorithm::kFixedWindow, kHour, 5);
  ASSERT_TRUE(redis_->Command({"SET", store->RedisKey(bad), "not a list"}).ok());
  auto r = AcquireSync(*store, {good, bad});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr(store->RedisKey(bad) + " holds a value toolgate did not write"));
  EXPECT_EQ(redis_->Command({"GET", store->RedisKey(bad)}).value_or("(redis error)"), "not a list");
  EXPECT_EQ(redis_->Command({"EXISTS", store->RedisKey(good)}).value_or("(redis error)"), "0")
      << "nothing consumed";
  ASSERT_TRUE(AcquireSync(*store, {good})->admitted);

  // Three calls in one script run: the middle one uses the bad key.
  auto reply = redis_->Command({"EVAL",
                                kRedisScript,
                                "4",
                                store->RedisKey(good),
                                store->RedisKey(fixed),
                                store->RedisKey(bad),
                                store->RedisKey(good),
                                "3",
                                "1",  // A fixed window: strings to read.
                                "0",
                                "1",
                                "s",
                                "60000",
                                "5",
                                "0",
                                "1",  // cost
                                "0",
                                "2",
                                "f",
                                "3600000",
                                "5",
                                "0",
                                "1",
                                "s",
                                "60000",
                                "5",
                                "0",
                                "1",
                                "0",
                                "1",
                                "s",
                                "60000",
                                "5",
                                "0",
                                "1"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  const std::vector<std::string> v = absl::StrSplit(*reply, '\n');
  ASSERT_EQ(v.size(), 1u + 5u + 9u + 5u) << *reply;
  EXPECT_GT(std::stoll(v[0]), 0);  // the run's Redis time
  EXPECT_EQ(v[1], "1");            // admitted (the second unit of "good")
  EXPECT_EQ(v[3], "3");            // remaining
  EXPECT_EQ(v[6], "2");            // the middle call: failed, at its key 2
  EXPECT_EQ(v[7], "2");
  EXPECT_EQ(v[15], "1");  // the last call: admitted (the third unit)
  EXPECT_EQ(v[17], "2");
  EXPECT_EQ(redis_->Command({"LLEN", store->RedisKey(good)}).value_or("(redis error)"), "3");
  EXPECT_EQ(redis_->Command({"EXISTS", store->RedisKey(fixed)}).value_or("(redis error)"), "0")
      << "nothing consumed";
}

TEST_F(RedisStoreTest, ConcurrentChecksArePipelined) {
  auto store = MakeStore();
  constexpr int kThreads = 64;
  constexpr int kPerThread = 20;
  std::vector<std::thread> threads;
  std::atomic<int> admitted{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const LimitCheck c =
            MakeCheck(absl::StrCat("pipe|g|", t), Algorithm::kSlidingWindow, kMinute, 1000);
        auto r = AcquireSync(*store, {c});
        if (r.ok() && r->admitted) admitted.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), kThreads * kPerThread);
  const CounterStoreStatus s = store->Status();
  std::cout << "pipelining: " << s.checks << " checks in " << s.round_trips
            << " round trips (ratio " << static_cast<double>(s.round_trips) / s.checks << ")\n";
  EXPECT_EQ(s.checks, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(s.round_trips, s.checks);
  // Calls queued together are decided by one script run.
  EXPECT_LT(s.commands, s.checks);
}

// Calls decided in one script run are decided one after the other, each
// all-or-nothing, as if each had a run of its own: with a shared limit of 100
// and 64 callers each limited to 3, exactly 100 calls are admitted, and each
// counter in Redis holds exactly the calls admitted against it.
TEST_F(RedisStoreTest, BatchedCallsAreDecidedOneByOne) {
  options_.over_limit_cache = false;  // Every call goes to Redis.
  auto store = MakeStore();
  constexpr int kThreads = 64;
  constexpr int kPerThread = 10;
  const LimitCheck shared = MakeCheck("shared|*", Algorithm::kSlidingWindow, kMinute, 100);
  std::vector<std::thread> threads;
  std::vector<int> admitted(kThreads, 0);
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const LimitCheck own =
          MakeCheck(absl::StrCat("own|g|", t), Algorithm::kFixedWindow, kHour, 3);
      for (int i = 0; i < kPerThread; ++i) {
        // Every other call is a dry run, which decides but consumes nothing.
        auto dry = AcquireSync(*store, {own, shared}, /*dry_run=*/true);
        auto r = AcquireSync(*store, {own, shared});
        if (!dry.ok() || !r.ok()) {
          errors.fetch_add(1);
          continue;
        }
        if (r->admitted) ++admitted[t];
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(errors.load(), 0);
  int total = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_LE(admitted[t], 3) << "caller " << t;
    total += admitted[t];
    // (window index mod 100000) * 10^10 + count
    auto value = redis_->Command(
        {"GET",
         store->RedisKey(MakeCheck(absl::StrCat("own|g|", t), Algorithm::kFixedWindow, kHour, 3))});
    if (admitted[t] == 0) continue;
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(std::stoll(*value) % 10'000'000'000, admitted[t]) << "caller " << t;
  }
  EXPECT_EQ(total, 100);
  auto len = redis_->Command({"LLEN", store->RedisKey(shared)});
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(std::stoi(*len), 100);
  const CounterStoreStatus s = store->Status();
  EXPECT_EQ(s.checks, static_cast<uint64_t>(2 * kThreads * kPerThread));
  std::cout << "batching: " << s.checks << " checks in " << s.commands << " commands\n";
}

}  // namespace
}  // namespace toolgate
