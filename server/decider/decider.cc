#include "server/decider/decider.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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
  // The limits to reserve (their units are taken back by a FAILED
  // settlement); the rest commit at once. Kept before the checks move
  // into the store.
  std::vector<ReservedLimit> reserved;
  std::vector<size_t> reserved_index;
  if (task.reserve && !task.dry_run && reservations_ != nullptr) {
    const Evaluation& eval = task.evaluation;
    for (size_t i = 0; i < eval.checks.size() && i < eval.specs.size(); ++i) {
      const LimitSpec* spec = eval.specs[i];
      if (spec == nullptr || !spec->settle || eval.checks[i].cost <= 0) continue;
      ReservedLimit& r = reserved.emplace_back();
      r.check = eval.checks[i];
      r.cost_from = !spec->cost_from.empty();
      reserved_index.push_back(i);
    }
  }
  std::vector<LimitCheck> checks = std::move(task.evaluation.checks);
  store_->Acquire(std::move(checks), task.dry_run,
                  [this, &task, done = std::move(done), redeemed = std::move(redeemed),
                   reserved = std::move(reserved), reserved_index = std::move(reserved_index)](
                      absl::StatusOr<AcquireResult> result) mutable {
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
                        // Refused after all: the approval may be used again,
                        // once given back (before the answer leaves).
                        approvals_->Release(
                            redeemed, task.decision_id,
                            [&task, redeemed, done = std::move(done)](
                                absl::StatusOr<bool> released) mutable {
                              task.response->set_reason(absl::StrCat(
                                  task.response->reason(), " (approval ", redeemed,
                                  released.ok() && *released
                                      ? " was not used up: retry with it)"
                                      : " could not be given back and stays used)"));
                              if (task.trace != nullptr) {
                                task.trace->push_back(
                                    absl::StrCat("approval ", redeemed,
                                                 released.ok() && *released ? " given back"
                                                                            : " not given back"));
                              }
                              std::move(done)();
                            });
                        return;
                      }
                    }
                    // Admitted (not by the failure mode: the store said so).
                    if (!reserved.empty() && result.ok() && result->admitted &&
                        task.response->decision() == v1::DECISION_ALLOW) {
                      for (size_t k = 0; k < reserved.size(); ++k) {
                        const size_t i = reserved_index[k];
                        if (i < result->outcomes.size()) {
                          reserved[k].consumed_at_ms = result->outcomes[i].consumed_at_ms;
                        }
                      }
                      Reserve(task, std::move(reserved), std::move(done));
                      return;
                    }
                    std::move(done)();
                  });
}

void Decider::Reserve(DecisionTask& task, std::vector<ReservedLimit> reserved, Done done) const {
  NewReservation n;
  n.decision_id = task.decision_id;
  n.limits = std::move(reserved);
  reservations_->Create(std::move(n), [this, &task, done = std::move(done)](
                                          absl::StatusOr<std::string> id) mutable {
    if (id.ok()) {
      task.response->set_reservation_id(*id);
      if (task.trace != nullptr) task.trace->push_back(absl::StrCat("reservation: ", *id));
    } else {
      // Never fails the decision: the units stay committed.
      const bool full = id.status().code() == absl::StatusCode::kResourceExhausted;
      task.response->set_reason(
          absl::StrCat(task.response->reason(), task.response->reason().empty() ? "" : " ",
                       "(no reservation: ", id.status().message(), "; the units are committed)"));
      if (reservation_observer_.not_reserved) {
        reservation_observer_.not_reserved(full ? "full" : "store_failed", id.status().message());
      }
    }
    std::move(done)();
  });
}

namespace {

// What a settlement gives back, by the store time the units were recorded
// at (Refund takes one time per call; in a Redis Cluster, limits in
// different slots may have been recorded at different times).
std::map<int64_t, std::vector<LimitCheck>> RefundsOf(const Settlement& s) {
  std::map<int64_t, std::vector<LimitCheck>> out;
  for (const ReservedLimit& l : s.limits) {
    int64_t units = 0;
    if (s.outcome == SettleOutcome::kFailed) {
      units = l.check.cost;
    } else if (s.cost.has_value() && l.cost_from && l.check.cost > *s.cost) {
      units = l.check.cost - *s.cost;
    }
    if (units <= 0) continue;
    LimitCheck c = l.check;
    c.cost = units;
    out[l.consumed_at_ms].push_back(std::move(c));
  }
  return out;
}

}  // namespace

void Decider::Settle(std::string id, SettleOutcome outcome, std::optional<int64_t> cost,
                     absl::AnyInvocable<void(absl::StatusOr<Settlement>) &&> done) const {
  using SettleDone = absl::AnyInvocable<void(absl::StatusOr<Settlement>) &&>;
  if (reservations_ == nullptr) {
    std::move(done)(absl::FailedPreconditionError("reservations are not kept by this server"));
    return;
  }
  auto report = [this](absl::string_view result, const std::string& rid, const Settlement* s) {
    if (!reservation_observer_.settled) return;
    SettlementEvent e;
    e.result = result;
    e.reservation_id = rid;
    if (s != nullptr) {
      e.decision_id = s->decision_id;
      e.outcome = s->outcome;
      e.cost = s->cost;
    }
    reservation_observer_.settled(e);
  };
  reservations_->Settle(
      id, outcome, cost,
      [this, id, report, done = std::move(done)](absl::StatusOr<Settlement> s) mutable {
        if (!s.ok()) {
          if (s.status().code() == absl::StatusCode::kNotFound) report("not_found", id, nullptr);
          std::move(done)(s.status());
          return;
        }
        if (s->already_settled) {
          report("duplicate", id, &*s);
          std::move(done)(std::move(s));
          return;
        }
        std::map<int64_t, std::vector<LimitCheck>> refunds = RefundsOf(*s);
        if (refunds.empty()) {
          report(SettleOutcomeName(s->outcome), id, &*s);
          std::move(done)(std::move(s));
          return;
        }
        // Every group is given back before the answer; then the outcome.
        struct Pending {
          absl::Mutex mu;
          size_t left ABSL_GUARDED_BY(mu) = 0;
          size_t failed ABSL_GUARDED_BY(mu) = 0;
          absl::Status first_error ABSL_GUARDED_BY(mu);
          Settlement settlement;
          SettleDone done;
        };
        auto pending = std::make_shared<Pending>();
        pending->left = refunds.size();
        pending->settlement = *std::move(s);
        pending->done = std::move(done);
        const size_t groups = refunds.size();
        auto finish = [this, id, report, pending, groups](absl::Status status) {
          size_t failed = 0;
          absl::Status first;
          {
            absl::MutexLock lock(&pending->mu);
            if (!status.ok()) {
              if (pending->failed++ == 0) pending->first_error = status;
            }
            if (--pending->left > 0) return;
            failed = pending->failed;
            first = pending->first_error;
          }
          Settlement& st = pending->settlement;
          if (failed == 0) {
            report(SettleOutcomeName(st.outcome), id, &st);
            std::move(pending->done)(std::move(st));
            return;
          }
          if (failed < groups) {
            // Part is back: settling again would give it back twice.
            report(SettleOutcomeName(st.outcome), id, &st);
            std::move(pending->done)(absl::UnavailableError(absl::StrCat(
                "reservation ", id, " is settled, but only part of its units could be given back (",
                first.message(), "); the rest stay consumed")));
            return;
          }
          // Nothing is back: open the reservation again, so that a retry can.
          reservations_->Revert(id, st.outcome, [id, first, pending](absl::StatusOr<bool> r) {
            const bool reopened = r.ok() && *r;
            std::move(pending->done)(absl::UnavailableError(absl::StrCat(
                "the units of reservation ", id, " could not be given back (", first.message(), ")",
                reopened ? "; it is open again: retry the settlement"
                         : "; it stays settled and its units consumed")));
          });
        };
        for (auto& [consumed_at, checks] : refunds) {
          store_->Refund(std::move(checks), consumed_at, finish);
        }
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
