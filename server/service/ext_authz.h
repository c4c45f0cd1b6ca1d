// Envoy's external authorization service (envoy.service.auth.v3.
// Authorization/Check) over gRPC's callback API, on the decision listener:
// an Envoy (or Istio, or an API gateway built on it) in front of an MCP
// server asks toolgate about every HTTP request, with configuration alone.
//
// Each tools/call in the request is decided exactly as DecisionService.Check
// decides it: the same Decider (so the same limits and counters), the same
// observers (metrics, shadow comparison, decision log; labelled
// api="ext_authz"), decision ids from the same generator. What is read from
// the request and what goes back: ext_authz_mapping.h.
#ifndef TOOLGATE_SERVER_SERVICE_EXT_AUTHZ_H_
#define TOOLGATE_SERVER_SERVICE_EXT_AUTHZ_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "envoy/service/auth/v3/external_auth.grpc.pb.h"
#include "server/decider/decider.h"
#include "server/policy/registry.h"
#include "server/service/callers.h"
#include "server/service/decision_ids.h"
#include "server/service/decision_observer.h"
#include "server/service/ext_authz_mapping.h"

namespace toolgate {

// The raw-bytes form of the method: the request is parsed into the call's
// arena (a request holds dozens of headers and a body), and a request that
// does not parse gets INVALID_ARGUMENT saying so.
class ExtAuthzServiceImpl final
    : public envoy::service::auth::v3::Authorization::WithRawCallbackMethod_Check<
          envoy::service::auth::v3::Authorization::CallbackService> {
 public:
  // Everything given must outlive the service. `callers` (null: everyone)
  // admits callers (the proxies) by --allow-peer.
  ExtAuthzServiceImpl(ExtAuthzOptions options, const PolicyRegistry* policies,
                      const Decider* decider, std::vector<DecisionObserver*> observers,
                      DecisionIds* ids, const CallerCheck* callers = nullptr);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

  // As DecisionServiceImpl's: checks started and not answered yet, and
  // draining (new checks answered UNAVAILABLE at once).
  int64_t in_flight() const { return in_flight_.load(std::memory_order_seq_cst); }
  void StartDraining() { draining_.store(true, std::memory_order_seq_cst); }

 private:
  class Call;
  void DecideNext(Call* call);
  void Finish(Call* call, const grpc::Status& status);

  const ExtAuthzOptions options_;
  const PolicyRegistry* const policies_;
  const Decider* const decider_;
  const std::vector<DecisionObserver*> observers_;
  DecisionIds* const ids_;
  const CallerCheck* const callers_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_EXT_AUTHZ_H_
