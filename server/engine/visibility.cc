#include "server/engine/visibility.h"

#include <string>

#include "server/engine/reasons.h"

namespace toolgate {

ToolClassifier::ToolClassifier(const Engine& engine, const Policy& policy, absl::string_view grant,
                               absl::string_view server, absl::string_view peer)
    : policy_(policy), grant_(grant), server_(server) {
  const PeerRule* peers = policy.GrantPeers(grant);
  if (peers == nullptr || peers->Match(peer) != nullptr) return;
  // The refusal does not depend on the tool: Evaluate words it once, so that
  // its rule and reason are exactly what Check answers.
  v1::CheckRequest req;
  req.set_grant(std::string(grant));
  req.set_server(std::string(server));
  engine.Evaluate(policy, req, peer, &refusal_);
  refused_ = true;
}

void ToolClassifier::Classify(absl::string_view tool, v1::ToolVisibility* out) const {
  if (refused_) {
    out->set_decision(refusal_.decision());
    out->set_rule(refusal_.rule());
    out->set_reason(refusal_.reason());
    return;
  }
  const Resolution r = policy_.Resolve(tool, server_, grant_);
  out->set_rule(r.rule_id.data(), r.rule_id.size());
  switch (r.action) {
    case Action::kAllow:
      out->set_decision(v1::DECISION_ALLOW);
      if (!r.reason.empty()) out->set_reason(r.reason.data(), r.reason.size());
      return;
    case Action::kDeny:
      out->set_decision(v1::DECISION_DENY);
      break;
    case Action::kRequireApproval:
      out->set_decision(v1::DECISION_REQUIRE_APPROVAL);
      break;
  }
  if (r.reason.empty()) {
    out->set_reason(DefaultReason(r, tool));
  } else {
    out->set_reason(r.reason.data(), r.reason.size());
  }
}

}  // namespace toolgate
