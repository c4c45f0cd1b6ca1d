// Explaining a decision: the same steps as a check, as a dry run, with a
// line for each.
#ifndef TOOLGATE_SERVER_DECIDER_EXPLAIN_H_
#define TOOLGATE_SERVER_DECIDER_EXPLAIN_H_

#include <functional>

#include "absl/status/statusor.h"
#include "server/engine/engine.h"
#include "server/policy/policy.h"
#include "server/counters/counter_store.h"
#include "toolgate/v1/admin.pb.h"

namespace toolgate {

using ExplainCallback = std::function<void(absl::StatusOr<v1::ExplainResponse>)>;

// Decides `request` against `policy` as a dry run on `store` and reports each
// step. `done` runs once, possibly on the store's thread. INVALID_ARGUMENT
// when tool or grant is missing.
void ExplainCheck(std::shared_ptr<const Policy> policy, CounterStore* store, const Engine& engine,
                  v1::CheckRequest request, ExplainCallback done);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_DECIDER_EXPLAIN_H_
