// The identity of the counter instance a call uses for one of its limits.
#ifndef TOOLGATE_SERVER_ENGINE_COUNTER_KEY_H_
#define TOOLGATE_SERVER_ENGINE_COUNTER_KEY_H_

#include <string>

#include "absl/strings/string_view.h"
#include "server/policy/policy.h"

namespace toolgate {

// Builds the key of the counter instance a call uses for `spec`: the counter
// name, the scope, and the scope's value (the grant; the grant and session; or
// nothing for global). Distinct inputs give distinct keys.
std::string CounterKey(const LimitSpec& spec, absl::string_view grant, absl::string_view session);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_ENGINE_COUNTER_KEY_H_
