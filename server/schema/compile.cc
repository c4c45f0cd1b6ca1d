// Compilation: a schema document (YAML) -> a tree of schema_internal::Node,
// every problem recorded with its location.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "re2/re2.h"
#include "server/base/json.h"
#include "server/base/yaml_json.h"
#include "server/schema/node.h"
#include "server/schema/schema.h"

namespace toolgate {

namespace pb = ::google::protobuf;

namespace {

using schema_internal::Additional;
using schema_internal::IsIntegral;
using schema_internal::kMaxSchemaDepth;
using schema_internal::kTypeNames;
using schema_internal::Node;
using schema_internal::Property;
using schema_internal::TypeName;

// Memory budget of one compiled pattern, program and DFA cache together
// (RE2's default is 8 MiB). Enough for e.g. ^\pL{1,200}$; a pathological
// pattern fails to compile instead of eating memory in every server.
constexpr int64_t kPatternMaxMem = 4 << 20;
// Largest count accepted for minLength and friends (the largest integer a
// double holds exactly).
constexpr double kMaxCount = 9007199254740992.0;  // 2^53

// The keywords whose value is a count, and those whose value is a number:
// where each is kept in a Node.
template <typename T>
struct BoundKeyword {
  const char* name;
  std::optional<T> Node::*field;
};
constexpr BoundKeyword<uint64_t> kCountKeywords[] = {{"minLength", &Node::min_length},
                                                     {"maxLength", &Node::max_length},
                                                     {"minItems", &Node::min_items},
                                                     {"maxItems", &Node::max_items}};
constexpr BoundKeyword<double> kNumberKeywords[] = {{"minimum", &Node::minimum},
                                                    {"maximum", &Node::maximum},
                                                    {"exclusiveMinimum", &Node::exclusive_minimum},
                                                    {"exclusiveMaximum", &Node::exclusive_maximum}};

// The entry of `table` named `kw`, or null.
template <typename Keyword, size_t N>
const Keyword* Find(const Keyword (&table)[N], const std::string& kw) {
  for (const Keyword& k : table) {
    if (kw == k.name) return &k;
  }
  return nullptr;
}

// True when `node` is a scalar that reads (server/base/yaml_json.h) as `kind`.
bool IsJson(const YAML::Node& node, JsonScalar::Kind kind) {
  return node.IsScalar() && ReadJsonScalar(node).kind == kind;
}

// "a string", "a list", ... for messages about keyword values.
std::string DescribeYaml(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      switch (ReadJsonScalar(node).kind) {
        case JsonScalar::kNull:
          return "null";
        case JsonScalar::kBool:
          return "a boolean";
        case JsonScalar::kNumber:
          return "a number";
        case JsonScalar::kString:
          return "a string";
      }
      return "a string";
    default:
      return "missing";
  }
}

bool IsAnnotation(absl::string_view kw) {
  return kw == "description" || kw == "title" || kw == "default" || kw == "examples" ||
         kw == "$comment";
}

// clang-format off
constexpr const char* kKeywords[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "pattern",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "items", "minItems", "maxItems",
};

// JSON Schema keywords that toolgate deliberately does not implement.
constexpr const char* kUnsupportedKeywords[] = {
    "$ref", "$schema", "$id", "$defs", "definitions", "allOf", "anyOf", "oneOf", "not", "if",
    "then", "else", "format", "multipleOf", "uniqueItems", "contains", "minContains",
    "maxContains", "prefixItems", "additionalItems", "patternProperties", "propertyNames",
    "dependencies", "dependentRequired", "dependentSchemas", "minProperties", "maxProperties",
    "unevaluatedProperties", "unevaluatedItems", "contentEncoding", "contentMediaType",
    "readOnly", "writeOnly", "deprecated",
};
// clang-format on

std::string UnknownKeywordMessage(const std::string& kw) {
  std::string msg = absl::StrCat("unknown schema keyword '", kw, "'");
  for (const char* k : kKeywords) {
    if (absl::EqualsIgnoreCase(kw, k)) {
      absl::StrAppend(&msg, " (did you mean '", k, "'?)");
      return msg;
    }
  }
  for (const char* k : kUnsupportedKeywords) {
    if (kw == k) {
      absl::StrAppend(&msg, " (a JSON Schema keyword that toolgate does not support)");
      return msg;
    }
  }
  return msg;
}

class Compiler {
 public:
  explicit Compiler(Diagnostics& diags) : diags_(diags) {}

  // Compiles `node` (a mapping or a boolean). Always returns a node; errors
  // go to diags_.
  std::unique_ptr<Node> CompileSchema(const YAML::Node& node, const std::string& where, int depth) {
    auto out = std::make_unique<Node>();
    if (depth > kMaxSchemaDepth) {
      Error(node, where,
            absl::StrCat("schema is nested too deeply (more than ", kMaxSchemaDepth, " levels)"));
      return out;
    }
    if (!node.IsDefined()) {
      Error(node, where, "schema is missing");
      return out;
    }
    if (IsJson(node, JsonScalar::kBool)) {
      out->always_false = !ReadJsonScalar(node).boolean;
      return out;
    }
    if (!node.IsMap()) {
      Error(node, where,
            absl::StrCat("a schema must be a mapping or a boolean (is ", DescribeYaml(node), ")"));
      return out;
    }

    // Where each keyword's value is, to locate contradictions between bounds
    // (marks, not nodes: assigning to a YAML::Node would write into the
    // document).
    std::map<std::string, YAML::Mark> value_at;
    ForEachUniqueKey(node, where, "a schema keyword", "schema keyword",
                     [&](const YAML::Node& key, const std::string& kw, const YAML::Node& value) {
                       value_at[kw] = value.Mark();
                       CompileKeyword(key, kw, value, where, depth, out.get());
                     });

    // Bounds that no value can satisfy are mistakes.
    auto check_counts = [&](const std::optional<uint64_t>& lo, const std::optional<uint64_t>& hi,
                            const char* lo_name, const char* hi_name) {
      if (lo && hi && *lo > *hi) {
        Error(value_at[hi_name], JoinPath(where, hi_name),
              absl::StrCat(lo_name, " (", *lo, ") is greater than ", hi_name, " (", *hi, ")"));
      }
    };
    check_counts(out->min_length, out->max_length, "minLength", "maxLength");
    check_counts(out->min_items, out->max_items, "minItems", "maxItems");
    auto check_bounds = [&](const std::optional<double>& lo, const std::optional<double>& hi,
                            bool strict, const char* lo_name, const char* hi_name) {
      if (!lo || !hi) return;
      if (strict ? *lo >= *hi : *lo > *hi) {
        Error(value_at[hi_name], JoinPath(where, hi_name),
              absl::StrCat("no number satisfies both ", lo_name, " ", FormatNumber(*lo), " and ",
                           hi_name, " ", FormatNumber(*hi)));
      }
    };
    check_bounds(out->minimum, out->maximum, false, "minimum", "maximum");
    check_bounds(out->minimum, out->exclusive_maximum, true, "minimum", "exclusiveMaximum");
    check_bounds(out->exclusive_minimum, out->maximum, true, "exclusiveMinimum", "maximum");
    check_bounds(out->exclusive_minimum, out->exclusive_maximum, true, "exclusiveMinimum",
                 "exclusiveMaximum");
    return out;
  }

 private:
  // Compiles keyword `kw` (its `key` and `value`) of the schema at `where`
  // into *out.
  void CompileKeyword(const YAML::Node& key, const std::string& kw, const YAML::Node& value,
                      const std::string& where, int depth, Node* out) {
    const std::string at = JoinPath(where, kw);
    if (kw == "type") {
      CompileType(value, at, out);
    } else if (kw == "properties") {
      CompileProperties(value, at, depth, out);
    } else if (kw == "required") {
      CompileRequired(value, at, out);
    } else if (kw == "additionalProperties") {
      if (IsJson(value, JsonScalar::kBool)) {
        out->additional = ReadJsonScalar(value).boolean ? Additional::kAllow : Additional::kDeny;
      } else if (value.IsMap()) {
        out->additional = Additional::kSchema;
        out->additional_schema = CompileSchema(value, at, depth + 1);
      } else {
        Error(value, at,
              absl::StrCat("must be a boolean or a schema (is ", DescribeYaml(value), ")"));
      }
    } else if (kw == "enum") {
      CompileEnum(value, at, out);
    } else if (kw == "const") {
      pb::Value v;
      if (YamlToJson(value, at, kMaxSchemaDepth, diags_, &v)) out->const_value = std::move(v);
    } else if (kw == "pattern") {
      CompilePattern(value, at, out);
    } else if (const auto* count = Find(kCountKeywords, kw)) {
      out->*(count->field) = GetCount(value, at);
    } else if (const auto* number = Find(kNumberKeywords, kw)) {
      out->*(number->field) = GetNumber(value, at);
    } else if (kw == "items") {
      if (value.IsSequence()) {
        Error(value, at,
              "must be a single schema applied to every element (the list form is not "
              "supported)");
      } else {
        out->items = CompileSchema(value, at, depth + 1);
      }
    } else if (IsAnnotation(kw)) {
      // Accepted and ignored.
    } else {
      Error(key, where, UnknownKeywordMessage(kw));
    }
  }

  // Calls fn(key, name, value) for each pair of map `node` whose key is a
  // string not seen before in it; other keys are errors: "<a_noun> must be a
  // string", "duplicate <noun> '<name>'".
  template <typename Fn>
  void ForEachUniqueKey(const YAML::Node& node, const std::string& where, absl::string_view a_noun,
                        absl::string_view noun, Fn&& fn) {
    std::set<std::string> seen;
    for (YAML::const_iterator it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // Copies: `it->` yields a temporary.
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Error(key, where, absl::StrCat(a_noun, " must be a string"));
      } else if (!seen.insert(key.Scalar()).second) {
        Error(key, where, absl::StrCat("duplicate ", noun, " '", key.Scalar(), "'"));
      } else {
        fn(key, key.Scalar(), value);
      }
    }
  }

  static std::string Located(const std::string& where, absl::string_view message) {
    return where.empty() ? std::string(message) : absl::StrCat(where, ": ", message);
  }

  void Error(const YAML::Mark& mark, const std::string& where, absl::string_view message) {
    diags_.Error(mark, Located(where, message));
  }

  void Error(const YAML::Node& node, const std::string& where, absl::string_view message) {
    std::string text = Located(where, message);
    if (node.IsDefined()) {
      diags_.Error(node, std::move(text));
    } else {
      diags_.Error(std::move(text));
    }
  }

  // Returns the bit of a type name, or 0.
  static uint8_t TypeBitOf(const YAML::Node& node) {
    if (node.IsNull()) return schema_internal::kNullType;  // Plain `null` in YAML.
    if (!node.IsScalar()) return 0;
    for (const TypeName& t : kTypeNames) {
      if (node.Scalar() == t.name) return t.bit;
    }
    return 0;
  }

  void CompileType(const YAML::Node& value, const std::string& at, Node* out) {
    auto one = [&](const YAML::Node& name, const std::string& name_at) {
      uint8_t bit = TypeBitOf(name);
      if (bit == 0) {
        if (name.IsScalar()) {
          Error(name, name_at,
                absl::StrCat("unknown type '", name.Scalar(),
                             "' (expected object, array, string, number, integer, boolean or "
                             "null)"));
        } else {
          Error(name, name_at, absl::StrCat("must be a type name (is ", DescribeYaml(name), ")"));
        }
      }
      out->types |= bit;
    };
    if (value.IsSequence()) {
      if (value.size() == 0) {
        Error(value, at, "must name at least one type");
        return;
      }
      for (size_t i = 0; i < value.size(); ++i) one(value[i], IndexPath(at, i));
    } else if (value.IsScalar() || value.IsNull()) {
      one(value, at);
    } else {
      Error(value, at,
            absl::StrCat("must be a type name or a list of type names (is ", DescribeYaml(value),
                         ")"));
    }
  }

  void CompileProperties(const YAML::Node& value, const std::string& at, int depth, Node* out) {
    if (!value.IsMap()) {
      Error(value, at,
            absl::StrCat("must be a mapping of property names to schemas (is ", DescribeYaml(value),
                         ")"));
      return;
    }
    ForEachUniqueKey(value, at, "a property name", "property",
                     [&](const YAML::Node&, const std::string& name, const YAML::Node& schema) {
                       out->properties.push_back(
                           Property{name, CompileSchema(schema, JoinPath(at, name), depth + 1)});
                     });
    std::sort(out->properties.begin(), out->properties.end(),
              [](const Property& a, const Property& b) { return a.name < b.name; });
  }

  void CompileRequired(const YAML::Node& value, const std::string& at, Node* out) {
    if (!value.IsSequence()) {
      Error(value, at,
            absl::StrCat("must be a list of property names (is ", DescribeYaml(value), ")"));
      return;
    }
    std::set<std::string> names;
    for (size_t i = 0; i < value.size(); ++i) {
      const YAML::Node item = value[i];
      if (!IsJson(item, JsonScalar::kString)) {
        Error(item, IndexPath(at, i),
              absl::StrCat("a required property name must be a string (is ", DescribeYaml(item),
                           ")"));
        continue;
      }
      if (names.insert(item.Scalar()).second) out->required.push_back(item.Scalar());
    }
  }

  void CompileEnum(const YAML::Node& value, const std::string& at, Node* out) {
    if (!value.IsSequence()) {
      Error(value, at, absl::StrCat("must be a list of values (is ", DescribeYaml(value), ")"));
      return;
    }
    if (value.size() == 0) {
      Error(value, at, "must list at least one value");
      return;
    }
    for (size_t i = 0; i < value.size(); ++i) {
      pb::Value v;
      if (YamlToJson(value[i], IndexPath(at, i), kMaxSchemaDepth, diags_, &v)) {
        out->enum_values.push_back(std::move(v));
      }
    }
  }

  void CompilePattern(const YAML::Node& value, const std::string& at, Node* out) {
    if (!IsJson(value, JsonScalar::kString)) {
      Error(value, at,
            absl::StrCat("must be a regular expression string (is ", DescribeYaml(value), ")"));
      return;
    }
    RE2::Options options;
    options.set_max_mem(kPatternMaxMem);
    options.set_log_errors(false);
    auto re = std::make_unique<RE2>(value.Scalar(), options);
    if (!re->ok()) {
      std::string text;
      AppendJsonString(value.Scalar(), &text);
      std::string message = absl::StrCat("invalid regular expression ", text, ": ", re->error());
      if (re->error_code() == RE2::ErrorPatternTooLarge) {
        absl::StrAppend(&message, " (over the ", kPatternMaxMem >> 20,
                        " MiB limit; use smaller repetition counts, or maxLength for lengths)");
      }
      Error(value, at, message);
      return;
    }
    out->pattern_source = value.Scalar();
    out->pattern = std::move(re);
  }

  std::optional<double> GetNumber(const YAML::Node& value, const std::string& at) {
    if (IsJson(value, JsonScalar::kNumber)) return ReadJsonScalar(value).number;
    std::string msg = absl::StrCat("must be a number (is ", DescribeYaml(value), ")");
    if (IsJson(value, JsonScalar::kBool)) {
      absl::StrAppend(&msg,
                      "; exclusive bounds are numbers themselves, as in JSON Schema draft 6+");
    }
    Error(value, at, msg);
    return std::nullopt;
  }

  std::optional<uint64_t> GetCount(const YAML::Node& value, const std::string& at) {
    if (IsJson(value, JsonScalar::kNumber)) {
      const double d = ReadJsonScalar(value).number;
      if (d >= 0 && IsIntegral(d) && d <= kMaxCount) return static_cast<uint64_t>(d);
      Error(value, at, absl::StrCat("must be a non-negative integer (is ", FormatNumber(d), ")"));
      return std::nullopt;
    }
    Error(value, at, absl::StrCat("must be a non-negative integer (is ", DescribeYaml(value), ")"));
    return std::nullopt;
  }

  Diagnostics& diags_;
};

}  // namespace

ArgsSchema::ArgsSchema(std::unique_ptr<const schema_internal::Node> root)
    : root_(std::move(root)) {}

ArgsSchema::~ArgsSchema() = default;

std::unique_ptr<const ArgsSchema> ArgsSchema::Compile(const YAML::Node& node,
                                                      const std::string& where,
                                                      Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  std::unique_ptr<Node> root;
  try {
    root = Compiler(diags).CompileSchema(node, where, 0);
  } catch (const std::exception& e) {  // YAML::Exception, or worse.
    diags.Error(absl::StrCat(where.empty() ? "schema" : where, ": cannot read schema: ", e.what()));
    root = nullptr;
  }
  if (root == nullptr || diags.errors().size() != errors_before) return nullptr;
  return std::unique_ptr<const ArgsSchema>(new ArgsSchema(std::move(root)));
}

}  // namespace toolgate
