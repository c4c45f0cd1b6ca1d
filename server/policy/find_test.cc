// Tests of how a policy picks the entry for a tool: exact names, globs by
// precedence, the default.
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/base/glob.h"
#include "server/policy/loader.h"
#include "server/policy/policy.h"

namespace toolgate {
namespace {

// ---------------------------------------------------------------------------
// Policy::Find precedence.

std::shared_ptr<const Policy> MustLoad(const std::string& text) {
  auto p = LoadPolicyFromSources({{"p.yaml", text}});
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

TEST(PolicyFind, ExactBeatsGlobAndLongerGlobBeatsShorter) {
  // Globs listed from least to most specific, so order alone would pick wrong.
  auto p = MustLoad(R"(version: "1"
default: deny
tools:
  "github_*":
    action: require_approval
  "github_get_*": {}
  "github_get_issue_*":
    action: deny
  github_get_issue_comments:
    action: require_approval
    reason: exact
)");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Find("github_get_issue_comments").rule_id, "tools.github_get_issue_comments");
  EXPECT_EQ(p->Find("github_get_issue_comments").reason, "exact");
  EXPECT_EQ(p->Find("github_get_issue_labels").rule_id, "tools.github_get_issue_*");
  EXPECT_EQ(p->Find("github_get_issue_labels").action, Action::kDeny);
  EXPECT_EQ(p->Find("github_get_pr").rule_id, "tools.github_get_*");
  EXPECT_EQ(p->Find("github_get_pr").action, Action::kAllow);
  EXPECT_EQ(p->Find("github_create_issue").rule_id, "tools.github_*");
  EXPECT_EQ(p->Find("github_create_issue").action, Action::kRequireApproval);
  // Unlisted: the default.
  EXPECT_EQ(p->Find("gitlab_get_issue").rule_id, "default");
  EXPECT_EQ(p->Find("gitlab_get_issue").action, Action::kDeny);
  EXPECT_EQ(p->Find("").rule_id, "default");
  EXPECT_EQ(p->Find("github").rule_id, "default");
  EXPECT_EQ(p->exact_count(), 1u);
  EXPECT_EQ(p->glob_count(), 3u);
}

TEST(PolicyFind, ExactNameIsNotAPatternForOthers) {
  auto p = MustLoad("version: \"1\"\ndefault: allow\ntools:\n  run_command:\n    action: deny\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Find("run_command").action, Action::kDeny);
  EXPECT_EQ(p->Find("run_command2").rule_id, "default");
  EXPECT_EQ(p->Find("run_command2").action, Action::kAllow);
  EXPECT_EQ(p->Find("Run_Command").rule_id, "default");
}

TEST(PolicyFind, CatchAllGlobBeatsDefault) {
  auto p = MustLoad(R"(version: "1"
default: deny
tools:
  "*":
    action: require_approval
  "read_*": {}
)");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Find("anything").rule_id, "tools.*");
  EXPECT_EQ(p->Find("read_file").rule_id, "tools.read_*");
}

TEST(PolicyFind, SameLengthGlobsPreferMoreLiteralsThenEarlier) {
  // Same length: the one with more literal characters wins.
  auto p = MustLoad(R"(version: "1"
tools:
  "a??d":
    action: deny
  "ab?d":
    action: require_approval
)");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Find("abcd").rule_id, "tools.ab?d");
  EXPECT_EQ(p->Find("axcd").rule_id, "tools.a??d");

  // Same length and literals: the earlier entry wins, whichever it is.
  auto q1 = MustLoad("version: \"1\"\ntools:\n  \"x*y\": {}\n  \"x?y\":\n    action: deny\n");
  auto q2 = MustLoad("version: \"1\"\ntools:\n  \"x?y\":\n    action: deny\n  \"x*y\": {}\n");
  ASSERT_TRUE(q1 && q2);
  EXPECT_EQ(q1->Find("xzy").rule_id, "tools.x*y");
  EXPECT_EQ(q2->Find("xzy").rule_id, "tools.x?y");
  // Only one of them matches a longer name.
  EXPECT_EQ(q2->Find("xzzy").rule_id, "tools.x*y");
}

// RuleSet finds globs through an index by literal prefix; it must pick the
// same glob as trying every glob in precedence order would.
TEST(RuleSetFind, IndexAgreesWithLinearScan) {
  std::mt19937 rng(2024);
  const std::string pattern_chars = "ab*?";
  const std::string text_chars = "ab";
  auto random_string = [&](const std::string& chars, int max_len) {
    std::string out;
    const int len = static_cast<int>(rng() % (max_len + 1));
    for (int i = 0; i < len; ++i) out.push_back(chars[rng() % chars.size()]);
    return out;
  };
  int found = 0, missed = 0;
  for (int set = 0; set < 200; ++set) {
    std::vector<ToolRule> globs;
    std::vector<ToolRule> exact;
    const int n = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) {
      ToolRule rule;
      rule.name = random_string(pattern_chars, 6);
      rule.order = i;
      rule.rule_id = absl::StrCat("glob", i);
      if (IsGlob(rule.name)) {
        globs.push_back(rule);
      } else if (i % 3 == 0 && std::none_of(exact.begin(), exact.end(), [&](const ToolRule& e) {
                   return e.name == rule.name;
                 })) {
        exact.push_back(rule);  // (A policy cannot list a name twice.)
      }
    }
    // The reference: every glob, in precedence order (longer, then more
    // literal characters, then earlier), the first that matches.
    std::vector<ToolRule> ordered = globs;
    auto literals = [](const std::string& p) {
      return std::count_if(p.begin(), p.end(), [](char c) { return c != '*' && c != '?'; });
    };
    std::stable_sort(ordered.begin(), ordered.end(), [&](const ToolRule& a, const ToolRule& b) {
      if (a.name.size() != b.name.size()) return a.name.size() > b.name.size();
      if (literals(a.name) != literals(b.name)) return literals(a.name) > literals(b.name);
      return a.order < b.order;
    });
    const RuleSet rules(exact, globs);
    for (int q = 0; q < 50; ++q) {
      const std::string tool = random_string(text_chars, 7);
      std::string want;
      for (const ToolRule& e : exact) {
        if (e.name == tool) want = e.rule_id;
      }
      for (size_t i = 0; want.empty() && i < ordered.size(); ++i) {
        if (GlobMatch(ordered[i].name, tool)) want = ordered[i].rule_id;
      }
      const ToolRule* got = rules.Find(tool);
      ASSERT_EQ(got == nullptr ? std::string() : got->rule_id, want)
          << "tool \"" << tool << "\" in set " << set;
      (want.empty() ? missed : found)++;
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(found, 1000);
  EXPECT_GT(missed, 100);
}

}  // namespace
}  // namespace toolgate
