#include "server/schema/schema.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "re2/re2.h"
#include "server/base/yaml_util.h"

namespace toolgate {

namespace pb = ::google::protobuf;

namespace schema_internal {

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

enum class Additional { kAllow, kDeny, kSchema };

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

  std::vector<pb::Value> enum_values;  // Empty when there is no `enum`.
  std::optional<pb::Value> const_value;

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

}  // namespace schema_internal

namespace {

using schema_internal::Additional;
using schema_internal::Node;
using schema_internal::Property;

// Deepest nesting of sub-schemas (and of enum/const values) accepted. It also
// bounds the recursion of Validate, which only descends where the schema does.
constexpr int kMaxSchemaDepth = 64;
// Memory budget of one compiled pattern, program and DFA cache together
// (RE2's default is 8 MiB). Enough for e.g. ^\pL{1,200}$; a pathological
// pattern fails to compile instead of eating memory in every server.
constexpr int64_t kPatternMaxMem = 4 << 20;
// Largest count accepted for minLength and friends (the largest integer a
// double holds exactly).
constexpr double kMaxCount = 9007199254740992.0;  // 2^53
// Enum lists in messages are cut after about this many characters.
constexpr size_t kMaxRenderedEnum = 200;

// ---------------------------------------------------------------------------
// Formatting helpers.

std::string FormatNumber(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == 0) return "0";  // Also -0.
  if (d == std::trunc(d) && std::fabs(d) < 1e16) return absl::StrFormat("%.0f", d);
  std::string s = absl::StrFormat("%.15g", d);
  double back = 0;
  if (absl::SimpleAtod(s, &back) && back == d) return s;
  return absl::StrFormat("%.17g", d);
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendJson(const pb::Value& v, std::string* out);

void AppendJsonStruct(const pb::Struct& s, std::string* out) {
  std::vector<const std::string*> keys;
  keys.reserve(s.fields().size());
  for (const auto& kv : s.fields()) keys.push_back(&kv.first);
  std::sort(keys.begin(), keys.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  out->push_back('{');
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(*keys[i], out);
    out->push_back(':');
    AppendJson(s.fields().at(*keys[i]), out);
  }
  out->push_back('}');
}

// Renders a value compactly as JSON (only schema values are rendered, so the
// recursion is bounded by kMaxSchemaDepth).
void AppendJson(const pb::Value& v, std::string* out) {
  switch (v.kind_case()) {
    case pb::Value::kNumberValue:
      out->append(FormatNumber(v.number_value()));
      break;
    case pb::Value::kStringValue:
      AppendJsonString(v.string_value(), out);
      break;
    case pb::Value::kBoolValue:
      out->append(v.bool_value() ? "true" : "false");
      break;
    case pb::Value::kStructValue:
      AppendJsonStruct(v.struct_value(), out);
      break;
    case pb::Value::kListValue: {
      out->push_back('[');
      const auto& values = v.list_value().values();
      for (int i = 0; i < values.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendJson(values[i], out);
      }
      out->push_back(']');
      break;
    }
    case pb::Value::kNullValue:
    case pb::Value::KIND_NOT_SET:
      out->append("null");
      break;
  }
}

std::string ToJson(const pb::Value& v) {
  std::string out;
  AppendJson(v, &out);
  return out;
}

// "1 item", "2 items".
std::string Plural(uint64_t n, absl::string_view singular, absl::string_view plural) {
  return absl::StrCat(n, " ", n == 1 ? singular : plural);
}

// ---------------------------------------------------------------------------
// JSON value helpers.

pb::Value::KindCase KindOf(const pb::Value& v) {
  return v.kind_case() == pb::Value::KIND_NOT_SET ? pb::Value::kNullValue : v.kind_case();
}

bool IsIntegral(double d) { return std::isfinite(d) && d == std::trunc(d); }

bool StructEquals(const pb::Struct& a, const pb::Struct& b);

// JSON equality. `a` is the schema's value: recursion is bounded by its depth.
bool ValueEquals(const pb::Value& a, const pb::Value& b) {
  const pb::Value::KindCase kind = KindOf(a);
  if (kind != KindOf(b)) return false;
  switch (kind) {
    case pb::Value::kNumberValue:
      return a.number_value() == b.number_value();
    case pb::Value::kStringValue:
      return a.string_value() == b.string_value();
    case pb::Value::kBoolValue:
      return a.bool_value() == b.bool_value();
    case pb::Value::kStructValue:
      return StructEquals(a.struct_value(), b.struct_value());
    case pb::Value::kListValue: {
      const auto& x = a.list_value().values();
      const auto& y = b.list_value().values();
      if (x.size() != y.size()) return false;
      for (int i = 0; i < x.size(); ++i) {
        if (!ValueEquals(x[i], y[i])) return false;
      }
      return true;
    }
    default:
      return true;  // Both null.
  }
}

bool StructEquals(const pb::Struct& a, const pb::Struct& b) {
  if (a.fields().size() != b.fields().size()) return false;
  for (const auto& kv : a.fields()) {
    auto it = b.fields().find(kv.first);
    if (it == b.fields().end() || !ValueEquals(kv.second, it->second)) return false;
  }
  return true;
}

// Counts Unicode code points of UTF-8 text (bytes that do not continue a
// sequence; each stray byte of invalid UTF-8 counts as one).
uint64_t CodePoints(absl::string_view s) {
  uint64_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

// ---------------------------------------------------------------------------
// Types.

struct TypeName {
  const char* name;
  const char* with_article;  // For messages: "must be an object".
  uint8_t bit;
};

// Canonical order, used for messages.
constexpr TypeName kTypeNames[] = {
    {"object", "an object", schema_internal::kObjectType},
    {"array", "an array", schema_internal::kArrayType},
    {"string", "a string", schema_internal::kStringType},
    {"number", "a number", schema_internal::kNumberType},
    {"integer", "an integer", schema_internal::kIntegerType},
    {"boolean", "a boolean", schema_internal::kBooleanType},
    {"null", "null", schema_internal::kNullType},
};

// "must be a string", "must be a string or null", "must be an object, an
// array or null".
std::string ExpectedTypes(uint8_t types) {
  if ((types & schema_internal::kNumberType) != 0) types &= ~schema_internal::kIntegerType;
  std::vector<const char*> names;
  for (const TypeName& t : kTypeNames) {
    if ((types & t.bit) != 0) names.push_back(t.with_article);
  }
  std::string out = "must be ";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.append(i + 1 == names.size() ? " or " : ", ");
    out.append(names[i]);
  }
  return out;
}

const char* DescribeKind(pb::Value::KindCase kind) {
  switch (kind) {
    case pb::Value::kStructValue:
      return "an object";
    case pb::Value::kListValue:
      return "an array";
    case pb::Value::kStringValue:
      return "a string";
    case pb::Value::kNumberValue:
      return "a number";
    case pb::Value::kBoolValue:
      return "a boolean";
    default:
      return "null";
  }
}

bool TypeMatches(uint8_t types, pb::Value::KindCase kind, double number) {
  switch (kind) {
    case pb::Value::kStructValue:
      return (types & schema_internal::kObjectType) != 0;
    case pb::Value::kListValue:
      return (types & schema_internal::kArrayType) != 0;
    case pb::Value::kStringValue:
      return (types & schema_internal::kStringType) != 0;
    case pb::Value::kBoolValue:
      return (types & schema_internal::kBooleanType) != 0;
    case pb::Value::kNumberValue:
      if (!std::isfinite(number)) return false;
      return (types & schema_internal::kNumberType) != 0 ||
             ((types & schema_internal::kIntegerType) != 0 && IsIntegral(number));
    default:
      return (types & schema_internal::kNullType) != 0;
  }
}

// ---------------------------------------------------------------------------
// Compilation.

enum class ScalarKind { kNull, kBool, kNumber, kString };

// How a YAML scalar reads as JSON: quoted (or !!str-tagged) scalars are
// strings; plain true/false are booleans, plain null/~ null, plain decimal
// numbers numbers (non-finite ones are strings), anything else a string.
ScalarKind ClassifyScalar(const YAML::Node& node, bool* boolean, double* number) {
  if (node.IsNull()) return ScalarKind::kNull;
  const std::string& tag = node.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return ScalarKind::kString;
  const std::string& s = node.Scalar();
  if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) return ScalarKind::kNull;
  if (s == "true" || s == "True" || s == "TRUE") {
    *boolean = true;
    return ScalarKind::kBool;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *boolean = false;
    return ScalarKind::kBool;
  }
  if (LooksNumeric(s)) {
    double d = 0;
    if (absl::SimpleAtod(s, &d) && std::isfinite(d)) {
      *number = d;
      return ScalarKind::kNumber;
    }
  }
  return ScalarKind::kString;
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
    case YAML::NodeType::Scalar: {
      bool b = false;
      double d = 0;
      switch (ClassifyScalar(node, &b, &d)) {
        case ScalarKind::kNull:
          return "null";
        case ScalarKind::kBool:
          return "a boolean";
        case ScalarKind::kNumber:
          return "a number";
        case ScalarKind::kString:
          return "a string";
      }
      return "a string";
    }
    default:
      return "missing";
  }
}

std::string Join(const std::string& where, absl::string_view part) {
  if (where.empty()) return std::string(part);
  return absl::StrCat(where, ".", part);
}

std::string Index(const std::string& where, size_t i) { return absl::StrCat(where, "[", i, "]"); }

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
    if (node.IsScalar()) {
      bool b = false;
      double d = 0;
      if (ClassifyScalar(node, &b, &d) == ScalarKind::kBool) {
        out->always_false = !b;
        return out;
      }
    }
    if (!node.IsMap()) {
      Error(node, where,
            absl::StrCat("a schema must be a mapping or a boolean (is ", DescribeYaml(node), ")"));
      return out;
    }

    std::set<std::string> seen;
    // Where the upper bounds are, to locate contradictions (marks, not
    // nodes: assigning to a YAML::Node would write into the document).
    YAML::Mark max_length_at, max_items_at, maximum_at, exclusive_maximum_at;
    for (YAML::const_iterator it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // A copy: `it->` yields a temporary.
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Error(key, where, "a schema keyword must be a string");
        continue;
      }
      const std::string& kw = key.Scalar();
      if (!seen.insert(kw).second) {
        Error(key, where, absl::StrCat("duplicate schema keyword '", kw, "'"));
        continue;
      }
      const std::string at = Join(where, kw);
      if (kw == "type") {
        CompileType(value, at, out.get());
      } else if (kw == "properties") {
        CompileProperties(value, at, depth, out.get());
      } else if (kw == "required") {
        CompileRequired(value, at, out.get());
      } else if (kw == "additionalProperties") {
        bool b = false;
        double d = 0;
        if (value.IsScalar() && ClassifyScalar(value, &b, &d) == ScalarKind::kBool) {
          out->additional = b ? Additional::kAllow : Additional::kDeny;
        } else if (value.IsMap()) {
          out->additional = Additional::kSchema;
          out->additional_schema = CompileSchema(value, at, depth + 1);
        } else {
          Error(value, at,
                absl::StrCat("must be a boolean or a schema (is ", DescribeYaml(value), ")"));
        }
      } else if (kw == "enum") {
        CompileEnum(value, at, out.get());
      } else if (kw == "const") {
        pb::Value v;
        if (ToValue(value, at, 0, &v)) out->const_value = std::move(v);
      } else if (kw == "pattern") {
        CompilePattern(value, at, out.get());
      } else if (kw == "minLength") {
        out->min_length = GetCount(value, at);
      } else if (kw == "maxLength") {
        max_length_at = value.Mark();
        out->max_length = GetCount(value, at);
      } else if (kw == "minItems") {
        out->min_items = GetCount(value, at);
      } else if (kw == "maxItems") {
        max_items_at = value.Mark();
        out->max_items = GetCount(value, at);
      } else if (kw == "minimum") {
        out->minimum = GetNumber(value, at);
      } else if (kw == "maximum") {
        maximum_at = value.Mark();
        out->maximum = GetNumber(value, at);
      } else if (kw == "exclusiveMinimum") {
        out->exclusive_minimum = GetNumber(value, at);
      } else if (kw == "exclusiveMaximum") {
        exclusive_maximum_at = value.Mark();
        out->exclusive_maximum = GetNumber(value, at);
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

    // Bounds that no value can satisfy are mistakes.
    auto check_counts = [&](const std::optional<uint64_t>& lo, const std::optional<uint64_t>& hi,
                            const char* lo_name, const char* hi_name, const YAML::Mark& hi_at) {
      if (lo && hi && *lo > *hi) {
        Error(hi_at, Join(where, hi_name),
              absl::StrCat(lo_name, " (", *lo, ") is greater than ", hi_name, " (", *hi, ")"));
      }
    };
    check_counts(out->min_length, out->max_length, "minLength", "maxLength", max_length_at);
    check_counts(out->min_items, out->max_items, "minItems", "maxItems", max_items_at);
    auto check_bounds = [&](const std::optional<double>& lo, const std::optional<double>& hi,
                            bool strict, const char* lo_name, const char* hi_name,
                            const YAML::Mark& hi_at) {
      if (!lo || !hi) return;
      if (strict ? *lo >= *hi : *lo > *hi) {
        Error(hi_at, Join(where, hi_name),
              absl::StrCat("no number satisfies both ", lo_name, " ", FormatNumber(*lo), " and ",
                           hi_name, " ", FormatNumber(*hi)));
      }
    };
    check_bounds(out->minimum, out->maximum, false, "minimum", "maximum", maximum_at);
    check_bounds(out->minimum, out->exclusive_maximum, true, "minimum", "exclusiveMaximum",
                 exclusive_maximum_at);
    check_bounds(out->exclusive_minimum, out->maximum, true, "exclusiveMinimum", "maximum",
                 maximum_at);
    check_bounds(out->exclusive_minimum, out->exclusive_maximum, true, "exclusiveMinimum",
                 "exclusiveMaximum", exclusive_maximum_at);
    return out;
  }

 private:
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
      for (size_t i = 0; i < value.size(); ++i) one(value[i], Index(at, i));
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
    std::set<std::string> names;
    for (YAML::const_iterator it = value.begin(); it != value.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        Error(key, at, "a property name must be a string");
        continue;
      }
      const std::string& name = key.Scalar();
      if (!names.insert(name).second) {
        Error(key, at, absl::StrCat("duplicate property '", name, "'"));
        continue;
      }
      out->properties.push_back(
          Property{name, CompileSchema(it->second, Join(at, name), depth + 1)});
    }
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
      bool b = false;
      double d = 0;
      if (!item.IsScalar() || ClassifyScalar(item, &b, &d) != ScalarKind::kString) {
        Error(item, Index(at, i),
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
      if (ToValue(value[i], Index(at, i), 0, &v)) out->enum_values.push_back(std::move(v));
    }
  }

  void CompilePattern(const YAML::Node& value, const std::string& at, Node* out) {
    bool b = false;
    double d = 0;
    if (!value.IsScalar() || ClassifyScalar(value, &b, &d) != ScalarKind::kString) {
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
    bool b = false;
    double d = 0;
    if (value.IsScalar() && ClassifyScalar(value, &b, &d) == ScalarKind::kNumber) return d;
    std::string msg = absl::StrCat("must be a number (is ", DescribeYaml(value), ")");
    if (value.IsScalar() && ClassifyScalar(value, &b, &d) == ScalarKind::kBool) {
      absl::StrAppend(&msg,
                      "; exclusive bounds are numbers themselves, as in JSON Schema draft 6+");
    }
    Error(value, at, msg);
    return std::nullopt;
  }

  std::optional<uint64_t> GetCount(const YAML::Node& value, const std::string& at) {
    bool b = false;
    double d = 0;
    if (value.IsScalar() && ClassifyScalar(value, &b, &d) == ScalarKind::kNumber) {
      if (d >= 0 && IsIntegral(d) && d <= kMaxCount) return static_cast<uint64_t>(d);
      Error(value, at, absl::StrCat("must be a non-negative integer (is ", FormatNumber(d), ")"));
      return std::nullopt;
    }
    Error(value, at, absl::StrCat("must be a non-negative integer (is ", DescribeYaml(value), ")"));
    return std::nullopt;
  }

  // Converts a YAML value of `enum` or `const` to JSON.
  bool ToValue(const YAML::Node& node, const std::string& at, int depth, pb::Value* out) {
    if (depth > kMaxSchemaDepth) {
      Error(node, at, "value is nested too deeply");
      return false;
    }
    switch (node.Type()) {
      case YAML::NodeType::Null:
        out->set_null_value(pb::NULL_VALUE);
        return true;
      case YAML::NodeType::Scalar: {
        bool b = false;
        double d = 0;
        switch (ClassifyScalar(node, &b, &d)) {
          case ScalarKind::kNull:
            out->set_null_value(pb::NULL_VALUE);
            break;
          case ScalarKind::kBool:
            out->set_bool_value(b);
            break;
          case ScalarKind::kNumber:
            out->set_number_value(d);
            break;
          case ScalarKind::kString:
            out->set_string_value(node.Scalar());
            break;
        }
        return true;
      }
      case YAML::NodeType::Sequence: {
        pb::ListValue* list = out->mutable_list_value();
        bool ok = true;
        for (size_t i = 0; i < node.size(); ++i) {
          ok = ToValue(node[i], Index(at, i), depth + 1, list->add_values()) && ok;
        }
        return ok;
      }
      case YAML::NodeType::Map: {
        pb::Struct* obj = out->mutable_struct_value();
        bool ok = true;
        for (YAML::const_iterator it = node.begin(); it != node.end(); ++it) {
          if (!it->first.IsScalar()) {
            Error(it->first, at, "an object key must be a string");
            ok = false;
            continue;
          }
          const std::string key = it->first.Scalar();
          if (obj->fields().count(key) != 0) {
            Error(it->first, at, absl::StrCat("duplicate key '", key, "'"));
            ok = false;
            continue;
          }
          ok = ToValue(it->second, Join(at, key), depth + 1, &(*obj->mutable_fields())[key]) && ok;
        }
        return ok;
      }
      default:
        Error(node, at, "value is missing");
        return false;
    }
  }

  Diagnostics& diags_;
};

// ---------------------------------------------------------------------------
// Validation.

class Validator {
 public:
  explicit Validator(std::vector<SchemaViolation>* out) : out_(out) {}

  // Exactly one of `value` and `object` is set (`object` for a bare Struct).
  void Validate(const Node& s, const pb::Value* value, const pb::Struct* object) {
    if (s.always_false) {
      Add("is not allowed");
      return;
    }
    const pb::Value::KindCase kind = object != nullptr ? pb::Value::kStructValue : KindOf(*value);
    if (object == nullptr && kind == pb::Value::kStructValue) object = &value->struct_value();
    const double number = kind == pb::Value::kNumberValue ? value->number_value() : 0;

    if (s.types != 0 && !TypeMatches(s.types, kind, number)) {
      std::string msg = ExpectedTypes(s.types);
      if (kind == pb::Value::kNumberValue &&
          (!std::isfinite(number) || (s.types & schema_internal::kIntegerType) != 0)) {
        absl::StrAppend(&msg, " (is ", FormatNumber(number), ")");
      } else {
        absl::StrAppend(&msg, " (is ", DescribeKind(kind), ")");
      }
      Add(std::move(msg));
      return;  // Nothing else is meaningful for a value of the wrong type.
    }

    if (s.const_value && !Equals(*s.const_value, value, object)) {
      Add(absl::StrCat("must be equal to ", ToJson(*s.const_value)));
    }
    if (!s.enum_values.empty()) {
      bool found = false;
      for (const pb::Value& candidate : s.enum_values) {
        if (Equals(candidate, value, object)) {
          found = true;
          break;
        }
      }
      if (!found) Add(EnumMessage(s.enum_values));
    }

    switch (kind) {
      case pb::Value::kStringValue:
        CheckString(s, value->string_value());
        break;
      case pb::Value::kNumberValue:
        CheckNumber(s, number);
        break;
      case pb::Value::kListValue:
        CheckArray(s, value->list_value());
        break;
      case pb::Value::kStructValue:
        CheckObject(s, *object);
        break;
      default:
        break;
    }
  }

 private:
  void Add(std::string message) { out_->push_back(SchemaViolation{path_, std::move(message)}); }

  static bool Equals(const pb::Value& expected, const pb::Value* value, const pb::Struct* object) {
    if (value != nullptr) return ValueEquals(expected, *value);
    return KindOf(expected) == pb::Value::kStructValue &&
           StructEquals(expected.struct_value(), *object);
  }

  static std::string EnumMessage(const std::vector<pb::Value>& values) {
    std::string msg = "must be one of: ";
    const size_t start = msg.size();
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0 && msg.size() - start > kMaxRenderedEnum) {
        absl::StrAppend(&msg, ", ... (", values.size() - i, " more)");
        break;
      }
      if (i > 0) msg.append(", ");
      AppendJson(values[i], &msg);
    }
    return msg;
  }

  void CheckString(const Node& s, const std::string& str) {
    if (s.min_length || s.max_length) {
      const uint64_t n = CodePoints(str);
      if (s.min_length && n < *s.min_length) {
        Add(absl::StrCat("must be at least ", Plural(*s.min_length, "character", "characters"),
                         " long (is ", n, ")"));
      }
      if (s.max_length && n > *s.max_length) {
        Add(absl::StrCat("must be at most ", Plural(*s.max_length, "character", "characters"),
                         " long (is ", n, ")"));
      }
    }
    if (s.pattern != nullptr && !RE2::PartialMatch(str, *s.pattern)) {
      Add(absl::StrCat("does not match pattern ", s.pattern_source));
    }
  }

  void CheckNumber(const Node& s, double d) {
    if (!s.HasNumberChecks()) return;
    if (!std::isfinite(d)) {
      Add(absl::StrCat("must be a finite number (is ", FormatNumber(d), ")"));
      return;
    }
    if (s.minimum && d < *s.minimum) {
      Add(absl::StrCat("must be at least ", FormatNumber(*s.minimum), " (is ", FormatNumber(d),
                       ")"));
    }
    if (s.exclusive_minimum && d <= *s.exclusive_minimum) {
      Add(absl::StrCat("must be greater than ", FormatNumber(*s.exclusive_minimum), " (is ",
                       FormatNumber(d), ")"));
    }
    if (s.maximum && d > *s.maximum) {
      Add(absl::StrCat("must be at most ", FormatNumber(*s.maximum), " (is ", FormatNumber(d),
                       ")"));
    }
    if (s.exclusive_maximum && d >= *s.exclusive_maximum) {
      Add(absl::StrCat("must be less than ", FormatNumber(*s.exclusive_maximum), " (is ",
                       FormatNumber(d), ")"));
    }
  }

  void CheckArray(const Node& s, const pb::ListValue& list) {
    const uint64_t n = static_cast<uint64_t>(list.values_size());
    if (s.min_items && n < *s.min_items) {
      Add(absl::StrCat("must have at least ", Plural(*s.min_items, "item", "items"), " (has ", n,
                       ")"));
    }
    if (s.max_items && n > *s.max_items) {
      Add(absl::StrCat("must have at most ", Plural(*s.max_items, "item", "items"), " (has ", n,
                       ")"));
    }
    if (s.items != nullptr) {
      for (int i = 0; i < list.values_size(); ++i) {
        const size_t mark = path_.size();
        absl::StrAppend(&path_, "/", i);
        Validate(*s.items, &list.values(i), nullptr);
        path_.resize(mark);
      }
    }
  }

  void CheckObject(const Node& s, const pb::Struct& obj) {
    if (!s.HasObjectChecks()) return;
    const auto& fields = obj.fields();
    for (const std::string& name : s.required) {
      if (fields.find(name) == fields.end()) {
        const size_t mark = PushToken(name);
        Add("is required");
        path_.resize(mark);
      }
    }
    if (s.properties.empty() && s.additional == Additional::kAllow) return;

    // The common case first: every field present is a declared property
    // (or undeclared ones are allowed). Then the declared properties, in
    // name order, are exactly the fields to check, in the order the general
    // path below would check them.
    absl::InlinedVector<std::pair<const Property*, const pb::Value*>, 8> declared;
    for (const Property& p : s.properties) {
      auto f = fields.find(p.name);
      if (f != fields.end()) declared.emplace_back(&p, &f->second);
    }
    if (declared.size() == fields.size() || s.additional == Additional::kAllow) {
      for (const auto& [property, value] : declared) {
        const size_t mark = PushToken(property->name);
        Validate(*property->schema, value, nullptr);
        path_.resize(mark);
      }
      return;
    }

    using Field = pb::Map<std::string, pb::Value>::value_type;
    std::vector<const Field*> present;
    present.reserve(fields.size());
    for (const Field& f : fields) present.push_back(&f);
    std::sort(present.begin(), present.end(),
              [](const Field* a, const Field* b) { return a->first < b->first; });
    for (const Field* f : present) {
      const Node* sub = nullptr;
      auto it = std::lower_bound(
          s.properties.begin(), s.properties.end(), f->first,
          [](const Property& p, const std::string& name) { return p.name < name; });
      if (it != s.properties.end() && it->name == f->first) {
        sub = it->schema.get();
      } else if (s.additional == Additional::kAllow) {
        continue;
      } else if (s.additional == Additional::kSchema) {
        sub = s.additional_schema.get();
      }
      const size_t mark = PushToken(f->first);
      if (sub != nullptr) {
        Validate(*sub, &f->second, nullptr);
      } else {
        Add("is not allowed (additionalProperties is false)");
      }
      path_.resize(mark);
    }
  }

  // Appends "/" and the token, escaped, to the path; returns the length to
  // restore.
  size_t PushToken(absl::string_view token) {
    const size_t mark = path_.size();
    path_.push_back('/');
    AppendJsonPointerToken(token, &path_);
    return mark;
  }

  std::vector<SchemaViolation>* out_;
  std::string path_;
};

}  // namespace

std::string SchemaViolation::ToString() const {
  return absl::StrCat(path.empty() ? "(root)" : path, ": ", message);
}

void AppendJsonPointerToken(absl::string_view token, std::string* out) {
  for (char c : token) {
    if (c == '~') {
      out->append("~0");
    } else if (c == '/') {
      out->append("~1");
    } else {
      out->push_back(c);
    }
  }
}

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

bool ArgsSchema::Validate(const pb::Struct& args, std::vector<SchemaViolation>* out) const {
  std::vector<SchemaViolation> local;
  if (out == nullptr) out = &local;
  const size_t before = out->size();
  Validator(out).Validate(*root_, nullptr, &args);
  return out->size() == before;
}

bool ArgsSchema::Validate(const pb::Value& value, std::vector<SchemaViolation>* out) const {
  std::vector<SchemaViolation> local;
  if (out == nullptr) out = &local;
  const size_t before = out->size();
  Validator(out).Validate(*root_, &value, nullptr);
  return out->size() == before;
}

}  // namespace toolgate
