// toolgate.v1.DecisionService over gRPC's callback API.
//
// The handler parses the request itself (the raw-bytes form of the method),
// so that over-deep arguments get INVALID_ARGUMENT instead of a parse
// failure, then hands the call to the Decider. Calls that need counters
// finish from the counter store's completion; no gRPC thread waits on the
// store. After each decision, every observer sees it before the answer
// leaves.
#ifndef TOOLGATE_SERVER_SERVICE_DECISION_SERVICE_H_
#define TOOLGATE_SERVER_SERVICE_DECISION_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/approvals/approval_hub.h"
#include "server/decider/decider.h"
#include "server/policy/registry.h"
#include "server/service/callers.h"
#include "server/service/decision_ids.h"
#include "server/service/decision_observer.h"
#include "toolgate/v1/decision.grpc.pb.h"

namespace toolgate {

// Parses a Check request's bytes as the handler does: every string field
// checked as UTF-8 first (request_wire.h), then parsed with a protobuf
// recursion limit sized for `max_args_depth` (--max-args-depth), so that
// anything parseable is then measured by Decider::Validate. INVALID_ARGUMENT
// naming the field for invalid UTF-8, or when the bytes are malformed or
// nested far deeper than the limit.
absl::Status ParseCheckRequest(const grpc::ByteBuffer& bytes, int max_args_depth,
                               v1::CheckRequest* request);

// The most tools one ListVisibleTools call may classify.
inline constexpr int kMaxVisibleTools = 10000;

// Check and ListVisibleTools take the request's bytes (see above and
// visible_tools.cc); the other methods, parsed messages.
using DecisionServiceBase = v1::DecisionService::WithRawCallbackMethod_ListVisibleTools<
    v1::DecisionService::WithRawCallbackMethod_Check<v1::DecisionService::CallbackService>>;

class DecisionServiceImpl final : public DecisionServiceBase {
 public:
  // The registry, the decider, the observers and `callers` must outlive the
  // service. Observers run in the order given. `callers` (null: everyone)
  // admits callers by --allow-peer and names them (mTLS).
  DecisionServiceImpl(const PolicyRegistry* policies, const Decider* decider,
                      std::vector<DecisionObserver*> observers,
                      const CallerCheck* callers = nullptr);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

  // Answered from the policy alone, on the calling thread (visible_tools.cc).
  // The request's bytes are read by a scan of their own, so that a name that
  // is not UTF-8 gets INVALID_ARGUMENT naming it, as in Check.
  grpc::ServerUnaryReactor* ListVisibleTools(grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* response) override;

  grpc::ServerUnaryReactor* WaitApproval(grpc::CallbackServerContext* context,
                                         const v1::WaitApprovalRequest* request,
                                         v1::Approval* response) override;

  // Settles a reservation through the decider (Decider::Settle); answered
  // from the stores' completion. Counted in in_flight() like a check.
  grpc::ServerUnaryReactor* Settle(grpc::CallbackServerContext* context,
                                   const v1::SettleRequest* request,
                                   v1::SettleResponse* response) override;

  // WaitApproval waits here (null: approvals are not served: UNIMPLEMENTED).
  // Must outlive the service.
  void set_approvals(ApprovalHub* hub) { approvals_ = hub; }

  // Checks (and settlements) started and not answered yet.
  int64_t in_flight() const { return in_flight_.load(std::memory_order_seq_cst); }
  // Calls gRPC has not released yet (answered calls whose answer is still
  // being sent count too).
  int64_t open_calls() const { return open_calls_.load(std::memory_order_seq_cst); }

  // From now on every new check (and ListVisibleTools call) is answered
  // UNAVAILABLE ("shutting down") at once; checks already started are
  // decided as usual. Once in_flight() is 0 after this, every check that was
  // accepted before it has been answered.
  void StartDraining() { draining_.store(true, std::memory_order_seq_cst); }

  // The server's decision ids, for every other service that decides.
  DecisionIds* decision_ids() { return &ids_; }

 private:
  class Call;
  void Finish(Call* call, const absl::Status& status);
  std::string NextDecisionId();

  const PolicyRegistry* const policies_;
  const Decider* const decider_;
  const std::vector<DecisionObserver*> observers_;
  const CallerCheck* const callers_;
  ApprovalHub* approvals_ = nullptr;
  DecisionIds ids_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> open_calls_{0};
  std::atomic<bool> draining_{false};
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_DECISION_SERVICE_H_
