// Fleet-wide rollout through Redis (toolgate policy push/activate/rollback,
// servers following --policy redis://), pinned revisions, and shadow
// revisions, with real toolgated processes and a real redis-server.
#include <signal.h>

#include <iostream>

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
using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

std::string PolicyText(const std::string& revision, const std::string& deploy_action) {
  return absl::StrCat("version: \"1\"\nrevision: \"", revision, "\"\ntools:\n  deploy: {action: ",
                      deploy_action, "}\n  read_file: {}\n");
}

CheckRequest Req(const std::string& tool, const std::string& version = "") {
  CheckRequest r;
  r.set_tool(tool);
  r.set_grant("g");
  r.set_policy_version(version);
  return r;
}

// How soon a server must follow an activation: 10x the 1 s
// --policy-check-interval, the latest a server sees a change even when the
// pub/sub announcement (normally there in milliseconds) is missed.
const absl::Duration kFollow = 10 * absl::Seconds(1);
// How long to wait for a revision before giving up.
constexpr absl::Duration kWait = absl::Seconds(30);

// Polls `client` until it answers with `revision`; how long that took.
absl::StatusOr<absl::Duration> WaitForRevision(toolgate::Client& client, const std::string& revision,
                                               absl::Duration limit) {
  const absl::Time start = absl::Now();
  while (absl::Now() - start < limit) {
    auto r = client.Check(Req("read_file"), absl::Seconds(2));
    if (r.ok() && r->policy_version() == revision) return absl::Now() - start;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return absl::DeadlineExceededError(absl::StrCat("revision ", revision, " not live within limit"));
}

class RolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
  }
  CommandResult Policy(std::vector<std::string> args) {
    std::vector<std::string> argv = {CliBin(), "policy"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--redis");
    argv.push_back(redis_->url());
    return RunCommand(argv);
  }
  TempDir dir_;
  std::unique_ptr<RedisProcess> redis_;
};

TEST_F(RolloutTest, TwoServersFollowActivateAndRollback) {
  const std::string a = dir_.WriteFile("a.yaml", PolicyText("rev-a", "deny"));
  const std::string b = dir_.WriteFile("b.yaml", PolicyText("rev-b", "allow"));
  CommandResult pushed = Policy({"push", a, "--activate"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  EXPECT_THAT(pushed.out, HasSubstr("pushed rev-a"));

  std::vector<std::unique_ptr<ServerProcess>> servers;
  std::vector<std::unique_ptr<toolgate::Client>> clients;
  for (int i = 0; i < 2; ++i) {
    auto s = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", redis_->url()});
    ASSERT_TRUE(s.ok()) << s.status();
    clients.push_back(toolgate::Client::Connect((*s)->address()));
    servers.push_back(*std::move(s));
  }
  for (auto& c : clients) {
    auto r = c->Check(Req("deploy"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->policy_version(), "rev-a");
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);
  }

  ASSERT_EQ(Policy({"push", b}).exit_code, 0);
  const CommandResult activated = Policy({"activate", "rev-b"});
  ASSERT_EQ(activated.exit_code, 0) << activated.err;
  for (auto& c : clients) {
    auto took = WaitForRevision(*c, "rev-b", kWait);
    ASSERT_TRUE(took.ok()) << took.status();
    EXPECT_LE(*took, kFollow);
    std::cout << "activate rev-b live after " << absl::FormatDuration(*took) << "\n";
    EXPECT_EQ(c->Check(Req("deploy"))->decision(), toolgate::v1::DECISION_ALLOW);
  }

  const CommandResult rolled = Policy({"rollback"});
  ASSERT_EQ(rolled.exit_code, 0) << rolled.err;
  EXPECT_THAT(rolled.out, HasSubstr("active rev-a"));
  for (auto& c : clients) {
    auto took = WaitForRevision(*c, "rev-a", kWait);
    ASSERT_TRUE(took.ok()) << took.status();
    EXPECT_LE(*took, kFollow);
    std::cout << "rollback to rev-a live after " << absl::FormatDuration(*took) << "\n";
  }
  const CommandResult list = Policy({"list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.out, HasSubstr("* rev-a"));
  EXPECT_THAT(list.out, HasSubstr("  rev-b"));
}

TEST_F(RolloutTest, InvalidPoliciesAndUnknownRevisionsAreRefused) {
  const std::string bad = dir_.WriteFile("bad.yaml", "version: \"1\"\ntools:\n  t: {max: 3}\n");
  CommandResult r = Policy({"push", bad});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("bad.yaml:3:7: unknown key \"max\""));
  r = Policy({"activate", "no-such-revision"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("was not pushed"));
  r = Policy({"rollback"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no previous revision"));
}

TEST_F(RolloutTest, ServerWithoutAnActiveRevisionAnswersUnavailableUntilOneIsActivated) {
  auto s = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", redis_->url()});
  ASSERT_TRUE(s.ok()) << s.status();
  auto client = toolgate::Client::Connect((*s)->address());
  auto r = client->Check(Req("read_file"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  const std::string a = dir_.WriteFile("a.yaml", PolicyText("rev-a", "deny"));
  ASSERT_EQ(Policy({"push", a, "--activate"}).exit_code, 0);
  auto took = WaitForRevision(*client, "rev-a", kWait);
  ASSERT_TRUE(took.ok()) << took.status();
  EXPECT_LE(*took, kFollow);
  std::cout << "first activation live after " << absl::FormatDuration(*took) << "\n";
}

TEST(PinnedRevisionTest, AnOlderRevisionAnswersByItsOwnRules) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", PolicyText("rev-1", "deny"));
  auto s = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path, "--no-watch"});
  ASSERT_TRUE(s.ok()) << s.status();
  auto client = toolgate::Client::Connect((*s)->address());
  dir.WriteFile("policy.yaml", PolicyText("rev-2", "allow"));
  ASSERT_TRUE((*s)->Signal(SIGHUP));
  ASSERT_TRUE(WaitForRevision(*client, "rev-2", kWait).ok());

  auto latest = client->Check(Req("deploy"));
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->decision(), toolgate::v1::DECISION_ALLOW);
  auto pinned = client->Check(Req("deploy", "rev-1"));
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(pinned->policy_version(), "rev-1");
  EXPECT_EQ(pinned->decision(), toolgate::v1::DECISION_DENY);
  auto unknown = client->Check(Req("deploy", "rev-0"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST(ShadowRevisionTest, CountsAndLogsTheCallsTheCandidateWouldDecideOtherwise) {
  TempDir dir;
  const std::string active = dir.WriteFile("active.yaml", PolicyText("live", "allow"));
  const std::string candidate = dir.WriteFile("candidate.yaml", PolicyText("candidate", "deny"));
  auto s = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", active, "--shadow-policy", candidate});
  ASSERT_TRUE(s.ok()) << s.status();
  auto client = toolgate::Client::Connect((*s)->address());
  for (int i = 0; i < 3; ++i) {
    auto r = client->Check(Req("deploy"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << "the active revision decides";
    EXPECT_EQ(r->policy_version(), "live");
  }
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(client->Check(Req("read_file")).ok());
  auto status = toolgate::Client::Connect((*s)->admin_address())->GetStatus();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->shadow_revision(), "candidate");
  EXPECT_EQ(status->shadow_compared(), 5u);
  EXPECT_EQ(status->shadow_differed(), 3u);
  EXPECT_TRUE((*s)->WaitForLog("shadow revision candidate would decide DECISION_DENY", kWait));
}

}  // namespace
}  // namespace toolgate_test
