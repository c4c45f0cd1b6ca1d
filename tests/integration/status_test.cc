// AdminService/GetStatus and `toolgate status` against real servers.
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(
version: "1"
revision: "status-1"
tools:
  limited:
    limits: [{counter: c, window: hour, max: 2}]
)";

toolgate::v1::CheckRequest Req(const std::string& tool) {
  toolgate::v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant("g");
  return r;
}

TEST(StatusTest, ReportsRevisionsDecisionsAndInProcessCounters) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto admin = toolgate::Client::Connect((*server)->admin_address());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->Check(Req("limited")).ok());
  ASSERT_TRUE(client->Check(Req("other")).ok());
  ASSERT_FALSE(client->Check(Req("")).ok());

  auto status = admin->GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->active_revision(), "status-1");
  ASSERT_EQ(status->loaded_size(), 1);
  EXPECT_EQ(status->loaded(0).exact_entries(), 1);
  EXPECT_THAT(status->loaded(0).sources(0), HasSubstr("policy.yaml"));
  EXPECT_EQ(status->counter_store().kind(), "in_process");
  EXPECT_EQ(status->counter_store().keys(), 1u);
  EXPECT_EQ(status->decisions().allow(), 2u);
  EXPECT_EQ(status->decisions().rate_limited(), 1u);
  EXPECT_EQ(status->decisions().deny(), 1u);
  EXPECT_EQ(status->decisions().errors(), 1u);
  EXPECT_TRUE(status->last_reload_error().empty());

  // An invalid reload is rejected, visible in status, and the old revision stays.
  dir.WriteFile("policy.yaml", "version: \"1\"\ntools:\n  x: {action: maybe}\n");
  ASSERT_TRUE((*server)->Signal(SIGHUP));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (status->last_reload_error().empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    status = admin->GetStatus();
    ASSERT_TRUE(status.ok());
  }
  EXPECT_THAT(status->last_reload_error(), HasSubstr("policy.yaml:3:15"));
  EXPECT_EQ(status->active_revision(), "status-1");

  CommandResult cli = RunCommand({CliBin(), "status", "--target", (*server)->admin_address()});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("active revision:  status-1"));
  EXPECT_THAT(cli.out, HasSubstr("reload error:"));
  EXPECT_THAT(cli.out, HasSubstr("allow 2, deny 1, rate_limited 1"));
}

TEST(StatusTest, ReportsTheRedisStoreAndItsFailures) {
  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  // The deadline is not under test here: 5 s is 10x more than any call to
  // Redis takes on a busy machine (the default, 25 ms, is not).
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path, "--redis",
                                      (*redis)->url(), "--redis-timeout", "5s"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto admin = toolgate::Client::Connect((*server)->admin_address());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Check(Req("limited"), absl::Seconds(5)).ok());

  auto status = admin->GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  const auto& cs = status->counter_store();
  EXPECT_EQ(cs.kind(), "redis");
  EXPECT_EQ(cs.address(), absl::StrCat("redis://127.0.0.1:", (*redis)->port(), "/0"));
  EXPECT_TRUE(cs.connected());
  EXPECT_EQ(cs.checks(), 5u);
  // Calls 4 and 5 were refused from the over-limit cache after call 3, or,
  // when one came more than its 100 ms re-check interval later (a busy
  // machine), by Redis: every call is one or the other.
  EXPECT_LE(cs.cache_hits(), 2u);
  EXPECT_EQ(cs.cache_hits() + (cs.commands() - 1), 5u) << "SCRIPT LOAD, then one EVALSHA a call";
  EXPECT_GE(cs.round_trips(), 1u);
  EXPECT_LE(cs.round_trips(), 1u + (5u - cs.cache_hits()));

  (*redis)->Kill();
  ASSERT_TRUE(client->Check(Req("other_tool_denied_anyway")).ok());
  // A fresh grant would need Redis; with Redis down the failure mode decides.
  toolgate::v1::CheckRequest fresh = Req("limited");
  fresh.set_grant("fresh");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    ASSERT_TRUE(client->Check(fresh).ok());
    status = admin->GetStatus();
    ASSERT_TRUE(status.ok());
    if (!status->counter_store().connected()) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(status->counter_store().connected());
  EXPECT_FALSE(status->counter_store().last_error().empty());
  EXPECT_GE(status->counter_store().failures(), 1u);
}

}  // namespace
}  // namespace toolgate_test

namespace toolgate_test {
namespace {

TEST(ExplainTest, OnlineExplainIsADryRunThatNamesItsSteps) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto admin = toolgate::Client::Connect((*server)->admin_address());
  for (int i = 0; i < 3; ++i) {
    auto e = admin->Explain(Req("limited"));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->decision().decision(), toolgate::v1::DECISION_ALLOW);
    EXPECT_EQ(e->decision().limits(0).remaining(), 1) << "explain must not consume";
    std::string steps;
    for (const auto& s : e->steps()) steps += s + "\n";
    EXPECT_THAT(steps, HasSubstr("lookup tools: matched tools.limited"));
    EXPECT_THAT(steps, HasSubstr("limit c (2 per 1h"));
    EXPECT_THAT(steps, HasSubstr("dry run: no counter consumed"));
  }
  EXPECT_EQ(admin->Explain(Req("")).status().code(), absl::StatusCode::kInvalidArgument);

  CommandResult cli =
      RunCommand({CliBin(), "check", "--admin-target", (*server)->admin_address(), "--tool",
                  "limited", "--grant", "g", "--explain"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("steps:"));
  EXPECT_THAT(cli.out, HasSubstr("tools.limited decides: allow"));
}

TEST(ExplainTest, OfflineExplainUsesThePolicyFile) {
  CommandResult cli = RunCommand({CliBin(), "check", "--policy",
                                  SourcePath("examples/scoped-policy.yaml"), "--tool",
                                  "run_command", "--grant", "alice", "--args",
                                  R"({"command": "ls"})", "--explain"});
  EXPECT_EQ(cli.exit_code, 5) << cli.err;  // REQUIRE_APPROVAL
  EXPECT_THAT(cli.out, HasSubstr("classes.high_risk_execute tightens the decision"));
  CommandResult broken = RunCommand({CliBin(), "check", "--policy", "/nonexistent.yaml", "--tool",
                                     "t", "--grant", "g"});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_THAT(broken.err, HasSubstr("/nonexistent.yaml"));
}

}  // namespace
}  // namespace toolgate_test
