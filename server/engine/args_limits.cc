#include "server/engine/args_limits.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace toolgate {

int ArgsDepth(const google::protobuf::Struct& args) {
  using google::protobuf::Value;
  int max_depth = 1;
  std::vector<std::pair<const Value*, int>> stack;
  for (const auto& [key, value] : args.fields()) stack.emplace_back(&value, 1);
  while (!stack.empty()) {
    auto [v, depth] = stack.back();
    stack.pop_back();
    if (v->has_struct_value()) {
      max_depth = std::max(max_depth, depth + 1);
      for (const auto& [key, value] : v->struct_value().fields())
        stack.emplace_back(&value, depth + 1);
    } else if (v->has_list_value()) {
      max_depth = std::max(max_depth, depth + 1);
      for (const Value& item : v->list_value().values()) stack.emplace_back(&item, depth + 1);
    }
  }
  return max_depth;
}

absl::Status CheckArgsLimits(const google::protobuf::Struct& args, const ArgsLimits& limits) {
  const size_t bytes = args.ByteSizeLong();
  if (bytes > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("args is ", bytes, " bytes, over the limit of ",
                                                   limits.max_bytes, " bytes (--max-args-bytes)"));
  }
  if (const int depth = ArgsDepth(args); depth > limits.max_depth) {
    return absl::InvalidArgumentError(absl::StrCat("args is nested ", depth,
                                                   " levels deep, over the limit of ",
                                                   limits.max_depth, " (--max-args-depth)"));
  }
  return absl::OkStatus();
}

}  // namespace toolgate
