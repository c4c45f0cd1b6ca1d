// toolgated against Redis faults an operator or an attacker can cause:
// counters raised by a reload or deleted behind its back (the over-limit
// cache must let Redis decide again), a corrupt counter key among many
// concurrent calls (only its calls fail), and a wrong or missing password
// (backoff, "authentication failed", never "connected"). Real toolgated,
// real redis-server, real gRPC calls.
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/checks.h"
#include "tests/integration/process.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

// A guard against hangs, far beyond what anything here takes.
constexpr absl::Duration kWait = absl::Seconds(30);

// Tool "limited": `max` calls an hour per grant (sliding window); tool
// "bucketed": `max` an hour per grant (token bucket).
std::string Policy(const std::string& revision, int max) {
  return absl::StrCat("version: \"1\"\nrevision: \"", revision,
                      "\"\ntools:\n  limited:\n    limits: [{counter: per_grant, window: hour, "
                      "max: ",
                      max,
                      ", scope: grant}]\n  bucketed:\n    limits: [{counter: bucket, window: "
                      "hour, max: ",
                      max, ", scope: grant, algorithm: token_bucket}]\n");
}

// The Redis key of grant `grant`'s counter (README: Keys).
std::string KeyOf(const std::string& grant) {
  return absl::StrCat("toolgate:{per_grant|g|", grant, "}:s:3600000");
}

class RedisFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
  }
  std::unique_ptr<ServerProcess> Start(const std::string& policy_path, const std::string& url,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen",      "127.0.0.1:0", "--policy", policy_path,
                                     "--watch=false", "--redis",     url};
    args.insert(args.end(), extra.begin(), extra.end());
    auto s = ServerProcess::Start(args);
    if (!s.ok()) {
      ADD_FAILURE() << "toolgated did not start: " << s.status();
      return nullptr;
    }
    return *std::move(s);
  }
  std::string RedisUrl(const std::string& auth) const {
    return absl::StrCat("redis://", auth, "127.0.0.1:", redis_->port());
  }

  TempDir dir_;
  std::unique_ptr<RedisProcess> redis_;
};

// 2 an hour, full (the refusal cached: "retry in ~3600 s"); a reload raises
// it to 100 an hour: the first call after the reload is admitted.
TEST_F(RedisFaultsTest, RaisedLimitAdmitsRightAfterTheReload) {
  const std::string path = dir_.WriteFile("policy.yaml", Policy("two", 2));
  auto server = Start(path, redis_->url(), {"--redis-timeout", "5s"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  for (int i = 0; i < 2; ++i) {
    auto r = client->Check(Req("limited", "g1"), kWait);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << r->reason();
  }
  for (int i = 0; i < 3; ++i) {  // From Redis, then from the cache.
    auto r = client->Check(Req("limited", "g1"), kWait);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED) << r->reason();
    EXPECT_GT(r->retry_after().seconds(), 3000);
  }
  dir_.WriteFile("policy.yaml", Policy("hundred", 100));
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(server->WaitForLog("policy reloaded: revision hundred", kWait)) << server->log();
  auto r = client->Check(Req("limited", "g1"), kWait);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->policy_version(), "hundred");
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << r->reason();
}

// An operator deletes a full counter's key: calls are admitted again (after
// at most the cache's 100 ms re-check; polled here, with a deadline).
TEST_F(RedisFaultsTest, DeletedKeyAdmitsAgain) {
  const std::string path = dir_.WriteFile("policy.yaml", Policy("two", 2));
  auto server = Start(path, redis_->url(), {"--redis-timeout", "5s"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Check(Req("limited", "g1"), kWait).ok());
  auto r = client->Check(Req("limited", "g1"), kWait);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED);
  ASSERT_EQ(redis_->Command({"DEL", KeyOf("g1")}).value_or("?"), "1");
  const absl::Time deleted = absl::Now();
  int refused = 0;
  while (true) {
    r = client->Check(Req("limited", "g1"), kWait);
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) break;
    ASSERT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED) << r->reason();
    ++refused;
    ASSERT_LT(absl::Now() - deleted, kWait) << "still refused after the key was deleted";
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::cout << "admitted " << absl::ToInt64Milliseconds(absl::Now() - deleted)
            << " ms after the key was deleted (" << refused << " refusals before)\n";
}

// Two grants' counter keys hold garbage of the right type (a sliding
// window's log with entries that are no times; a token bucket whose refill
// time is no number); 800 concurrent calls over 40 grants: only the calls
// on those keys fail (DENY by failure mode closed, saying why); every other
// call is admitted.
TEST_F(RedisFaultsTest, CorruptKeyFailsOnlyItsCallsAmongManyConcurrent) {
  const std::string path = dir_.WriteFile("policy.yaml", Policy("many", 1000));
  auto server = Start(path, redis_->url(), {"--redis-timeout", "10s"});
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(redis_->Command({"RPUSH", KeyOf("victim"), "garbage", "nan", "-1"}).ok());
  const std::string bucket_key = "toolgate:{bucket|g|victim}:t2:3600000";  // "<level> <time>"
  ASSERT_TRUE(redis_->Command({"SET", bucket_key, "5 garbage"}).ok());
  auto client = toolgate::Client::Connect(server->address());
  constexpr int kCalls = 800;
  std::vector<absl::StatusOr<CheckResponse>> results(kCalls, absl::UnknownError("no answer"));
  std::vector<std::string> grants(kCalls);
  std::mutex mu;
  std::condition_variable cv;
  int pending = kCalls;
  for (int i = 0; i < kCalls; ++i) {
    grants[i] = i % 40 == 0 ? "victim" : absl::StrCat("g", i % 40);
    // Half the calls on each tool: 10 of the victim's on each corrupt key.
    const std::string tool = (i / 40) % 2 == 0 ? "limited" : "bucketed";
    client->CheckAsync(Req(tool, grants[i]), kWait, [&, i](absl::StatusOr<CheckResponse> r) {
      std::lock_guard<std::mutex> lock(mu);
      results[i] = std::move(r);
      if (--pending == 0) cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return pending == 0; }));
  }
  int victim_denied = 0, others_allowed = 0, others_not_allowed = 0;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    if (grants[i] == "victim") {
      EXPECT_EQ(results[i]->decision(), toolgate::v1::DECISION_DENY);
      EXPECT_THAT(results[i]->reason(), HasSubstr("holds content toolgate did not write"));
      if (results[i]->decision() == toolgate::v1::DECISION_DENY) ++victim_denied;
    } else if (results[i]->decision() == toolgate::v1::DECISION_ALLOW) {
      ++others_allowed;
    } else {
      ++others_not_allowed;
      ADD_FAILURE() << grants[i] << ": " << results[i]->reason();
    }
  }
  std::cout << "corrupt key: " << victim_denied << " of its 20 calls denied; " << others_allowed
            << " of 780 other calls allowed, " << others_not_allowed << " not\n";
  EXPECT_EQ(victim_denied, 20);
  EXPECT_EQ(others_allowed, 780);
  // Nothing of the garbage was touched, and it was logged (once: rate-limited).
  EXPECT_EQ(redis_->Command({"LRANGE", KeyOf("victim"), "0", "-1"}).value_or("?"),
            "garbage\nnan\n-1");
  EXPECT_EQ(redis_->Command({"GET", bucket_key}).value_or("?"), "5 garbage");
  // (Either key may be the one logged; the other's failures are counted in
  // the next line, 10 s later.)
  EXPECT_TRUE(server->WaitForLog(":3600000 holds content toolgate did not write", kWait))
      << server->log();
  const std::string log = server->log();
  size_t lines = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "holds content toolgate did not write")) ++lines;
  }
  EXPECT_LE(lines, 3u) << log;
}

// Log lines about Redis in `log`; how many say `what`.
struct RedisLines {
  int total = 0;
  int auth_failed = 0;
  int connected = 0;
};
RedisLines CountRedisLines(const std::string& log) {
  RedisLines n;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, "redis")) continue;
    ++n.total;
    if (absl::StrContains(line, "authentication failed")) ++n.auth_failed;
    if (absl::StrContains(line, "connected to")) ++n.connected;
  }
  return n;
}

// toolgated with a wrong password, and with none for a Redis that requires
// one: in 5 s a handful of log lines, each saying "authentication failed"
// (none "connected to", none with the password); checks are decided by the
// failure mode, saying why.
TEST_F(RedisFaultsTest, AuthenticationFailureBacksOffAndSaysSo) {
  ASSERT_TRUE(redis_->Command({"CONFIG", "SET", "requirepass", "right-pass"}).ok());
  const std::string path = dir_.WriteFile("policy.yaml", Policy("auth", 1000));
  for (const std::string& auth : {std::string(":wrong-pass@"), std::string()}) {
    SCOPED_TRACE(auth.empty() ? "no password" : "wrong password");
    auto server = Start(path, RedisUrl(auth));
    ASSERT_NE(server, nullptr);
    ASSERT_TRUE(server->WaitForLog("authentication failed", kWait)) << server->log();
    // A count of lines over 5 s (a busy machine writes fewer, not more).
    const absl::Time start = absl::Now();
    absl::SleepFor(absl::Seconds(5));
    auto client = toolgate::Client::Connect(server->address());
    auto r = client->Check(Req("limited", "g1"), kWait);
    const std::string log = server->log();
    const RedisLines n = CountRedisLines(log);
    std::cout << (auth.empty() ? "no password" : "wrong password") << ": " << n.total
              << " Redis log lines in " << absl::ToInt64Milliseconds(absl::Now() - start) << " ms ("
              << n.auth_failed << " 'authentication failed')\n";
    EXPECT_LE(n.total, 20) << log;
    EXPECT_GE(n.auth_failed, 1) << log;
    EXPECT_EQ(n.connected, 0) << log;
    EXPECT_THAT(log, Not(HasSubstr("wrong-pass")));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);
    EXPECT_THAT(r->reason(), HasSubstr("authentication failed"));
  }
}

// The policy follower (--policy redis://...) with a wrong password: it tries
// once every --policy-check-interval (1 s), saying "authentication failed".
TEST_F(RedisFaultsTest, PolicyFollowerAuthenticationFailureSaysSo) {
  ASSERT_TRUE(redis_->Command({"CONFIG", "SET", "requirepass", "right-pass"}).ok());
  const std::string url = RedisUrl(":wrong-pass@");
  auto started = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", url, "--redis", url});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(5));  // A count of lines over 5 s.
  const std::string log = server->log();
  int lines = 0, auth_failed = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (line.empty()) continue;
    ++lines;
    if (absl::StrContains(line, "authentication failed")) ++auth_failed;
  }
  std::cout << "policy follower and counters: " << lines << " log lines in "
            << absl::ToInt64Milliseconds(absl::Now() - start) << " ms (" << auth_failed
            << " 'authentication failed')\n";
  EXPECT_LE(lines, 30) << log;
  EXPECT_GE(auth_failed, 2) << log;  // The policy and the counters.
  EXPECT_THAT(log, Not(HasSubstr("connected to")));
  EXPECT_THAT(log, Not(HasSubstr("wrong-pass")));
}

}  // namespace
}  // namespace toolgate_test
