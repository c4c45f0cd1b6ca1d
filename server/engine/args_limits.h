// Limits on a call's arguments, enforced before any policy work.
#ifndef TOOLGATE_SERVER_ENGINE_ARGS_LIMITS_H_
#define TOOLGATE_SERVER_ENGINE_ARGS_LIMITS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "google/protobuf/struct.pb.h"

namespace toolgate {

struct ArgsLimits {
  size_t max_bytes = 64 * 1024;  // Serialized size of `args`.
  int max_depth = 32;            // Nesting of objects and arrays; `{}` is 1.
  // Longest tool, grant, server, session and policy_version (bytes);
  // request_id may be kRequestIdFactor times longer. See Decider::Validate.
  size_t max_name_bytes = 256;
  static constexpr size_t kRequestIdFactor = 4;
};

// Nesting depth of an arguments object: the object itself is 1, each nested
// object or array adds 1. Iterative: safe on any input.
int ArgsDepth(const google::protobuf::Struct& args);

// OK, or INVALID_ARGUMENT naming the field, the size or depth and the limit.
absl::Status CheckArgsLimits(const google::protobuf::Struct& args, const ArgsLimits& limits);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_ENGINE_ARGS_LIMITS_H_
