// Deciding one call, start to finish: Engine::Evaluate; then, when limits
// apply, the counter store; then Engine::Complete. The gRPC handler, Explain
// and `toolgate test` all decide through this one sequence, so a policy test
// and an explanation see exactly what a server answers.
#ifndef TOOLGATE_SERVER_DECIDER_DECIDER_H_
#define TOOLGATE_SERVER_DECIDER_DECIDER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "server/approvals/approval_store.h"
#include "server/counters/counter_store.h"
#include "server/engine/args_limits.h"
#include "server/engine/engine.h"
#include "server/policy/policy.h"
#include "server/reservations/reservation_store.h"
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
  // An admitted call (not a dry run) whose limits include `settle:
  // required` ones gets a reservation of those limits' units
  // (CheckResponse.reservation_id). Only callers that can report the
  // call's outcome (DecisionService.Check) ask for one; others' units are
  // committed at once.
  bool reserve = false;

  // True once decided when the counters decided (ALLOW or RATE_LIMITED
  // after the store answered), false when the policy alone did.
  bool decided_by_limits() const { return !evaluation.final; }
};

// What becomes of reservations, for metrics and the decision log (each
// callback optional; they run where the store or counter store completes,
// and must be quick).
struct SettlementEvent {
  // "succeeded", "failed" (this call settled it), "duplicate" (settled
  // before), "not_found".
  absl::string_view result;
  std::string reservation_id;
  std::string decision_id;  // The decision that reserved; empty for not_found.
  SettleOutcome outcome = SettleOutcome::kSucceeded;
  std::optional<int64_t> cost;
};
struct ReservationObserver {
  std::function<void(const SettlementEvent&)> settled;
  // An admitted call that should have had a reservation got none; its
  // units are committed. `why`: "full" (--max-open-reservations) or
  // "store_failed"; `message` says more.
  std::function<void(absl::string_view why, absl::string_view message)> not_reserved;
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

  // With reservations: `reservations` must outlive the decider (null: none;
  // every call's units are committed at once). `observer` is copied.
  void set_reservations(ReservationStore* reservations, ReservationObserver observer = {}) {
    reservations_ = reservations;
    reservation_observer_ = std::move(observer);
  }
  ReservationStore* reservations() const { return reservations_; }

  // Settles reservation `id` (DecisionService.Settle; checked to be a
  // reservation id by the caller): records the outcome once across the
  // fleet, then gives back what is due (FAILED: every reserved unit;
  // SUCCEEDED with `cost`: the units above it of limits whose cost came
  // from the arguments) and answers once they are back. Errors as
  // ReservationStore::Settle; UNAVAILABLE when the units could not be
  // given back (the reservation is then open again, when that could be
  // recorded, so that a retry can settle it); FAILED_PRECONDITION without
  // a reservation store. `done` runs where the stores complete.
  void Settle(std::string id, SettleOutcome outcome, std::optional<int64_t> cost,
              absl::AnyInvocable<void(absl::StatusOr<Settlement>) &&> done) const;

  const Engine& engine() const { return engine_; }
  const ArgsLimits& limits() const { return limits_; }

 private:
  using Done = absl::AnyInvocable<void() &&>;
  // Asks the counter store for the evaluation's limits, then completes.
  // `redeemed`: the approval the call used (given back if refused).
  void AcquireLimits(DecisionTask& task, Done done, std::string redeemed) const;
  void CreateApproval(DecisionTask& task, Done done) const;
  // After an admission: records the reservation of `reserved` (the outcomes
  // give each one's consumed_at_ms), then `done`.
  void Reserve(DecisionTask& task, std::vector<ReservedLimit> reserved, Done done) const;
  void RedeemApproval(DecisionTask& task, Done done) const;

  CounterStore* const store_;
  const Engine engine_;
  const ArgsLimits limits_;
  ApprovalStore* approvals_ = nullptr;
  ReservationStore* reservations_ = nullptr;
  ReservationObserver reservation_observer_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_DECIDER_DECIDER_H_
