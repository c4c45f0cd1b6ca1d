// Tests of tool-name globs.
#include "server/base/glob.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
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

// Found by fuzz/glob_fuzzer.cc: a `*` in the pattern was taken as a literal
// where the text had a `*`, so `delete_*` did not match "delete_*x" and a
// deny rule could be stepped around with such a name.
TEST(GlobMatch, WildcardsInTheTextAreOrdinaryCharacters) {
  EXPECT_TRUE(GlobMatch("a*", "a*b"));
  EXPECT_TRUE(GlobMatch("delete_*", "delete_*x"));
  EXPECT_TRUE(GlobMatch("*", "**"));
  EXPECT_TRUE(GlobMatch("a*c", "a*bc"));
  EXPECT_TRUE(GlobMatch("?*", "?x"));
  EXPECT_TRUE(GlobMatch("a*", "a*"));
  EXPECT_FALSE(GlobMatch("a*c", "a*b"));
}

TEST(GlobMatch, PathologicalInputIsFast) {
  // Exponential for a naive recursive matcher; linear-ish here.
  const std::string text(5000, 'a');
  EXPECT_FALSE(GlobMatch("a*a*a*a*a*a*a*a*a*a*b", text));
  EXPECT_TRUE(GlobMatch("a*a*a*a*a*a*a*a*a*a*a", text));
  EXPECT_FALSE(GlobMatch("*" + std::string(100, 'a') + "b", text));
}

// Splits `s` into characters as globs count them, decoding independently of
// the matcher: a well-formed UTF-8 sequence (decoded and range-checked) is
// one character, any other byte one on its own.
std::vector<std::string> Characters(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
    bool ok = n > 0 && i + n <= s.size();
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; ok && k < n; ++k) {
      const unsigned char c = static_cast<unsigned char>(s[i + k]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= min[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) n = 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// Reference: dynamic programming over (pattern prefix, text prefix) of
// characters.
bool ReferenceMatch(const std::string& pattern, const std::string& text) {
  const std::vector<std::string> p = Characters(pattern), t = Characters(text);
  std::vector<std::vector<bool>> m(p.size() + 1, std::vector<bool>(t.size() + 1, false));
  m[0][0] = true;
  for (size_t i = 1; i <= p.size(); ++i) {
    for (size_t j = 0; j <= t.size(); ++j) {
      if (p[i - 1] == "*") {
        m[i][j] = m[i - 1][j] || (j > 0 && m[i][j - 1]);
      } else if (j > 0) {
        m[i][j] = m[i - 1][j - 1] && (p[i - 1] == "?" || p[i - 1] == t[j - 1]);
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

TEST(GlobMatch, QuestionMarkIsOneCodePoint) {
  EXPECT_TRUE(GlobMatch("delete_?", "delete_\xC3\xA9"));          // é, 2 bytes
  EXPECT_TRUE(GlobMatch("delete_?", "delete_\xE4\xB8\xAD"));      // 中, 3 bytes
  EXPECT_TRUE(GlobMatch("delete_?", "delete_\xF0\x9F\x98\x80"));  // 😀, 4 bytes
  EXPECT_FALSE(GlobMatch("delete_?", "delete_\xC3\xA9x"));
  EXPECT_FALSE(GlobMatch("delete_??", "delete_\xE4\xB8\xAD"));
  EXPECT_TRUE(GlobMatch("?\xE4\xB8\xAD?", "a\xE4\xB8\xAD\xF0\x9F\x98\x80"));
  EXPECT_TRUE(GlobMatch("*\xC3\xA9", "caf\xC3\xA9"));
  EXPECT_FALSE(GlobMatch("*\xC3\xA9", "cafe"));
  EXPECT_TRUE(GlobMatch("\xF0\x9F\x98\x80*", "\xF0\x9F\x98\x80_tool"));
}

TEST(GlobMatch, StrayBytesAreOneCharacterEach) {
  // A lone lead byte, a lone continuation byte, an overlong form, an encoded
  // surrogate and a truncated sequence: each byte is one character.
  EXPECT_TRUE(GlobMatch("x_?", "x_\xFF"));
  EXPECT_TRUE(GlobMatch("x_?", "x_\x80"));
  EXPECT_TRUE(GlobMatch("x_??", "x_\xC0\xAF"));
  EXPECT_FALSE(GlobMatch("x_?", "x_\xC0\xAF"));
  EXPECT_TRUE(GlobMatch("x_???", "x_\xED\xA0\x80"));
  EXPECT_TRUE(GlobMatch("x_??", "x_\xE4\xB8"));
  // A stray byte in the pattern matches only that byte, never a character
  // that starts with it.
  EXPECT_TRUE(GlobMatch("x_\xE4", "x_\xE4"));
  EXPECT_FALSE(GlobMatch("x_\xE4*", "x_\xE4\xB8\xAD"));
  EXPECT_TRUE(GlobMatch("x_\xE4\xB8*", "x_\xE4\xB8" "a"));
}

TEST(GlobMatch, AgreesWithReferenceOnRandomUnicodeInputs) {
  std::mt19937 rng(6789);
  // Characters of 1-4 bytes, stray bytes, and pieces that combine with their
  // neighbours into valid or invalid sequences.
  const std::vector<std::string> text_pieces = {
      "a", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\xE4", "\xB8", "\xAD", "\xFF",
      "\xC3", "\xF0\x9F"};
  std::vector<std::string> pattern_pieces = text_pieces;
  pattern_pieces.push_back("*");
  pattern_pieces.push_back("?");
  pattern_pieces.push_back("?");
  int matches = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::string p, t;
    const int plen = static_cast<int>(rng() % 6), tlen = static_cast<int>(rng() % 8);
    for (int i = 0; i < plen; ++i) p += pattern_pieces[rng() % pattern_pieces.size()];
    for (int i = 0; i < tlen; ++i) t += text_pieces[rng() % text_pieces.size()];
    const bool want = ReferenceMatch(p, t);
    matches += want;
    ASSERT_EQ(GlobMatch(p, t), want) << "pattern \"" << absl::CHexEscape(p) << "\" text \""
                                     << absl::CHexEscape(t) << "\"";
  }
  EXPECT_GT(matches, 300);
}

TEST(GlobMatch, PathologicalUnicodeInputIsFast) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "\xE4\xB8\xAD";
  EXPECT_FALSE(GlobMatch("*\xE4\xB8\xAD*\xE4\xB8\xAD*\xE4\xB8\xAD*b", text));
  EXPECT_TRUE(GlobMatch("*\xE4\xB8\xAD?\xE4\xB8\xAD*", text));
}

}  // namespace
}  // namespace toolgate
