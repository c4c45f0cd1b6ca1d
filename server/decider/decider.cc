#include "server/decider/decider.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace toolgate {

absl::Status Decider::Validate(const v1::CheckRequest& request) const {
  if (request.tool().empty()) return absl::InvalidArgumentError("tool is required");
  if (request.grant().empty()) return absl::InvalidArgumentError("grant is required");
  return CheckArgsLimits(request.args(), limits_);
}

void Decider::Decide(DecisionTask& task, absl::AnyInvocable<void() &&> done) const {
  task.evaluation = engine_.Evaluate(*task.policy, *task.request, task.response, task.trace);
  if (task.evaluation.final) {
    std::move(done)();
    return;
  }
  std::vector<LimitCheck> checks = std::move(task.evaluation.checks);
  store_->Acquire(
      std::move(checks), task.dry_run,
      [this, &task, done = std::move(done)](absl::StatusOr<AcquireResult> result) mutable {
        if (!result.ok() && task.trace != nullptr) {
          task.trace->push_back(absl::StrCat("counter store failed: ", result.status().message()));
        }
        engine_.Complete(task.evaluation, result, task.response, task.trace);
        std::move(done)();
      });
}

}  // namespace toolgate
