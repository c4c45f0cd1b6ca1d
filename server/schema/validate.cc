// Validation: a compiled schema (schema_internal::Node) x a call's arguments
// -> violations, each with the JSON Pointer of the offending value.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "re2/re2.h"
#include "server/base/json.h"
#include "server/schema/node.h"
#include "server/schema/schema.h"

namespace toolgate {

namespace pb = ::google::protobuf;

namespace {

using schema_internal::Additional;
using schema_internal::IsIntegral;
using schema_internal::kTypeNames;
using schema_internal::Node;
using schema_internal::Property;
using schema_internal::TypeName;

// Enum lists in messages are cut after about this many characters.
constexpr size_t kMaxRenderedEnum = 200;

// "1 item", "2 items".
std::string Plural(uint64_t n, absl::string_view singular, absl::string_view plural) {
  return absl::StrCat(n, " ", n == 1 ? singular : plural);
}

// ---------------------------------------------------------------------------
// JSON value helpers.

pb::Value::KindCase KindOf(const pb::Value& v) {
  return v.kind_case() == pb::Value::KIND_NOT_SET ? pb::Value::kNullValue : v.kind_case();
}

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
      AppendJsonValue(values[i], &msg);
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
