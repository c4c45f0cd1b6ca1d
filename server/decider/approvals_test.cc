// The Decider with an approval store: creating, redeeming, giving back.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/approvals/memory_approvals.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/decider/decider.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-1"
default: deny
tools:
  run_command:
    action: require_approval
    reason: "commands need a human"
    approval_ttl: 90s
    args:
      type: object
      properties: {command: {type: string, maxLength: 20}}
      required: [command]
  deploy:
    category: admin
    limits:
      - {counter: deploys, window: 1h, max: 1}
classes:
  admin:
    category: admin
    action: require_approval
    approval_ttl: 2m
)";

class DeciderApprovalsTest : public ::testing::Test {
 protected:
  DeciderApprovalsTest()
      : counters_(&clock_),
        approvals_(SystemClock::Get(), ApprovalLimits(), ApprovalEvents(), /*sweep_ms=*/0),
        decider_(&counters_, Engine(), ArgsLimits()) {
    decider_.set_approvals(&approvals_);
    auto p = LoadPolicyFromSources({{"p.yaml", kPolicy}});
    EXPECT_TRUE(p.ok()) << p.status();
    policy_ = *p;
  }

  v1::CheckResponse Decide(const std::string& tool, const std::string& command,
                           const std::string& approval_id = "", bool dry_run = false,
                           const std::string& grant = "g", std::vector<std::string>* trace = nullptr) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    req.set_session("s");
    if (!command.empty()) (*req.mutable_args()->mutable_fields())["command"].set_string_value(command);
    req.set_approval_id(approval_id);
    EXPECT_TRUE(decider_.Validate(req).ok()) << decider_.Validate(req);
    v1::CheckResponse resp;
    DecisionTask task;
    task.policy = policy_;
    task.request = &req;
    task.response = &resp;
    task.dry_run = dry_run;
    task.trace = trace;
    task.decision_id = "d-" + std::to_string(++decisions_);
    bool done = false;
    decider_.Decide(task, [&done] { done = true; });
    EXPECT_TRUE(done);  // Both stores answer at once.
    return resp;
  }

  void Approve(const std::string& id, bool yes = true) {
    bool done = false;
    approvals_.Decide(id, yes, "alice", "ok", [&](absl::StatusOr<v1::Approval> a) {
      EXPECT_TRUE(a.ok()) << a.status();
      done = true;
    });
    EXPECT_TRUE(done);
  }

  v1::Approval Get(const std::string& id) {
    v1::Approval out;
    approvals_.Get(id, [&](absl::StatusOr<v1::Approval> a) { out = *a; });
    return out;
  }

  ManualClock clock_;
  MemoryCounterStore counters_;
  MemoryApprovalStore approvals_;
  Decider decider_;
  std::shared_ptr<const Policy> policy_;
  int decisions_ = 0;
};

TEST_F(DeciderApprovalsTest, RequireApprovalRecordsAnApprovalBoundToTheCall) {
  v1::CheckResponse r = Decide("run_command", "ls");
  EXPECT_EQ(r.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(r.reason(), "commands need a human");
  ASSERT_TRUE(IsApprovalId(r.approval_id())) << r.approval_id();
  const v1::Approval a = Get(r.approval_id());
  EXPECT_EQ(a.tool(), "run_command");
  EXPECT_EQ(a.args_json(), "{\"command\":\"ls\"}");
  EXPECT_EQ(a.rule(), "tools.run_command");
  EXPECT_EQ(a.policy_version(), "rev-1");
  EXPECT_EQ(a.expires_at().seconds() - a.created_at().seconds(), 90);  // approval_ttl
  // The same call: the same approval; another: another.
  EXPECT_EQ(Decide("run_command", "ls").approval_id(), r.approval_id());
  EXPECT_NE(Decide("run_command", "pwd").approval_id(), r.approval_id());
  // A dry run records nothing.
  EXPECT_THAT(Decide("run_command", "whoami", "", /*dry_run=*/true).approval_id(), IsEmpty());
  EXPECT_EQ(approvals_.size(), 2u);
  // Invalid arguments are denied first: no approval for a call that could never run.
  v1::CheckResponse invalid = Decide("run_command", std::string(30, 'x'));
  EXPECT_EQ(invalid.decision(), v1::DECISION_DENY);
  EXPECT_THAT(invalid.approval_id(), IsEmpty());
}

TEST_F(DeciderApprovalsTest, AnApprovedCallIsAdmittedOnceWithItsId) {
  const std::string id = Decide("run_command", "ls").approval_id();
  v1::CheckResponse pending = Decide("run_command", "ls", id);
  EXPECT_EQ(pending.decision(), v1::DECISION_DENY);
  EXPECT_THAT(pending.reason(), HasSubstr("still pending"));
  Approve(id);
  EXPECT_EQ(Decide("run_command", "ls", id, /*dry_run=*/true).decision(), v1::DECISION_ALLOW);
  v1::CheckResponse changed = Decide("run_command", "rm -rf /", id);
  EXPECT_EQ(changed.decision(), v1::DECISION_DENY);
  EXPECT_THAT(changed.reason(), HasSubstr("different arguments"));
  EXPECT_THAT(Decide("run_command", "ls", id, false, "other-grant").reason(),
              HasSubstr("different grant"));
  std::vector<std::string> trace;
  v1::CheckResponse ok = Decide("run_command", "ls", id, false, "g", &trace);
  EXPECT_EQ(ok.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(ok.reason(), "approved by alice (" + id + "): ok");
  EXPECT_EQ(ok.rule(), "tools.run_command");
  EXPECT_EQ(Get(id).used_by_decision(), "d-6");
  v1::CheckResponse again = Decide("run_command", "ls", id);
  EXPECT_EQ(again.decision(), v1::DECISION_DENY);
  EXPECT_THAT(again.reason(), HasSubstr("already used"));
}

TEST_F(DeciderApprovalsTest, ADeniedApprovalIsDeniedWithTheApproversName) {
  const std::string id = Decide("run_command", "ls").approval_id();
  Approve(id, false);
  v1::CheckResponse r = Decide("run_command", "ls", id);
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_THAT(r.reason(), HasSubstr("denied by alice: ok"));
}

TEST_F(DeciderApprovalsTest, AnApprovedCallStillPassesItsLimitsAndARefusalGivesTheApprovalBack) {
  // deploy: allowed with a limit of 1 per hour, but the admin class needs approval.
  const std::string first = Decide("deploy", "").approval_id();
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(Get(first).expires_at().seconds() - Get(first).created_at().seconds(), 120);
  Approve(first);
  v1::CheckResponse ok = Decide("deploy", "", first);
  EXPECT_EQ(ok.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(ok.limits_size(), 1);
  EXPECT_EQ(ok.limits(0).remaining(), 0);  // Consumed.

  // A second approved deploy within the hour: rate limited, and its approval
  // is not used up.
  const std::string second = Decide("deploy", "x").approval_id();
  ASSERT_NE(second, first);
  Approve(second);
  v1::CheckResponse limited = Decide("deploy", "x", second);
  EXPECT_EQ(limited.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_THAT(limited.reason(), HasSubstr("was not used up"));
  EXPECT_EQ(Get(second).state(), v1::APPROVAL_STATE_APPROVED);
  clock_.Advance(3'600'001);
  EXPECT_EQ(Decide("deploy", "x", second).decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Get(second).state(), v1::APPROVAL_STATE_USED);
}

TEST_F(DeciderApprovalsTest, AnApprovalIdOnACallThatNeedsNoneChangesNothing) {
  const std::string id = Decide("run_command", "ls").approval_id();
  Approve(id);
  // An unlisted tool stays denied, whatever approval comes with it.
  EXPECT_EQ(Decide("unknown_tool", "", id).decision(), v1::DECISION_DENY);
  EXPECT_EQ(Get(id).state(), v1::APPROVAL_STATE_APPROVED);
  v1::CheckRequest bad;
  bad.set_tool("t");
  bad.set_grant("g");
  bad.set_approval_id("apr_nothex");
  EXPECT_THAT(decider_.Validate(bad).message(), HasSubstr("approval_id: not an approval id"));
}

TEST_F(DeciderApprovalsTest, WhenTheStoreIsFullTheCallSaysSo) {
  MemoryApprovalStore small(SystemClock::Get(), ApprovalLimits{1, 1, 1000}, ApprovalEvents(), 0);
  decider_.set_approvals(&small);
  EXPECT_THAT(Decide("run_command", "a").approval_id(), Not(IsEmpty()));
  v1::CheckResponse r = Decide("run_command", "b");
  EXPECT_EQ(r.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_THAT(r.approval_id(), IsEmpty());
  EXPECT_THAT(r.reason(), HasSubstr("no approval could be recorded"));
}

}  // namespace
}  // namespace toolgate
