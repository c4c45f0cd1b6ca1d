// What one call costs of one limit: the limit's fixed `cost`, or the value
// its `cost_from` (a JSON Pointer) finds in the call's arguments.
#ifndef TOOLGATE_SERVER_ENGINE_CALL_COST_H_
#define TOOLGATE_SERVER_ENGINE_CALL_COST_H_

#include <cstdint>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "server/policy/policy.h"

namespace toolgate {

// The cost of `spec` for a call with arguments `args`: spec.cost without
// cost_from; else the value at cost_from, which must be a number holding a
// whole value from 0 to spec.Capacity() (4000 and 4000.0 alike). When it is
// not (missing, not a number, negative, fractional, too large), returns -1
// and sets `*problem` to what is wrong, worded to follow the pointer
// ("must be a whole number from 0 to 10000 (the cost of limit limits[0]),
// got -5"). Allocates nothing when the cost is valid.
int64_t CallCost(const LimitSpec& spec, const google::protobuf::Struct& args, std::string* problem);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_ENGINE_CALL_COST_H_
