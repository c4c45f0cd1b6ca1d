#include "server/base/yaml_json.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/base/yaml_util.h"

namespace toolgate {

namespace pb = ::google::protobuf;

namespace {

bool Convert(const YAML::Node& node, const std::string& where, int depth, int max_depth,
             Diagnostics& diags, pb::Value* out) {
  auto error = [&](const YAML::Node& at, absl::string_view what) {
    diags.Error(at, where.empty() ? std::string(what) : absl::StrCat(where, ": ", what));
  };
  if (depth > max_depth) {
    error(node, absl::StrCat("value is nested too deeply (more than ", max_depth, " levels)"));
    return false;
  }
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Scalar: {
      const JsonScalar scalar = ReadJsonScalar(node);
      switch (scalar.kind) {
        case JsonScalar::kNull:
          out->set_null_value(pb::NULL_VALUE);
          break;
        case JsonScalar::kBool:
          out->set_bool_value(scalar.boolean);
          break;
        case JsonScalar::kNumber:
          out->set_number_value(scalar.number);
          break;
        case JsonScalar::kString:
          out->set_string_value(node.Scalar());
          break;
      }
      return true;
    }
    case YAML::NodeType::Sequence: {
      pb::ListValue* list = out->mutable_list_value();
      bool ok = true;
      for (size_t i = 0; i < node.size(); ++i) {
        ok = Convert(node[i], IndexPath(where, i), depth + 1, max_depth, diags,
                     list->add_values()) &&
             ok;
      }
      return ok;
    }
    case YAML::NodeType::Map: {
      pb::Struct* obj = out->mutable_struct_value();
      bool ok = true;
      for (auto it = node.begin(); it != node.end(); ++it) {
        const YAML::Node key = it->first;  // Copies: yaml-cpp's `it->` yields a temporary.
        const YAML::Node value = it->second;
        if (!key.IsScalar()) {
          error(key, "an object key must be a string");
          ok = false;
          continue;
        }
        const std::string& name = key.Scalar();
        if (obj->fields().count(name) != 0) {
          error(key, absl::StrCat("duplicate key '", name, "'"));
          ok = false;
          continue;
        }
        ok = Convert(value, JoinPath(where, name), depth + 1, max_depth, diags,
                     &(*obj->mutable_fields())[name]) &&
             ok;
      }
      return ok;
    }
    default:
      error(node, "value is missing");
      return false;
  }
}

}  // namespace

JsonScalar ReadJsonScalar(const YAML::Node& node) {
  JsonScalar out;
  if (node.IsNull()) return out;
  if (IsQuotedScalar(node)) {
    out.kind = JsonScalar::kString;
    return out;
  }
  const std::string& s = node.Scalar();
  if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) return out;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    out.kind = JsonScalar::kBool;
    out.boolean = s[0] == 't' || s[0] == 'T';
    return out;
  }
  double d = 0;
  if (LooksNumeric(s) && absl::SimpleAtod(s, &d) && std::isfinite(d)) {
    out.kind = JsonScalar::kNumber;
    out.number = d;
    return out;
  }
  out.kind = JsonScalar::kString;
  return out;
}

std::string JoinPath(const std::string& where, const std::string& key) {
  return where.empty() ? key : absl::StrCat(where, ".", key);
}

std::string IndexPath(const std::string& where, size_t i) {
  return absl::StrCat(where, "[", i, "]");
}

bool YamlToJson(const YAML::Node& node, const std::string& where, int max_depth, Diagnostics& diags,
                pb::Value* out) {
  return Convert(node, where, 0, max_depth, diags, out);
}

}  // namespace toolgate
