// How a decision arrived: toolgate's own API (toolgate.v1.DecisionService)
// or Envoy's external authorization (envoy.service.auth.v3.Authorization).
// Metrics and the decision log label every decision with it.
#ifndef TOOLGATE_SERVER_TELEMETRY_CHECK_API_H_
#define TOOLGATE_SERVER_TELEMETRY_CHECK_API_H_

#include "absl/strings/string_view.h"

namespace toolgate {

enum class CheckApi : int { kToolgate = 0, kExtAuthz = 1 };
inline constexpr int kCheckApis = 2;

// "toolgate" or "ext_authz": the `api` label and log field.
inline absl::string_view CheckApiLabel(CheckApi api) {
  return api == CheckApi::kExtAuthz ? "ext_authz" : "toolgate";
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_TELEMETRY_CHECK_API_H_
