// Per-server and per-grant sections, tool classes and their precedence.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/engine.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

constexpr char kScoped[] = R"(version: "1"
default: deny
tools:
  run_command:
    category: execute
    risk: high
    args:
      type: object
      required: [command]
      properties:
        command: {type: string, pattern: "^[a-z ]+$"}
    limits: [{counter: commands, window: minute, max: 5}]
  read_file: {category: read, risk: low}
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
    reason: "Critical tools are never run by agents"
servers:
  github:
    default: allow
    tools:
      "github_create_*":
        action: deny
        reason: "no creating on this server"
grants:
  ci-bot:
    bypass_classes: [high_risk_execute]
    tools:
      run_command:
        limits: [{counter: ci_commands, window: minute, max: 100}]
  intern:
    default: deny
    tools:
      "github_*": {action: deny, reason: "interns do not touch GitHub"}
)";

class SectionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = LoadPolicyFromSources({{"scoped.yaml", kScoped}});
    ASSERT_TRUE(p.ok()) << p.status();
    policy_ = *p;
  }
  v1::CheckResponse Decide(const std::string& tool, const std::string& grant,
                           const std::string& server = "", const std::string& args_json = "{}") {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    req.set_server(server);
    google::protobuf::util::JsonStringToMessage(args_json, req.mutable_args());
    v1::CheckResponse resp;
    Evaluation eval = Engine().Evaluate(*policy_, req, /*peer=*/"", &resp);
    if (!eval.final) {
      AcquireResult admitted;
      admitted.admitted = true;
      admitted.outcomes.resize(eval.checks.size(), LimitOutcome{true, 1, 1000, 0, true});
      Engine().Complete(eval, admitted, &resp);
      last_checks_ = eval.checks;
    }
    return resp;
  }
  std::shared_ptr<const Policy> policy_;
  std::vector<LimitCheck> last_checks_;
};

TEST_F(SectionsTest, ClassGuardrailTightensAnAllowedTool) {
  auto r = Decide("run_command", "alice", "", R"({"command": "ls"})");
  EXPECT_EQ(r.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(r.rule(), "classes.high_risk_execute");
  EXPECT_EQ(r.reason(), "High-risk execute tools need approval");
}

TEST_F(SectionsTest, ArgumentsAreCheckedBeforeAGuardrailAsksForApproval) {
  auto r = Decide("run_command", "alice", "", R"({"command": "RM"})");
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  ASSERT_EQ(r.violations_size(), 1);
  EXPECT_EQ(r.violations(0).path(), "/command");
}

TEST_F(SectionsTest, GrantSectionBypassesANamedClassAndOverridesOnlyWhatItSets) {
  auto r = Decide("run_command", "ci-bot", "", R"({"command": "make test"})");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(r.rule(), "grants.ci-bot.tools.run_command");
  // Its own limits replace the general ones...
  ASSERT_EQ(r.limits_size(), 1);
  EXPECT_EQ(r.limits(0).counter(), "ci_commands");
  EXPECT_EQ(r.limits(0).max(), 100);
  // ...but the general entry's argument schema is inherited.
  auto bad = Decide("run_command", "ci-bot", "", R"({"command": "RM -RF"})");
  EXPECT_EQ(bad.decision(), v1::DECISION_DENY);
  EXPECT_THAT(bad.reason(), HasSubstr("tools.run_command.args"));
}

TEST_F(SectionsTest, CriticalClassDeniesEvenWhereAnEntryAllows) {
  auto r = Decide("drop_database", "ci-bot");
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_EQ(r.rule(), "classes.critical_anything");
}

TEST_F(SectionsTest, ServerSectionOverridesGeneralEntriesForItsServerOnly) {
  auto on_server = Decide("github_create_issue", "alice", "github");
  EXPECT_EQ(on_server.decision(), v1::DECISION_DENY);
  EXPECT_EQ(on_server.rule(), "servers.github.tools.github_create_*");
  EXPECT_EQ(on_server.reason(), "no creating on this server");
  auto elsewhere = Decide("github_create_issue", "alice", "other");
  EXPECT_EQ(elsewhere.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(elsewhere.rule(), "tools.github_*");
}

TEST_F(SectionsTest, SectionDefaultsApplyOnlyWhenNothingMatches) {
  // Unlisted anywhere: the server's default (allow) beats the policy's (deny).
  auto r = Decide("weather", "alice", "github");
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(r.rule(), "servers.github.default");
  // The grant's default beats the server's.
  auto intern = Decide("weather", "intern", "github");
  EXPECT_EQ(intern.decision(), v1::DECISION_DENY);
  EXPECT_EQ(intern.rule(), "grants.intern.default");
  // A listed tool is decided by its entry, not by a section default.
  auto listed = Decide("read_file", "intern", "github");
  EXPECT_EQ(listed.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(listed.rule(), "tools.read_file");
}

TEST_F(SectionsTest, GrantBeatsServerBeatsGeneralAndExactBeatsGlob) {
  // grant section (glob) over server section (glob) over general (exact).
  auto r = Decide("github_create_issue", "intern", "github");
  EXPECT_EQ(r.rule(), "grants.intern.tools.github_*");
  EXPECT_EQ(r.reason(), "interns do not touch GitHub");
  // Within one level an exact name beats a glob, a longer glob a shorter one.
  EXPECT_EQ(Decide("github_get_issue", "alice").rule(), "tools.github_get_*");
  EXPECT_EQ(Decide("github_get_issue", "alice").decision(), v1::DECISION_ALLOW);
}

TEST_F(SectionsTest, ExplainTraceNamesEveryStep) {
  v1::CheckRequest req;
  req.set_tool("run_command");
  req.set_grant("ci-bot");
  (*req.mutable_args()->mutable_fields())["command"].set_string_value("ls");
  v1::CheckResponse resp;
  std::vector<std::string> trace;
  Engine().Evaluate(*policy_, req, /*peer=*/"", &resp, &trace);
  const std::string all = absl::StrJoin(trace, "\n");
  EXPECT_THAT(all, HasSubstr("lookup grants.ci-bot: matched grants.ci-bot.tools.run_command"));
  EXPECT_THAT(all, HasSubstr("classes.high_risk_execute applies but grants.ci-bot bypasses it"));
  EXPECT_THAT(all, HasSubstr("arguments match tools.run_command.args"));
}

TEST_F(SectionsTest, SectionCountersDoNotCollideWithGeneralOnes) {
  ASSERT_EQ(Decide("run_command", "ci-bot", "", R"({"command": "ls"})").decision(),
            v1::DECISION_ALLOW);
  ASSERT_EQ(last_checks_.size(), 1u);
  EXPECT_THAT(last_checks_[0].key, HasSubstr("ci_commands|g|ci-bot"));
}

// ---- errors ----------------------------------------------------------------

std::string LoadError(const std::string& text) {
  auto p = LoadPolicyFromSources({{"p.yaml", text}});
  return p.ok() ? std::string("(loaded)") : std::string(p.status().message());
}

TEST(SectionsErrors, EachMistakeIsLocated) {
  EXPECT_THAT(LoadError("version: \"1\"\ntools:\n  t: {category: exec}\n"),
              HasSubstr("p.yaml:3:17: tools.t.category must be read, write, execute"));
  EXPECT_THAT(LoadError("version: \"1\"\ntools:\n  t: {risk: extreme}\n"),
              HasSubstr("p.yaml:3:13: tools.t.risk must be low, medium, high or critical"));
  EXPECT_THAT(LoadError("version: \"1\"\nclasses:\n  c: {action: deny}\n"),
              HasSubstr("p.yaml:3:3: classes.c: set category, min_risk or both"));
  EXPECT_THAT(LoadError("version: \"1\"\nclasses:\n  c: {category: read, action: allow}\n"),
              HasSubstr("p.yaml:3:31: classes.c.action must be deny or require_approval"));
  EXPECT_THAT(LoadError("version: \"1\"\ngrants:\n  g: {bypass_classes: [nope]}\n"),
              HasSubstr("p.yaml:3:24: bypass_classes names \"nope\""));
  EXPECT_THAT(LoadError("version: \"1\"\nservers:\n  s: {tools: {t: {}}, bypass_classes: []}\n"),
              HasSubstr("p.yaml:3:23: unknown key \"bypass_classes\" in servers.s"));
  EXPECT_THAT(LoadError("version: \"1\"\ngrants:\n  g:\n    tools:\n      t: {action: maybe}\n"),
              HasSubstr("p.yaml:5:19: grants.g.tools.t.action must be allow"));
}

TEST(SectionsErrors, ASectionMayNotBeDefinedInTwoFiles) {
  auto p = LoadPolicyFromSources({{"a.yaml", "version: \"1\"\nservers:\n  s: {default: allow}\n"},
                                  {"b.yaml", "version: \"1\"\nservers:\n  s: {default: deny}\n"}});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("b.yaml:3:3: servers.s is already defined at a.yaml:3:3"));
}

TEST(SectionsErrors, SectionCountersMustAgreeWithGeneralOnes) {
  const char* text = R"(version: "1"
tools:
  a: {limits: [{counter: shared, window: minute, max: 5}]}
grants:
  g:
    tools:
      a: {limits: [{counter: shared, window: hour, max: 5}]}
)";
  EXPECT_THAT(LoadError(text), HasSubstr("p.yaml:7:20: counter \"shared\" is defined here as"));
}

}  // namespace
}  // namespace toolgate
