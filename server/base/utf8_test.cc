// Tests of the UTF-8 checks.
#include "server/base/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

std::string Describe(absl::string_view s, bool forbid_control = true) {
  return DescribeUtf8Problem(FindUtf8Problem(s, forbid_control));
}

TEST(Utf8, ValidTextHasNoProblem) {
  EXPECT_EQ(Describe(""), "");
  EXPECT_EQ(Describe("github_create_issue"), "");
  EXPECT_EQ(Describe("caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"), "");
  EXPECT_EQ(Describe("\xC2\xA0"), "");  // U+00A0 is not a control character.
}

TEST(Utf8, InvalidBytesAreLocated) {
  EXPECT_EQ(Describe("delete_\xE9"), "not valid UTF-8 at byte 7");  // Latin-1 é
  EXPECT_EQ(Describe("\x80"), "not valid UTF-8 at byte 0");
  EXPECT_EQ(Describe("ab\xC0\xAF"), "not valid UTF-8 at byte 2");        // overlong '/'
  EXPECT_EQ(Describe("\xE0\x80\xAF"), "not valid UTF-8 at byte 0");      // overlong
  EXPECT_EQ(Describe("x\xED\xA0\x80"), "not valid UTF-8 at byte 1");     // surrogate
  EXPECT_EQ(Describe("\xF4\x90\x80\x80"), "not valid UTF-8 at byte 0");  // > U+10FFFF
  EXPECT_EQ(Describe("\xF5\x80\x80\x80"), "not valid UTF-8 at byte 0");
  EXPECT_EQ(Describe("ok\xE4\xB8"), "not valid UTF-8 at byte 2");  // truncated
  EXPECT_EQ(Describe("\xFF"), "not valid UTF-8 at byte 0");
}

TEST(Utf8, ControlCharactersAreLocatedWhenForbidden) {
  EXPECT_EQ(Describe("tool\nx"), "control character U+000A at byte 4");
  EXPECT_EQ(Describe(std::string("a\0b", 3)), "control character U+0000 at byte 1");
  EXPECT_EQ(Describe("a\x7F"), "control character U+007F at byte 1");
  EXPECT_EQ(Describe("ab\xC2\x85"), "control character U+0085 at byte 2");  // NEL (C1)
  EXPECT_EQ(Describe("\x1B[31m"), "control character U+001B at byte 0");
  EXPECT_EQ(Describe("tool\nx", false), "");
  EXPECT_EQ(Describe("ab\xC2\x85", false), "");
  // The first problem wins.
  EXPECT_EQ(Describe("\xFF\n"), "not valid UTF-8 at byte 0");
}

TEST(Utf8, CharLength) {
  const std::string s = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\xE4\xB8";
  EXPECT_EQ(Utf8CharLength(s, 0), 1u);
  EXPECT_EQ(Utf8CharLength(s, 1), 2u);
  EXPECT_EQ(Utf8CharLength(s, 3), 3u);
  EXPECT_EQ(Utf8CharLength(s, 6), 4u);
  EXPECT_EQ(Utf8CharLength(s, 10), 1u);  // truncated: a stray byte
  EXPECT_EQ(Utf8CharLength(s, 11), 1u);
}

TEST(Utf8, EscapeForLogKeepsOneLine) {
  EXPECT_EQ(EscapeForLog("plain_tool"), "plain_tool");
  EXPECT_EQ(EscapeForLog("x\" grant \"forged\nINFO fake line"),
            "x\\\" grant \\\"forged\\nINFO fake line");
  EXPECT_EQ(EscapeForLog("a\r\tb\x1B"), "a\\r\\tb\\x1b");
  EXPECT_EQ(EscapeForLog("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(EscapeForLog("\xE9\xC2\x85"), "\\xe9\\xc2\\x85");
  EXPECT_EQ(EscapeForLog("back\\slash"), "back\\\\slash");
}

}  // namespace
}  // namespace toolgate
