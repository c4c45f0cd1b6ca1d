// Helpers shared by the schema tests (compile_test.cc, validate_test.cc).
#ifndef TOOLGATE_SERVER_SCHEMA_SCHEMA_TESTING_H_
#define TOOLGATE_SERVER_SCHEMA_SCHEMA_TESTING_H_

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/base/diagnostics.h"
#include "server/schema/schema.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {

inline void PrintTo(const SchemaViolation& v, std::ostream* os) {
  *os << "{\"" << v.path << "\", \"" << v.message << "\"}";
}

using Violations = std::vector<SchemaViolation>;
inline const Violations kNone;

// gtest only (the unit tests do not link gmock).
inline ::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

inline SchemaViolation V(std::string path, std::string message) {
  return SchemaViolation{std::move(path), std::move(message)};
}

inline std::unique_ptr<const ArgsSchema> MustCompile(const std::string& yaml) {
  Diagnostics diags("policy.yaml");
  auto schema = ArgsSchema::Compile(YAML::Load(yaml), "tools.t.args", diags);
  EXPECT_TRUE(diags.ok()) << diags.ToString();
  EXPECT_NE(schema, nullptr);
  return schema;
}

// Compiles a schema that must fail; returns the diagnostics.
inline Diagnostics MustFail(const std::string& yaml) {
  Diagnostics diags("policy.yaml");
  auto schema = ArgsSchema::Compile(YAML::Load(yaml), "tools.t.args", diags);
  EXPECT_EQ(schema, nullptr);
  EXPECT_FALSE(diags.ok());
  return diags;
}

inline google::protobuf::Struct Obj(const std::string& json) {
  google::protobuf::Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return s;
}

inline google::protobuf::Value Val(const std::string& json) {
  google::protobuf::Value v;
  auto status = google::protobuf::util::JsonStringToMessage(json, &v);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return v;
}

inline std::vector<SchemaViolation> CheckObj(const ArgsSchema& schema, const std::string& json) {
  std::vector<SchemaViolation> out;
  const bool ok = schema.Validate(Obj(json), &out);
  EXPECT_EQ(ok, out.empty());
  return out;
}

inline std::vector<SchemaViolation> CheckVal(const ArgsSchema& schema, const std::string& json) {
  std::vector<SchemaViolation> out;
  const bool ok = schema.Validate(Val(json), &out);
  EXPECT_EQ(ok, out.empty());
  return out;
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SCHEMA_SCHEMA_TESTING_H_
