// Which tools a caller may use, from the policy alone: what
// DecisionService.ListVisibleTools answers, so that a gateway can hide from
// MCP's tools/list what a grant may not call.
//
// Each tool is classified as Engine::Evaluate would decide a call of it with
// valid arguments and counters that have room: the grant's `peers` first,
// then Policy::Resolve (entries, sections, defaults, class rules). A tool
// whose entry has limits is ALLOW; a schema is assumed satisfied.
#ifndef TOOLGATE_SERVER_ENGINE_VISIBILITY_H_
#define TOOLGATE_SERVER_ENGINE_VISIBILITY_H_

#include <string>

#include "absl/strings/string_view.h"
#include "server/engine/engine.h"
#include "server/policy/policy.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {

// Classifies tools for one grant, server and caller. Built once per request
// (the peers check is made here, once); Classify is then a policy lookup per
// tool that builds no string unless the answer needs a default reason.
class ToolClassifier {
 public:
  // `policy` and the strings must outlive the classifier. `peer` is the
  // caller's certificate identity, empty without mTLS.
  ToolClassifier(const Engine& engine, const Policy& policy, absl::string_view grant,
                 absl::string_view server, absl::string_view peer);

  // Sets out's decision (ALLOW, REQUIRE_APPROVAL or DENY), rule and reason
  // (empty for ALLOW unless the entry has one), as Check's response would
  // carry them. Does not touch out's tool.
  void Classify(absl::string_view tool, v1::ToolVisibility* out) const;

  // True when the grant's `peers` refuse this caller: every tool is then
  // DENY by that rule.
  bool refused() const { return refused_; }

 private:
  const Policy& policy_;
  const absl::string_view grant_;
  const absl::string_view server_;
  bool refused_ = false;
  v1::CheckResponse refusal_;  // When refused_: Evaluate's own answer.
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_ENGINE_VISIBILITY_H_
