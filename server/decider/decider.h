// Deciding one call, start to finish: Engine::Evaluate; then, when limits
// apply, the counter store; then Engine::Complete. The gRPC handler, Explain
// and `toolgate test` all decide through this one sequence, so a policy test
// and an explanation see exactly what a server answers.
#ifndef TOOLGATE_SERVER_DECIDER_DECIDER_H_
#define TOOLGATE_SERVER_DECIDER_DECIDER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "server/approvals/approval_store.h"
#include "server/counters/counter_store.h"
#include "server/engine/args_limits.h"
#include "server/engine/engine.h"
#include "server/policy/policy.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {

// One call being decided. The caller owns it (and the request and response
// it points to) and keeps it alive until Decide's `done` has run.
struct DecisionTask {
  std::shared_ptr<const Policy> policy;  // The revision that decides.
  const v1::CheckRequest* request = nullptr;
  std::string peer;  // The caller's certificate identity; empty without mTLS.
  v1::CheckResponse* response = nullptr;      // Filled in by Decide.
  bool dry_run = false;                       // Decide, but consume no counter.
  std::vector<std::string>* trace = nullptr;  // Optional: one line per step.
  // The decision's id (the approval a call redeems records it); may be empty.
  std::string decision_id;
  Evaluation evaluation;                      // Set by Decide.
  // Set by Decide when the call redeemed an approval (request.approval_id).
  bool redeemed = false;

  // True once decided when the counters decided (ALLOW or RATE_LIMITED
  // after the store answered), false when the policy alone did.
  bool decided_by_limits() const { return !evaluation.final; }
};

class Decider {
 public:
  // `store` must outlive the decider.
  Decider(CounterStore* store, Engine engine, ArgsLimits limits)
      : store_(store), engine_(engine), limits_(limits) {}

  // INVALID_ARGUMENT when `request` cannot be decided: no tool, no grant; a
  // tool, grant, server, session, policy_version or request_id that is not
  // valid UTF-8, holds a control character (C0, DEL, C1) or is longer than
  // limits().max_name_bytes (request_id: kRequestIdFactor times that); or
  // arguments over the size or depth limits. The message names the field
  // and the rule broken ("tool: control character U+000A at byte 4").
  absl::Status Validate(const v1::CheckRequest& request) const;

  // One name checked as Validate checks the tool, grant, server, session
  // and policy_version: INVALID_ARGUMENT starting with `field` when `value`
  // is not valid UTF-8, holds a control character or is longer than
  // `max_bytes` (--max-name-bytes). For other calls that take such names.
  static absl::Status ValidateName(absl::string_view field, absl::string_view value,
                                   size_t max_bytes);

  // Validate, after reading args_json (if set) into args and clearing it:
  // INVALID_ARGUMENT when both are set, when the text is longer than
  // limits().max_bytes, or when it is not one JSON object nested at most
  // limits().max_depth deep (the message gives the byte offset). What every
  // caller that decides a request from a client uses.
  absl::Status Prepare(v1::CheckRequest* request) const;

  // Decides `task` (validated before). `done` runs exactly once, when
  // task.response is complete: on this thread when no store is needed,
  // otherwise where the counter or approval store completes (see
  // CounterStore::Acquire for what may run there).
  //
  // Approvals (with an approval store): a call the policy sends to approval
  // gets a pending approval bound to it (CheckResponse.approval_id; not on a
  // dry run); a call that names an approval it may use (approved, same
  // binding, unexpired, unused) is decided as an allowed entry would be,
  // using the approval up (given back when its limits then refuse it);
  // otherwise it is DENIED with the reason. An approval store that fails
  // never admits a call: the call is DENIED (redeeming) or left at
  // REQUIRE_APPROVAL without an id (creating), and the reason says why.
  void Decide(DecisionTask& task, absl::AnyInvocable<void() &&> done) const;

  // With approvals: `approvals` must outlive the decider (null: none; a call
  // needing approval is only answered REQUIRE_APPROVAL).
  void set_approvals(ApprovalStore* approvals) { approvals_ = approvals; }
  ApprovalStore* approvals() const { return approvals_; }

  const Engine& engine() const { return engine_; }
  const ArgsLimits& limits() const { return limits_; }

 private:
  using Done = absl::AnyInvocable<void() &&>;
  // Asks the counter store for the evaluation's limits, then completes.
  // `redeemed`: the approval the call used (given back if refused).
  void AcquireLimits(DecisionTask& task, Done done, std::string redeemed) const;
  void CreateApproval(DecisionTask& task, Done done) const;
  void RedeemApproval(DecisionTask& task, Done done) const;

  CounterStore* const store_;
  const Engine engine_;
  const ArgsLimits limits_;
  ApprovalStore* approvals_ = nullptr;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_DECIDER_DECIDER_H_
