#include "server/decider/explain.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace toolgate {

void ExplainCheck(const Decider& decider, std::shared_ptr<const Policy> policy,
                  v1::CheckRequest request, ExplainCallback done, std::string peer) {
  if (absl::Status s = decider.Prepare(&request); !s.ok()) return done(s);
  struct State {
    v1::CheckRequest request;
    v1::ExplainResponse out;
    std::vector<std::string> steps;
    DecisionTask task;
  };
  auto state = std::make_shared<State>();
  state->request = std::move(request);
  state->steps.push_back(absl::StrCat("policy revision ", policy->revision()));
  DecisionTask& task = state->task;
  task.policy = std::move(policy);
  task.request = &state->request;
  task.peer = std::move(peer);
  task.response = state->out.mutable_decision();
  task.dry_run = true;
  task.trace = &state->steps;
  decider.Decide(task, [state, done = std::move(done)] {
    if (state->task.decided_by_limits()) {
      state->steps.push_back(absl::StrCat("decision ",
                                          v1::Decision_Name(state->out.decision().decision()),
                                          " (dry run: no counter consumed)"));
    }
    for (std::string& s : state->steps) state->out.add_steps(std::move(s));
    done(std::move(state->out));
  });
}

}  // namespace toolgate
