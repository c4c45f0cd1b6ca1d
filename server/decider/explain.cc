#include "server/decider/explain.h"

#include <memory>

#include "absl/strings/str_cat.h"

namespace toolgate {

void ExplainCheck(std::shared_ptr<const Policy> policy, CounterStore* store, const Engine& engine,
                  v1::CheckRequest request, ExplainCallback done) {
  if (request.tool().empty()) return done(absl::InvalidArgumentError("tool is required"));
  if (request.grant().empty()) return done(absl::InvalidArgumentError("grant is required"));
  struct State {
    std::shared_ptr<const Policy> policy;
    v1::ExplainResponse out;
    std::vector<std::string> steps;
    Evaluation eval;
  };
  auto state = std::make_shared<State>();
  state->policy = std::move(policy);
  state->steps.push_back(absl::StrCat("policy revision ", state->policy->revision()));
  v1::CheckResponse* resp = state->out.mutable_decision();
  state->eval = engine.Evaluate(*state->policy, request, resp, &state->steps);
  auto finish = [state, done] {
    for (std::string& s : state->steps) state->out.add_steps(std::move(s));
    done(std::move(state->out));
  };
  if (state->eval.final) return finish();
  std::vector<LimitCheck> checks = std::move(state->eval.checks);
  store->Acquire(std::move(checks), /*dry_run=*/true,
                 [state, &engine, finish](absl::StatusOr<AcquireResult> result) {
                   if (!result.ok()) {
                     state->steps.push_back(
                         absl::StrCat("counter store failed: ", result.status().message()));
                   }
                   engine.Complete(state->eval, result, state->out.mutable_decision(),
                                   &state->steps);
                   state->steps.push_back(absl::StrCat(
                       "decision ", v1::Decision_Name(state->out.decision().decision()),
                       " (dry run: no counter consumed)"));
                   finish();
                 });
}

}  // namespace toolgate
