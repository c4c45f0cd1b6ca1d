// The reasons the engine gives when the policy entry that decided gives
// none. Check (Engine::Evaluate) and ListVisibleTools (visibility.h) both
// answer with these, so that the two say the same thing of a tool.
#ifndef TOOLGATE_SERVER_ENGINE_REASONS_H_
#define TOOLGATE_SERVER_ENGINE_REASONS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "server/policy/policy.h"

namespace toolgate {

// For a DENY or REQUIRE_APPROVAL resolution of `tool` without a reason of
// its own: "tool "x" is not allowed by the policy", "tool "x" needs approval
// (policy entry tools.x)", ...; empty for an ALLOW.
std::string DefaultReason(const Resolution& r, absl::string_view tool);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_ENGINE_REASONS_H_
