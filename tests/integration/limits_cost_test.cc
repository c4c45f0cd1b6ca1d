// Costs and limits over every call, with real toolgated processes over
// gRPC, in process and in a real redis-server: a spend cap read from the
// arguments (`cost_from`), a top-level limit over every tool, section
// limits that apply only in their scope, and, across three servers sharing
// Redis, concurrent charges that never admit more than the cap and leave
// exactly the admitted sum in Redis.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/checks.h"
#include "tests/integration/process.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

namespace v1 = toolgate::v1;
using ::testing::AnyOf;
using ::testing::Eq;
using ::testing::HasSubstr;

// Generous: a guard against hangs on a busy machine, not a speed claim.
constexpr absl::Duration kCallTimeout = absl::Seconds(10);

v1::CheckRequest Call(const std::string& tool, const std::string& grant,
                      const std::string& args_json = "{}", const std::string& server = "") {
  v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  r.set_server(server);
  r.set_args_json(args_json);
  return r;
}

// The status of `counter` in `r`, or null.
const v1::LimitStatus* StatusOf(const v1::CheckResponse& r, const std::string& counter) {
  for (const v1::LimitStatus& l : r.limits()) {
    if (l.counter() == counter) return &l;
  }
  return nullptr;
}

class LimitsCostTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool redis() const { return GetParam() == "redis"; }

  // Starts `n` servers on `policy` (sharing one Redis when the store is
  // Redis).
  void Start(const std::string& policy, int n = 1) {
    const std::string path = dir_.WriteFile("policy.yaml", policy);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", path, "--watch=false"};
    if (redis()) {
      auto r = RedisProcess::Start();
      ASSERT_TRUE(r.ok()) << r.status();
      redis_ = *std::move(r);
      args.insert(args.end(), {"--redis", redis_->url(), "--redis-timeout", "5s"});
    }
    for (int i = 0; i < n; ++i) {
      auto s = ServerProcess::Start(args);
      ASSERT_TRUE(s.ok()) << s.status();
      clients_.push_back(toolgate::Client::Connect((*s)->address()));
      servers_.push_back(*std::move(s));
    }
  }

  v1::CheckResponse Check(const v1::CheckRequest& req, size_t server = 0) {
    absl::StatusOr<v1::CheckResponse> r = clients_[server]->Check(req, kCallTimeout);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::CheckResponse();
  }

  TempDir dir_;
  std::unique_ptr<RedisProcess> redis_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::unique_ptr<toolgate::Client>> clients_;
};

constexpr char kSpendCap[] = R"(version: "1"
tools:
  charge:
    limits:
      - {counter: spend, window: day, max: 10000, cost_from: /amount}
)";

TEST_P(LimitsCostTest, ASpendCapCountsTheAmounts) {
  ASSERT_NO_FATAL_FAILURE(Start(kSpendCap));
  auto charge = [&](const std::string& args) { return Check(Call("charge", "shop", args)); };

  v1::CheckResponse r = charge(R"({"amount": 4000})");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  r = charge(R"({"amount": 5000.0})");  // A whole number, written as JSON may.
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  ASSERT_NE(StatusOf(r, "spend"), nullptr);
  EXPECT_EQ(StatusOf(r, "spend")->max(), 10000);
  EXPECT_EQ(StatusOf(r, "spend")->remaining(), 1000);

  r = charge(R"({"amount": 2000})");
  EXPECT_EQ(r.decision(), v1::DECISION_RATE_LIMITED) << r.reason();
  EXPECT_EQ(r.rule(), "tools.charge");
  ASSERT_NE(StatusOf(r, "spend"), nullptr);
  EXPECT_EQ(StatusOf(r, "spend")->remaining(), 1000);
  EXPECT_THAT(r.reason(), HasSubstr("counter \"spend\" allows 10000 per 1d"));
  EXPECT_THAT(r.reason(), HasSubstr("this call needs 2000, 1000 remaining"));
  EXPECT_GT(r.retry_after().seconds() + r.retry_after().nanos(), 0);

  r = charge(R"({"amount": 1000})");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  EXPECT_EQ(StatusOf(r, "spend")->remaining(), 0);

  // Amounts that are no cost: denied, with a violation at the pointer, and
  // nothing consumed (a charge of 0 is still admitted below).
  for (const char* bad : {R"({})", R"({"amount": -5})", R"({"amount": 10.5})",
                          R"({"amount": "100"})", R"({"amount": 10001})"}) {
    r = charge(bad);
    EXPECT_EQ(r.decision(), v1::DECISION_DENY) << bad;
    EXPECT_EQ(r.rule(), "tools.charge.limits[0]") << bad;
    ASSERT_EQ(r.violations_size(), 1) << bad << ": " << r.reason();
    EXPECT_EQ(r.violations(0).path(), "/amount") << bad;
    EXPECT_THAT(r.reason(), HasSubstr("the cost of limit tools.charge.limits[0]")) << bad;
    EXPECT_EQ(r.limits_size(), 0) << bad;
  }
  r = charge(R"({"amount": 0})");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
}

constexpr char kOverEveryCall[] = R"(version: "1"
default: deny
# Over every call, per grant. (An hour rather than a minute: no call of the
# test can leave the window while it runs, however slow the machine.)
limits:
  - {counter: calls, window: 1h, max: 60}
tools:
  t1: {limits: [{counter: t1, window: 1h, max: 100, scope: global}]}
  t2: {}
  t3: {}
  t4: {}
  t5: {limits: [{counter: t5, window: 1h, max: 3}]}
  denied: {action: deny}
)";

TEST_P(LimitsCostTest, ATopLevelLimitCapsEveryToolTogether) {
  ASSERT_NO_FATAL_FAILURE(Start(kOverEveryCall));
  const std::vector<std::string> tools = {"t1", "t2", "t3", "t4", "t5"};
  // t5's own limit (3) refuses its 4th call: that refusal takes nothing of
  // the top-level limit, so the others still get the other 57.
  int admitted = 0;
  for (int i = 0; i < 3; ++i) {
    v1::CheckResponse r = Check(Call("t5", "agent"));
    ASSERT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
    ++admitted;
  }
  v1::CheckResponse r = Check(Call("t5", "agent"));
  ASSERT_EQ(r.decision(), v1::DECISION_RATE_LIMITED) << r.reason();
  EXPECT_EQ(r.rule(), "tools.t5");
  // A denied call reaches no limit.
  EXPECT_EQ(Check(Call("denied", "agent")).decision(), v1::DECISION_DENY);
  int t1_admitted = 0;
  for (int i = 0; admitted < 60; ++i) {
    const std::string& tool = tools[i % 4];
    r = Check(Call(tool, "agent"));
    ASSERT_EQ(r.decision(), v1::DECISION_ALLOW)
        << tool << " after " << admitted << ": " << r.reason();
    ++admitted;
    if (tool == "t1") ++t1_admitted;
    ASSERT_NE(StatusOf(r, "calls"), nullptr);
    EXPECT_EQ(StatusOf(r, "calls")->remaining(), 60 - admitted);
  }
  // The 61st, whatever the tool, is refused by the top-level limit.
  for (const std::string& tool : tools) {
    r = Check(Call(tool, "agent"));
    EXPECT_EQ(r.decision(), v1::DECISION_RATE_LIMITED) << tool;
    if (tool == "t5") {
      // Both of t5's limits are full: either may be named (with Redis, the
      // over-limit cache may answer for one while the other is re-checked).
      EXPECT_THAT(r.rule(), AnyOf(Eq("tools.t5"), Eq("limits[0]"))) << r.reason();
    } else {
      EXPECT_EQ(r.rule(), "limits[0]") << tool << ": " << r.reason();
    }
    if (tool != "t5") {
      EXPECT_THAT(r.reason(), HasSubstr("counter \"calls\" allows 60 per 1h"));
    }
  }
  // Those refusals took nothing of t1's own (global) limit: another grant
  // finds it where "agent"'s admitted calls left it.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Check(Call("t1", "agent")).rule(), "limits[0]");
  }
  v1::CheckRequest dry = Call("t1", "other");
  dry.set_dry_run(true);
  r = Check(dry);
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  // (A dry run reports what would remain once it were admitted.)
  ASSERT_NE(StatusOf(r, "t1"), nullptr);
  EXPECT_EQ(StatusOf(r, "t1")->remaining(), 100 - t1_admitted - 1);
  ASSERT_NE(StatusOf(r, "calls"), nullptr);
  EXPECT_EQ(StatusOf(r, "calls")->remaining(), 59);
}

constexpr char kSections[] = R"(version: "1"
default: allow
servers:
  pay:
    limits:
      - {window: 1h, max: 2}
grants:
  ci-bot:
    limits:
      - {window: 1h, max: 3, cost: 1}
)";

TEST_P(LimitsCostTest, SectionLimitsApplyOnlyInTheirScope) {
  ASSERT_NO_FATAL_FAILURE(Start(kSections));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Check(Call("any", "ci-bot")).decision(), v1::DECISION_ALLOW);
  }
  v1::CheckResponse r = Check(Call("other_tool", "ci-bot"));
  EXPECT_EQ(r.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(r.rule(), "grants.ci-bot.limits[0]");
  // Another grant is not in the section.
  for (int i = 0; i < 5; ++i) {
    r = Check(Call("any", "human"));
    EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
    EXPECT_EQ(r.limits_size(), 0);
  }
  // The server's section, for any grant calling through it.
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(Check(Call("any", "human", "{}", "pay")).decision(), v1::DECISION_ALLOW);
  }
  r = Check(Call("any", "human", "{}", "pay"));
  EXPECT_EQ(r.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(r.rule(), "servers.pay.limits[0]");
  EXPECT_EQ(Check(Call("any", "human", "{}", "mail")).decision(), v1::DECISION_ALLOW);
  // Both sections over one call: each counts it.
  r = Check(Call("any", "ci-bot", "{}", "pay"));
  EXPECT_EQ(r.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(r.rule(), "grants.ci-bot.limits[0]");
}

constexpr char kApprovedCharges[] = R"(version: "1"
limits:
  - {counter: budget, window: 1h, max: 10, cost_from: /n}
tools:
  pay: {action: require_approval}
)";

TEST_P(LimitsCostTest, AnApprovedCallPaysItsCostToo) {
  ASSERT_NO_FATAL_FAILURE(Start(kApprovedCharges));
  std::unique_ptr<toolgate::Client> admin = toolgate::Client::Connect(servers_[0]->admin_address());
  // An invalid cost is refused before anyone is asked to approve.
  v1::CheckResponse r = Check(Call("pay", "agent", R"({"n": "six"})"));
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_EQ(r.rule(), "limits[0]");
  EXPECT_TRUE(r.approval_id().empty());
  ASSERT_EQ(r.violations_size(), 1);
  EXPECT_EQ(r.violations(0).path(), "/n");

  // Asks, is approved, redeems: returns the answer to the redemption.
  auto approved = [&](const std::string& args) {
    v1::CheckResponse asked = Check(Call("pay", "agent", args));
    EXPECT_EQ(asked.decision(), v1::DECISION_REQUIRE_APPROVAL) << asked.reason();
    v1::DecideApprovalRequest decide;
    decide.set_id(asked.approval_id());
    decide.set_approve(true);
    decide.set_approver("alice");
    absl::StatusOr<v1::Approval> a = admin->DecideApproval(decide, kCallTimeout);
    EXPECT_TRUE(a.ok()) << a.status();
    v1::CheckRequest redeem = Call("pay", "agent", args);
    redeem.set_approval_id(asked.approval_id());
    return Check(redeem);
  };
  r = approved(R"({"n": 6})");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  ASSERT_NE(StatusOf(r, "budget"), nullptr);
  EXPECT_EQ(StatusOf(r, "budget")->remaining(), 4);
  r = approved(R"({"n": 5})");
  EXPECT_EQ(r.decision(), v1::DECISION_RATE_LIMITED) << r.reason();
  EXPECT_EQ(r.rule(), "limits[0]");
  EXPECT_THAT(r.reason(), HasSubstr("this call needs 5, 4 remaining"));
  EXPECT_THAT(r.reason(), HasSubstr("was not used up: retry with it"));
}

INSTANTIATE_TEST_SUITE_P(Stores, LimitsCostTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

// The units the spend cap's Redis key holds: a sliding window with max >
// 1024 is a hash of bucket -> units.
int64_t UnitsInRedis(const RedisProcess& redis, const std::string& key) {
  absl::StatusOr<std::string> all = redis.Command({"HGETALL", key});
  EXPECT_TRUE(all.ok()) << all.status();
  if (!all.ok()) return -1;
  const std::vector<std::string> parts = absl::StrSplit(*all, '\n', absl::SkipEmpty());
  int64_t sum = 0;
  for (size_t i = 1; i < parts.size(); i += 2) {
    int64_t v = 0;
    EXPECT_TRUE(absl::SimpleAtoi(parts[i], &v)) << parts[i];
    sum += v;
  }
  return sum;
}

TEST(LimitsCostFleetTest, ConcurrentChargesNeverPassTheCapAcrossThreeServers) {
  TempDir dir;
  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  const std::string path = dir.WriteFile("policy.yaml", kSpendCap);
  std::vector<std::unique_ptr<ServerProcess>> servers;
  std::vector<std::unique_ptr<toolgate::Client>> clients;
  for (int i = 0; i < 3; ++i) {
    auto s = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path, "--watch=false",
                                   "--redis", (*redis)->url(), "--redis-timeout", "5s"});
    ASSERT_TRUE(s.ok()) << s.status();
    clients.push_back(toolgate::Client::Connect((*s)->address()));
    servers.push_back(*std::move(s));
  }
  const unsigned seed = std::random_device()();
  SCOPED_TRACE(absl::StrCat("amounts from seed ", seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> amount(1, 2000);
  std::vector<v1::CheckRequest> requests;
  std::vector<int64_t> amounts;
  for (int i = 0; i < 200; ++i) {
    amounts.push_back(amount(rng));
    requests.push_back(Call("charge", "shop", absl::StrCat(R"({"amount": )", amounts.back(), "}")));
  }
  const auto answers = CheckAll(clients, requests, absl::Seconds(30));
  int64_t admitted_sum = 0;
  int admitted = 0, limited = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    ASSERT_TRUE(answers[i].ok()) << answers[i].status();
    const v1::CheckResponse& r = *answers[i];
    ASSERT_TRUE(r.decision() == v1::DECISION_ALLOW || r.decision() == v1::DECISION_RATE_LIMITED)
        << r.reason();
    if (r.decision() == v1::DECISION_ALLOW) {
      admitted_sum += amounts[i];
      ++admitted;
    } else {
      ++limited;
    }
  }
  RecordProperty("admitted", admitted);
  RecordProperty("admitted_sum", static_cast<int>(admitted_sum));
  EXPECT_LE(admitted_sum, 10000) << admitted << " admitted";
  EXPECT_GT(admitted, 0);
  EXPECT_GT(limited, 0);
  EXPECT_EQ(UnitsInRedis(**redis, "toolgate:{spend|g|shop}:b:86400000"), admitted_sum)
      << admitted << " admitted, " << limited << " refused";
  // And the servers see what Redis holds (a dry run of cost 0 reports the
  // room left).
  v1::CheckRequest dry = Call("charge", "shop", R"({"amount": 0})");
  dry.set_dry_run(true);
  absl::StatusOr<v1::CheckResponse> left = clients[0]->Check(dry, kCallTimeout);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_NE(StatusOf(*left, "spend"), nullptr);
  EXPECT_EQ(StatusOf(*left, "spend")->remaining(), 10000 - admitted_sum);
}

}  // namespace
}  // namespace toolgate_test
