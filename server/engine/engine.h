// The decision engine: policy + request (+ counter results) -> decision.
//
// Pure: no I/O, no clock, no randomness. A check runs in two steps:
//   1. Evaluate() checks that the caller may assert the grant (the grant's
//      `peers`), finds the entry, applies its action and validates the
//      arguments. If that decides the call, the response is final; otherwise
//      it lists the limits the call must pass: the entry's, its grant's
//      section's, its server's section's and the policy's top-level ones,
//      each with the call's cost (a `cost_from` that finds no valid cost in
//      the arguments denies the call, with a violation at that path).
//   2. After the counter store answered, Complete() turns its result into
//      ALLOW or RATE_LIMITED (or the failure mode's decision on a store error).
#ifndef TOOLGATE_SERVER_ENGINE_ENGINE_H_
#define TOOLGATE_SERVER_ENGINE_ENGINE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/counters/counter_store.h"
#include "server/policy/policy.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {

// "allow", "deny", "rate_limited", "require_approval" ("unspecified").
absl::string_view DecisionLabel(v1::Decision d);

// What to decide when the counter store cannot answer.
enum class FailureMode { kClosed, kOpen };

struct Evaluation {
  Resolution resolution;           // Points into the policy, which must outlive it.
  bool final = false;              // The response is complete; no limits to check.
  std::vector<LimitCheck> checks;  // When !final: the limits to acquire.
  // Parallel to `checks`: the policy's limit each one checks (the entry's,
  // then its grant's section, its server's section, the policy's top level).
  // Points into the policy.
  std::vector<const LimitSpec*> specs;
  // Parallel to `specs`: what the call costs of each (the store takes
  // `checks`, so the engine keeps its own copy for Complete's reasons).
  std::vector<int64_t> costs;
};

class Engine {
 public:
  explicit Engine(FailureMode failure_mode = FailureMode::kClosed) : failure_mode_(failure_mode) {}

  // Step 1. Fills decision, reason, rule, policy_version and violations of
  // `resp` when the call is decided without counters.
  // `peer` is the caller's certificate identity, empty without one. When the
  // grant's section sets `peers` and `peer` matches none of them (or is
  // empty), the call is DENIED by that rule before anything else is looked
  // at, and no limit is listed.
  // `trace`, when given, receives one line per step (explain).
  Evaluation Evaluate(const Policy& policy, const v1::CheckRequest& req, absl::string_view peer,
                      v1::CheckResponse* resp, std::vector<std::string>* trace = nullptr) const;

  // For a final Evaluation that required approval, once an approval of the
  // call was redeemed: decides it as an allowed entry would. With limits
  // (the entry's or its scopes'), the evaluation is no longer final and
  // lists them (Complete follows); without, the response is ALLOW. (A call
  // whose cost is invalid was already denied by Evaluate, before any
  // approval: the approval binds the arguments, so Approve finds the same
  // costs.)
  void Approve(Evaluation& eval, const v1::CheckRequest& req, v1::CheckResponse* resp) const;

  // Step 2, for an Evaluation that is not final.
  void Complete(const Evaluation& eval, const absl::StatusOr<AcquireResult>& result,
                v1::CheckResponse* resp, std::vector<std::string>* trace = nullptr) const;

 private:
  FailureMode failure_mode_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_ENGINE_ENGINE_H_
