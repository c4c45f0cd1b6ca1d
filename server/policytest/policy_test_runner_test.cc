// Tests of the policy test runner: cases files, their errors, and reports.
#include "server/policytest/policy_test_runner.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

constexpr char kPolicy[] = R"(version: "1"
revision: "ptest-1"
default: deny
tools:
  list_files: {}
  wait_for_background_task:
    limits:
      - {counter: wait_rate, window: minute, max: 10}
  per_session:
    limits:
      - {counter: per_session, window: 1h, max: 1, scope: session}
  run_command:
    args:
      type: object
      required: [command]
      additionalProperties: false
      properties:
        command: {type: string, maxLength: 200, pattern: "^[a-z ]+$"}
        timeout: {type: integer, minimum: 1, maximum: 600}
        flags: {type: array, items: {type: boolean}}
        env: {type: object, additionalProperties: {type: string}}
        nothing: {type: "null"}
  delete_repository:
    action: deny
    reason: "Agents may not delete repositories"
  "github_*":
    action: require_approval
    reason: "GitHub writes need a human"
)";

class PolicyTestRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto policy = LoadPolicyFromSources({{"policy.yaml", kPolicy}});
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = *policy;
  }

  absl::StatusOr<PolicyTestReport> Run(const std::string& cases) {
    return RunPolicyTestsFromText(*policy_, "cases.yaml", cases);
  }

  // Runs `cases`, which must be invalid, and returns the error message.
  std::string Error(const std::string& cases) {
    auto report = Run(cases);
    EXPECT_FALSE(report.ok());
    if (report.ok()) return "";
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(report.status().message());
  }

  std::shared_ptr<const Policy> policy_;
};

TEST_F(PolicyTestRunnerTest, PassingFile) {
  auto report = Run(R"(cases:
  - name: "first"
    call: {tool: wait_for_background_task, grant: agent-1}
    expect:
      decision: allow
      rule: tools.wait_for_background_task
      remaining: 9
      limits: [{counter: wait_rate, scope: grant, max: 10, remaining: 9}]
  - name: "denied"
    call: {tool: delete_repository, grant: agent-1}
    expect: {decision: DENY, rule: tools.delete_repository, reason: "Agents may not delete repositories"}
  - name: "default"
    call: {tool: unknown, grant: agent-1}
    expect: {decision: deny, rule: default, reason_contains: "not allowed by the policy"}
  - name: "approval"
    call: {tool: github_create_issue, grant: agent-1}
    expect: {decision: require_approval, rule: "tools.github_*"}
  - call: {tool: list_files, grant: agent-1}
    expect: {decision: allow, rule: tools.list_files}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->revision, "ptest-1");
  EXPECT_EQ(report->cases_file, "cases.yaml");
  ASSERT_EQ(report->cases.size(), 5u);
  EXPECT_EQ(report->passed(), 5);
  EXPECT_EQ(report->failed(), 0);
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->cases[0].name, "first");
  EXPECT_EQ(report->cases[4].name, "case 5");  // Default name.
  EXPECT_EQ(FormatCaseResult(report->cases[0]), "PASS first");
  EXPECT_EQ(FormatSummary(report->passed(), report->failed()), "5 passed, 0 failed");
}

TEST_F(PolicyTestRunnerTest, FailingCaseIsReportedWithExpectedAndActual) {
  auto report = Run(R"(cases:
  - name: "ok"
    call: {tool: list_files, grant: g}
    expect: {decision: allow}
  - name: "wrong decision"
    call: {tool: list_files, grant: g}
    expect: {decision: deny}
  - name: "wrong rule"
    call: {tool: unknown_tool, grant: g}
    expect: {decision: deny, rule: tools.unknown_tool}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cases.size(), 3u);
  EXPECT_EQ(report->passed(), 1);
  EXPECT_EQ(report->failed(), 2);
  EXPECT_FALSE(report->ok());
  const PolicyTestCaseResult& c = report->cases[1];
  EXPECT_FALSE(c.passed);
  EXPECT_EQ(c.message, "expected deny, got allow (rule tools.list_files)");
  EXPECT_EQ(c.location, "cases.yaml:5:5");
  EXPECT_EQ(FormatCaseResult(c),
            "FAIL wrong decision: expected deny, got allow (rule tools.list_files) "
            "[cases.yaml:5:5]");
  EXPECT_EQ(report->cases[2].message,
            "expected rule tools.unknown_tool, got default (decision deny, rule default, reason "
            "\"tool \\\"unknown_tool\\\" is not allowed by the policy\")")
      << report->cases[2].message;
}

TEST_F(PolicyTestRunnerTest, CallsToolgatedWouldRefuseFailTheirCase) {
  // Arguments nested 40 deep: over the server's default limit of 32.
  std::string nested = "1";
  for (int i = 0; i < 40; ++i) nested = "{a: " + nested + "}";
  auto report = Run("cases:\n  - call: {tool: list_files, grant: g, args: " + nested +
                    "}\n    expect: {decision: allow}\n");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cases.size(), 1u);
  EXPECT_FALSE(report->cases[0].passed);
  EXPECT_EQ(report->cases[0].calls, 0);
  EXPECT_THAT(report->cases[0].message,
              ::testing::StartsWith("toolgated would refuse this call: args is nested"));
}

TEST_F(PolicyTestRunnerTest, CallsWithBadNamesFailTheirCase) {
  auto report = Run(
      "cases:\n"
      "  - call: {tool: \"list\\nfiles\", grant: g}\n    expect: {decision: allow}\n"
      "  - call: {tool: list_files, grant: " + std::string(257, 'g') +
      "}\n    expect: {decision: allow}\n");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cases.size(), 2u);
  EXPECT_FALSE(report->cases[0].passed);
  EXPECT_EQ(report->cases[0].message,
            "toolgated would refuse this call: tool: control character U+000A at byte 4");
  EXPECT_FALSE(report->cases[1].passed);
  EXPECT_EQ(report->cases[1].message,
            "toolgated would refuse this call: grant: 257 bytes, longer than --max-name-bytes "
            "(256)");
}

TEST_F(PolicyTestRunnerTest, ViolationsAreComparedAsASet) {
  auto report = Run(R"(cases:
  - name: "both"
    call: {tool: run_command, grant: g, args: {command: "rm -rf /", timeout: 9000}}
    expect: {decision: deny, violations: ["/timeout", "/command"]}
  - name: "one missing"
    call: {tool: run_command, grant: g, args: {command: "rm -rf /", timeout: 9000}}
    expect: {decision: deny, violations: ["/command"]}
  - name: "none expected"
    call: {tool: run_command, grant: g, args: {command: "ls"}}
    expect: {decision: allow, violations: []}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->cases[0].passed) << report->cases[0].message;
  EXPECT_FALSE(report->cases[1].passed);
  EXPECT_TRUE(HasSubstr(report->cases[1].message,
                        "expected violations [/command], got [/command, /timeout]"));
  EXPECT_TRUE(HasSubstr(report->cases[1].message, "/timeout: must be at most 600"));
  EXPECT_TRUE(report->cases[2].passed) << report->cases[2].message;
}

TEST_F(PolicyTestRunnerTest, ArgsUseJsonTypes) {
  // Quoted scalars are strings, plain true/false booleans, null/~ null,
  // numbers numbers; maps and lists nest.
  auto report = Run(R"(cases:
  - name: "typed"
    call:
      tool: run_command
      grant: g
      args: {command: "ls", timeout: 5, flags: [true, false], env: {HOME: "/root", N: "5"}, nothing: ~}
    expect: {decision: allow, violations: []}
  - name: "quoted number is a string"
    call: {tool: run_command, grant: g, args: {command: "ls", timeout: "5"}}
    expect: {decision: deny, violations: ["/timeout"]}
  - name: "plain number in a string-only map"
    call: {tool: run_command, grant: g, args: {command: "ls", env: {N: 5}}}
    expect: {decision: deny, violations: ["/env/N"]}
  - name: "quoted true is a string"
    call: {tool: run_command, grant: g, args: {command: "ls", flags: ["true"]}}
    expect: {decision: deny, violations: ["/flags/0"]}
  - name: "null"
    call: {tool: run_command, grant: g, args: {command: null}}
    expect: {decision: deny, violations: ["/command"]}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.message;
}

TEST_F(PolicyTestRunnerTest, JsonCasesFile) {
  auto report = Run(R"({"cases": [
  {"name": "json", "call": {"tool": "run_command", "grant": "g", "args": {"command": "ls", "timeout": 3}},
   "expect": {"decision": "allow"}}]})");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->passed(), 1) << report->cases[0].message;
}

TEST_F(PolicyTestRunnerTest, RepeatAndLimitsCarryOverBetweenCases) {
  auto report = Run(R"(cases:
  - name: "ten"
    call: {tool: wait_for_background_task, grant: a}
    repeat: 10
    expect: {decision: allow}
  - name: "eleventh"
    call: {tool: wait_for_background_task, grant: a}
    expect: {decision: rate_limited, remaining: 0, retry_after_min: 60s, retry_after_max: 1m}
  - name: "repeat fails at the 11th"
    call: {tool: wait_for_background_task, grant: b}
    repeat: 12
    expect: {decision: allow}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->cases[0].passed) << report->cases[0].message;
  EXPECT_EQ(report->cases[0].calls, 10);
  EXPECT_TRUE(report->cases[1].passed) << report->cases[1].message;
  const PolicyTestCaseResult& c = report->cases[2];
  EXPECT_FALSE(c.passed);
  EXPECT_EQ(c.calls, 11);
  EXPECT_TRUE(HasSubstr(c.message, "call 11 of 12: expected allow, got rate_limited")) << c.message;
  EXPECT_TRUE(HasSubstr(c.message, "retry_after 1m")) << c.message;
}

TEST_F(PolicyTestRunnerTest, AdvanceMovesTheClock) {
  auto report = Run(R"(defaults: {grant: a}
cases:
  - call: {tool: wait_for_background_task}
    repeat: 10
    expect: {decision: allow}
  - advance: 30s
  - name: "still full"
    call: {tool: wait_for_background_task}
    expect: {decision: rate_limited, retry_after_min: 30s, retry_after_max: 30s}
  - advance: 29.999
  - name: "1ms to go"
    call: {tool: wait_for_background_task}
    expect: {decision: rate_limited, retry_after_max: 1ms}
  - advance: 1ms
  - name: "free again"
    call: {tool: wait_for_background_task}
    expect: {decision: allow, remaining: 9}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cases.size(), 4u);  // Steps are not cases.
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.message;
}

TEST_F(PolicyTestRunnerTest, DryRunConsumesNothing) {
  auto report = Run(R"(cases:
  - call: {tool: per_session, grant: a, session: s, dry_run: true}
    repeat: 3
    expect: {decision: allow, remaining: 0}
  - call: {tool: per_session, grant: a, session: s}
    expect: {decision: allow}
  - call: {tool: per_session, grant: a, session: s, dry_run: true}
    expect: {decision: rate_limited}
  - call: {tool: per_session, grant: a, session: other}
    expect: {decision: allow}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.message;
}

TEST_F(PolicyTestRunnerTest, DefaultsApplyUnlessTheCallOverrides) {
  auto report = Run(R"(defaults: {grant: a, session: s}
cases:
  - call: {tool: per_session}
    expect: {decision: allow}
  - call: {tool: per_session}
    expect: {decision: rate_limited}
  - call: {tool: per_session, session: t}
    expect: {decision: allow}
  - call: {tool: per_session, grant: b}
    expect: {decision: allow}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.message;
}

TEST_F(PolicyTestRunnerTest, MismatchMessages) {
  auto report = Run(R"(cases:
  - call: {tool: wait_for_background_task, grant: a}
    expect: {decision: allow, remaining: 3}
  - call: {tool: list_files, grant: a}
    expect: {decision: allow, remaining: 3}
  - call: {tool: delete_repository, grant: a}
    expect: {decision: deny, reason: "nope", reason_contains: "xyz"}
  - call: {tool: list_files, grant: a}
    expect: {decision: allow, retry_after_max: 1s}
  - call: {tool: wait_for_background_task, grant: a}
    expect: {decision: allow, limits: [{counter: nope}, {counter: wait_rate, max: 11, scope: global}]}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->failed(), 5);
  EXPECT_TRUE(HasSubstr(report->cases[0].message, "expected remaining 3, got 9 (counter wait_rate)"));
  EXPECT_TRUE(HasSubstr(report->cases[1].message, "expected remaining 3, got no limit status"));
  EXPECT_TRUE(HasSubstr(report->cases[2].message,
                        "expected reason \"nope\", got \"Agents may not delete repositories\"; "
                        "expected a reason containing \"xyz\""));
  EXPECT_TRUE(HasSubstr(report->cases[3].message, "expected a retry_after, got none"));
  EXPECT_TRUE(HasSubstr(report->cases[4].message, "expected a status of counter \"nope\", got none"));
  EXPECT_TRUE(HasSubstr(report->cases[4].message, "expected counter wait_rate max 11, got 10"));
  EXPECT_TRUE(HasSubstr(report->cases[4].message,
                        "expected counter wait_rate scope global, got grant"));
}

TEST_F(PolicyTestRunnerTest, StartTimeAlignsFixedWindows) {
  auto policy = LoadPolicyFromSources({{"p.yaml", R"(version: "1"
tools:
  daily:
    limits: [{counter: daily, window: day, max: 1, algorithm: fixed_window, scope: global}]
)"}});
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto report = RunPolicyTestsFromText(**policy, "c.yaml", R"(start_time: "2026-11-25T23:59:00Z"
defaults: {grant: g}
cases:
  - call: {tool: daily}
    expect: {decision: allow}
  - call: {tool: daily}
    expect: {decision: rate_limited, retry_after_min: 1m, retry_after_max: 1m}
  - advance: 1m
  - call: {tool: daily}
    expect: {decision: allow}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.message;
}

// ---- Invalid cases files -------------------------------------------------

TEST_F(PolicyTestRunnerTest, UnknownKeyIsAnErrorWithLocation) {
  const std::string err = Error(R"(cases:
  - name: x
    call: {tool: list_files, grant: g}
    expect: {decision: allow, rulez: default}
)");
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:4:31: unknown key \"rulez\" in cases[0].expect "
                             "(expected one of: decision, rule,"))
      << err;
}

TEST_F(PolicyTestRunnerTest, UnknownKeysAtEveryLevel) {
  const std::string err = Error(R"(casez: []
cases:
  - nam: x
    call: {tool: list_files, grant: g, argz: {}}
    expect: {decision: allow}
)");
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:1:1: unknown key \"casez\" in the cases file")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:3:5: unknown key \"nam\" in cases[0]")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:4:40: unknown key \"argz\" in cases[0].call")) << err;
}

TEST_F(PolicyTestRunnerTest, BadDecisionName) {
  const std::string err = Error(R"(cases:
  - call: {tool: list_files, grant: g}
    expect: {decision: permit}
)");
  EXPECT_EQ(err,
            "cases.yaml:3:24: cases[0].expect.decision must be allow, deny, rate_limited or "
            "require_approval, got \"permit\"");
}

TEST_F(PolicyTestRunnerTest, MissingFields) {
  const std::string err = Error(R"(cases:
  - call: {grant: g}
    expect: {decision: allow}
  - call: {tool: list_files}
    expect: {decision: allow}
  - call: {tool: list_files, grant: g}
  - call: {tool: list_files, grant: g}
    expect: {rule: default}
  - name: only a name
)");
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:2:11: cases[0].call: tool is required")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:4:11: cases[1].call: grant is required")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:6:5: cases[2]: expect is required")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:8:13: cases[3].expect: decision is required")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:9:5: cases[4]: call is required")) << err;
}

TEST_F(PolicyTestRunnerTest, BadValues) {
  const std::string err = Error(R"(start_time: yesterday
cases:
  - call: {tool: list_files, grant: g, dry_run: maybe, args: [1]}
    repeat: 0
    expect: {decision: allow, remaining: -1, violations: [command], retry_after_max: soon}
  - advance: -5s
  - advance: 1s
    call: {tool: list_files, grant: g}
)");
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:1:13: start_time must be an RFC 3339 time")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases[0].call.dry_run must be true or false, got \"maybe\""))
      << err;
  EXPECT_TRUE(HasSubstr(err, "cases[0].call.args must be a map (the arguments object), got a list"))
      << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:4:13: cases[0].repeat must be between 1 and")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases[0].expect.remaining must be between 0 and")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases[0].expect.violations[0] must be a JSON Pointer")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases[0].expect.retry_after_max: invalid duration \"soon\"")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:6:14: cases[1].advance must not be negative")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:7:5: cases[2]: an `advance` step is an entry of its own"))
      << err;
}

TEST_F(PolicyTestRunnerTest, DurationFormsAndBounds) {
  auto report = Run(R"(defaults: {grant: a}
cases:
  - call: {tool: wait_for_background_task}
    repeat: 10
    expect: {decision: allow}
  - call: {tool: wait_for_background_task}
    expect: {decision: rate_limited, retry_after_min: "0m59s1000ms", retry_after_max: 1M}
  - advance: 0m59s999ms
  - call: {tool: wait_for_background_task}
    expect: {decision: rate_limited, retry_after_max: "1"}
  - advance: 0.001
  - call: {tool: wait_for_background_task}
    expect: {decision: allow}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.message;

  const std::string err = Error(R"(cases:
  - advance: 367d
  - advance: 0.0005
  - advance: "1.5s"
  - advance: 0s
  - call: {tool: list_files, grant: g}
    expect: {decision: allow, retry_after_max: 366d1ms}
)");
  EXPECT_TRUE(HasSubstr(err, "cases.yaml:2:14: cases[0].advance: \"367d\" is longer than 366 days"))
      << err;
  EXPECT_TRUE(HasSubstr(err, "cases[1].advance: \"0.0005\" must be a whole number of milliseconds"))
      << err;
  EXPECT_TRUE(HasSubstr(err, "cases[2].advance: invalid duration \"1.5s\"")) << err;
  EXPECT_TRUE(HasSubstr(err, "cases[3].advance must be positive")) << err;
  EXPECT_TRUE(
      HasSubstr(err, "cases[4].expect.retry_after_max: \"366d1ms\" is longer than 366 days"))
      << err;
}

TEST_F(PolicyTestRunnerTest, StructuralErrors) {
  EXPECT_TRUE(HasSubstr(Error(""), "cases.yaml: the cases file is empty"));
  EXPECT_TRUE(HasSubstr(Error("cases: []\n"), "cases.yaml:1:8: cases must list at least one case"));
  EXPECT_TRUE(HasSubstr(Error("defaults: {grant: g}\n"), "cases.yaml:1:1: cases is required"));
  EXPECT_TRUE(HasSubstr(Error("cases: {a: 1}\n"), "cases.yaml:1:8: cases must be a list"));
  EXPECT_TRUE(HasSubstr(Error("- a\n"), "cases.yaml:1:1: the cases file must be a map"));
  EXPECT_TRUE(HasSubstr(Error("cases:\n  - advance: 1s\n"), "has only `advance` steps"));
  EXPECT_TRUE(HasSubstr(Error("cases: [\n"), "cases.yaml:2:1: syntax error"));
}

TEST_F(PolicyTestRunnerTest, CasesFileNotFound) {
  auto report = RunPolicyTests(*policy_, "/nonexistent/dir/cases.yaml");
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(HasSubstr(std::string(report.status().message()), "/nonexistent/dir/cases.yaml"));
}

TEST_F(PolicyTestRunnerTest, CasesFileFromDisk) {
  const std::string path = ::testing::TempDir() + "/ptest_cases.yaml";
  {
    std::ofstream out(path);
    out << "cases:\n  - call: {tool: list_files, grant: g}\n    expect: {decision: deny}\n";
  }
  auto report = RunPolicyTests(*policy_, path);
  std::remove(path.c_str());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->cases_file, path);
  ASSERT_EQ(report->failed(), 1);
  EXPECT_EQ(report->cases[0].location, path + ":2:5");
}

// Every example policy passes its cases (CI also runs them through the CLI).
TEST(PolicyTestExamplesTest, ExamplesPass) {
  for (const auto& [policy_file, cases_file] :
       {std::pair<std::string, std::string>{"examples/seed-policy.json",
                                            "examples/seed-policy.cases.yaml"},
        {"examples/policy.yaml", "examples/policy.cases.yaml"}}) {
    auto policy = LoadPolicyFromPath(std::string(TOOLGATE_SOURCE_DIR) + "/" + policy_file);
    ASSERT_TRUE(policy.ok()) << policy.status();
    auto report = RunPolicyTests(**policy, std::string(TOOLGATE_SOURCE_DIR) + "/" + cases_file);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_GT(report->passed(), 10);
    for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << FormatCaseResult(c);
  }
}

TEST(PolicyTestRunnerPeers, CasesNameTheCallersPeer) {
  auto policy = LoadPolicyFromSources({{"policy.yaml", R"(version: "1"
default: deny
tools:
  search_web:
    limits: [{counter: web, window: 1m, max: 1}]
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
)"}});
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto report = RunPolicyTestsFromText(**policy, "cases.yaml", R"(defaults:
  grant: ci-bot
  peer: "spiffe://example.org/ns/ci/sa/ci-bot"
cases:
  - name: another caller is refused and consumes nothing
    call: {tool: search_web, peer: "spiffe://example.org/ns/prod/sa/agent-7"}
    expect:
      decision: deny
      rule: grants.ci-bot.peers
      reason: 'grant "ci-bot" may be asserted only by peers matching grants.ci-bot.peers; caller is "spiffe://example.org/ns/prod/sa/agent-7"'
  - name: no certificate
    call: {tool: search_web, peer: ""}
    expect: {decision: deny, rule: grants.ci-bot.peers, reason_contains: "caller presented no client certificate"}
  - name: the default peer is allowed, with the whole quota left
    call: {tool: search_web}
    expect: {decision: allow, remaining: 0}
  - name: a wrong expectation about a peer fails
    call: {tool: search_web, peer: "spiffe://example.org/ns/ci/sa/other"}
    expect: {decision: deny, rule: grants.ci-bot.peers}
)");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cases.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(report->cases[i].passed)
        << report->cases[i].name << ": " << report->cases[i].message;
  }
  // An allowed peer reaches the (now full) limit instead.
  EXPECT_FALSE(report->cases[3].passed);
  EXPECT_NE(report->cases[3].message.find("expected deny, got rate_limited"), std::string::npos)
      << report->cases[3].message;
}

TEST(PolicyTestRunnerPeers, PeerMustBeAString) {
  auto policy = LoadPolicyFromSources({{"policy.yaml", "version: \"1\"\n"}});
  ASSERT_TRUE(policy.ok());
  auto report = RunPolicyTestsFromText(**policy, "cases.yaml", R"(cases:
  - call: {tool: t, grant: g, peer: [a]}
    expect: {decision: deny}
)");
  ASSERT_FALSE(report.ok());
  EXPECT_NE(std::string(report.status().message())
                .find("cases.yaml:2:37: cases[0].call.peer must be a string, got a list"),
            std::string::npos)
      << report.status();
}

}  // namespace
}  // namespace toolgate
