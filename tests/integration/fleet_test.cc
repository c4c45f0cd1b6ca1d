// A fleet of toolgated processes sharing one real redis-server: exactness
// under concurrency, failure modes when Redis is killed or paused, key
// expiry, and pipelining.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
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
using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

// How long a test waits for something it needs before it gives up: a guard
// against hangs, far beyond what anything here takes.
constexpr absl::Duration kWait = absl::Seconds(30);

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
  }

  // Starts `n` servers on `policy`, all using the test's Redis.
  void StartFleet(int n, const std::string& policy, std::vector<std::string> extra = {}) {
    policy_path_ = dir_.WriteFile("policy.yaml", policy);
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy_path_,
                                       "--redis", redis_->url()};
      args.insert(args.end(), extra.begin(), extra.end());
      auto s = ServerProcess::Start(args);
      ASSERT_TRUE(s.ok()) << s.status();
      clients_.push_back(toolgate::Client::Connect((*s)->address()));
      servers_.push_back(*std::move(s));
    }
  }

  TempDir dir_;
  std::string policy_path_;
  std::unique_ptr<RedisProcess> redis_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::unique_ptr<toolgate::Client>> clients_;
};

TEST_F(FleetTest, GlobalLimitIsExactAcrossThreeServers) {
  ASSERT_NO_FATAL_FAILURE(StartFleet(3, R"(
version: "1"
tools:
  fleet_tool:
    limits: [{counter: fleet, window: hour, max: 50, scope: global}]
)", {"--redis-timeout", "5s"}));
  std::vector<CheckRequest> requests;
  for (int i = 0; i < 300; ++i) requests.push_back(Req("fleet_tool", absl::StrCat("g", i % 7)));
  int allow = 0, limited = 0;
  for (const auto& r : CheckAll(clients_, requests)) {
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) ++allow;
    if (r->decision() == toolgate::v1::DECISION_RATE_LIMITED) {
      ++limited;
      EXPECT_GT(r->retry_after().seconds() * 1000 + r->retry_after().nanos() / 1000000, 0);
    }
  }
  EXPECT_EQ(allow, 50);
  EXPECT_EQ(limited, 250);
}

TEST_F(FleetTest, NoCounterIsConsumedByACallAnotherLimitRefused) {
  // The over-limit cache is off so that every refused call reports the state
  // of both of its limits.
  ASSERT_NO_FATAL_FAILURE(StartFleet(3, R"(
version: "1"
tools:
  two_limits:
    limits:
      - {counter: per_grant, window: hour, max: 20, scope: grant}
      - {counter: fleet_total, window: hour, max: 50, scope: global}
)", {"--redis-timeout", "5s", "--no-redis-over-limit-cache"}));
  std::vector<CheckRequest> requests;
  for (int i = 0; i < 300; ++i) requests.push_back(Req("two_limits", absl::StrCat("grant", i % 5)));
  std::map<std::string, int> allowed_by_grant;
  int allow = 0;
  const auto results = CheckAll(clients_, requests);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    if (results[i]->decision() == toolgate::v1::DECISION_ALLOW) {
      ++allow;
      ++allowed_by_grant[requests[i].grant()];
    }
  }
  EXPECT_EQ(allow, 50);
  for (int g = 0; g < 5; ++g) {
    const std::string grant = absl::StrCat("grant", g);
    EXPECT_LE(allowed_by_grant[grant], 20) << grant;
    // What the grant's counter holds is exactly what was admitted.
    CheckRequest probe = Req("two_limits", grant);
    probe.set_dry_run(true);
    auto r = clients_[0]->Check(probe, absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->limits_size(), 2);
    EXPECT_EQ(r->limits(0).counter(), "per_grant");
    const int64_t expected_remaining = 20 - allowed_by_grant[grant];
    // A dry run that would be admitted reports the state after it.
    const int64_t dry_adjust = r->decision() == toolgate::v1::DECISION_ALLOW ? 1 : 0;
    EXPECT_EQ(r->limits(0).remaining(), expected_remaining - dry_adjust) << grant;
  }
}

TEST_F(FleetTest, SlidingWindowNeverAdmitsMoreThanMaxInAnyWindow) {
  constexpr int64_t kWindow = 500;
  constexpr int kMax = 5;
  ASSERT_NO_FATAL_FAILURE(StartFleet(3, R"(
version: "1"
tools:
  sliding:
    limits: [{counter: slide, window: 500ms, max: 5, scope: global}]
)", {"--redis-timeout", "5s"}));

  // Every admission is an RPUSH of its time (by Redis's clock) to the
  // counter's log, which MONITOR reports however soon the entry leaves it.
  const std::string key = "toolgate:{slide|*}:s:500";
  auto monitor = RedisMonitor::Start(*redis_);
  ASSERT_TRUE(monitor.ok()) << monitor.status();

  // Six callers, until five windows' worth of calls were admitted: the
  // limit is reached again and again.
  std::atomic<int> allowed{0}, refused{0};
  std::vector<std::thread> callers;
  const absl::Time deadline = absl::Now() + kWait;
  for (int t = 0; t < 6; ++t) {
    callers.emplace_back([&, t] {
      auto& client = clients_[t % clients_.size()];
      while (allowed.load() < kMax * 5 && absl::Now() < deadline) {
        auto r = client->Check(Req("sliding", absl::StrCat("c", t)), absl::Seconds(5));
        if (r.ok() && r->decision() == toolgate::v1::DECISION_ALLOW) allowed.fetch_add(1);
        if (r.ok() && r->decision() == toolgate::v1::DECISION_RATE_LIMITED) refused.fetch_add(1);
      }
    });
  }
  for (auto& c : callers) c.join();
  auto commands = (*monitor)->Sync();
  ASSERT_TRUE(commands.ok()) << commands.status();

  std::vector<int64_t> times;
  for (const RedisMonitor::Command& c : *commands) {
    if (c.client != "lua" || c.args.size() != 3 || c.args[0] != "RPUSH" || c.args[1] != key) {
      continue;
    }
    int64_t t = 0;
    ASSERT_TRUE(absl::SimpleAtoi(c.args[2], &t)) << c.args[2];
    times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  EXPECT_EQ(static_cast<int>(times.size()), allowed.load())
      << "every admission is in the log, and nothing else";
  EXPECT_GE(allowed.load(), kMax * 4) << "the limit should have been reached in most windows";
  EXPECT_GT(refused.load(), 0) << "the limit was never reached";
  // No half-open interval [t, t + window) holds more than max admissions,
  // and some hold exactly max (the callers kept the limit busy).
  int64_t fullest = 0;
  for (size_t i = 0; i < times.size(); ++i) {
    const auto end_it = std::lower_bound(times.begin(), times.end(), times[i] + kWindow);
    EXPECT_LE(end_it - (times.begin() + i), kMax) << "window starting at " << times[i];
    fullest = std::max<int64_t>(fullest, end_it - (times.begin() + i));
  }
  EXPECT_EQ(fullest, kMax);
}

constexpr char kLoadPolicy[] = R"(
version: "1"
tools:
  loaded:
    limits: [{counter: loaded, window: hour, max: 1000000}]
)";

TEST_F(FleetTest, RedisKilledUnderLoadIsAnsweredByTheFailureModeWithinTheDeadline) {
  ASSERT_NO_FATAL_FAILURE(StartFleet(1, kLoadPolicy, {"--redis-timeout", "50ms"}));
  CheckLoad load(clients_, 4, [](int t, int i) {
    return Req("loaded", absl::StrCat("load", t, "-", i));
  });
  // Under load: checks are being answered when Redis dies.
  ASSERT_TRUE(load.WaitForAnswers(40, kWait));
  redis_->Kill();
  const absl::Time killed = absl::Now();
  // Checks sent after the kill: 10 per caller.
  ASSERT_TRUE(load.WaitForAnswers(40, killed, kWait));
  std::vector<TimedCheck> marked;
  for (TimedCheck& c : load.Stop()) {
    if (c.start >= killed) marked.push_back(std::move(c));
  }

  ASSERT_FALSE(marked.empty());
  absl::Duration slowest;
  for (const TimedCheck& c : marked) {
    const auto& r = c.result;
    ASSERT_TRUE(r.ok()) << "a Redis failure must still be a decision: " << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);
    EXPECT_THAT(r->reason(), HasSubstr("counter store failed"));
    slowest = std::max(slowest, c.end - c.start);
  }
  // 10x the 50 ms deadline: a check must never wait for Redis to come back
  // (the client's own deadline is 5 s); how late checks are answered on an
  // idle machine is for bench/, not for this test.
  EXPECT_LE(slowest, 10 * absl::Milliseconds(50)) << marked.size() << " checks";
  std::cout << "Redis killed: " << marked.size() << " checks answered, slowest "
            << absl::FormatDuration(slowest) << " (deadline 50ms)\n";
  EXPECT_TRUE(servers_[0]->Running());

  // Restarted (empty script cache): decided by Redis again.
  ASSERT_TRUE(redis_->Restart().ok());
  const absl::Time restarted = absl::Now();
  while (true) {
    auto r = clients_[0]->Check(Req("loaded", "after-restart"), absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) {
      EXPECT_EQ(r->limits_size(), 1);
      break;
    }
    // 10x the longest reconnection backoff (400 ms, jittered up to 600 ms).
    ASSERT_LT(absl::Now() - restarted, 10 * absl::Milliseconds(600))
        << "last reason: " << r->reason();
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::cout << "decided by the restarted Redis after "
            << absl::FormatDuration(absl::Now() - restarted) << "\n";
}

TEST_F(FleetTest, FailureModeOpenAllowsWhenRedisIsDown) {
  ASSERT_NO_FATAL_FAILURE(
      StartFleet(1, kLoadPolicy, {"--redis-timeout", "50ms", "--redis-failure-mode", "open"}));
  ASSERT_TRUE(clients_[0]->Check(Req("loaded", "a"), absl::Seconds(5)).ok());
  redis_->Kill();
  for (int i = 0; i < 20; ++i) {
    auto r = clients_[0]->Check(Req("loaded", "a"), absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW);
    EXPECT_THAT(r->reason(), HasSubstr("counter store failed"));
  }
}

TEST_F(FleetTest, PausedRedisIsAnsweredWithinTheDeadline) {
  ASSERT_NO_FATAL_FAILURE(StartFleet(1, kLoadPolicy, {"--redis-timeout", "30ms"}));
  ASSERT_EQ(clients_[0]->Check(Req("loaded", "warm"), absl::Seconds(5))->decision(),
            toolgate::v1::DECISION_ALLOW);
  // Paused (scripts wait) until the test says so: every check below is
  // decided while Redis cannot answer, however long the checks take.
  ASSERT_TRUE(redis_->Command({"CLIENT", "PAUSE", "100000", "WRITE"}).ok());
  for (int i = 0; i < 5; ++i) {
    const absl::Time start = absl::Now();
    auto r = clients_[0]->Check(Req("loaded", "paused"), absl::Seconds(5));
    const absl::Duration took = absl::Now() - start;
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);
    EXPECT_THAT(r->reason(), HasSubstr("counter store failed"));
    // 10x the 30 ms deadline: the check is answered by the deadline, not by
    // Redis (which stays paused far longer) nor by the client's 5 s deadline.
    EXPECT_LE(took, 10 * absl::Milliseconds(30)) << "check " << i;
    std::cout << "paused Redis: check " << i << " answered after " << absl::FormatDuration(took)
              << " (deadline 30ms)\n";
  }
  ASSERT_TRUE(redis_->Command({"CLIENT", "UNPAUSE"}).ok());
}

TEST_F(FleetTest, NoKeyOutlivesTheLongestWindow) {
  ASSERT_NO_FATAL_FAILURE(StartFleet(2, R"(
version: "1"
tools:
  short_lived:
    limits:
      - {counter: a, window: 300ms, max: 100, scope: grant}
      - {counter: b, window: 1s, max: 100, scope: session, algorithm: fixed_window}
      - {counter: c, window: 600ms, max: 100, scope: global, algorithm: token_bucket}
)", {"--redis-timeout", "5s"}));
  // Keys may expire before the test could list them (the windows are short,
  // and a fixed window ends on a calendar boundary, maybe at once): what the
  // scripts wrote, and the expiry each key was given, come from MONITOR.
  auto monitor = RedisMonitor::Start(*redis_);
  ASSERT_TRUE(monitor.ok()) << monitor.status();
  std::vector<CheckRequest> requests;
  std::set<std::string> expected;
  for (int i = 0; i < 40; ++i) {
    CheckRequest r = Req("short_lived", absl::StrCat("g", i % 4));
    r.set_session(absl::StrCat("s", i % 3));
    requests.push_back(r);
    expected.insert(absl::StrCat("toolgate:{a|g|g", i % 4, "}:s:300"));
    expected.insert(absl::StrCat("toolgate:{b|s|2:g", i % 4, "|s", i % 3, "}:f2:1000"));
    expected.insert("toolgate:{c|*}:t2:600");
  }
  ASSERT_EQ(expected.size(), 4u + 12u + 1u);  // 4 grants, 12 (grant, session) pairs, 1 global
  for (const auto& r : CheckAll(clients_, requests)) {
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW);
  }
  auto commands = (*monitor)->Sync();
  ASSERT_TRUE(commands.ok()) << commands.status();
  const ScriptWrites writes = WritesByScripts(*commands);
  EXPECT_EQ(writes.keys, expected);
  EXPECT_THAT(writes.without_expiry, ::testing::IsEmpty()) << "keys left without an expiry";
  for (const auto& [key, ms] : writes.expiries) {
    EXPECT_GT(ms, 0) << key;
    EXPECT_LE(ms, 1000) << key;
  }
  // What Redis holds now agrees, at one moment of its clock (-1: no expiry;
  // 0: expiring this millisecond).
  auto now = redis_->KeysWithTtl("toolgate:*");
  ASSERT_TRUE(now.ok()) << now.status();
  for (const auto& [key, ttl] : *now) {
    EXPECT_TRUE(expected.count(key)) << key;
    EXPECT_GE(ttl, 0) << key << " has no expiry";
    EXPECT_LE(ttl, 1000) << key;
  }
  // And Redis does remove them (lazily and by sampling: poll). 10x the
  // longest window (1 s).
  auto keys = redis_->Keys("toolgate:*");
  ASSERT_TRUE(keys.ok());
  const absl::Time deadline = absl::Now() + 10 * absl::Seconds(1);
  while (!keys->empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    keys = redis_->Keys("toolgate:*");
    ASSERT_TRUE(keys.ok());
  }
  EXPECT_TRUE(keys->empty()) << keys->size() << " keys left after the longest window";
}

TEST_F(FleetTest, ConcurrentChecksNeedFewerRoundTripsThanChecks) {
  ASSERT_NO_FATAL_FAILURE(StartFleet(1, kLoadPolicy, {"--redis-timeout", "5s"}));
  constexpr int kConcurrency = 64;
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<CheckRequest> requests;
    for (int i = 0; i < kConcurrency; ++i) requests.push_back(Req("loaded", absl::StrCat("p", i)));
    for (const auto& r : CheckAll(clients_, requests)) {
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW);
    }
  }
  const auto info = redis_->Command({"INFO", "commandstats"});
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(servers_[0]->Signal(SIGTERM));
  ASSERT_TRUE(servers_[0]->WaitExit(absl::Seconds(15)).has_value());
  // "counters redis: checks=N commands=N round_trips=N ..."
  const std::string log = servers_[0]->log();
  const size_t at = log.rfind("counters redis: ");
  ASSERT_NE(at, std::string::npos) << log;
  std::map<std::string, int64_t> stats;
  for (absl::string_view field :
       absl::StrSplit(absl::string_view(log).substr(at + 16, log.find('\n', at) - at - 16), ' ')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(field, '=');
    int64_t v = 0;
    if (absl::SimpleAtoi(kv.second, &v)) stats[kv.first] = v;
  }
  const int64_t checks = kConcurrency * kRounds;
  EXPECT_EQ(stats["checks"], checks);
  // One script call per check, plus SCRIPT LOAD once per connection.
  EXPECT_LE(stats["commands"], checks + stats["connects"]) << "at most one command per check";
  EXPECT_LT(stats["round_trips"], checks);
  std::cout << "64 concurrent checks: " << stats["checks"] << " checks, " << stats["commands"]
            << " commands, " << stats["round_trips"] << " round trips (ratio "
            << static_cast<double>(stats["round_trips"]) / static_cast<double>(checks) << ")\n";
  // Redis's own count agrees: one script call per check.
  const size_t pos = info->find("cmdstat_evalsha:calls=");
  ASSERT_NE(pos, std::string::npos);
  EXPECT_LE(std::stoll(info->substr(pos + 22)), checks);
}

}  // namespace
}  // namespace toolgate_test
