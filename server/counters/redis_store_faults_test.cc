// The Redis store against what an operator or an attacker with access to
// Redis can do: change or delete counter keys behind its back (the
// over-limit cache must not keep refusing), write garbage of the right type
// into them (only the calls using them fail), and refuse its credentials
// (it backs off, says "authentication failed", never "connected"). Against
// a real redis-server per test.
#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/counters/counter_testing.h"
#include "server/counters/redis_store.h"
#include "tests/support/redis_process.h"

namespace toolgate {
namespace {

using counters_testing::AcquireSync;
using counters_testing::kHour;
using counters_testing::kMinute;
using counters_testing::MakeCheck;
using ::testing::HasSubstr;
using ::testing::Not;
using toolgate_test::RedisProcess;

// A guard against hangs, far beyond what anything here takes.
constexpr absl::Duration kWait = absl::Seconds(30);

class RedisStoreFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    options_.url = *ParseRedisUrl(redis_->url());
    options_.timeout_ms = 5000;  // A busy machine never misses it.
  }
  std::unique_ptr<RedisCounterStore> MakeStore() {
    return std::make_unique<RedisCounterStore>(options_);
  }
  RedisUrl UrlWith(const std::string& auth) const {
    return *ParseRedisUrl(absl::StrCat("redis://", auth, "127.0.0.1:", redis_->port()));
  }
  // Polls until `store` reports `what` as its last error (true), or kWait.
  static bool WaitForError(const RedisCounterStore& store, const std::string& what) {
    const absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      if (absl::StrContains(store.Status().last_error, what)) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  std::unique_ptr<RedisProcess> redis_;
  RedisStoreOptions options_;
};

// --- The over-limit cache never outlives what Redis says. ---

// An operator deletes a full counter: the cache refuses for at most one
// re-check interval (100 ms), then Redis admits.
TEST_F(RedisStoreFaultsTest, OverLimitCacheAdmitsOnceTheKeyIsDeleted) {
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("deleted|g|a", Algorithm::kSlidingWindow, kHour, 2);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  ASSERT_TRUE(AcquireSync(*store, {check})->admitted);
  auto refused = AcquireSync(*store, {check});
  ASSERT_TRUE(refused.ok()) << refused.status();
  ASSERT_FALSE(refused->admitted);
  EXPECT_GT(refused->outcomes[0].retry_after_ms, kHour - 60'000);
  ASSERT_FALSE(AcquireSync(*store, {check})->admitted);
  ASSERT_GE(store->Status().cache_hits, 1u) << "the refusal is cached";

  ASSERT_EQ(redis_->Command({"DEL", store->RedisKey(check)}).value_or("?"), "1");
  const absl::Time deleted = absl::Now();
  int refusals = 0;
  while (true) {
    auto r = AcquireSync(*store, {check});
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->admitted) break;
    ++refusals;
    ASSERT_LT(absl::Now() - deleted, kWait) << "still refused after the key was deleted";
    absl::SleepFor(absl::Milliseconds(2));
  }
  std::cout << "admitted " << absl::ToInt64Milliseconds(absl::Now() - deleted)
            << " ms after the key was deleted (" << refusals << " cached refusals)\n";
  // And Redis counts again from there: one more, then full.
  EXPECT_TRUE(AcquireSync(*store, {check})->admitted);
  EXPECT_FALSE(AcquireSync(*store, {check})->admitted);
}

// A reload raises the limit (2 an hour -> 100 an hour; the same Redis key,
// since algorithm and window are unchanged): the very first call under the
// new limit is decided by Redis, and admitted.
TEST_F(RedisStoreFaultsTest, OverLimitCacheAdmitsARaisedLimitAtOnce) {
  options_.over_limit_recheck_ms = kHour;  // Only the definition can let it through.
  auto store = MakeStore();
  const LimitCheck old_limit = MakeCheck("raised|g|a", Algorithm::kSlidingWindow, kHour, 2);
  LimitCheck raised = old_limit;
  raised.max = raised.burst = 100;
  ASSERT_EQ(store->RedisKey(old_limit), store->RedisKey(raised));
  ASSERT_TRUE(AcquireSync(*store, {old_limit})->admitted);
  ASSERT_TRUE(AcquireSync(*store, {old_limit})->admitted);
  ASSERT_FALSE(AcquireSync(*store, {old_limit})->admitted);
  const uint64_t hits = store->Status().cache_hits;
  ASSERT_FALSE(AcquireSync(*store, {old_limit})->admitted);
  ASSERT_EQ(store->Status().cache_hits, hits + 1) << "the refusal is cached";

  auto r = AcquireSync(*store, {raised});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
  EXPECT_EQ(r->outcomes[0].remaining, 97);
  EXPECT_EQ(store->Status().cache_hits, hits + 1);
  // The old definition (a revision still pinned by policy_version) is still
  // refused: 3 admitted against its max of 2.
  EXPECT_FALSE(AcquireSync(*store, {old_limit})->admitted);
  // Lowered again below the count: refused by Redis, and then cached.
  LimitCheck lowered = old_limit;
  lowered.max = lowered.burst = 3;
  EXPECT_FALSE(AcquireSync(*store, {lowered})->admitted);
}

// --- Corrupt keys: right type, content toolgate never writes. ---

struct Corruption {
  std::string name;
  LimitCheck check;
  // Redis commands writing the garbage; "KEY" stands for the counter's key.
  std::vector<std::vector<std::string>> write;
};

std::vector<Corruption> Corruptions() {
  const std::string future = "99999999999999";  // 14 digits: year 5138.
  // Fixed windows and token buckets are strings: "<window index mod
  // 100000><count, 10 digits>" and "<level> <time>".
  return {
      {"log entry not a number",
       MakeCheck("c1|*", Algorithm::kSlidingWindow, kMinute, 2),
       {{"RPUSH", "KEY", "not-a-time", "x"}}},
      {"log entry NaN",
       MakeCheck("c2|*", Algorithm::kSlidingWindow, kMinute, 2),
       {{"RPUSH", "KEY", "nan", "inf", "-inf"}}},
      {"log entries in the far future",
       MakeCheck("c3|*", Algorithm::kSlidingWindow, kMinute, 2),
       {{"RPUSH", "KEY", future, future, future}}},
      {"log entry negative",
       MakeCheck("c4|*", Algorithm::kSlidingWindow, kMinute, 2),
       {{"RPUSH", "KEY", "-5"}}},
      {"bucket count not a number",
       MakeCheck("c5|*", Algorithm::kSlidingWindow, kMinute, 5000),
       {{"HSET", "KEY", "1", "lots"}}},
      {"bucket count negative",
       MakeCheck("c6|*", Algorithm::kSlidingWindow, kMinute, 5000),
       {{"HSET", "KEY", "1", "-1000000"}}},
      {"too many buckets", MakeCheck("c7|*", Algorithm::kSlidingWindow, kMinute, 5000), {}},
      {"fixed window count not an integer",
       MakeCheck("c8|*", Algorithm::kFixedWindow, kHour, 5),
       {{"SET", "KEY", "1.5"}}},
      {"fixed window count negative",
       MakeCheck("c9|*", Algorithm::kFixedWindow, kHour, 5),
       {{"SET", "KEY", "-99999999"}}},
      {"fixed window count huge",
       MakeCheck("c9b|*", Algorithm::kFixedWindow, kHour, 5),
       {{"SET", "KEY", "99999999999999999999"}}},
      {"fixed window index out of range",
       MakeCheck("c9c|*", Algorithm::kFixedWindow, kHour, 5),
       {{"SET", "KEY", "2000000000000000"}}},
      {"fixed window index garbage",
       MakeCheck("c10|*", Algorithm::kFixedWindow, kHour, 5),
       {{"SET", "KEY", "yesterday"}}},
      {"token bucket level NaN",
       MakeCheck("c11|*", Algorithm::kTokenBucket, kMinute, 5),
       {{"SET", "KEY", "nan 1"}}},
      {"token bucket level huge",
       MakeCheck("c12|*", Algorithm::kTokenBucket, kMinute, 5),
       {{"SET", "KEY", "1e308 1"}}},
      {"token bucket time missing",
       MakeCheck("c13|*", Algorithm::kTokenBucket, kMinute, 5),
       {{"SET", "KEY", "5"}}},
      {"token bucket level negative",
       MakeCheck("c14|*", Algorithm::kTokenBucket, kMinute, 5),
       {{"SET", "KEY", "-99999999999 1"}}},
      {"token bucket time in the far future",
       MakeCheck("c15|*", Algorithm::kTokenBucket, kMinute, 5),
       {{"SET", "KEY", "5 99999999999999"}}},
  };
}

// Each corruption fails the calls using the key, with a clear error naming
// it and nothing counted (the key is left as it was), while the other calls
// of the same script run are decided as usual.
TEST_F(RedisStoreFaultsTest, CorruptKeyFailsOnlyTheCallsUsingIt) {
  options_.exact_log_max = 100;  // Max 5000 uses buckets.
  options_.over_limit_cache = false;
  auto store = MakeStore();
  for (const Corruption& c : Corruptions()) {
    SCOPED_TRACE(c.name);
    const std::string key = store->RedisKey(c.check);
    for (std::vector<std::string> cmd : c.write) {
      for (std::string& arg : cmd) {
        if (arg == "KEY") arg = key;
      }
      ASSERT_TRUE(redis_->Command(cmd).ok());
    }
    if (c.name == "too many buckets") {
      for (int i = 0; i < 200; ++i) {
        ASSERT_TRUE(redis_->Command({"HSET", key, absl::StrCat(i), "0"}).ok());
      }
    }
    auto dump_before = redis_->Command({"DUMP", key});
    ASSERT_TRUE(dump_before.ok());

    // Many calls at once, so that they share script runs: every one on the
    // corrupt key fails, every other one is admitted.
    constexpr int kThreads = 16;
    std::atomic<int> failed_ok{0}, wrong{0};
    std::vector<int> good(kThreads, 0);
    std::vector<std::thread> threads;
    auto other_of = [&](int t) {
      return MakeCheck(absl::StrCat(c.check.key, "-ok|g|", t), c.check.algorithm, c.check.window_ms,
                       1000);
    };
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 10; ++i) {
          const bool bad = (t + i) % 4 == 0;
          if (!bad) ++good[t];
          const LimitCheck other = other_of(t);
          auto r = bad ? AcquireSync(*store, {other, c.check}) : AcquireSync(*store, {other});
          if (bad && !r.ok() &&
              absl::StrContains(r.status().message(), key + " holds content toolgate did not "
                                                            "write (corrupt")) {
            failed_ok.fetch_add(1);
          } else if (bad || !r.ok() || !r->admitted) {
            wrong.fetch_add(1);
            ADD_FAILURE() << (bad ? "corrupt" : "good")
                          << " call: " << (r.ok() ? std::string("decided") : r.status().ToString());
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(failed_ok.load(), 40);
    EXPECT_EQ(redis_->Command({"DUMP", key}).value_or("(gone)"), *dump_before)
        << "the corrupt key was changed";
    // The failed calls consumed nothing of their other limit: each other
    // counter holds exactly its admitted calls. (A token bucket refills as
    // time passes, so its level is not exact.)
    if (c.check.algorithm != Algorithm::kTokenBucket) {
      for (int t = 0; t < kThreads; ++t) {
        auto dry = AcquireSync(*store, {other_of(t)}, /*dry_run=*/true);
        ASSERT_TRUE(dry.ok()) << dry.status();
        EXPECT_EQ(dry->outcomes[0].remaining, 1000 - good[t] - 1) << "thread " << t;
      }
    }
    // Once the key is deleted, its calls are decided again.
    ASSERT_TRUE(redis_->Command({"DEL", key}).ok());
    auto r = AcquireSync(*store, {c.check});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
  }
}

// A call with one fixed window or token bucket (decided by the script's
// lean path) on a key of another type or with corrupt content fails with
// the same errors, and changes nothing; a dry run writes nothing.
TEST_F(RedisStoreFaultsTest, OneLimitCallsOnBadKeysFailTheSameWay) {
  options_.over_limit_cache = false;
  auto store = MakeStore();
  struct Case {
    LimitCheck check;
    std::vector<std::string> write;  // "KEY": the counter's key.
    std::string error;
  };
  const std::vector<Case> cases = {
      {MakeCheck("one-f1|*", Algorithm::kFixedWindow, kHour, 5),
       {"HSET", "KEY", "c", "1"},
       "(WRONGTYPE)"},
      {MakeCheck("one-t1|*", Algorithm::kTokenBucket, kHour, 5),
       {"RPUSH", "KEY", "1"},
       "(WRONGTYPE)"},
      {MakeCheck("one-f2|*", Algorithm::kFixedWindow, kHour, 5),
       {"SET", "KEY", "five"},
       "(corrupt"},
      {MakeCheck("one-t2|*", Algorithm::kTokenBucket, kHour, 5),
       {"SET", "KEY", "5 99999999999999"},
       "(corrupt"},
  };
  for (const Case& c : cases) {
    const std::string key = store->RedisKey(c.check);
    SCOPED_TRACE(key);
    std::vector<std::string> write = c.write;
    write[1] = key;
    ASSERT_TRUE(redis_->Command(write).ok());
    const std::string before = redis_->Command({"DUMP", key}).value_or("(none)");
    for (bool dry_run : {false, true}) {
      auto r = AcquireSync(*store, {c.check}, dry_run);
      ASSERT_FALSE(r.ok());
      EXPECT_THAT(std::string(r.status().message()), HasSubstr("counter key " + key));
      EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error));
    }
    EXPECT_EQ(redis_->Command({"DUMP", key}).value_or("(gone)"), before);
    ASSERT_TRUE(redis_->Command({"DEL", key}).ok());
    // A dry run on the empty counter writes nothing; a call then counts.
    auto dry = AcquireSync(*store, {c.check}, /*dry_run=*/true);
    ASSERT_TRUE(dry.ok()) << dry.status();
    EXPECT_TRUE(dry->admitted);
    EXPECT_EQ(redis_->Command({"EXISTS", key}).value_or("?"), "0");
    auto r = AcquireSync(*store, {c.check});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->admitted);
    EXPECT_EQ(r->outcomes[0].remaining, 4);
    EXPECT_EQ(redis_->Command({"EXISTS", key}).value_or("?"), "1");
  }
}

// A huge log (far more entries than any limit keeps) costs one call no more
// than a bounded amount of work, and never admits past max.
TEST_F(RedisStoreFaultsTest, HugeLogIsCutToItsNewestEntries) {
  options_.over_limit_cache = false;
  auto store = MakeStore();
  const LimitCheck check = MakeCheck("huge|*", Algorithm::kSlidingWindow, kMinute, 3);
  const std::string key = store->RedisKey(check);
  // 200,000 expired entries, then 2 current ones (Redis's own clock).
  ASSERT_TRUE(
      redis_
          ->Command({"EVAL",
                     "for i = 1, 200000 do redis.call('RPUSH', KEYS[1], '1000') end "
                     "local t = redis.call('TIME') "
                     "local now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)) "
                     "redis.call('RPUSH', KEYS[1], now, now) return 1",
                     "1", key})
          .ok());
  auto r = AcquireSync(*store, {check});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->admitted);
  EXPECT_EQ(r->outcomes[0].remaining, 0);
  EXPECT_EQ(redis_->Command({"LLEN", key}).value_or("?"), "3") << "expired entries cut";
  EXPECT_FALSE(AcquireSync(*store, {check})->admitted);
  // 200,000 current entries: full, decided from the newest three.
  ASSERT_TRUE(
      redis_
          ->Command({"EVAL",
                     "local t = redis.call('TIME') "
                     "local now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)) "
                     "for i = 1, 200000 do redis.call('RPUSH', KEYS[1], now) end return 1",
                     "1", key})
          .ok());
  r = AcquireSync(*store, {check});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->admitted);
  EXPECT_GT(r->outcomes[0].retry_after_ms, 0);
  EXPECT_LE(r->outcomes[0].retry_after_ms, kMinute);
}

// --- Authentication failures. ---

// A wrong password (WRONGPASS): every call fails at once with
// "authentication failed", the store never says it is connected, and it
// retries with the backoff (10 ms doubling to 400 ms), not in a loop; once
// the password is right, it connects.
TEST_F(RedisStoreFaultsTest, WrongPasswordBacksOffAndRecovers) {
  ASSERT_TRUE(redis_->Command({"ACL", "SETUSER", "tg", "on", ">right", "~*", "+@all"}).ok());
  options_.url = UrlWith("tg:s3cr3t-wrong@");
  const absl::Time start = absl::Now();
  auto store = MakeStore();
  ASSERT_TRUE(WaitForError(*store, "authentication failed: WRONGPASS"))
      << store->Status().last_error;
  const LimitCheck check = MakeCheck("auth|*", Algorithm::kSlidingWindow, kMinute, 10);
  for (int i = 0; i < 5; ++i) {
    auto r = AcquireSync(*store, {check});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("authentication failed"));
    EXPECT_THAT(std::string(r.status().message()), Not(HasSubstr("s3cr3t")));
  }
  // Let it retry for a while (polling the count, which only grows).
  const absl::Time watch_until = absl::Now() + absl::Seconds(2);
  while (absl::Now() < watch_until) absl::SleepFor(absl::Milliseconds(50));
  const CounterStoreStatus s = store->Status();
  const int64_t elapsed_ms = absl::ToInt64Milliseconds(absl::Now() - start);
  EXPECT_FALSE(s.connected);
  EXPECT_THAT(s.last_error, HasSubstr("authentication failed"));
  EXPECT_THAT(s.last_error, Not(HasSubstr("s3cr3t")));
  // Delays of 10, 20, 40, ... up to 400 ms, each at least half that: in
  // `elapsed_ms` at most 5 + elapsed_ms / 200 connects (a slower machine
  // makes fewer). Without the backoff: one every few milliseconds.
  std::cout << s.connects << " connects in " << elapsed_ms << " ms of wrong password\n";
  EXPECT_GE(s.connects, 2u) << "it keeps trying";
  EXPECT_LE(static_cast<int64_t>(s.connects), 6 + elapsed_ms / 200);

  // The password becomes right: connected, calls decided.
  ASSERT_TRUE(redis_->Command({"ACL", "SETUSER", "tg", ">s3cr3t-wrong"}).ok());
  const absl::Time fixed = absl::Now();
  while (!AcquireSync(*store, {check}).ok()) {
    ASSERT_LT(absl::Now() - fixed, kWait);
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(store->Status().connected);
}

// A password configured in Redis and none in the URL (NOAUTH on the first
// command), and a password in the URL for a Redis that has none: both are
// authentication failures, with the backoff.
TEST_F(RedisStoreFaultsTest, MissingOrUnexpectedPasswordIsAnAuthenticationFailure) {
  {
    options_.url = UrlWith(":unexpected@");
    auto store = MakeStore();
    ASSERT_TRUE(WaitForError(*store, "authentication failed: ERR AUTH"))
        << store->Status().last_error;
    EXPECT_FALSE(store->Status().connected);
    EXPECT_THAT(store->Status().last_error, Not(HasSubstr("unexpected@")));
  }
  // From here on the test's own helper cannot talk to Redis either.
  ASSERT_TRUE(redis_->Command({"CONFIG", "SET", "requirepass", "needed"}).ok());
  options_.url = UrlWith("");
  auto store = MakeStore();
  ASSERT_TRUE(WaitForError(*store, "authentication failed: NOAUTH")) << store->Status().last_error;
  const absl::Time start = absl::Now();
  const uint64_t connects_before = store->Status().connects;
  const absl::Time watch_until = absl::Now() + absl::Seconds(2);
  while (absl::Now() < watch_until) absl::SleepFor(absl::Milliseconds(50));
  const CounterStoreStatus s = store->Status();
  const int64_t elapsed_ms = absl::ToInt64Milliseconds(absl::Now() - start);
  EXPECT_FALSE(s.connected);
  std::cout << s.connects - connects_before << " connects in " << elapsed_ms
            << " ms without the password\n";
  // From wherever the backoff stood: at most 7 + elapsed_ms / 200.
  EXPECT_LE(static_cast<int64_t>(s.connects - connects_before), 7 + elapsed_ms / 200);
  auto r = AcquireSync(*store, {MakeCheck("noauth|*", Algorithm::kFixedWindow, kHour, 1)});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("authentication failed"));
}

}  // namespace
}  // namespace toolgate
