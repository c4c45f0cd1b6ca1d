#include "server/base/json_parse.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/json.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

std::string RoundTrip(absl::string_view text) {
  auto parsed = ParseJsonObject(text, 32);
  EXPECT_TRUE(parsed.ok()) << text << ": " << parsed.status();
  return parsed.ok() ? CanonicalJson(*parsed) : "";
}

TEST(ParseJsonObjectTest, Values) {
  EXPECT_EQ(RoundTrip("{}"), "{}");
  EXPECT_EQ(RoundTrip(" {\"b\": [1, -2.5, 3e2, 0, true, false, null, \"x\", [], {}], \"a\": {}} \n"),
            "{\"a\":{},\"b\":[1,-2.5,300,0,true,false,null,\"x\",[],{}]}");
  EXPECT_EQ(RoundTrip("{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}"),
            "{\"s\":\"\\\"\\\\/\\u0008\\u000c\\n\\r\\t\xC3\xA9\xF0\x9F\x98\x80\"}");
  auto parsed = ParseJsonObject("{\"message\": \"hello\", \"n\": 20}", 32);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->fields().at("message").string_value(), "hello");
  EXPECT_EQ(parsed->fields().at("n").number_value(), 20);
}

TEST(ParseJsonObjectTest, ErrorsSayWhere) {
  struct Case {
    std::string text;
    const char* what;
  };
  for (const Case& c : {
           Case{"", "byte 0: expected an object"},
           Case{"[1]", "byte 0: expected an object"},
           Case{"\"x\"", "byte 0: expected an object"},
           Case{"{", "byte 1: unexpected end of text"},
           Case{"{\"a\" 1}", "byte 5: expected ':'"},
           Case{"{\"a\":1,}", "byte 7: expected a key"},
           Case{"{\"a\":[1,]}", "byte 8: expected a value"},
           Case{"{\"a\":1 \"b\":2}", "byte 7: expected ',' or '}'"},
           Case{"{\"a\":01}", "byte 6: expected ',' or '}'"},
           Case{"{\"a\":1.}", "expected digits after the decimal point"},
           Case{"{\"a\":1e}", "expected digits in the exponent"},
           Case{"{\"a\":1e999}", "byte 5: number out of range"},
           Case{"{\"a\":NaN}", "byte 5: expected a value"},
           Case{"{\"a\":tru}", "byte 5: expected a value"},
           Case{"{\"a\":\"x}", "unterminated string"},
           Case{"{\"a\":\"\\x\"}", "byte 7: unknown escape"},
           Case{"{\"a\":\"\\u12\"}", "four hex digits"},
           Case{"{\"a\":\"\\udc00\"}", "lone low surrogate"},
           Case{"{\"a\":\"\\ud800x\"}", "without its low surrogate"},
           Case{"{\"a\":\"\x01\"}", "byte 6: control character"},
           Case{"{\"a\":\"\xff\"}", "byte 6: not valid UTF-8"},
           Case{"{\"a\":1,\"a\":2}", "byte 7: duplicate key \"a\""},
           Case{"{} x", "byte 3: unexpected text after the object"},
           Case{"{} {}", "byte 3: unexpected text after the object"},
       }) {
    auto parsed = ParseJsonObject(c.text, 32);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(parsed.status().message(), HasSubstr("invalid JSON at "));
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.what)) << c.text;
  }
}

TEST(ParseJsonObjectTest, DepthIsBoundedWithoutRecursion) {
  auto nested = [](int depth) {
    std::string s = "{\"a\":";
    for (int i = 1; i < depth; ++i) s += "[";
    s += "1";
    for (int i = 1; i < depth; ++i) s += "]";
    return s + "}";
  };
  EXPECT_TRUE(ParseJsonObject(nested(32), 32).ok());
  auto deep = ParseJsonObject(nested(33), 32);
  ASSERT_FALSE(deep.ok());
  EXPECT_THAT(deep.status().message(), HasSubstr("nested deeper than 32"));
  // Far deeper than any stack would take, refused at the limit.
  std::string huge(1'000'000, '[');
  auto refused = ParseJsonObject("{\"a\":" + huge, 32);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("byte 36: nested deeper than 32"));
}

TEST(ParseJsonValueTest, AnyValueAtTheTop) {
  auto batch = ParseJsonValue(" [{\"id\": 1}, {\"id\": \"a\"}] ", 4, "the limit");
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->list_value().values_size(), 2);
  EXPECT_EQ(batch->list_value().values(1).struct_value().fields().at("id").string_value(), "a");
  auto text = ParseJsonValue("\"x\"", 4, "the limit");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->string_value(), "x");
  EXPECT_TRUE(ParseJsonValue("null", 1, "the limit").ok());
  EXPECT_THAT(ParseJsonValue("[1] 2", 4, "the limit").status().message(),
              HasSubstr("unexpected text after the value"));
  EXPECT_THAT(ParseJsonValue("", 4, "the limit").status().message(),
              HasSubstr("unexpected end of text"));
  // The depth error names the limit it was given.
  EXPECT_THAT(ParseJsonValue("[[[1]]]", 2, "--some-flag plus 1").status().message(),
              HasSubstr("nested deeper than 2 (--some-flag plus 1)"));
  EXPECT_THAT(ParseJsonValue(std::string(100000, '['), 10, "x").status().message(),
              HasSubstr("nested deeper than 10"));
}

}  // namespace
}  // namespace toolgate
