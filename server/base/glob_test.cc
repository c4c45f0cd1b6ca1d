// Tests of tool-name globs.
#include "server/base/glob.h"

#include <algorithm>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

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

}  // namespace
}  // namespace toolgate
