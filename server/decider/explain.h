// Explaining a decision: the same steps as a check (the Decider), as a dry
// run, with a line for each.
#ifndef TOOLGATE_SERVER_DECIDER_EXPLAIN_H_
#define TOOLGATE_SERVER_DECIDER_EXPLAIN_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/decider/decider.h"
#include "server/policy/policy.h"
#include "toolgate/v1/admin.pb.h"

namespace toolgate {

using ExplainCallback = std::function<void(absl::StatusOr<v1::ExplainResponse>)>;

// Decides `request` against `policy` as a dry run and reports each step.
// `peer` is the caller identity to explain the call for (DecisionTask::peer);
// empty: a caller without a client certificate, which a grant whose section
// sets `peers` refuses (the steps then say so).
// `done` runs once, possibly on the counter store's thread.
// INVALID_ARGUMENT when the request cannot be decided (Decider::Validate).
void ExplainCheck(const Decider& decider, std::shared_ptr<const Policy> policy,
                  v1::CheckRequest request, ExplainCallback done, std::string peer = "");

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_DECIDER_EXPLAIN_H_
