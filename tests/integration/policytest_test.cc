// Integration tests of `toolgate test`: the real CLI binary on the example
// policies and their cases, and on broken and failing cases files.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

constexpr char kPolicy[] = R"yaml(version: "1"
revision: "ptest-cli-1"
default: deny
tools:
  list_files: {}
  once:
    limits:
      - {counter: once, window: 1h, max: 1}
)yaml";

// The last non-empty line of `text`.
std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : lines.back();
}

CommandResult RunTest(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CliBin(), "test"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

TEST(PolicyTestCliTest, SeedExamplePasses) {
  const CommandResult r = RunTest(
      {SourcePath("examples/seed-policy.json"), SourcePath("examples/seed-policy.cases.yaml")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(LastLine(r.out), MatchesRegex("[1-9][0-9]* passed, 0 failed")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("PASS call 11 is rate limited"));
  EXPECT_THAT(r.out, Not(HasSubstr("FAIL")));
}

TEST(PolicyTestCliTest, PolicyExamplePasses) {
  const CommandResult r =
      RunTest({SourcePath("examples/policy.yaml"), SourcePath("examples/policy.cases.yaml")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(LastLine(r.out), MatchesRegex("[1-9][0-9]* passed, 0 failed")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("(policy revision example-2026-11-25.1)"));
  EXPECT_THAT(r.out, Not(HasSubstr("FAIL")));
}

TEST(PolicyTestCliTest, PolicyDirectoryAndSeveralCasesFiles) {
  TempDir dir, policy_dir;
  policy_dir.WriteFile("a.yaml", kPolicy);
  const std::string a = dir.WriteFile("a.cases.yaml", R"yaml(cases:
  - call: {tool: once, grant: g}
    expect: {decision: allow}
)yaml");
  // A second file starts from fresh counters.
  const std::string b = dir.WriteFile("b.cases.yaml", R"yaml(cases:
  - call: {tool: once, grant: g}
    expect: {decision: allow}
  - call: {tool: once, grant: g}
    expect: {decision: rate_limited}
)yaml");
  const CommandResult r = RunTest({policy_dir.path(), a, b});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(LastLine(r.out), "3 passed, 0 failed") << r.out;
  EXPECT_THAT(r.out, HasSubstr("== " + a));
  EXPECT_THAT(r.out, HasSubstr("== " + b));
}

TEST(PolicyTestCliTest, WrongExpectationFailsNamingTheCase) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  const std::string cases = dir.WriteFile("cases.yaml", R"yaml(cases:
  - name: "list_files is allowed"
    call: {tool: list_files, grant: g}
    expect: {decision: allow}
  - name: "unlisted tools are allowed (wrong)"
    call: {tool: drop_database, grant: g}
    expect: {decision: allow}
)yaml");
  const CommandResult r = RunTest({policy, cases});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("PASS list_files is allowed\n"));
  EXPECT_THAT(r.out, HasSubstr("FAIL unlisted tools are allowed (wrong): expected allow, got deny "
                               "(rule default, reason \"tool \\\"drop_database\\\" is not "
                               "allowed by the policy\") [" +
                               cases + ":5:5]"));
  EXPECT_EQ(LastLine(r.out), "1 passed, 1 failed") << r.out;
}

TEST(PolicyTestCliTest, BrokenCasesFileExitsOneWithLocation) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  const std::string cases = dir.WriteFile("cases.yaml", R"yaml(cases:
  - call: {tool: list_files, grant: g}
    expect: {decision: maybe}
)yaml");
  const CommandResult r = RunTest({policy, cases});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(cases + ":3:24: cases[0].expect.decision must be allow, deny, "
                                       "rate_limited or require_approval, got \"maybe\""));
  EXPECT_EQ(LastLine(r.out), "0 passed, 0 failed") << r.out;
}

TEST(PolicyTestCliTest, MissingCasesFileExitsOne) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  const CommandResult r = RunTest({policy, dir.path() + "/nope.yaml"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(dir.path() + "/nope.yaml"));
}

TEST(PolicyTestCliTest, InvalidPolicyExitsOneWithLocation) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", R"yaml(version: "1"
tools:
  search:
    limts: []
)yaml");
  const std::string cases = dir.WriteFile("cases.yaml", R"yaml(cases:
  - call: {tool: search, grant: g}
    expect: {decision: allow}
)yaml");
  const CommandResult r = RunTest({policy, cases});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(policy + ":4:5: unknown key \"limts\""));
  EXPECT_THAT(r.out, Not(HasSubstr("passed")));
}

TEST(PolicyTestCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunTest({}).exit_code, 2);
  EXPECT_EQ(RunTest({SourcePath("examples/policy.yaml")}).exit_code, 2);
  EXPECT_EQ(RunTest({"--bogus", SourcePath("examples/policy.yaml"), "x.yaml"}).exit_code, 2);
  const CommandResult help = RunTest({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("Usage: toolgate test POLICY CASES.yaml"));
}

}  // namespace
}  // namespace toolgate_test
