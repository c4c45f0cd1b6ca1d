// Tests of the JSON writer: string escaping, numbers, and Value trees.
#include "server/base/json.h"

#include <cmath>
#include <limits>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;

std::string Str(absl::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

std::string Num(double v) {
  std::string out;
  AppendJsonNumber(v, &out);
  return out;
}

pb::Struct ParseStruct(const std::string& json) {
  pb::Struct s;
  const auto status = pb::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return s;
}

TEST(AppendJsonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(Str(""), R"("")");
  EXPECT_EQ(Str("plain text"), R"("plain text")");
  EXPECT_EQ(Str("say \"hi\"\\"), R"("say \"hi\"\\")");
  EXPECT_EQ(Str("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(Str(std::string("\0\x01\x1f", 3)), R"("\u0000\u0001\u001f")");
  EXPECT_EQ(Str("\b\f"), R"("\u0008\u000c")");
  EXPECT_EQ(Str("\x7f/"), "\"\x7f/\"");  // DEL and '/' need no escape.
}

TEST(AppendJsonString, KeepsWellFormedUtf8) {
  const std::string text = "\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80";  // é 日 😀
  EXPECT_EQ(Str(text), "\"" + text + "\"");
}

TEST(AppendJsonString, ReplacesEachInvalidByteByU_FFFD) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Str(std::string("a\xff\xc3"
                            "b",
                            4)),
            "\"a" + fffd + fffd + "b\"");
  EXPECT_EQ(Str("\x80"), "\"" + fffd + "\"");                        // Stray continuation.
  EXPECT_EQ(Str("\xE6\x97"), "\"" + fffd + fffd + "\"");             // Truncated.
  EXPECT_EQ(Str("\xC0\xAF"), "\"" + fffd + fffd + "\"");             // Overlong '/'.
  EXPECT_EQ(Str("\xED\xA0\x80"), "\"" + fffd + fffd + fffd + "\"");  // Surrogate.
  EXPECT_EQ(Str("\xF4\x90\x80\x80"), "\"" + fffd + fffd + fffd + fffd + "\"");  // Past U+10FFFF.
}

TEST(AppendJsonNumber, ShortestExactForms) {
  EXPECT_EQ(Num(0), "0");
  EXPECT_EQ(Num(-0.0), "0");
  EXPECT_EQ(Num(42), "42");
  EXPECT_EQ(Num(-3), "-3");
  EXPECT_EQ(Num(1.5), "1.5");
  EXPECT_EQ(Num(0.1), "0.1");
  EXPECT_EQ(Num(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(Num(123456789012), "123456789012");
  EXPECT_EQ(Num(9007199254740991.0), "9007199254740991");
  EXPECT_EQ(Num(1e300), "1e+300");
  EXPECT_EQ(Num(-2.5e-7), "-2.5e-07");
}

TEST(AppendJsonNumber, NonFiniteNumbersAreStrings) {
  EXPECT_EQ(Num(std::nan("")), R"("NaN")");
  EXPECT_EQ(Num(std::numeric_limits<double>::infinity()), R"("Infinity")");
  EXPECT_EQ(Num(-std::numeric_limits<double>::infinity()), R"("-Infinity")");
  EXPECT_EQ(FormatNumber(std::nan("")), "NaN");
  EXPECT_EQ(FormatNumber(-std::numeric_limits<double>::infinity()), "-Infinity");
  EXPECT_EQ(FormatNumber(2.5), "2.5");
}

TEST(CanonicalJson, SortsKeysAndNests) {
  pb::Struct a, b;
  (*a.mutable_fields())["zeta"].set_string_value("z");
  (*a.mutable_fields())["alpha"].set_number_value(1);
  (*(*a.mutable_fields())["mid"].mutable_struct_value()->mutable_fields())["y"].set_null_value(
      pb::NULL_VALUE);
  (*(*b.mutable_fields())["mid"].mutable_struct_value()->mutable_fields())["y"].set_null_value(
      pb::NULL_VALUE);
  (*b.mutable_fields())["alpha"].set_number_value(1);
  (*b.mutable_fields())["zeta"].set_string_value("z");
  EXPECT_EQ(CanonicalJson(a), CanonicalJson(b));
  EXPECT_EQ(CanonicalJson(a), R"({"alpha":1,"mid":{"y":null},"zeta":"z"})");
  EXPECT_EQ(CanonicalJson(pb::Struct()), "{}");
}

TEST(CanonicalJson, RoundTripsThroughProtobufJson) {
  const pb::Struct args = ParseStruct(R"({
    "s": "quote \" backslash \\ newline \n tab \t bell \u0007 é 日本 😀",
    "n": [0, -3, 1.5, 1e300, -2.5e-7, 9007199254740993, 123456789012],
    "b": true, "z": null,
    "o": {"b": {"deep": [[], {}]}, "a": ""}
  })");
  const std::string json = CanonicalJson(args);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  const pb::Struct back = ParseStruct(json);
  EXPECT_TRUE(pb::util::MessageDifferencer::Equals(args, back)) << json;
  EXPECT_NE(json.find(R"("o":{"a":"","b":{"deep":[[],{}]}})"), std::string::npos) << json;
}

TEST(ToJson, EveryKind) {
  pb::Value v;
  EXPECT_EQ(ToJson(v), "null");  // No kind set.
  v.set_bool_value(false);
  EXPECT_EQ(ToJson(v), "false");
  v.set_string_value("x");
  EXPECT_EQ(ToJson(v), R"("x")");
  pb::ListValue* list = v.mutable_list_value();
  list->add_values()->set_number_value(1);
  list->add_values()->set_string_value("a");
  list->add_values()->mutable_struct_value();
  EXPECT_EQ(ToJson(v), R"([1,"a",{}])");
}

}  // namespace
}  // namespace toolgate
