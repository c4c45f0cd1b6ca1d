// Tests of reading exactly one YAML document with located errors.
#include "server/base/yaml_util.h"

#include <string>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

// "ok: <the root's kind>", or the diagnostics.
std::string Parse(const std::string& text) {
  Diagnostics diags("t.yaml");
  std::string kind;
  ParseSingleDocument(text, "empty", "more than one document", diags,
                      [&](const YAML::Node& root) { kind = YamlKindName(root); });
  if (!diags.ok()) return diags.ToString();
  return "ok: " + kind;
}

TEST(ParseSingleDocument, OneDocument) {
  EXPECT_EQ(Parse("a: 1\n"), "ok: a map");
  EXPECT_EQ(Parse("{\"a\": [1, 2]}"), "ok: a map");
  EXPECT_EQ(Parse("---\n- x\n...\n"), "ok: a list");
}

TEST(ParseSingleDocument, EmptyAndExtraDocuments) {
  EXPECT_NE(Parse("").find("t.yaml: empty"), std::string::npos) << Parse("");
  EXPECT_NE(Parse("---\n...\n").find("empty"), std::string::npos);
  EXPECT_NE(Parse("a: 1\n---\nb: 2\n").find("t.yaml:3:1: more than one document"),
            std::string::npos)
      << Parse("a: 1\n---\nb: 2\n");
}

TEST(ParseSingleDocument, SyntaxErrorIsLocated) {
  EXPECT_NE(Parse("a: [1, 2\n").find("t.yaml:"), std::string::npos);
  EXPECT_NE(Parse("a: [1, 2\n").find("syntax error"), std::string::npos);
}

// Found by fuzz/schema_fuzzer.cc: a comma at the top level (after a flow
// collection, a quoted scalar or a document end) made yaml-cpp's LoadAll
// return an endless run of empty documents, so reading such a policy never
// finished and took all memory. It is an error.
TEST(ParseSingleDocument, TopLevelCommaEnds) {
  for (const char* text : {"[a],", "{}, b", "{a: 1},", "{\"version\": \"1\"},\n", "[], x: y",
                           "\"a\",", ",", "a: 1\n...\n,", "[a]\n---\n[b],"}) {
    const std::string result = Parse(text);
    EXPECT_EQ(result.rfind("ok:", 0), std::string::npos) << text << " -> " << result;
    EXPECT_NE(result.find("t.yaml:"), std::string::npos) << text << " -> " << result;
  }
}

}  // namespace
}  // namespace toolgate
