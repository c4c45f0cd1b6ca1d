// What happens after a decision, besides the answer: every observer in the
// handler's list sees every decision (and every refused request), in order,
// before the answer leaves, so that a client holding its answer also finds
// it counted, compared and logged.
#ifndef TOOLGATE_SERVER_SERVICE_DECISION_OBSERVER_H_
#define TOOLGATE_SERVER_SERVICE_DECISION_OBSERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/policy/policy.h"
#include "server/telemetry/check_api.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {

// The shadow revision's view of a call, taken before the counters were
// asked (the shadow revision never consults counters).
struct ShadowView {
  std::shared_ptr<const Policy> policy;  // Null: no shadow comparison for this call.
  // Its decision when the policy alone decided; UNSPECIFIED for "allowed,
  // subject to limits".
  v1::Decision decision = v1::DECISION_UNSPECIFIED;
  std::string rule;
};

struct DecisionRecord {
  const v1::CheckRequest& request;
  const v1::CheckResponse& response;  // Complete, decision_id included.
  const Policy& policy;               // The revision that decided.
  bool decided_by_limits;             // The counters decided (ALLOW or RATE_LIMITED).
  const ShadowView& shadow;
  absl::Duration latency;  // From the start of Check to now.
  // The caller's certificate identity (DecisionTask::peer); empty without
  // mTLS.
  absl::string_view peer = {};
  // How the call arrived (toolgate.v1 or Envoy's ext_authz).
  CheckApi api = CheckApi::kToolgate;
};

// Observers run on the thread that completes the call (a gRPC thread or the
// counter store's I/O thread): they must be quick and must not block (see
// CounterStore::Acquire).
class DecisionObserver {
 public:
  virtual ~DecisionObserver() = default;
  virtual void OnDecision(const DecisionRecord& record) = 0;
  // A request answered with a gRPC error instead of a decision.
  virtual void OnError(absl::StatusCode code, absl::Duration latency) {}
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_DECISION_OBSERVER_H_
