#include "server/engine/call_cost.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace toolgate {
namespace {

namespace pb = google::protobuf;

// An RFC 6901 array index: "0", or digits without a leading zero.
bool ArrayIndex(const std::string& token, size_t* index) {
  if (token.empty() || token.size() > 10) return false;
  if (token.size() > 1 && token[0] == '0') return false;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
  }
  uint64_t v = 0;
  if (!absl::SimpleAtoi(token, &v)) return false;
  *index = static_cast<size_t>(v);
  return true;
}

absl::string_view KindOf(const pb::Value& v) {
  switch (v.kind_case()) {
    case pb::Value::kStringValue:
      return "a string";
    case pb::Value::kBoolValue:
      return "a boolean";
    case pb::Value::kNullValue:
      return "null";
    case pb::Value::kStructValue:
      return "an object";
    case pb::Value::kListValue:
      return "a list";
    case pb::Value::kNumberValue:
      return "a number";
    case pb::Value::KIND_NOT_SET:
      break;
  }
  return "no value";
}

// The value `tokens` lead to from `args`, or null.
const pb::Value* Find(const pb::Struct& args, const std::vector<std::string>& tokens) {
  const pb::Struct* object = &args;
  const pb::Value* at = nullptr;
  for (const std::string& token : tokens) {
    if (object != nullptr) {
      auto it = object->fields().find(token);
      if (it == object->fields().end()) return nullptr;
      at = &it->second;
    } else if (at != nullptr && at->kind_case() == pb::Value::kListValue) {
      size_t i = 0;
      if (!ArrayIndex(token, &i) || i >= static_cast<size_t>(at->list_value().values_size())) {
        return nullptr;
      }
      at = &at->list_value().values(static_cast<int>(i));
    } else {
      return nullptr;  // A scalar has nothing inside.
    }
    object = at->kind_case() == pb::Value::kStructValue ? &at->struct_value() : nullptr;
  }
  return at;
}

}  // namespace

int64_t CallCost(const LimitSpec& spec, const pb::Struct& args, std::string* problem) {
  if (spec.cost_from.empty()) return spec.cost;
  const int64_t capacity = spec.Capacity();
  auto fail = [&](absl::string_view got) {
    *problem = absl::StrCat("must be a whole number from 0 to ", capacity, " (the cost of limit ",
                            spec.rule_id, "), got ", got);
    return -1;
  };
  const pb::Value* v = Find(args, spec.cost_path);
  if (v == nullptr) {
    *problem = absl::StrCat("is required: a whole number from 0 to ", capacity,
                            " (the cost of limit ", spec.rule_id, ")");
    return -1;
  }
  if (v->kind_case() != pb::Value::kNumberValue) return fail(KindOf(*v));
  const double n = v->number_value();
  // Capacity is at most 1e9, so every admissible cost is exact in a double.
  if (!std::isfinite(n) || n < 0 || n > static_cast<double>(capacity) || std::floor(n) != n) {
    return fail(absl::StrCat(n));
  }
  return static_cast<int64_t>(n);
}

}  // namespace toolgate
