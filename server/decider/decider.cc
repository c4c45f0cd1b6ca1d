#include "server/decider/decider.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/base/json_parse.h"
#include "server/base/utf8.h"

namespace toolgate {
namespace {

// The bound is described only when it is broken: a valid call builds no
// message.
absl::Status CheckName(absl::string_view field, absl::string_view value, size_t max_bytes,
                       bool is_request_id) {
  const Utf8Problem p = FindUtf8Problem(value, /*forbid_control=*/true);
  if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", DescribeUtf8Problem(p)));
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", value.size(), " bytes, longer than ",
        is_request_id ? absl::StrCat(max_bytes, " (", ArgsLimits::kRequestIdFactor,
                                     " x --max-name-bytes)")
                      : absl::StrCat("--max-name-bytes (", max_bytes, ")")));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Decider::ValidateName(absl::string_view field, absl::string_view value,
                                   size_t max_bytes) {
  return CheckName(field, value, max_bytes, false);
}

absl::Status Decider::Validate(const v1::CheckRequest& request) const {
  if (request.tool().empty()) return absl::InvalidArgumentError("tool is required");
  if (request.grant().empty()) return absl::InvalidArgumentError("grant is required");
  const size_t max = limits_.max_name_bytes;
  const struct {
    absl::string_view field;
    const std::string& value;
  } names[] = {{"tool", request.tool()},
               {"grant", request.grant()},
               {"server", request.server()},
               {"session", request.session()},
               {"policy_version", request.policy_version()}};
  for (const auto& n : names) {
    if (absl::Status s = CheckName(n.field, n.value, max, false); !s.ok()) return s;
  }
  if (absl::Status s = CheckName("request_id", request.request_id(),
                                 ArgsLimits::kRequestIdFactor * max, true);
      !s.ok()) {
    return s;
  }
  return CheckArgsLimits(request.args(), limits_);
}

absl::Status Decider::Prepare(v1::CheckRequest* request) const {
  if (!request->args_json().empty()) {
    if (request->has_args()) {
      return absl::InvalidArgumentError("args and args_json are both set; send one of them");
    }
    if (request->args_json().size() > limits_.max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("args_json: ", request->args_json().size(), " bytes, over the limit of ",
                       limits_.max_bytes, " (--max-args-bytes)"));
    }
    absl::StatusOr<google::protobuf::Struct> args =
        ParseJsonObject(request->args_json(), limits_.max_depth);
    if (!args.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("args_json: ", args.status().message()));
    }
    *request->mutable_args() = *std::move(args);
    request->clear_args_json();
  }
  return Validate(*request);
}

void Decider::Decide(DecisionTask& task, absl::AnyInvocable<void() &&> done) const {
  task.evaluation =
      engine_.Evaluate(*task.policy, *task.request, task.peer, task.response, task.trace);
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
