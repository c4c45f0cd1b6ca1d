// Reading YAML as JSON: the typing rules shared by argument schemas (enum and
// const values) and policy test cases (call arguments).
//
// A YAML scalar reads as JSON by these rules: quoted (or !!str-tagged)
// scalars are strings; plain true/false (also True/TRUE, False/FALSE) are
// booleans; plain null, Null, NULL, ~ or nothing is null; plain decimal
// numbers ([-+]?(\.d+|d+(\.d*)?)([eE][-+]?d+)?, finite) are numbers;
// anything else is a string. Maps are objects (keys must be scalars, each at
// most once) and sequences arrays.
#ifndef TOOLGATE_SERVER_BASE_YAML_JSON_H_
#define TOOLGATE_SERVER_BASE_YAML_JSON_H_

#include <string>

#include "google/protobuf/struct.pb.h"
#include "server/base/diagnostics.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {

// What a YAML scalar (or null node) reads as.
struct JsonScalar {
  enum Kind { kNull, kBool, kNumber, kString };
  Kind kind = kNull;
  bool boolean = false;  // When kBool.
  double number = 0;     // When kNumber.
};
JsonScalar ReadJsonScalar(const YAML::Node& node);

// "where.key" ("key" when `where` is empty) and "where[i]": the paths of
// values below `where` in messages.
std::string JoinPath(const std::string& where, const std::string& key);
std::string IndexPath(const std::string& where, size_t i);

// Converts `node` to a JSON value in *out. `where` names the node in
// messages ("tools.t.args.enum[0]"). Nesting deeper than `max_depth` levels
// below `node` is an error (the bound on the recursion, and on what callers
// later write or compare). Every problem is recorded in `diags`, located at
// its node, as "<where>: <what>": a non-scalar or repeated key, nesting too
// deep, a node with no value. Returns false when there was one.
bool YamlToJson(const YAML::Node& node, const std::string& where, int max_depth, Diagnostics& diags,
                google::protobuf::Value* out);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_YAML_JSON_H_
