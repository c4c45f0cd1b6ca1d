// ToolClassifier against Engine::Evaluate: for every tool a policy names
// (and unlisted ones), under grants and servers with sections, class rules
// and peers, the classification is what a call with valid arguments and
// counters that have room is decided.
#include "server/engine/visibility.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

constexpr char kPolicy[] = R"(version: "1"
revision: "visible-1"
default: deny
tools:
  run_command:
    category: execute
    risk: high
    args:
      type: object
      required: [command]
      additionalProperties: false
      properties:
        command: {type: string, maxLength: 20, pattern: "^[a-z ]+$"}
    limits: [{counter: commands, window: minute, max: 5}]
  read_file: {category: read, risk: low}
  list_files: {reason: "Listing is always fine"}
  search_web:
    limits: [{counter: web, window: 1h, max: 1, scope: session}]
  delete_repository: {action: deny, reason: "Agents may not delete repositories"}
  wipe_disk: {action: deny}
  deploy:
    action: require_approval
    args:
      type: object
      required: [env]
      properties:
        env: {enum: [staging, production]}
  "github_*":
    category: write
    risk: medium
    action: require_approval
    reason: "GitHub writes need a human"
  "github_get_*": {category: read, risk: low}
  drop_database: {category: admin, risk: critical}
classes:
  high_risk_execute:
    category: execute
    min_risk: high
    action: require_approval
    reason: "High-risk execute tools need approval"
  critical_anything:
    min_risk: critical
    action: deny
servers:
  github:
    default: allow
    tools:
      "github_create_*": {action: deny, reason: "No creating on this server"}
  staging:
    default: require_approval
    tools:
      deploy: {action: allow}
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
    bypass_classes: [high_risk_execute]
    tools:
      run_command:
        limits: [{counter: ci_commands, window: minute, max: 100}]
  intern:
    default: deny
    tools:
      "github_*": {action: deny, reason: "Interns do not touch GitHub"}
      read_file: {action: require_approval}
  operator:
    default: allow
    tools:
      "*_database": {action: require_approval}
)";

// Arguments every schema above accepts, by tool.
const std::map<std::string, std::string>& ValidArgs() {
  static const auto* const kArgs = new std::map<std::string, std::string>{
      {"run_command", R"({"command": "ls"})"},
      {"deploy", R"({"env": "staging"})"},
  };
  return *kArgs;
}

const std::vector<std::string>& Tools() {
  static const auto* const kTools =
      new std::vector<std::string>{"run_command",      "read_file",         "list_files",
                                   "search_web",       "delete_repository", "wipe_disk",
                                   "deploy",           "github_*",          "github_create_issue",
                                   "github_get_issue", "github_get_",       "github_",
                                   "drop_database",    "backup_database",   "weather",
                                   "unknown_tool",     "ünïcode_tool",      "x"};
  return *kTools;
}

class VisibilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = LoadPolicyFromSources({{"visible.yaml", kPolicy}});
    ASSERT_TRUE(p.ok()) << p.status();
    policy_ = *p;
  }

  // What Check decides for a call with valid arguments and counters with room.
  v1::CheckResponse Evaluate(const std::string& tool, const std::string& grant,
                             const std::string& server, const std::string& peer) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    req.set_server(server);
    req.set_session("s-1");
    auto args = ValidArgs().find(tool);
    if (args != ValidArgs().end()) {
      EXPECT_TRUE(
          google::protobuf::util::JsonStringToMessage(args->second, req.mutable_args()).ok());
    }
    v1::CheckResponse resp;
    Evaluation eval = Engine().Evaluate(*policy_, req, peer, &resp);
    if (!eval.final) {
      AcquireResult admitted;
      admitted.admitted = true;
      admitted.outcomes.resize(eval.checks.size(), LimitOutcome{true, 1, 1000, 0, true});
      Engine().Complete(eval, admitted, &resp);
    }
    EXPECT_EQ(resp.violations_size(), 0) << tool << ": the test's arguments must be valid";
    return resp;
  }

  v1::ToolVisibility Classify(const std::string& tool, const std::string& grant,
                              const std::string& server, const std::string& peer) {
    v1::ToolVisibility v;
    ToolClassifier(Engine(), *policy_, grant, server, peer).Classify(tool, &v);
    return v;
  }

  std::shared_ptr<const Policy> policy_;
};

TEST_F(VisibilityTest, AgreesWithEvaluateOnEveryToolGrantServerAndCaller) {
  const std::vector<std::string> grants = {"alice", "ci-bot", "intern", "operator", "nobody"};
  const std::vector<std::string> servers = {"", "github", "staging", "elsewhere"};
  const std::vector<std::string> peers = {"", "spiffe://example.org/ns/ci/sa/ci-bot",
                                          "spiffe://example.org/ns/prod/sa/agent-7"};
  std::map<v1::Decision, int> seen;
  for (const std::string& grant : grants) {
    for (const std::string& server : servers) {
      for (const std::string& peer : peers) {
        const ToolClassifier classifier(Engine(), *policy_, grant, server, peer);
        for (const std::string& tool : Tools()) {
          const std::string where =
              tool + " by " + grant + " on \"" + server + "\" as \"" + peer + "\"";
          const v1::CheckResponse want = Evaluate(tool, grant, server, peer);
          v1::ToolVisibility got;
          classifier.Classify(tool, &got);
          EXPECT_EQ(got.decision(), want.decision()) << where << ": " << want.reason();
          EXPECT_EQ(got.rule(), want.rule()) << where;
          EXPECT_EQ(got.reason(), want.reason()) << where;
          EXPECT_TRUE(got.tool().empty()) << "the caller sets the tool";
          ++seen[got.decision()];
        }
      }
    }
  }
  // The grid reaches every answer ListVisibleTools can give.
  EXPECT_GT(seen[v1::DECISION_ALLOW], 0);
  EXPECT_GT(seen[v1::DECISION_REQUIRE_APPROVAL], 0);
  EXPECT_GT(seen[v1::DECISION_DENY], 0);
  EXPECT_EQ(seen.size(), 3u);
}

TEST_F(VisibilityTest, LimitsDoNotHideATool) {
  const v1::ToolVisibility v = Classify("search_web", "alice", "", "");
  EXPECT_EQ(v.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(v.rule(), "tools.search_web");
  EXPECT_EQ(v.reason(), "");
  // A tool with a schema and limits: arguments are not looked at.
  const v1::ToolVisibility ci =
      Classify("run_command", "ci-bot", "", "spiffe://example.org/ns/ci/x");
  EXPECT_EQ(ci.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(ci.rule(), "grants.ci-bot.tools.run_command");
}

TEST_F(VisibilityTest, AnAllowedEntrysOwnReasonIsKept) {
  const v1::ToolVisibility v = Classify("list_files", "alice", "", "");
  EXPECT_EQ(v.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(v.reason(), "Listing is always fine");
}

TEST_F(VisibilityTest, ClassRulesAndSectionsTightenAndLoosen) {
  EXPECT_EQ(Classify("run_command", "alice", "", "").rule(), "classes.high_risk_execute");
  EXPECT_EQ(Classify("drop_database", "operator", "", "").rule(), "classes.critical_anything");
  EXPECT_EQ(Classify("drop_database", "operator", "", "").decision(), v1::DECISION_DENY);
  const v1::ToolVisibility backup = Classify("backup_database", "operator", "", "");
  EXPECT_EQ(backup.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(backup.rule(), "grants.operator.tools.*_database");
  EXPECT_EQ(
      backup.reason(),
      "tool \"backup_database\" needs approval (policy entry grants.operator.tools.*_database)");
  const v1::ToolVisibility weather = Classify("weather", "alice", "staging", "");
  EXPECT_EQ(weather.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(weather.rule(), "servers.staging.default");
  const v1::ToolVisibility unknown = Classify("weather", "alice", "", "");
  EXPECT_EQ(unknown.decision(), v1::DECISION_DENY);
  EXPECT_EQ(unknown.rule(), "default");
  EXPECT_EQ(unknown.reason(), "tool \"weather\" is not allowed by the policy");
}

TEST_F(VisibilityTest, AGrantItsCallerMayNotAssertSeesNothing) {
  const ToolClassifier refused(Engine(), *policy_, "ci-bot", "", "spiffe://example.org/ns/prod/x");
  EXPECT_TRUE(refused.refused());
  for (const std::string& tool : Tools()) {
    v1::ToolVisibility v;
    refused.Classify(tool, &v);
    EXPECT_EQ(v.decision(), v1::DECISION_DENY) << tool;
    EXPECT_EQ(v.rule(), "grants.ci-bot.peers") << tool;
    EXPECT_EQ(v.reason(),
              "grant \"ci-bot\" may be asserted only by peers matching grants.ci-bot.peers; "
              "caller is \"spiffe://example.org/ns/prod/x\"");
  }
  const ToolClassifier admitted(Engine(), *policy_, "ci-bot", "", "spiffe://example.org/ns/ci/y");
  EXPECT_FALSE(admitted.refused());
  EXPECT_FALSE(ToolClassifier(Engine(), *policy_, "alice", "", "").refused());
}

}  // namespace
}  // namespace toolgate
