// Tests of compilation: accepted documents, and the located error of every
// kind of invalid schema.
#include <string>

#include "gtest/gtest.h"
#include "server/base/diagnostics.h"
#include "server/schema/schema.h"
#include "server/schema/schema_testing.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {
namespace {

TEST(SchemaCompileTest, AnnotationsAreIgnored) {
  auto schema = MustCompile(R"(
title: Run a command
description: Runs a shell command.
$comment: reviewed
properties:
  n: {type: integer, default: 5, examples: [1, 2]}
)");
  EXPECT_EQ(CheckObj(*schema, R"({"n":1})"), kNone);
}

TEST(SchemaCompileTest, JsonSyntax) {
  auto schema = MustCompile(R"({
  "type": "object",
  "required": ["q"],
  "properties": {"q": {"type": "string", "maxLength": 3}},
  "additionalProperties": false
})");
  EXPECT_EQ(CheckObj(*schema, R"({"q":"abc"})"), kNone);
  EXPECT_EQ(CheckObj(*schema, R"({"q":"abcd","r":1})"),
            (Violations{V("/q", "must be at most 3 characters long (is 4)"),
                        V("/r", "is not allowed (additionalProperties is false)")}));
}

// ---------------------------------------------------------------------------
// Compile errors

TEST(SchemaCompileErrorTest, UnknownKeyword) {
  Diagnostics diags = MustFail(R"(type: object
properties:
  command:
    type: string
    maxLen: 10
)");
  ASSERT_EQ(diags.errors().size(), 1u);
  const Diagnostic& d = diags.errors()[0];
  EXPECT_EQ(d.file, "policy.yaml");
  EXPECT_EQ(d.line, 5);
  EXPECT_EQ(d.column, 5);
  EXPECT_EQ(d.message, "tools.t.args.properties.command: unknown schema keyword 'maxLen'");
  EXPECT_EQ(d.ToString(),
            "policy.yaml:5:5: tools.t.args.properties.command: unknown schema keyword 'maxLen'");
}

TEST(SchemaCompileErrorTest, UnknownKeywordHints) {
  Diagnostics typo = MustFail("maxlength: 3");
  ASSERT_EQ(typo.errors().size(), 1u);
  EXPECT_TRUE(HasSubstr(typo.errors()[0].message,
                        "unknown schema keyword 'maxlength' (did you mean 'maxLength'?)"));
  Diagnostics unsupported = MustFail("oneOf: [{type: string}]");
  ASSERT_EQ(unsupported.errors().size(), 1u);
  EXPECT_TRUE(HasSubstr(unsupported.errors()[0].message, "unknown schema keyword 'oneOf'"));
  EXPECT_TRUE(HasSubstr(unsupported.errors()[0].message, "does not support"));
}

TEST(SchemaCompileErrorTest, InvalidRegex) {
  Diagnostics diags = MustFail(R"(type: object
properties:
  command:
    type: string
    pattern: "("
)");
  ASSERT_EQ(diags.errors().size(), 1u);
  const Diagnostic& d = diags.errors()[0];
  EXPECT_EQ(d.line, 5);
  EXPECT_EQ(d.column, 14);
  EXPECT_TRUE(HasSubstr(d.message,
                        "tools.t.args.properties.command.pattern: invalid regular "
                        "expression \"(\": "));
  EXPECT_TRUE(HasSubstr(d.message, "missing )"));  // RE2's own text.
}

TEST(SchemaCompileErrorTest, TooExpensiveRegex) {
  Diagnostics diags = MustFail(R"(pattern: '\pL{500}')");
  ASSERT_EQ(diags.errors().size(), 1u);
  EXPECT_TRUE(HasSubstr(diags.errors()[0].message, "invalid regular expression"));
  EXPECT_TRUE(HasSubstr(diags.errors()[0].message, "too large"));
  // A Unicode class with a moderate repetition fits.
  auto fits = MustCompile(R"(pattern: '^\pL{1,200}$')");
  ASSERT_NE(fits, nullptr);
  EXPECT_EQ(CheckVal(*fits, "\"h\xC3\xA9llo\""), kNone);
  EXPECT_EQ(CheckVal(*fits, R"("h3llo")"),
            (Violations{V("", "does not match pattern ^\\pL{1,200}$")}));
}

TEST(SchemaCompileErrorTest, WrongValueTypes) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"type: 5", "tools.t.args.type: unknown type '5'"},
      {"type: strng",
       "tools.t.args.type: unknown type 'strng' (expected object, array, string, "
       "number, integer, boolean or null)"},
      {"type: []", "tools.t.args.type: must name at least one type"},
      {"type: {a: 1}",
       "tools.t.args.type: must be a type name or a list of type names (is a "
       "mapping)"},
      {"type: [string, [number]]", "tools.t.args.type[1]: must be a type name (is a list)"},
      {"properties: [a, b]",
       "tools.t.args.properties: must be a mapping of property names to "
       "schemas (is a list)"},
      {"properties: {a: 5}",
       "tools.t.args.properties.a: a schema must be a mapping or a boolean "
       "(is a number)"},
      {"properties: {a: }",
       "tools.t.args.properties.a: a schema must be a mapping or a boolean "
       "(is null)"},
      {"required: a", "tools.t.args.required: must be a list of property names (is a string)"},
      {"required: [a, 1]",
       "tools.t.args.required[1]: a required property name must be a string "
       "(is a number)"},
      {"required: [a, {b: 1}]",
       "tools.t.args.required[1]: a required property name must be a "
       "string (is a mapping)"},
      {"additionalProperties: 'no'",
       "tools.t.args.additionalProperties: must be a boolean or a "
       "schema (is a string)"},
      {"enum: a", "tools.t.args.enum: must be a list of values (is a string)"},
      {"enum: []", "tools.t.args.enum: must list at least one value"},
      {"pattern: 5", "tools.t.args.pattern: must be a regular expression string (is a number)"},
      {"pattern: [a]", "tools.t.args.pattern: must be a regular expression string (is a list)"},
      {"minLength: -1", "tools.t.args.minLength: must be a non-negative integer (is -1)"},
      {"maxLength: 2.5", "tools.t.args.maxLength: must be a non-negative integer (is 2.5)"},
      {"maxLength: ten", "tools.t.args.maxLength: must be a non-negative integer (is a string)"},
      {"minItems: '3'", "tools.t.args.minItems: must be a non-negative integer (is a string)"},
      {"maxItems: 1e300", "tools.t.args.maxItems: must be a non-negative integer (is 1e+300)"},
      {"minimum: '5'", "tools.t.args.minimum: must be a number (is a string)"},
      {"maximum: [5]", "tools.t.args.maximum: must be a number (is a list)"},
      {"maximum: .inf", "tools.t.args.maximum: must be a number (is a string)"},
      {"exclusiveMinimum: true",
       "tools.t.args.exclusiveMinimum: must be a number (is a "
       "boolean); exclusive bounds are numbers themselves, as in JSON "
       "Schema draft 6+"},
      {"items: [{type: string}]",
       "tools.t.args.items: must be a single schema applied to every "
       "element (the list form is not supported)"},
      {"items: 3", "tools.t.args.items: a schema must be a mapping or a boolean (is a number)"},
      {"minimum: 5\nmaximum: 3",
       "tools.t.args.maximum: no number satisfies both minimum 5 and "
       "maximum 3"},
      {"exclusiveMinimum: 3\nmaximum: 3",
       "tools.t.args.maximum: no number satisfies both "
       "exclusiveMinimum 3 and maximum 3"},
      {"minimum: 3\nexclusiveMaximum: 3",
       "tools.t.args.exclusiveMaximum: no number satisfies "
       "both minimum 3 and exclusiveMaximum 3"},
      {"minLength: 5\nmaxLength: 4",
       "tools.t.args.maxLength: minLength (5) is greater than "
       "maxLength (4)"},
      {"minItems: 2\nmaxItems: 1",
       "tools.t.args.maxItems: minItems (2) is greater than maxItems "
       "(1)"},
      {"type: string\ntype: number", "tools.t.args: duplicate schema keyword 'type'"},
      {"properties: {a: {}, a: {}}", "tools.t.args.properties: duplicate property 'a'"},
      {"const: {a: 1, a: 2}", "tools.t.args.const: duplicate key 'a'"},
      {"5", "tools.t.args: a schema must be a mapping or a boolean (is a number)"},
      {"[type, string]", "tools.t.args: a schema must be a mapping or a boolean (is a list)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    Diagnostics diags = MustFail(c.yaml);
    ASSERT_EQ(diags.errors().size(), 1u) << diags.ToString();
    EXPECT_TRUE(HasSubstr(diags.errors()[0].message, c.message));
    EXPECT_GT(diags.errors()[0].line, 0) << diags.ToString();
  }
}

TEST(SchemaCompileErrorTest, ErrorsAreLocatedAtTheOffendingValue) {
  Diagnostics diags = MustFail(R"(type: object
required: [command, 7]
properties:
  command:
    type: string
    minLength: -3
  timeout:
    type: integer
    minimum: 10
    maximum: 5
)");
  ASSERT_EQ(diags.errors().size(), 3u) << diags.ToString();
  EXPECT_EQ(diags.errors()[0].line, 2);
  EXPECT_EQ(diags.errors()[0].column, 21);
  EXPECT_TRUE(HasSubstr(diags.errors()[0].message, "required[1]"));
  EXPECT_EQ(diags.errors()[1].line, 6);
  EXPECT_EQ(diags.errors()[1].column, 16);
  EXPECT_TRUE(HasSubstr(diags.errors()[1].message, "properties.command.minLength"));
  EXPECT_EQ(diags.errors()[2].line, 10);
  EXPECT_EQ(diags.errors()[2].column, 14);
  EXPECT_TRUE(HasSubstr(diags.errors()[2].message, "properties.timeout.maximum"));
}

TEST(SchemaCompileErrorTest, CollectsEveryErrorInOneCompile) {
  Diagnostics diags = MustFail(R"(
properties:
  a: {type: strin}
  b: {pattern: "[", frob: 1}
  c:
    items: {maxItems: x}
)");
  ASSERT_EQ(diags.errors().size(), 4u) << diags.ToString();
  EXPECT_EQ(diags.errors()[0].line, 3);
  EXPECT_EQ(diags.errors()[1].line, 4);
  EXPECT_EQ(diags.errors()[2].line, 4);
  EXPECT_EQ(diags.errors()[3].line, 6);
  EXPECT_TRUE(HasSubstr(diags.errors()[3].message,
                        "tools.t.args.properties.c.items.maxItems: must be a non-negative "
                        "integer"));
}

TEST(SchemaCompileErrorTest, EarlierErrorsDoNotFailALaterCompile) {
  Diagnostics diags("policy.yaml");
  diags.Error("unrelated problem");
  auto schema = ArgsSchema::Compile(YAML::Load("type: string"), "tools.t.args", diags);
  EXPECT_NE(schema, nullptr);
  EXPECT_EQ(diags.errors().size(), 1u);
}

TEST(SchemaCompileErrorTest, MissingNodeIsAnErrorNotAnException) {
  Diagnostics diags("policy.yaml");
  const YAML::Node doc = YAML::Load("tools: {}");
  auto schema = ArgsSchema::Compile(doc["args"], "tools.t.args", diags);
  EXPECT_EQ(schema, nullptr);
  ASSERT_EQ(diags.errors().size(), 1u);
  EXPECT_EQ(diags.errors()[0].message, "tools.t.args: schema is missing");
}

TEST(SchemaCompileErrorTest, TooDeep) {
  std::string yaml;
  for (int i = 0; i < 100; ++i) yaml += "{items: ";
  yaml += "{}";
  for (int i = 0; i < 100; ++i) yaml += "}";
  Diagnostics diags = MustFail(yaml);
  ASSERT_EQ(diags.errors().size(), 1u);
  EXPECT_TRUE(HasSubstr(diags.errors()[0].message, "nested too deeply"));
}

}  // namespace
}  // namespace toolgate
