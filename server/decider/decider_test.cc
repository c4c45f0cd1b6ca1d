// Tests of the Decider (evaluate -> counters -> complete) and of Explain,
// over the in-process counter store and a manual clock.
#include "server/decider/decider.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/decider/explain.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-7"
default: deny
tools:
  delete_repository:
    action: deny
    reason: "no"
  search_web:
    limits:
      - {counter: web, window: 1m, max: 2}
)";

class DeciderTest : public ::testing::Test {
 protected:
  DeciderTest() : store_(&clock_), decider_(&store_, Engine(), ArgsLimits()) {
    auto p = LoadPolicyFromSources({{"p.yaml", kPolicy}});
    EXPECT_TRUE(p.ok()) << p.status();
    policy_ = *p;
  }

  // Decides synchronously (the in-process store answers at once).
  v1::CheckResponse Decide(const std::string& tool, bool dry_run = false,
                           std::vector<std::string>* trace = nullptr) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant("g");
    v1::CheckResponse resp;
    DecisionTask task;
    task.policy = policy_;
    task.request = &req;
    task.response = &resp;
    task.dry_run = dry_run;
    task.trace = trace;
    bool done = false;
    decider_.Decide(task, [&done] { done = true; });
    EXPECT_TRUE(done);
    return resp;
  }

  ManualClock clock_;
  MemoryCounterStore store_;
  Decider decider_;
  std::shared_ptr<const Policy> policy_;
};

TEST_F(DeciderTest, ValidateNamesWhatIsMissing) {
  v1::CheckRequest req;
  EXPECT_THAT(decider_.Validate(req).message(), HasSubstr("tool is required"));
  req.set_tool("t");
  EXPECT_THAT(decider_.Validate(req).message(), HasSubstr("grant is required"));
  req.set_grant("g");
  EXPECT_TRUE(decider_.Validate(req).ok());
}

TEST_F(DeciderTest, LimitsAreConsumedUnlessDryRun) {
  EXPECT_EQ(Decide("search_web", /*dry_run=*/true).decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search_web").decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search_web").decision(), v1::DECISION_ALLOW);
  const v1::CheckResponse third = Decide("search_web");
  EXPECT_EQ(third.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(third.policy_version(), "rev-7");
  clock_.Advance(60'001);
  EXPECT_EQ(Decide("search_web").decision(), v1::DECISION_ALLOW);
}

TEST_F(DeciderTest, TraceHasAStepPerStage) {
  std::vector<std::string> trace;
  Decide("search_web", false, &trace);
  EXPECT_THAT(trace, Contains(HasSubstr("limit web")));
  trace.clear();
  EXPECT_EQ(Decide("delete_repository", false, &trace).decision(), v1::DECISION_DENY);
  EXPECT_FALSE(trace.empty());
}

TEST_F(DeciderTest, ExplainIsADryRunWithSteps) {
  v1::CheckRequest req;
  req.set_tool("search_web");
  req.set_grant("g");
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::ExplainResponse> got;
    ExplainCheck(decider_, policy_, req, [&](absl::StatusOr<v1::ExplainResponse> r) { got = r; });
    ASSERT_TRUE(got.ok()) << got.status();
    // Three explanations consumed nothing: still allowed, with both left.
    EXPECT_EQ(got->decision().decision(), v1::DECISION_ALLOW);
    ASSERT_EQ(got->decision().limits_size(), 1);
    EXPECT_EQ(got->decision().limits(0).remaining(), 1);
    EXPECT_THAT(got->steps(), Contains("policy revision rev-7"));
    EXPECT_THAT(got->steps(), Contains(HasSubstr("dry run: no counter consumed")));
  }
  req.clear_grant();
  absl::StatusOr<v1::ExplainResponse> got;
  ExplainCheck(decider_, policy_, req, [&](absl::StatusOr<v1::ExplainResponse> r) { got = r; });
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace toolgate
