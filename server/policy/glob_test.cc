// Tests of tool-name globs and of how a policy picks the entry for a tool.
#include "server/policy/glob.h"

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/policy/loader.h"
#include "server/policy/policy.h"

namespace toolgate {
namespace {

TEST(IsGlob, Wildcards) {
  EXPECT_TRUE(IsGlob("github_*"));
  EXPECT_TRUE(IsGlob("*"));
  EXPECT_TRUE(IsGlob("a?c"));
  EXPECT_TRUE(IsGlob("?"));
  EXPECT_FALSE(IsGlob("github_create_issue"));
  EXPECT_FALSE(IsGlob(""));
  EXPECT_FALSE(IsGlob("a[b]c"));  // only * and ? are wildcards
  EXPECT_FALSE(IsGlob("a.b+c"));
}

TEST(GlobMatch, LiteralPatterns) {
  EXPECT_TRUE(GlobMatch("abc", "abc"));
  EXPECT_FALSE(GlobMatch("abc", "abd"));
  EXPECT_FALSE(GlobMatch("abc", "ab"));
  EXPECT_FALSE(GlobMatch("abc", "abcd"));
  EXPECT_FALSE(GlobMatch("abc", "ABC"));  // case-sensitive
  EXPECT_TRUE(GlobMatch("a[b]c", "a[b]c"));
  EXPECT_FALSE(GlobMatch("a[b]c", "abc"));
  EXPECT_TRUE(GlobMatch("a.c", "a.c"));
  EXPECT_FALSE(GlobMatch("a.c", "abc"));
}

TEST(GlobMatch, Empty) {
  EXPECT_TRUE(GlobMatch("", ""));
  EXPECT_FALSE(GlobMatch("", "a"));
  EXPECT_FALSE(GlobMatch("a", ""));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("***", ""));
  EXPECT_FALSE(GlobMatch("?", ""));
  EXPECT_FALSE(GlobMatch("*?", ""));
  EXPECT_FALSE(GlobMatch("*a", ""));
}

TEST(GlobMatch, Star) {
  EXPECT_TRUE(GlobMatch("*", "anything at all"));
  EXPECT_TRUE(GlobMatch("github_*", "github_"));
  EXPECT_TRUE(GlobMatch("github_*", "github_create_issue"));
  EXPECT_FALSE(GlobMatch("github_*", "github"));
  EXPECT_FALSE(GlobMatch("github_*", "gitlab_create"));
  EXPECT_FALSE(GlobMatch("github_*", "my_github_x"));
  EXPECT_TRUE(GlobMatch("*_issue", "github_create_issue"));
  EXPECT_FALSE(GlobMatch("*_issue", "github_create_issues"));
  EXPECT_TRUE(GlobMatch("*issue*", "issue"));
  EXPECT_TRUE(GlobMatch("*issue*", "get_issues"));
  EXPECT_FALSE(GlobMatch("*issue*", "get_issu"));
}

TEST(GlobMatch, QuestionMark) {
  EXPECT_TRUE(GlobMatch("a?c", "abc"));
  EXPECT_TRUE(GlobMatch("a?c", "a?c"));
  EXPECT_FALSE(GlobMatch("a?c", "ac"));
  EXPECT_FALSE(GlobMatch("a?c", "abbc"));
  EXPECT_TRUE(GlobMatch("???", "xyz"));
  EXPECT_FALSE(GlobMatch("???", "xy"));
  EXPECT_FALSE(GlobMatch("???", "wxyz"));
  EXPECT_TRUE(GlobMatch("*?", "a"));
  EXPECT_TRUE(GlobMatch("?*", "abc"));
}

TEST(GlobMatch, MultipleStars) {
  EXPECT_TRUE(GlobMatch("a*b*c", "abc"));
  EXPECT_TRUE(GlobMatch("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(GlobMatch("a*b*c", "abcbc"));
  EXPECT_FALSE(GlobMatch("a*b*c", "acb"));
  EXPECT_FALSE(GlobMatch("a*b*c", "aXbYcZ"));
  EXPECT_TRUE(GlobMatch("**a**", "bab"));
  EXPECT_TRUE(GlobMatch("*a*b*", "xxaxxbxx"));
  EXPECT_FALSE(GlobMatch("*a*b*", "xxbxxaxx"));
}

TEST(GlobMatch, Backtracking) {
  // The first place a literal matches is not always the right one.
  EXPECT_TRUE(GlobMatch("*ab", "aab"));
  EXPECT_TRUE(GlobMatch("*aab", "aaaab"));
  EXPECT_TRUE(GlobMatch("a*ab", "aaab"));
  EXPECT_TRUE(GlobMatch("*abc", "ababc"));
  EXPECT_TRUE(GlobMatch("*a?c", "abxabc"));
  EXPECT_TRUE(GlobMatch("*_get_*_x", "github_get_issue_get_pr_x"));
  EXPECT_FALSE(GlobMatch("*abc", "ababd"));
  EXPECT_TRUE(GlobMatch("a*b?d*e", "abxbcdxxe"));
  EXPECT_FALSE(GlobMatch("a*b?d*e", "abxbcdxxf"));
}

TEST(GlobMatch, PathologicalInputIsFast) {
  // Exponential for a naive recursive matcher; linear-ish here.
  const std::string text(5000, 'a');
  EXPECT_FALSE(GlobMatch("a*a*a*a*a*a*a*a*a*a*b", text));
  EXPECT_TRUE(GlobMatch("a*a*a*a*a*a*a*a*a*a*a", text));
  EXPECT_FALSE(GlobMatch("*" + std::string(100, 'a') + "b", text));
}

// Reference: dynamic programming over (pattern prefix, text prefix).
bool ReferenceMatch(const std::string& p, const std::string& t) {
  std::vector<std::vector<bool>> m(p.size() + 1, std::vector<bool>(t.size() + 1, false));
  m[0][0] = true;
  for (size_t i = 1; i <= p.size(); ++i) {
    for (size_t j = 0; j <= t.size(); ++j) {
      if (p[i - 1] == '*') {
        m[i][j] = m[i - 1][j] || (j > 0 && m[i][j - 1]);
      } else if (j > 0) {
        m[i][j] = m[i - 1][j - 1] && (p[i - 1] == '?' || p[i - 1] == t[j - 1]);
      }
    }
  }
  return m[p.size()][t.size()];
}

TEST(GlobMatch, AgreesWithReferenceOnRandomInputs) {
  std::mt19937 rng(12345);
  const std::string pattern_chars = "ab*?";
  const std::string text_chars = "ab";
  int matches = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string p, t;
    const int plen = static_cast<int>(rng() % 8), tlen = static_cast<int>(rng() % 10);
    for (int i = 0; i < plen; ++i) p.push_back(pattern_chars[rng() % pattern_chars.size()]);
    for (int i = 0; i < tlen; ++i) t.push_back(text_chars[rng() % text_chars.size()]);
    const bool want = ReferenceMatch(p, t);
    matches += want;
    ASSERT_EQ(GlobMatch(p, t), want) << "pattern \"" << p << "\" text \"" << t << "\"";
  }
  // The inputs exercise both outcomes.
  EXPECT_GT(matches, 1000);
  EXPECT_LT(matches, 19000);
}

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
      } else if (i % 3 == 0 &&
                 std::none_of(exact.begin(), exact.end(),
                              [&](const ToolRule& e) { return e.name == rule.name; })) {
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
