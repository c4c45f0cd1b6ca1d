// Tests of validation: every keyword's checks, violation paths and messages.
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/schema/schema.h"
#include "server/schema/schema_testing.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;

// ---------------------------------------------------------------------------
// type

TEST(SchemaTypeTest, EachTypePassesAndFails) {
  struct Case {
    const char* type;
    const char* good;
    const char* bad;
    const char* message;
  };
  const Case cases[] = {
      {"object", R"({"a":1})", "[1]", "must be an object (is an array)"},
      {"array", "[1,2]", R"({"a":1})", "must be an array (is an object)"},
      {"string", R"("x")", "5", "must be a string (is a number)"},
      {"number", "2.5", R"("2.5")", "must be a number (is a string)"},
      {"integer", "7", "7.5", "must be an integer (is 7.5)"},
      {"boolean", "true", "null", "must be a boolean (is null)"},
      {"null", "null", "false", "must be null (is a boolean)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.type);
    auto schema = MustCompile(std::string("type: ") + c.type);
    ASSERT_NE(schema, nullptr);
    EXPECT_EQ(CheckVal(*schema, c.good), kNone);
    EXPECT_EQ(CheckVal(*schema, c.bad), (Violations{V("", c.message)}));
  }
}

TEST(SchemaTypeTest, IntegerVersusNumber) {
  auto integer = MustCompile("type: integer");
  EXPECT_EQ(CheckVal(*integer, "3"), kNone);
  EXPECT_EQ(CheckVal(*integer, "3.0"), kNone);  // No fractional part.
  EXPECT_EQ(CheckVal(*integer, "-12"), kNone);
  EXPECT_EQ(CheckVal(*integer, "1e3"), kNone);
  EXPECT_EQ(CheckVal(*integer, "0.5"), (Violations{V("", "must be an integer (is 0.5)")}));
  EXPECT_EQ(CheckVal(*integer, R"("3")"), (Violations{V("", "must be an integer (is a string)")}));

  auto number = MustCompile("type: number");
  EXPECT_EQ(CheckVal(*number, "3"), kNone);
  EXPECT_EQ(CheckVal(*number, "0.5"), kNone);
}

TEST(SchemaTypeTest, TypeList) {
  auto schema = MustCompile("type: [string, 'null']");
  EXPECT_EQ(CheckVal(*schema, R"("x")"), kNone);
  EXPECT_EQ(CheckVal(*schema, "null"), kNone);
  EXPECT_EQ(CheckVal(*schema, "1"), (Violations{V("", "must be a string or null (is a number)")}));

  // Plain `null` in a YAML list means the type "null" too.
  auto plain = MustCompile("type: [integer, boolean, null]");
  EXPECT_EQ(CheckVal(*plain, "null"), kNone);
  EXPECT_EQ(CheckVal(*plain, "true"), kNone);
  EXPECT_EQ(CheckVal(*plain, "1.5"),
            (Violations{V("", "must be an integer, a boolean or null (is 1.5)")}));
  EXPECT_EQ(CheckVal(*plain, "[]"),
            (Violations{V("", "must be an integer, a boolean or null (is an array)")}));

  auto json = MustCompile(R"({"type": ["object", "array"]})");
  EXPECT_EQ(CheckVal(*json, "[]"), kNone);
  EXPECT_EQ(CheckVal(*json, "{}"), kNone);
  EXPECT_EQ(CheckVal(*json, R"("s")"),
            (Violations{V("", "must be an object or an array (is a string)")}));
}

TEST(SchemaTypeTest, NoTypeAcceptsEverything) {
  auto schema = MustCompile("{}");
  for (const char* json : {"1", R"("x")", "null", "true", "[]", "{}"}) {
    EXPECT_EQ(CheckVal(*schema, json), kNone) << json;
  }
}

TEST(SchemaTypeTest, RootStructIsAnObject) {
  auto object = MustCompile("type: object");
  EXPECT_EQ(CheckObj(*object, "{}"), kNone);
  auto string = MustCompile("type: string");
  EXPECT_EQ(CheckObj(*string, "{}"), (Violations{V("", "must be a string (is an object)")}));
}

TEST(SchemaTypeTest, WrongTypeReportsOnlyTheType) {
  auto schema = MustCompile("{type: string, enum: [a, b], maxLength: 1}");
  EXPECT_EQ(CheckVal(*schema, "5"), (Violations{V("", "must be a string (is a number)")}));
}

TEST(SchemaTypeTest, NonFiniteNumbersAreNotNumbers) {
  auto schema = MustCompile("type: number");
  pb::Value nan;
  nan.set_number_value(std::nan(""));
  std::vector<SchemaViolation> out;
  EXPECT_FALSE(schema->Validate(nan, &out));
  EXPECT_EQ(out, (Violations{V("", "must be a number (is NaN)")}));

  auto bounded = MustCompile("maximum: 5");
  pb::Value inf;
  inf.set_number_value(std::numeric_limits<double>::infinity());
  out.clear();
  EXPECT_FALSE(bounded->Validate(inf, &out));
  EXPECT_EQ(out, (Violations{V("", "must be a finite number (is Infinity)")}));
}

// ---------------------------------------------------------------------------
// Objects

TEST(SchemaObjectTest, PropertiesAndRequired) {
  auto schema = MustCompile(R"(
type: object
required: [command, cwd]
properties:
  command: {type: string}
  cwd: {type: string}
  timeout: {type: integer}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"command":"ls","cwd":"/"})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"command":"ls","cwd":"/","timeout":5,"other":1})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"timeout":"5"})"),
            (Violations{V("/command", "is required"), V("/cwd", "is required"),
                        V("/timeout", "must be an integer (is a string)")}));
}

TEST(SchemaObjectTest, AdditionalPropertiesFalse) {
  auto schema = MustCompile(R"(
type: object
additionalProperties: false
properties:
  a: {}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"a":1})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"a":1,"z":2,"b":3})"),
            (Violations{V("/b", "is not allowed (additionalProperties is false)"),
                        V("/z", "is not allowed (additionalProperties is false)")}));
}

TEST(SchemaObjectTest, AdditionalPropertiesTrueIsTheDefault) {
  auto schema = MustCompile("{properties: {a: {type: string}}, additionalProperties: true}");
  EXPECT_EQ(CheckObj(*schema, R"({"a":"x","b":1})"), kNone);
}

// Violations come in property-name order, whether or not undeclared
// properties are present.
TEST(SchemaObjectTest, ViolationsInNameOrder) {
  auto schema = MustCompile("{properties: {b: {type: string}, a: {type: string}}}");
  const Violations both{V("/a", "must be a string (is a number)"),
                        V("/b", "must be a string (is a number)")};
  EXPECT_EQ(CheckObj(*schema, R"({"b":2,"a":1})"), both);
  EXPECT_EQ(CheckObj(*schema, R"({"b":2,"c":3,"a":1})"), both);
  auto closed = MustCompile(
      "{properties: {b: {type: string}, a: {type: string}}, additionalProperties: false}");
  EXPECT_EQ(CheckObj(*closed, R"({"b":2,"a":1})"), both);
  EXPECT_EQ(CheckObj(*closed, R"({"b":2,"ab":3,"a":1})"),
            (Violations{V("/a", "must be a string (is a number)"),
                        V("/ab", "is not allowed (additionalProperties is false)"),
                        V("/b", "must be a string (is a number)")}));
}

TEST(SchemaObjectTest, AdditionalPropertiesSchema) {
  auto schema = MustCompile(R"(
type: object
properties:
  name: {type: string}
additionalProperties: {type: integer, minimum: 0}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"name":"n","x":1,"y":2})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"name":"n","x":-1,"y":"2"})"),
            (Violations{V("/x", "must be at least 0 (is -1)"),
                        V("/y", "must be an integer (is a string)")}));
}

TEST(SchemaObjectTest, ObjectKeywordsIgnoreOtherTypes) {
  auto schema = MustCompile("{required: [a], additionalProperties: false}");
  EXPECT_EQ(CheckVal(*schema, "[1]"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("a")"), kNone);
}

TEST(SchemaObjectTest, BooleanSubSchemas) {
  auto schema = MustCompile("{properties: {anything: true, never: false}}");
  EXPECT_EQ(CheckObj(*schema, R"({"anything":[1,{"x":null}]})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"never":1})"), (Violations{V("/never", "is not allowed")}));
}

TEST(SchemaObjectTest, JsonPointerEscaping) {
  auto schema = MustCompile(R"(
additionalProperties: false
properties:
  "a/b": {type: string}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"a/b":"x"})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"a/b":1,"m~n":1,"~/":1})"),
            (Violations{V("/a~1b", "must be a string (is a number)"),
                        V("/m~0n", "is not allowed (additionalProperties is false)"),
                        V("/~0~1", "is not allowed (additionalProperties is false)")}));
  // Only declared properties present: the escaped path all the same.
  EXPECT_EQ(CheckObj(*schema, R"({"a/b":1})"),
            (Violations{V("/a~1b", "must be a string (is a number)")}));
  std::string path = "/a";
  AppendJsonPointerToken("~1/x", &path);
  EXPECT_EQ(path, "/a~01~1x");
  AppendJsonPointerToken("", &path);
  EXPECT_EQ(path, "/a~01~1x");
}

TEST(SchemaObjectTest, RequiredNameIsEscapedToo) {
  auto schema = MustCompile("required: ['x/y']");
  EXPECT_EQ(CheckObj(*schema, "{}"), (Violations{V("/x~1y", "is required")}));
}

// ---------------------------------------------------------------------------
// enum / const

TEST(SchemaEnumTest, Strings) {
  auto schema = MustCompile("enum: [ls, cat, 'git status']");
  EXPECT_EQ(CheckVal(*schema, R"("cat")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("git status")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("rm")"),
            (Violations{V("", R"(must be one of: "ls", "cat", "git status")")}));
}

TEST(SchemaEnumTest, NumbersCompareByValue) {
  auto schema = MustCompile("enum: [1, 2.5, -3e2]");
  EXPECT_EQ(CheckVal(*schema, "1"), kNone);
  EXPECT_EQ(CheckVal(*schema, "1.0"), kNone);
  EXPECT_EQ(CheckVal(*schema, "2.50"), kNone);
  EXPECT_EQ(CheckVal(*schema, "-300"), kNone);
  EXPECT_EQ(CheckVal(*schema, "2"), (Violations{V("", "must be one of: 1, 2.5, -300")}));
  // A number does not equal its text.
  EXPECT_EQ(CheckVal(*schema, R"("1")"), (Violations{V("", "must be one of: 1, 2.5, -300")}));
}

TEST(SchemaEnumTest, QuotedScalarsAreStrings) {
  auto schema = MustCompile(R"(enum: ["1", 'true', "null", 2, true, null])");
  EXPECT_EQ(CheckVal(*schema, R"("1")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("true")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("null")"), kNone);
  EXPECT_EQ(CheckVal(*schema, "2"), kNone);
  EXPECT_EQ(CheckVal(*schema, "true"), kNone);
  EXPECT_EQ(CheckVal(*schema, "null"), kNone);
  EXPECT_EQ(CheckVal(*schema, "1"),
            (Violations{V("", R"(must be one of: "1", "true", "null", 2, true, null)")}));
  EXPECT_EQ(CheckVal(*schema, "false").size(), 1u);
  EXPECT_EQ(CheckVal(*schema, R"("2")").size(), 1u);
}

TEST(SchemaEnumTest, StructuredValues) {
  auto schema = MustCompile(R"(enum: [[1, "a"], {k: 1.0}])");
  EXPECT_EQ(CheckVal(*schema, R"([1,"a"])"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"({"k":1})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"k":1})"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"(["a",1])").size(), 1u);
  EXPECT_EQ(CheckVal(*schema, R"({"k":1,"j":2})"),
            (Violations{V("", R"(must be one of: [1,"a"], {"k":1})")}));
}

TEST(SchemaEnumTest, LongListsAreCut) {
  std::string yaml = "enum: [";
  for (int i = 0; i < 100; ++i) yaml += (i ? ", v" : "v") + std::to_string(i);
  yaml += "]";
  auto schema = MustCompile(yaml);
  auto out = CheckVal(*schema, R"("nope")");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(HasSubstr(out[0].message, R"("v0", "v1")"));
  EXPECT_TRUE(HasSubstr(out[0].message, " more)"));
  EXPECT_LT(out[0].message.size(), 300u);
}

TEST(SchemaConstTest, NumbersAndStrings) {
  auto number = MustCompile("const: 42");
  EXPECT_EQ(CheckVal(*number, "42"), kNone);
  EXPECT_EQ(CheckVal(*number, "42.0"), kNone);
  EXPECT_EQ(CheckVal(*number, "43"), (Violations{V("", "must be equal to 42")}));
  EXPECT_EQ(CheckVal(*number, R"("42")"), (Violations{V("", "must be equal to 42")}));

  auto string = MustCompile("const: '42'");
  EXPECT_EQ(CheckVal(*string, R"("42")"), kNone);
  EXPECT_EQ(CheckVal(*string, "42"), (Violations{V("", R"(must be equal to "42")")}));

  auto text = MustCompile(R"({"const": "say \"hi\"\n"})");
  EXPECT_EQ(CheckVal(*text, R"("say \"hi\"\n")"), kNone);
  EXPECT_EQ(CheckVal(*text, R"("hi")"), (Violations{V("", R"(must be equal to "say \"hi\"\n")")}));

  auto null = MustCompile("const: null");
  EXPECT_EQ(CheckVal(*null, "null"), kNone);
  EXPECT_EQ(CheckVal(*null, "0"), (Violations{V("", "must be equal to null")}));

  auto boolean = MustCompile("const: false");
  EXPECT_EQ(CheckVal(*boolean, "false"), kNone);
  EXPECT_EQ(CheckVal(*boolean, R"("false")"), (Violations{V("", "must be equal to false")}));
}

// ---------------------------------------------------------------------------
// Strings

TEST(SchemaStringTest, PatternIsAnUnanchoredSearch) {
  auto schema = MustCompile("pattern: 'b+'");
  EXPECT_EQ(CheckVal(*schema, R"("abbbc")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("xyz")"), (Violations{V("", "does not match pattern b+")}));
  EXPECT_EQ(CheckVal(*schema, "5"), kNone);  // Only applies to strings.

  auto anchored = MustCompile(R"({"pattern": "^[a-z ]+$"})");
  EXPECT_EQ(CheckVal(*anchored, R"("git status")"), kNone);
  EXPECT_EQ(CheckVal(*anchored, R"("git status; rm -rf /")"),
            (Violations{V("", "does not match pattern ^[a-z ]+$")}));
}

TEST(SchemaStringTest, PatternOnUtf8) {
  auto schema = MustCompile("pattern: '^.{3}$'");
  EXPECT_EQ(CheckVal(*schema, "\"h\xC3\xA9h\""), kNone);  // 3 code points, 4 bytes.
}

TEST(SchemaStringTest, MinLengthAndMaxLength) {
  auto schema = MustCompile("{minLength: 2, maxLength: 4}");
  EXPECT_EQ(CheckVal(*schema, R"("ab")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("abcd")"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"("a")"),
            (Violations{V("", "must be at least 2 characters long (is 1)")}));
  EXPECT_EQ(CheckVal(*schema, R"("abcde")"),
            (Violations{V("", "must be at most 4 characters long (is 5)")}));
  EXPECT_EQ(CheckVal(*schema, "12345"), kNone);  // Only applies to strings.

  auto one = MustCompile("{minLength: 1, maxLength: 1}");
  EXPECT_EQ(CheckVal(*one, R"("")"),
            (Violations{V("", "must be at least 1 character long (is 0)")}));
}

TEST(SchemaStringTest, LengthCountsCodePointsNotBytes) {
  auto schema = MustCompile("maxLength: 5");
  // "héllo": 5 code points, 6 bytes.
  EXPECT_EQ(CheckVal(*schema, "\"h\xC3\xA9llo\""), kNone);
  // Five emoji: 5 code points, 20 bytes.
  const std::string emoji = "\xF0\x9F\x98\x80";
  EXPECT_EQ(CheckVal(*schema, "\"" + emoji + emoji + emoji + emoji + emoji + "\""), kNone);
  // Six CJK characters: 6 code points, 18 bytes.
  EXPECT_EQ(CheckVal(*schema,
                     "\"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE6\x97\xA5\xE6\x9C\xAC"
                     "\xE8\xAA\x9E\""),
            (Violations{V("", "must be at most 5 characters long (is 6)")}));
  auto min = MustCompile("minLength: 3");
  // 2 code points, 4 bytes.
  EXPECT_EQ(CheckVal(*min, "\"\xC3\xA9\xC3\xA9\""),
            (Violations{V("", "must be at least 3 characters long (is 2)")}));
}

// ---------------------------------------------------------------------------
// Numbers

TEST(SchemaNumberTest, InclusiveBounds) {
  auto schema = MustCompile("{minimum: 1, maximum: 300}");
  EXPECT_EQ(CheckVal(*schema, "1"), kNone);
  EXPECT_EQ(CheckVal(*schema, "300"), kNone);
  EXPECT_EQ(CheckVal(*schema, "0.5"), (Violations{V("", "must be at least 1 (is 0.5)")}));
  EXPECT_EQ(CheckVal(*schema, "301"), (Violations{V("", "must be at most 300 (is 301)")}));
  EXPECT_EQ(CheckVal(*schema, R"("1000")"), kNone);  // Only applies to numbers.
}

TEST(SchemaNumberTest, ExclusiveBoundsAreNumbers) {
  auto schema = MustCompile("{exclusiveMinimum: 0, exclusiveMaximum: 1.5}");
  EXPECT_EQ(CheckVal(*schema, "0.001"), kNone);
  EXPECT_EQ(CheckVal(*schema, "1.49"), kNone);
  EXPECT_EQ(CheckVal(*schema, "0"), (Violations{V("", "must be greater than 0 (is 0)")}));
  EXPECT_EQ(CheckVal(*schema, "-2"), (Violations{V("", "must be greater than 0 (is -2)")}));
  EXPECT_EQ(CheckVal(*schema, "1.5"), (Violations{V("", "must be less than 1.5 (is 1.5)")}));
}

TEST(SchemaNumberTest, NumbersAreFormattedReadably) {
  auto schema = MustCompile("{maximum: 0.1}");
  EXPECT_EQ(CheckVal(*schema, "0.30000000000000004"),
            (Violations{V("", "must be at most 0.1 (is 0.30000000000000004)")}));
  auto big = MustCompile("{maximum: 1e3}");
  EXPECT_EQ(CheckVal(*big, "123456789"),
            (Violations{V("", "must be at most 1000 (is 123456789)")}));
}

// ---------------------------------------------------------------------------
// Arrays

TEST(SchemaArrayTest, ItemsAndCounts) {
  auto schema = MustCompile("{items: {type: string}, minItems: 1, maxItems: 3}");
  EXPECT_EQ(CheckVal(*schema, R"(["a"])"), kNone);
  EXPECT_EQ(CheckVal(*schema, R"(["a","b","c"])"), kNone);
  EXPECT_EQ(CheckVal(*schema, "[]"), (Violations{V("", "must have at least 1 item (has 0)")}));
  EXPECT_EQ(CheckVal(*schema, R"(["a","b","c","d"])"),
            (Violations{V("", "must have at most 3 items (has 4)")}));
  EXPECT_EQ(CheckVal(*schema, R"(["a",1,null])"),
            (Violations{V("/1", "must be a string (is a number)"),
                        V("/2", "must be a string (is null)")}));
  EXPECT_EQ(CheckVal(*schema, R"({"0":1})"), kNone);  // Only applies to arrays.
}

TEST(SchemaArrayTest, NestedPaths) {
  auto schema = MustCompile(R"(
type: object
properties:
  files:
    type: array
    items:
      type: object
      required: [path]
      properties:
        path: {type: string, pattern: '^/workspace/'}
        mode: {enum: [r, w]}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"files":[{"path":"/workspace/a"},{"path":"/workspace/b"}]})"),
            kNone);
  EXPECT_EQ(CheckObj(*schema,
                     R"({"files":[{"path":"/workspace/a"},{"mode":"x"},{"path":"/etc/passwd"}]})"),
            (Violations{V("/files/1/path", "is required"),
                        V("/files/1/mode", R"(must be one of: "r", "w")"),
                        V("/files/2/path", "does not match pattern ^/workspace/")}));
}

// ---------------------------------------------------------------------------
// Collecting violations

TEST(SchemaValidateTest, CollectsEveryViolation) {
  auto schema = MustCompile(R"(
type: object
required: [command]
additionalProperties: false
properties:
  command: {type: string, maxLength: 200, pattern: '^[a-z ]+$'}
  timeout: {type: integer, minimum: 1, maximum: 300}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"command":"git status","timeout":30})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"command":"rm -rf /","timeout":301})"),
            (Violations{V("/command", "does not match pattern ^[a-z ]+$"),
                        V("/timeout", "must be at most 300 (is 301)")}));
  // Several violations at one location are all reported.
  const std::string long_bad(250, 'X');
  EXPECT_EQ(CheckObj(*schema, R"({"command":")" + long_bad + R"("})"),
            (Violations{V("/command", "must be at most 200 characters long (is 250)"),
                        V("/command", "does not match pattern ^[a-z ]+$")}));
}

TEST(SchemaValidateTest, AppendsToExistingViolationsAndAcceptsNull) {
  auto schema = MustCompile("{properties: {a: {type: string}}}");
  std::vector<SchemaViolation> out = {V("/earlier", "something")};
  EXPECT_TRUE(schema->Validate(Obj(R"({"a":"x"})"), &out));
  EXPECT_EQ(out.size(), 1u);
  EXPECT_FALSE(schema->Validate(Obj(R"({"a":1})"), &out));
  EXPECT_EQ(out,
            (Violations{V("/earlier", "something"), V("/a", "must be a string (is a number)")}));

  EXPECT_TRUE(schema->Validate(Obj(R"({"a":"x"})"), nullptr));
  EXPECT_FALSE(schema->Validate(Obj(R"({"a":1})"), nullptr));
  EXPECT_FALSE(schema->Validate(Val(R"({"a":1})"), nullptr));
}

TEST(SchemaValidateTest, UnsetValueIsNull) {
  auto schema = MustCompile("type: 'null'");
  EXPECT_TRUE(schema->Validate(pb::Value(), nullptr));
}

TEST(SchemaValidateTest, ViolationToString) {
  EXPECT_EQ(V("/a", "is required").ToString(), "/a: is required");
  EXPECT_EQ(V("", "must be an object").ToString(), "(root): must be an object");
}

TEST(SchemaValidateTest, ConcurrentValidation) {
  auto schema = MustCompile(R"(
properties:
  command: {type: string, pattern: '^[a-z]+( [a-z]+)*$'}
)");
  const pb::Struct good = Obj(R"({"command":"git status"})");
  const pb::Struct bad = Obj(R"({"command":"git; status"})");
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        std::vector<SchemaViolation> out;
        if (!schema->Validate(good, &out) || schema->Validate(bad, &out) || out.size() != 1) {
          ++failures[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, (std::vector<int>{0, 0, 0, 0}));
}

}  // namespace
}  // namespace toolgate
