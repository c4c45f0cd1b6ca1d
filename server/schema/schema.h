// Argument schemas: a compiled subset of JSON Schema (draft 6+ semantics)
// used to check the arguments of a tool call before a policy decision.
//
// A policy declares, per tool, a schema such as
//
//   args:
//     type: object
//     required: [command]
//     additionalProperties: false
//     properties:
//       command: {type: string, maxLength: 200, pattern: '^[a-z ]+$'}
//       timeout: {type: integer, minimum: 1, maximum: 300}
//
// `ArgsSchema::Compile` turns that YAML (or JSON, which yaml-cpp parses the
// same way) into an immutable tree with every regular expression compiled
// once; `Validate` then checks argument values against it without touching
// YAML again.
//
// Supported keywords:
//   type                 a type name or a list of them: object, array, string,
//                        number, integer, boolean, null. "integer" is a number
//                        with no fractional part.
//   properties           map of property name to sub-schema.
//   required             list of property names.
//   additionalProperties true (the default), false, or a schema applied to
//                        every property not named in `properties`.
//   enum, const          JSON values; compared by JSON equality (numbers by
//                        numeric value, so 1 equals 1.0).
//   pattern              an RE2 expression, searched for anywhere in the
//                        string (unanchored, as in JSON Schema).
//   minLength, maxLength string length in Unicode code points.
//   minimum, maximum, exclusiveMinimum, exclusiveMaximum
//                        numeric bounds; the exclusive ones are numbers.
//   items                one schema applied to every array element.
//   minItems, maxItems   array length.
// Annotations that are accepted and ignored: description, title, default,
// examples, $comment. Any other keyword is a compile error. A sub-schema may
// also be the boolean `true` (accepts anything) or `false` (accepts nothing).
//
// As in JSON Schema, keywords about one type only apply to values of that
// type (maxLength does not reject a number; `type` does that).
//
// YAML scalars are read with JSON types (server/base/yaml_json.h): quoted
// scalars are strings; plain true/false are booleans, plain null/~ (or
// nothing) is null, plain decimal numbers are numbers, anything else is a
// string. So `enum: ['1']` matches the string "1" but not the number 1, and
// `minimum: '5'` is an error.
#ifndef TOOLGATE_SERVER_SCHEMA_SCHEMA_H_
#define TOOLGATE_SERVER_SCHEMA_SCHEMA_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"
#include "server/base/diagnostics.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {

namespace schema_internal {
struct Node;  // One compiled (sub-)schema; defined in node.h.
}  // namespace schema_internal

// One way in which arguments fail their schema.
struct SchemaViolation {
  // JSON Pointer (RFC 6901) to the offending value inside the arguments:
  // "/command", "/files/2/path"; "" for the arguments object itself. For a
  // missing required property it points at where the property should be.
  std::string path;
  // What is wrong, phrased to follow the path, e.g. "is required",
  // "must be at most 200 characters long (is 250)", "must be an integer",
  // "does not match pattern ^[a-z ]+$",
  // "is not allowed (additionalProperties is false)". Messages never echo
  // string data from the arguments (they may hold secrets); they do show
  // numbers and lengths.
  std::string message;

  // "<path>: <message>", with "(root)" for the empty path.
  std::string ToString() const;

  bool operator==(const SchemaViolation& other) const {
    return path == other.path && message == other.message;
  }
};

// Appends one reference token of a JSON Pointer to *out, escaped:
// "~" -> "~0", "/" -> "~1".
void AppendJsonPointerToken(absl::string_view token, std::string* out);

// A compiled argument schema. Immutable once compiled, so one instance can be
// shared by any number of threads.
class ArgsSchema {
 public:
  // Compiles a schema document given as a YAML node. `where` is the policy
  // path of the node, e.g. "tools.run_command.args"; messages name the
  // offending keyword by extending it ("tools.run_command.args.properties.
  // command.pattern: ..."). Every problem found (not just the first) is
  // recorded in `diags`, located at the offending YAML node: unknown
  // keywords, keyword values of the wrong type, invalid regular expressions
  // (with RE2's error text), contradictory bounds (minimum > maximum),
  // negative or fractional lengths, non-string names in `required`, schemas
  // nested more than 64 levels deep, and so on. Patterns get a 4 MiB RE2
  // memory budget. Returns nullptr if this call recorded any error (errors
  // already in `diags` do not count). Never throws.
  static std::unique_ptr<const ArgsSchema> Compile(const YAML::Node& node, const std::string& where,
                                                   Diagnostics& diags);

  ~ArgsSchema();
  ArgsSchema(const ArgsSchema&) = delete;
  ArgsSchema& operator=(const ArgsSchema&) = delete;

  // Validates a call's arguments (the whole object). Appends every violation
  // found to `*out` (when `out` is null they are only counted), in a
  // deterministic order: for each object, missing required properties in the
  // order `required` lists them, then the present properties sorted by name.
  // Where a value has the wrong type, only that type violation is reported
  // for it. Returns true when there is no violation. Thread-safe, never
  // throws. It only descends where the schema has sub-schemas, so recursion
  // is bounded by the schema's nesting (at most 64 levels), not the data's.
  bool Validate(const google::protobuf::Struct& args, std::vector<SchemaViolation>* out) const;
  // Same, for any JSON value (the root of the paths is `value` itself). A
  // Value with no kind set is treated as null.
  bool Validate(const google::protobuf::Value& value, std::vector<SchemaViolation>* out) const;

 private:
  explicit ArgsSchema(std::unique_ptr<const schema_internal::Node> root);

  std::unique_ptr<const schema_internal::Node> root_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SCHEMA_SCHEMA_H_
