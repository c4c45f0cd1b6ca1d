#include "server/engine/engine.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/base/duration.h"
#include "server/base/utf8.h"
#include "server/engine/counter_key.h"
#include "server/engine/reasons.h"

namespace toolgate {
namespace {

void SetDuration(int64_t millis, google::protobuf::Duration* d) {
  d->set_seconds(millis / 1000);
  d->set_nanos(static_cast<int32_t>((millis % 1000) * 1'000'000));
}

// The limits of `eval`'s resolution, as counter checks for `req`.
void ListChecks(Evaluation& eval, const v1::CheckRequest& req) {
  const std::vector<LimitSpec>& limits = *eval.resolution.limits;
  eval.checks.reserve(limits.size());
  for (const LimitSpec& spec : limits) {
    LimitCheck& c = eval.checks.emplace_back();
    c.key = CounterKey(spec, req.grant(), req.session());
    c.algorithm = spec.algorithm;
    c.window_ms = spec.window_ms;
    c.max = spec.max;
    c.burst = spec.burst;
  }
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
    resp->set_decision(v1::DECISION_REQUIRE_APPROVAL);
    resp->set_reason(r.reason.empty() ? DefaultReason(r, req.tool()) : std::string(r.reason));
    eval.final = true;
    return eval;
  }
  if (r.limits->empty()) {
    resp->set_decision(v1::DECISION_ALLOW);
    resp->set_reason(std::string(r.reason));
    eval.final = true;
    return eval;
  }
  ListChecks(eval, req);
  return eval;
}

void Engine::Approve(Evaluation& eval, const v1::CheckRequest& req,
                     v1::CheckResponse* resp) const {
  if (eval.resolution.limits->empty()) {
    resp->set_decision(v1::DECISION_ALLOW);
    eval.final = true;
    return;
  }
  resp->set_decision(v1::DECISION_UNSPECIFIED);
  resp->clear_reason();
  eval.final = false;
  ListChecks(eval, req);
}

void Engine::Complete(const Evaluation& eval, const absl::StatusOr<AcquireResult>& result,
                      v1::CheckResponse* resp, std::vector<std::string>* trace) const {
  const std::vector<LimitSpec>& limits = *eval.resolution.limits;
  if (!result.ok() || result->outcomes.size() != limits.size()) {
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
  const LimitSpec* first_full = nullptr;
  for (size_t i = 0; i < limits.size(); ++i) {
    const LimitSpec& spec = limits[i];
    const LimitOutcome& o = result->outcomes[i];
    if (trace != nullptr) {
      trace->push_back(
          !o.known
              ? absl::StrCat("limit ", spec.counter, ": not consulted")
              : absl::StrCat(
                    "limit ", spec.counter, " (", spec.Describe(),
                    "): ", o.has_room ? "has room" : "full", ", ", o.remaining, " remaining",
                    o.has_room ? "" : absl::StrCat(", retry in ", FormatMillis(o.retry_after_ms))));
    }
    if (!o.known) continue;
    v1::LimitStatus* st = resp->add_limits();
    st->set_counter(spec.counter);
    st->set_scope(std::string(ScopeName(spec.scope)));
    st->set_max(spec.algorithm == Algorithm::kTokenBucket ? spec.burst : spec.max);
    st->set_remaining(o.remaining);
    SetDuration(o.reset_after_ms, st->mutable_reset_after());
    if (!o.has_room) {
      if (first_full == nullptr) first_full = &spec;
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
  resp->set_reason(absl::StrCat("rate limit reached: counter \"", first_full->counter, "\" allows ",
                                first_full->Describe(), "; retry in ", FormatMillis(retry_after)));
}

}  // namespace toolgate
