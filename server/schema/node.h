// The compiled form of an argument schema, shared by compilation
// (compile.cc: YAML -> Node) and validation (validate.cc: Node x JSON value
// -> violations). Internal to server/schema.
#ifndef TOOLGATE_SERVER_SCHEMA_NODE_H_
#define TOOLGATE_SERVER_SCHEMA_NODE_H_

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "google/protobuf/struct.pb.h"
#include "re2/re2.h"

namespace toolgate {
namespace schema_internal {

// Deepest nesting of sub-schemas (and of enum/const values) accepted. It also
// bounds the recursion of Validate, which only descends where the schema does.
inline constexpr int kMaxSchemaDepth = 64;

// Bits of Node::types.
enum TypeBit : uint8_t {
  kObjectType = 1 << 0,
  kArrayType = 1 << 1,
  kStringType = 1 << 2,
  kNumberType = 1 << 3,
  kIntegerType = 1 << 4,
  kBooleanType = 1 << 5,
  kNullType = 1 << 6,
};

struct TypeName {
  const char* name;
  const char* with_article;  // For messages: "must be an object".
  uint8_t bit;
};

// Canonical order, used for messages.
inline constexpr TypeName kTypeNames[] = {
    {"object", "an object", kObjectType},
    {"array", "an array", kArrayType},
    {"string", "a string", kStringType},
    {"number", "a number", kNumberType},
    {"integer", "an integer", kIntegerType},
    {"boolean", "a boolean", kBooleanType},
    {"null", "null", kNullType},
};

enum class Additional { kAllow, kDeny, kSchema };

struct Node;

struct Property {
  std::string name;
  std::unique_ptr<const Node> schema;
};

// One compiled schema. Absent keywords are empty optionals / null pointers.
struct Node {
  bool always_false = false;  // The boolean schema `false`.
  uint8_t types = 0;          // TypeBit mask; 0 accepts every type.

  std::vector<Property> properties;   // Sorted by name, unique.
  std::vector<std::string> required;  // In declared order, unique.
  Additional additional = Additional::kAllow;
  std::unique_ptr<const Node> additional_schema;  // When kSchema.

  std::vector<google::protobuf::Value> enum_values;  // Empty when there is no `enum`.
  std::optional<google::protobuf::Value> const_value;

  std::string pattern_source;
  std::unique_ptr<const RE2> pattern;

  std::optional<uint64_t> min_length, max_length;
  std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum;

  std::unique_ptr<const Node> items;
  std::optional<uint64_t> min_items, max_items;

  bool HasObjectChecks() const {
    return !properties.empty() || !required.empty() || additional != Additional::kAllow;
  }
  bool HasNumberChecks() const {
    return minimum || maximum || exclusive_minimum || exclusive_maximum;
  }
};

inline bool IsIntegral(double d) { return std::isfinite(d) && d == std::trunc(d); }

}  // namespace schema_internal
}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SCHEMA_NODE_H_
