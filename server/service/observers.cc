#include "server/service/observers.h"

#include "server/base/json_parse.h"

#include <string>

#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/base/utf8.h"

namespace toolgate {

void MetricsObserver::OnDecision(const DecisionRecord& r) {
  metrics_->RecordCheck(r.response.decision(), r.response.rule(), r.latency, r.api);
}

void MetricsObserver::OnError(absl::StatusCode code, absl::Duration latency) {
  metrics_->RecordError(code, latency);
}

ShadowView ShadowComparer::Evaluate(const PolicyRegistry& registry, const Engine& engine,
                                    const Policy& active, const v1::CheckRequest& request,
                                    absl::string_view peer) {
  ShadowView view;
  std::shared_ptr<const Policy> shadow = registry.shadow();
  if (shadow == nullptr || shadow.get() == &active || !request.policy_version().empty()) {
    return view;
  }
  v1::CheckResponse response;
  const Evaluation e = engine.Evaluate(*shadow, request, peer, &response);
  view.policy = std::move(shadow);
  view.decision = e.final ? response.decision() : v1::DECISION_UNSPECIFIED;
  view.rule = response.rule();
  return view;
}

void ShadowComparer::OnDecision(const DecisionRecord& r) {
  if (r.shadow.policy == nullptr) return;
  compared_.fetch_add(1, std::memory_order_relaxed);
  const v1::Decision active = r.response.decision();
  // Both "allowed subject to limits": the same, whatever the counters said.
  const bool same = r.shadow.decision == v1::DECISION_UNSPECIFIED
                        ? r.decided_by_limits
                        : (!r.decided_by_limits && r.shadow.decision == active);
  if (same) return;
  differed_.fetch_add(1, std::memory_order_relaxed);
  const int64_t second = absl::ToUnixSeconds(absl::Now());
  if (log_second_.exchange(second) != second) logged_ = 0;
  if (logged_.fetch_add(1) >= 10) return;
  // Values from the request and the policies are escaped: a log line holds
  // exactly one entry, whatever a client sends.
  LogInfo("shadow revision ", EscapeForLog(r.shadow.policy->revision()), " would decide ",
          r.shadow.decision == v1::DECISION_UNSPECIFIED ? std::string("ALLOW (subject to limits)")
                                                        : v1::Decision_Name(r.shadow.decision),
          " (", EscapeForLog(r.shadow.rule), ") where ", EscapeForLog(r.policy.revision()),
          " decided ", v1::Decision_Name(active), " (", EscapeForLog(r.response.rule()),
          "): tool \"", EscapeForLog(r.request.tool()), "\" grant \"",
          EscapeForLog(r.request.grant()), "\" server \"", EscapeForLog(r.request.server()), "\"");
}

void DecisionLogObserver::OnDecision(const DecisionRecord& r) {
  DecisionLogEntry e;
  const v1::CheckRequest& req = r.request;
  const v1::CheckResponse& resp = r.response;
  e.decision_id = resp.decision_id();
  e.time = absl::Now();
  e.api = r.api;
  e.tool = req.tool();
  e.server = req.server();
  e.grant = req.grant();
  e.session = req.session();
  e.request_id = req.request_id();
  e.peer = std::string(r.peer);
  e.decision = std::string(DecisionLabel(resp.decision()));
  e.reason = resp.reason();
  e.rule = resp.rule();
  e.revision = resp.policy_version();
  e.latency_us = absl::ToInt64Microseconds(r.latency);
  e.approval_id = !resp.approval_id().empty() ? resp.approval_id() : req.approval_id();
  e.reservation_id = resp.reservation_id();
  // The arguments are serialized on the log's writer thread, not here.
  e.args.CopyFrom(req.args());
  log_->Log(std::move(e));
}

void LogApprovalEvent(DecisionLog* log, v1::ApprovalEventKind kind, const v1::Approval& a) {
  DecisionLogEntry e;
  e.event = absl::StrCat("approval_", ApprovalEventName(kind));
  if (kind == v1::APPROVAL_EVENT_USED) e.decision_id = a.used_by_decision();
  e.time = absl::Now();
  e.tool = a.tool();
  e.server = a.server();
  e.grant = a.grant();
  e.session = a.session();
  e.request_id = a.request_id();
  e.decision = std::string(ApprovalStateName(a.state()));
  e.reason = kind == v1::APPROVAL_EVENT_APPROVED || kind == v1::APPROVAL_EVENT_DENIED
                 ? a.note()
                 : a.reason();
  e.rule = a.rule();
  e.revision = a.policy_version();
  e.approval_id = a.id();
  if (kind == v1::APPROVAL_EVENT_APPROVED || kind == v1::APPROVAL_EVENT_DENIED) {
    e.approver = a.decided_by();
  }
  // The store keeps the canonical JSON: read back, so that the log hashes
  // (or shows) it as it does a decision's arguments.
  if (auto args = ParseJsonObject(a.args_json(), 1000); args.ok()) e.args = *std::move(args);
  log->Log(std::move(e));
}

void LogReservationEvent(DecisionLog* log, absl::string_view event,
                         const std::string& reservation_id, const std::string& decision_id,
                         absl::string_view outcome, std::optional<int64_t> cost) {
  DecisionLogEntry e;
  e.event = std::string(event);
  e.time = absl::Now();
  e.reservation_id = reservation_id;
  e.decision_id = decision_id;
  e.outcome = std::string(outcome);
  if (cost.has_value()) e.cost = *cost;
  log->Log(std::move(e));
}

}  // namespace toolgate
