#include "server/decider/decider.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/base/digest.h"
#include "server/base/json.h"
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
  if (!request.approval_id().empty() && !IsApprovalId(request.approval_id())) {
    return absl::InvalidArgumentError(
        "approval_id: not an approval id (\"apr_\" and 32 hex digits, as CheckResponse.approval_id "
        "gives it)");
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

void Decider::Decide(DecisionTask& task, Done done) const {
  task.evaluation =
      engine_.Evaluate(*task.policy, *task.request, task.peer, task.response, task.trace);
  if (task.evaluation.final) {
    if (approvals_ != nullptr && task.response->decision() == v1::DECISION_REQUIRE_APPROVAL) {
      if (task.request->approval_id().empty()) {
        CreateApproval(task, std::move(done));
      } else {
        RedeemApproval(task, std::move(done));
      }
      return;
    }
    std::move(done)();
    return;
  }
  AcquireLimits(task, std::move(done), "");
}

void Decider::AcquireLimits(DecisionTask& task, Done done, std::string redeemed) const {
  std::vector<LimitCheck> checks = std::move(task.evaluation.checks);
  store_->Acquire(std::move(checks), task.dry_run,
                  [this, &task, done = std::move(done),
                   redeemed = std::move(redeemed)](absl::StatusOr<AcquireResult> result) mutable {
                    if (!result.ok() && task.trace != nullptr) {
                      task.trace->push_back(
                          absl::StrCat("counter store failed: ", result.status().message()));
                    }
                    std::string approved_reason;
                    if (!redeemed.empty()) approved_reason = task.response->reason();
                    engine_.Complete(task.evaluation, result, task.response, task.trace);
                    if (!redeemed.empty()) {
                      if (task.response->decision() == v1::DECISION_ALLOW) {
                        task.response->set_reason(std::move(approved_reason));
                      } else if (!task.dry_run) {
                        // Refused after all: the approval may be used again.
                        approvals_->Release(redeemed, task.decision_id);
                        task.response->set_reason(absl::StrCat(
                            task.response->reason(), " (approval ", redeemed,
                            " was not used up: retry with it)"));
                        if (task.trace != nullptr) {
                          task.trace->push_back(absl::StrCat("approval ", redeemed, " given back"));
                        }
                      }
                    }
                    std::move(done)();
                  });
}

namespace {

ApprovalBinding BindingOf(const v1::CheckRequest& req, const std::string& canonical_args) {
  return ApprovalBinding{req.grant(), req.tool(), req.server(), req.session(),
                         Sha256Hex(canonical_args)};
}

}  // namespace

void Decider::CreateApproval(DecisionTask& task, Done done) const {
  if (task.dry_run) {
    // A dry run (explain, policy tests) records nothing.
    if (task.trace != nullptr) task.trace->push_back("dry run: no approval recorded");
    std::move(done)();
    return;
  }
  const v1::CheckRequest& req = *task.request;
  NewApproval n;
  n.args_json = CanonicalJson(req.args());
  n.binding = BindingOf(req, n.args_json);
  n.rule = task.response->rule();
  n.reason = task.response->reason();
  n.policy_version = task.response->policy_version();
  n.request_id = req.request_id();
  n.ttl_ms = task.evaluation.resolution.approval_ttl_ms;
  approvals_->Create(std::move(n), [&task, done = std::move(done)](
                                       absl::StatusOr<CreatedApproval> created) mutable {
    if (created.ok()) {
      task.response->set_approval_id(created->approval.id());
      if (task.trace != nullptr) {
        task.trace->push_back(absl::StrCat(created->created ? "approval created: " : "approval pending: ",
                                           created->approval.id()));
      }
    } else {
      task.response->set_reason(absl::StrCat(task.response->reason(),
                                             " (no approval could be recorded: ",
                                             created.status().message(), ")"));
    }
    std::move(done)();
  });
}

void Decider::RedeemApproval(DecisionTask& task, Done done) const {
  const v1::CheckRequest& req = *task.request;
  std::string id = req.approval_id();
  approvals_->Redeem(
      id, BindingOf(req, CanonicalJson(req.args())), task.decision_id, task.dry_run,
      [this, &task, id, done = std::move(done)](absl::StatusOr<RedeemResult> r) mutable {
        v1::CheckResponse* resp = task.response;
        if (!r.ok() || r->outcome != RedeemOutcome::kRedeemed) {
          resp->set_decision(v1::DECISION_DENY);
          resp->set_reason(r.ok() ? DescribeRedeemFailure(*r, id)
                                  : absl::StrCat("approval ", id, " could not be checked (",
                                                 r.status().message(), "); denied"));
          if (task.trace != nullptr) task.trace->push_back(resp->reason());
          std::move(done)();
          return;
        }
        task.redeemed = true;
        const v1::Approval& a = r->approval;
        std::string reason = absl::StrCat("approved by ", EscapeForLog(a.decided_by()), " (", id, ")");
        if (!a.note().empty()) absl::StrAppend(&reason, ": ", EscapeForLog(a.note()));
        if (task.trace != nullptr) {
          task.trace->push_back(absl::StrCat(task.dry_run ? "approval usable: " : "approval used: ",
                                             reason));
        }
        engine_.Approve(task.evaluation, *task.request, resp);
        resp->set_reason(std::move(reason));
        if (task.evaluation.final) {
          std::move(done)();
          return;
        }
        AcquireLimits(task, std::move(done), id);
      });
}

}  // namespace toolgate
