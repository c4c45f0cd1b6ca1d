#include "server/engine/engine.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/base/duration.h"
#include "server/base/utf8.h"
#include "server/engine/call_cost.h"
#include "server/engine/counter_key.h"
#include "server/engine/reasons.h"

namespace toolgate {
namespace {

void SetDuration(int64_t millis, google::protobuf::Duration* d) {
  d->set_seconds(millis / 1000);
  d->set_nanos(static_cast<int32_t>((millis % 1000) * 1'000'000));
}

// True when `spec` is one of the entry's own limits (not a scope's).
bool IsEntryLimit(const Resolution& r, const LimitSpec* spec) {
  const std::vector<LimitSpec>& own = *r.limits;
  return !own.empty() && spec >= own.data() && spec < own.data() + own.size();
}

// Lists every limit of `eval`'s resolution as a counter check for `req`:
// the entry's, then its grant's section's, its server's section's, the
// policy's top level. A counter listed by two of them (the same instance:
// a shared counter has one definition) is checked once, by the first. When
// a `cost_from` finds no valid cost, lists nothing and makes `resp` a DENY
// with a violation at each such path; returns false.
bool ListChecks(Evaluation& eval, const v1::CheckRequest& req, v1::CheckResponse* resp,
                std::vector<std::string>* trace) {
  const Resolution& r = eval.resolution;
  eval.checks.clear();
  eval.specs.clear();
  eval.costs.clear();
  const LimitSpec* bad = nullptr;
  std::string first_problem;
  int bad_count = 0;
  for (const std::vector<LimitSpec>* list :
       {r.limits, r.grant_limits, r.server_limits, r.policy_limits}) {
    if (list == nullptr) continue;
    for (const LimitSpec& spec : *list) {
      if (std::any_of(eval.specs.begin(), eval.specs.end(),
                      [&](const LimitSpec* s) { return s->counter == spec.counter; })) {
        if (trace != nullptr) {
          trace->push_back(absl::StrCat("limit ", spec.counter, " at ", spec.rule_id,
                                        ": already checked for this call"));
        }
        continue;
      }
      std::string problem;
      const int64_t cost = CallCost(spec, req.args(), &problem);
      if (cost < 0) {
        if (bad == nullptr) {
          bad = &spec;
          first_problem = problem;
        }
        ++bad_count;
        v1::Violation* v = resp->add_violations();
        v->set_path(spec.cost_from);
        v->set_message(std::move(problem));
        continue;
      }
      eval.specs.push_back(&spec);
      eval.costs.push_back(cost);
    }
  }
  if (bad != nullptr) {
    eval.specs.clear();
    eval.costs.clear();
    resp->set_decision(v1::DECISION_DENY);
    resp->set_rule(bad->rule_id);
    std::string reason =
        absl::StrCat("arguments of \"", req.tool(), "\": ", bad->cost_from, " ", first_problem);
    if (bad_count > 1) absl::StrAppend(&reason, " (and ", bad_count - 1, " more)");
    resp->set_reason(std::move(reason));
    if (trace != nullptr) trace->push_back(absl::StrCat("cost: ", resp->reason()));
    eval.final = true;
    return false;
  }
  eval.checks.reserve(eval.specs.size());
  for (size_t i = 0; i < eval.specs.size(); ++i) {
    const LimitSpec& spec = *eval.specs[i];
    LimitCheck& c = eval.checks.emplace_back();
    c.key = CounterKey(spec, req.grant(), req.session());
    c.algorithm = spec.algorithm;
    c.window_ms = spec.window_ms;
    c.max = spec.max;
    c.burst = spec.burst;
    c.cost = eval.costs[i];
  }
  return true;
}

}  // namespace

absl::string_view DecisionLabel(v1::Decision d) {
  // The enum's own names, without "DECISION_", in lower case.
  static const std::vector<std::string>* const kLabels = [] {
    auto* labels = new std::vector<std::string>();
    for (int v = 0; v <= v1::Decision_MAX; ++v) {
      absl::string_view name = v1::Decision_Name(static_cast<v1::Decision>(v));
      absl::ConsumePrefix(&name, "DECISION_");
      labels->push_back(absl::AsciiStrToLower(name));
    }
    return labels;
  }();
  return d >= 0 && d <= v1::Decision_MAX ? absl::string_view((*kLabels)[d])
                                         : absl::string_view("unspecified");
}

Evaluation Engine::Evaluate(const Policy& policy, const v1::CheckRequest& req,
                            absl::string_view peer, v1::CheckResponse* resp,
                            std::vector<std::string>* trace) const {
  Evaluation eval;
  // Who may assert the grant comes first: a refused caller learns nothing of
  // the entries and consumes no counter.
  if (const PeerRule* peers = policy.GrantPeers(req.grant()); peers != nullptr) {
    const std::string* matched = peers->Match(peer);
    // The caller's identity comes from its certificate: escaped, so that the
    // reason stays valid UTF-8 on one line whatever the certificate says.
    // Described only for a trace or a refusal: an admitted call builds nothing.
    auto caller = [peer] {
      return peer.empty() ? std::string("caller presented no client certificate")
                          : absl::StrCat("caller is \"", EscapeForLog(peer), "\"");
    };
    if (trace != nullptr) {
      trace->push_back(matched != nullptr
                           ? absl::StrCat(peers->rule_id, ": ", caller(), ", matches \"",
                                          EscapeForLog(*matched), "\"")
                           : absl::StrCat(peers->rule_id, ": ", caller(), ", matches none of ",
                                          peers->patterns.size(), " patterns"));
    }
    if (matched == nullptr) {
      resp->set_decision(v1::DECISION_DENY);
      resp->set_rule(peers->rule_id);
      resp->set_policy_version(policy.revision());
      resp->set_reason(absl::StrCat("grant \"", EscapeForLog(req.grant()),
                                    "\" may be asserted only by peers matching ", peers->rule_id,
                                    "; ", caller()));
      static const std::vector<LimitSpec>* const kNoLimits = new std::vector<LimitSpec>();
      eval.resolution.rule_id = peers->rule_id;
      eval.resolution.action = Action::kDeny;
      eval.resolution.limits = kNoLimits;
      eval.final = true;
      return eval;
    }
  }
  eval.resolution = policy.Resolve(req.tool(), req.server(), req.grant(), trace);
  const Resolution& r = eval.resolution;
  resp->set_rule(std::string(r.rule_id));
  resp->set_policy_version(policy.revision());

  if (r.action == Action::kDeny) {
    resp->set_decision(v1::DECISION_DENY);
    resp->set_reason(r.reason.empty() ? DefaultReason(r, req.tool()) : std::string(r.reason));
    eval.final = true;
    return eval;
  }
  if (r.args != nullptr) {
    std::vector<SchemaViolation> violations;
    const bool valid = r.args->Validate(req.args(), &violations);
    if (trace != nullptr) {
      trace->push_back(valid ? absl::StrCat("arguments match ", r.args_rule_id, ".args")
                             : absl::StrCat("arguments violate ", r.args_rule_id, ".args (",
                                            violations.size(), " violations)"));
    }
    if (!valid) {
      resp->set_decision(v1::DECISION_DENY);
      // The schema decided, whatever a class rule would have said next.
      resp->set_rule(std::string(r.args_rule_id));
      std::string reason =
          absl::StrCat("arguments of \"", req.tool(), "\" violate ", r.args_rule_id,
                       ".args: ", violations[0].path.empty() ? "(arguments)" : violations[0].path,
                       " ", violations[0].message);
      if (violations.size() > 1) {
        absl::StrAppend(&reason, " (and ", violations.size() - 1, " more)");
      }
      resp->set_reason(std::move(reason));
      for (SchemaViolation& v : violations) {
        v1::Violation* out = resp->add_violations();
        out->set_path(std::move(v.path));
        out->set_message(std::move(v.message));
      }
      eval.final = true;
      return eval;
    }
  }
  if (r.action == Action::kRequireApproval) {
    // A cost the arguments cannot pay is refused now, before a human is
    // asked to approve a call that could never be admitted.
    if (r.HasLimits()) {
      const bool costs_ok = ListChecks(eval, req, resp, trace);
      eval.checks.clear();
      eval.specs.clear();
      eval.costs.clear();
      if (!costs_ok) return eval;
    }
    resp->set_decision(v1::DECISION_REQUIRE_APPROVAL);
    resp->set_reason(r.reason.empty() ? DefaultReason(r, req.tool()) : std::string(r.reason));
    eval.final = true;
    return eval;
  }
  if (!r.HasLimits()) {
    resp->set_decision(v1::DECISION_ALLOW);
    resp->set_reason(std::string(r.reason));
    eval.final = true;
    return eval;
  }
  ListChecks(eval, req, resp, trace);
  return eval;
}

void Engine::Approve(Evaluation& eval, const v1::CheckRequest& req,
                     v1::CheckResponse* resp) const {
  if (!eval.resolution.HasLimits()) {
    resp->set_decision(v1::DECISION_ALLOW);
    eval.final = true;
    return;
  }
  resp->set_decision(v1::DECISION_UNSPECIFIED);
  resp->clear_reason();
  eval.final = false;
  ListChecks(eval, req, resp, nullptr);
}

void Engine::Complete(const Evaluation& eval, const absl::StatusOr<AcquireResult>& result,
                      v1::CheckResponse* resp, std::vector<std::string>* trace) const {
  const std::vector<const LimitSpec*>& specs = eval.specs;
  if (!result.ok() || result->outcomes.size() != specs.size()) {
    const std::string why =
        result.ok() ? std::string("malformed answer") : std::string(result.status().message());
    if (failure_mode_ == FailureMode::kOpen) {
      resp->set_decision(v1::DECISION_ALLOW);
      resp->set_reason(absl::StrCat("counter store failed (", why,
                                    "); allowed without limits by failure mode open"));
    } else {
      resp->set_decision(v1::DECISION_DENY);
      resp->set_reason(
          absl::StrCat("counter store failed (", why, "); denied by failure mode closed"));
    }
    return;
  }
  int64_t retry_after = 0;
  size_t first_full = specs.size();
  for (size_t i = 0; i < specs.size(); ++i) {
    const LimitSpec& spec = *specs[i];
    const int64_t cost = i < eval.costs.size() ? eval.costs[i] : 1;
    const LimitOutcome& o = result->outcomes[i];
    if (trace != nullptr) {
      // The entry's limits read as they always have; a scope's limit says
      // where it is written, and a cost other than 1 is shown.
      std::string what = absl::StrCat("limit ", spec.counter);
      if (!IsEntryLimit(eval.resolution, &spec) && spec.counter != spec.rule_id) {
        absl::StrAppend(&what, " at ", spec.rule_id);
      }
      trace->push_back(
          !o.known
              ? absl::StrCat(what, ": not consulted")
              : absl::StrCat(
                    what, " (", spec.Describe(), ")",
                    cost != 1 ? absl::StrCat(", cost ", cost) : "", ": ",
                    o.has_room ? "has room" : "full", ", ", o.remaining, " remaining",
                    o.has_room ? "" : absl::StrCat(", retry in ", FormatMillis(o.retry_after_ms))));
    }
    if (!o.known) continue;
    v1::LimitStatus* st = resp->add_limits();
    st->set_counter(spec.counter);
    st->set_scope(std::string(ScopeName(spec.scope)));
    st->set_max(spec.Capacity());
    st->set_remaining(o.remaining);
    SetDuration(o.reset_after_ms, st->mutable_reset_after());
    if (!o.has_room) {
      if (first_full == specs.size()) first_full = i;
      retry_after = std::max(retry_after, o.retry_after_ms);
    }
  }
  if (result->admitted) {
    resp->set_decision(v1::DECISION_ALLOW);
    resp->set_reason(std::string(eval.resolution.reason));
    return;
  }
  resp->set_decision(v1::DECISION_RATE_LIMITED);
  retry_after = std::max<int64_t>(retry_after, 1);
  SetDuration(retry_after, resp->mutable_retry_after());
  if (first_full == specs.size()) {
    // Refused without a full limit in the answer: a store's contract breach.
    resp->set_reason(absl::StrCat("rate limit reached; retry in ", FormatMillis(retry_after)));
    return;
  }
  const LimitSpec& full = *specs[first_full];
  const int64_t cost = first_full < eval.costs.size() ? eval.costs[first_full] : 1;
  // An entry's limit refuses in the entry's name (as it always has); a
  // scope's limit in its own.
  if (!IsEntryLimit(eval.resolution, &full)) resp->set_rule(full.rule_id);
  std::string reason =
      absl::StrCat("rate limit reached: counter \"", full.counter, "\" allows ", full.Describe());
  if (cost != 1) {
    absl::StrAppend(&reason, "; this call needs ", cost, ", ",
                    result->outcomes[first_full].remaining, " remaining");
  }
  absl::StrAppend(&reason, "; retry in ", FormatMillis(retry_after));
  resp->set_reason(std::move(reason));
}

}  // namespace toolgate
