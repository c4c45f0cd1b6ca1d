// Tests of reading YAML with JSON types.
#include "server/base/yaml_json.h"

#include <string>

#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/base/json.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;

// The JSON of a YAML document; "error: ..." with the diagnostics when it has
// none.
std::string Json(const std::string& yaml, int max_depth = 64) {
  Diagnostics diags("t.yaml");
  pb::Value v;
  const bool ok = YamlToJson(YAML::Load(yaml), "v", max_depth, diags, &v);
  EXPECT_EQ(ok, diags.ok());
  if (!ok) return "error: " + diags.ToString();
  return ToJson(v);
}

TEST(YamlToJson, ScalarTypes) {
  EXPECT_EQ(Json("abc"), R"("abc")");
  EXPECT_EQ(Json("'abc'"), R"("abc")");
  for (const char* yaml : {"true", "True", "TRUE"}) EXPECT_EQ(Json(yaml), "true") << yaml;
  for (const char* yaml : {"false", "False", "FALSE"}) EXPECT_EQ(Json(yaml), "false") << yaml;
  for (const char* yaml : {"null", "Null", "NULL", "~", ""}) EXPECT_EQ(Json(yaml), "null") << yaml;
  EXPECT_EQ(Json("5"), "5");
  EXPECT_EQ(Json("-2.5e2"), "-250");
  EXPECT_EQ(Json(".5"), "0.5");
  EXPECT_EQ(Json("+7"), "7");
}

TEST(YamlToJson, QuotedScalarsAreStrings) {
  EXPECT_EQ(Json("'5'"), R"("5")");
  EXPECT_EQ(Json("\"true\""), R"("true")");
  EXPECT_EQ(Json("'null'"), R"("null")");
  EXPECT_EQ(Json("''"), R"("")");
  EXPECT_EQ(Json("!!str 5"), R"("5")");
}

TEST(YamlToJson, EverythingElseIsAString) {
  for (const char* yaml :
       {"yes", "no", "on", "0x10", "1_000", ".inf", "-.inf", ".nan", "1e999", "5s", "1.2.3"}) {
    EXPECT_EQ(Json(yaml), "\"" + std::string(yaml) + "\"") << yaml;
  }
}

TEST(YamlToJson, MapsAndSequencesNest) {
  EXPECT_EQ(Json("{b: [1, 'x', {c: ~}], a: {}}"), R"({"a":{},"b":[1,"x",{"c":null}]})");
  EXPECT_EQ(Json("[]"), "[]");
  EXPECT_EQ(Json("{'1': 1, 2: two}"), R"({"1":1,"2":"two"})");  // Keys are strings.
}

TEST(YamlToJson, KeyErrorsAreLocatedAndAllReported) {
  Diagnostics diags("t.yaml");
  pb::Value v;
  EXPECT_FALSE(YamlToJson(YAML::Load("a: 1\nb: {x: 1, x: 2}\n[k]: 3\n"), "args", 64, diags, &v));
  ASSERT_EQ(diags.errors().size(), 2u) << diags.ToString();
  EXPECT_EQ(diags.errors()[0].ToString(), "t.yaml:2:11: args.b: duplicate key 'x'");
  EXPECT_EQ(diags.errors()[1].ToString(), "t.yaml:3:1: args: an object key must be a string");
}

TEST(YamlToJson, DepthBound) {
  EXPECT_EQ(Json("[[1]]", 2), "[[1]]");
  EXPECT_EQ(Json("[[[1]]]", 2),
            "error: t.yaml:1:4: v[0][0][0]: value is nested too deeply (more than 2 levels)");
  EXPECT_EQ(Json("{a: {b: 1}}", 1),
            "error: t.yaml:1:9: v.a.b: value is nested too deeply (more than 1 levels)");
  EXPECT_EQ(Json("5", 0), "5");
}

TEST(YamlToJson, EmptyWhereNamesTheKeyAlone) {
  Diagnostics diags("t.yaml");
  pb::Value v;
  EXPECT_FALSE(YamlToJson(YAML::Load("{a: {b: 1, b: 2}}"), "", 64, diags, &v));
  ASSERT_EQ(diags.errors().size(), 1u);
  EXPECT_EQ(diags.errors()[0].message, "a: duplicate key 'b'");
}

TEST(ReadJsonScalar, KindsAndValues) {
  EXPECT_EQ(ReadJsonScalar(YAML::Load("~")).kind, JsonScalar::kNull);
  const JsonScalar t = ReadJsonScalar(YAML::Load("True"));
  EXPECT_EQ(t.kind, JsonScalar::kBool);
  EXPECT_TRUE(t.boolean);
  EXPECT_FALSE(ReadJsonScalar(YAML::Load("FALSE")).boolean);
  const JsonScalar n = ReadJsonScalar(YAML::Load("1e3"));
  EXPECT_EQ(n.kind, JsonScalar::kNumber);
  EXPECT_EQ(n.number, 1000);
  EXPECT_EQ(ReadJsonScalar(YAML::Load("'1e3'")).kind, JsonScalar::kString);
  EXPECT_EQ(ReadJsonScalar(YAML::Node()).kind, JsonScalar::kNull);
}

TEST(JoinPath, Paths) {
  EXPECT_EQ(JoinPath("", "a"), "a");
  EXPECT_EQ(JoinPath("a", "b"), "a.b");
  EXPECT_EQ(IndexPath("a", 3), "a[3]");
}

}  // namespace
}  // namespace toolgate
