// Tests of the pure decision engine: every path from request to decision.
#include "server/engine/engine.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/policy/loader.h"
#include "server/counters/memory_store.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;

::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

int64_t Millis(const pb::Duration& d) { return d.seconds() * 1000 + d.nanos() / 1'000'000; }

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-42"
default: deny
tools:
  list_files: {}
  wait_for_background_task:
    limits:
      - counter: wait_rate
        window: minute
        max: 10
  search_web:
    limits:
      - {counter: web_requests, window: 1h, max: 100, scope: session}
      - {counter: web_fleet, window: day, max: 5000, scope: global, algorithm: fixed_window}
  fetch_url:
    limits:
      - {counter: web_requests, window: 1h, max: 100, scope: session}
  send_message:
    limits:
      - {counter: messages, window: 60, max: 30, burst: 10, algorithm: token_bucket}
  tight:
    limits:
      - {counter: tight_a, window: 10s, max: 1}
      - {counter: tight_b, window: 1m, max: 5}
      - {counter: tight_c, window: 1h, max: 7}
  run_command:
    args:
      type: object
      required: [command]
      additionalProperties: false
      properties:
        command: {type: string, maxLength: 200, pattern: "^[a-z ]+$"}
        timeout: {type: integer, minimum: 1, maximum: 600}
    limits:
      - {counter: commands, window: 30s, max: 5}
  approve_with_args:
    action: require_approval
    reason: "needs a human"
    args:
      type: object
      properties:
        n: {type: integer}
  delete_repository:
    action: deny
    reason: "Agents may not delete repositories"
  drop_table:
    action: deny
  "github_*":
    action: require_approval
    reason: "GitHub writes need a human"
  "github_get_*":
    reason: "reads are fine"
  "ask_*":
    action: require_approval
)";

std::shared_ptr<const Policy> MustLoad(const std::string& text) {
  auto p = LoadPolicyFromSources({{"p.yaml", text}});
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

pb::Struct Obj(const std::string& json) {
  pb::Struct s;
  auto status = pb::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return s;
}

v1::CheckRequest Req(const std::string& tool, const std::string& grant = "grant-1",
                     const std::string& session = "", const std::string& args_json = "{}") {
  v1::CheckRequest req;
  req.set_tool(tool);
  req.set_grant(grant);
  req.set_session(session);
  *req.mutable_args() = Obj(args_json);
  return req;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_ = MustLoad(kPolicy);
    ASSERT_TRUE(policy_);
  }

  // A request decided without counters.
  v1::CheckResponse Final(const v1::CheckRequest& req, const Engine& engine = Engine()) {
    v1::CheckResponse resp;
    Evaluation eval = engine.Evaluate(*policy_, req, /*peer=*/"", &resp);
    EXPECT_TRUE(eval.final) << req.tool();
    EXPECT_TRUE(eval.checks.empty());
    EXPECT_EQ(resp.policy_version(), "rev-42");
    return resp;
  }

  Evaluation NotFinal(const v1::CheckRequest& req, v1::CheckResponse* resp) {
    Evaluation eval = Engine().Evaluate(*policy_, req, /*peer=*/"", resp);
    EXPECT_FALSE(eval.final) << req.tool();
    EXPECT_NE(eval.resolution.entry, nullptr);
    return eval;
  }

  std::shared_ptr<const Policy> policy_;
};

// ---------------------------------------------------------------------------
// Decisions made by the policy alone.

TEST_F(EngineTest, DefaultDenyNamesTheTool) {
  v1::CheckResponse resp = Final(Req("format_disk"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.rule(), "default");
  EXPECT_TRUE(HasSubstr(resp.reason(), "\"format_disk\""));
  EXPECT_TRUE(HasSubstr(resp.reason(), "not allowed by the policy"));
  EXPECT_EQ(resp.limits_size(), 0);
  EXPECT_FALSE(resp.has_retry_after());
}

TEST_F(EngineTest, DefaultAllow) {
  auto p = MustLoad("version: \"1\"\ndefault: allow\ntools:\n  x:\n    action: deny\n");
  ASSERT_TRUE(p);
  v1::CheckResponse resp;
  Evaluation eval = Engine().Evaluate(*p, Req("anything"), /*peer=*/"", &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.rule(), "default");
  EXPECT_EQ(resp.policy_version(), p->revision());
  EXPECT_EQ(resp.policy_version().rfind("sha256:", 0), 0u);
}

TEST_F(EngineTest, DefaultRequireApproval) {
  auto p = MustLoad("version: \"1\"\nrevision: r\ndefault: require_approval\n");
  ASSERT_TRUE(p);
  v1::CheckResponse resp;
  Evaluation eval = Engine().Evaluate(*p, Req("mystery_tool"), /*peer=*/"", &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_EQ(resp.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(resp.rule(), "default");
  EXPECT_TRUE(HasSubstr(resp.reason(), "\"mystery_tool\""));
  EXPECT_EQ(resp.policy_version(), "r");
}

TEST_F(EngineTest, ExactDenyWithPolicyReason) {
  v1::CheckResponse resp = Final(Req("delete_repository"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.reason(), "Agents may not delete repositories");
  EXPECT_EQ(resp.rule(), "tools.delete_repository");
}

TEST_F(EngineTest, DenyWithoutReasonNamesToolAndEntry) {
  v1::CheckResponse resp = Final(Req("drop_table"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_TRUE(HasSubstr(resp.reason(), "\"drop_table\""));
  EXPECT_TRUE(HasSubstr(resp.reason(), "tools.drop_table"));
}

TEST_F(EngineTest, RequireApprovalWithReasonAndGlobRule) {
  v1::CheckResponse resp = Final(Req("github_create_issue"));
  EXPECT_EQ(resp.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(resp.reason(), "GitHub writes need a human");
  EXPECT_EQ(resp.rule(), "tools.github_*");
}

TEST_F(EngineTest, RequireApprovalWithoutReasonNamesTool) {
  v1::CheckResponse resp = Final(Req("ask_boss"));
  EXPECT_EQ(resp.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(resp.rule(), "tools.ask_*");
  EXPECT_TRUE(HasSubstr(resp.reason(), "\"ask_boss\""));
}

TEST_F(EngineTest, GlobAllowSetsRuleAndReason) {
  v1::CheckResponse resp = Final(Req("github_get_issue"));
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.rule(), "tools.github_get_*");
  EXPECT_EQ(resp.reason(), "reads are fine");
}

TEST_F(EngineTest, AllowWithoutLimits) {
  v1::CheckResponse resp = Final(Req("list_files"));
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.rule(), "tools.list_files");
  EXPECT_EQ(resp.limits_size(), 0);
  EXPECT_EQ(resp.violations_size(), 0);
}

// ---------------------------------------------------------------------------
// Limits: Evaluate lists the counters to acquire.

TEST_F(EngineTest, AllowWithLimitsNeedsCounters) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("search_web", "g", "s"), &resp);
  EXPECT_EQ(eval.resolution.rule_id, "tools.search_web");
  EXPECT_EQ(resp.rule(), "tools.search_web");
  EXPECT_EQ(resp.policy_version(), "rev-42");
  EXPECT_NE(resp.decision(), v1::DECISION_ALLOW);  // not decided yet
  ASSERT_EQ(eval.checks.size(), 2u);
  EXPECT_EQ(eval.checks[0].algorithm, Algorithm::kSlidingWindow);
  EXPECT_EQ(eval.checks[0].window_ms, 3'600'000);
  EXPECT_EQ(eval.checks[0].max, 100);
  EXPECT_EQ(eval.checks[1].algorithm, Algorithm::kFixedWindow);
  EXPECT_EQ(eval.checks[1].window_ms, 86'400'000);
  EXPECT_EQ(eval.checks[1].max, 5000);
  EXPECT_NE(eval.checks[0].key, eval.checks[1].key);

  Evaluation tb = NotFinal(Req("send_message"), &resp);
  ASSERT_EQ(tb.checks.size(), 1u);
  EXPECT_EQ(tb.checks[0].algorithm, Algorithm::kTokenBucket);
  EXPECT_EQ(tb.checks[0].window_ms, 60'000);
  EXPECT_EQ(tb.checks[0].max, 30);
  EXPECT_EQ(tb.checks[0].burst, 10);
}

std::string KeyOf(const Evaluation& e, size_t i = 0) {
  return i < e.checks.size() ? e.checks[i].key : "<missing>";
}

TEST_F(EngineTest, GrantScopeKeysDifferByGrant) {
  v1::CheckResponse r;
  const std::string a = KeyOf(NotFinal(Req("wait_for_background_task", "alice", "s1"), &r));
  const std::string a2 = KeyOf(NotFinal(Req("wait_for_background_task", "alice", "s2"), &r));
  const std::string b = KeyOf(NotFinal(Req("wait_for_background_task", "bob", "s1"), &r));
  EXPECT_NE(a, b);
  EXPECT_EQ(a, a2);  // the session does not matter for scope grant
}

TEST_F(EngineTest, SessionScopeKeysDifferBySession) {
  v1::CheckResponse r;
  const std::string s1 = KeyOf(NotFinal(Req("search_web", "alice", "s1"), &r), 0);
  const std::string s1again = KeyOf(NotFinal(Req("search_web", "alice", "s1"), &r), 0);
  const std::string s2 = KeyOf(NotFinal(Req("search_web", "alice", "s2"), &r), 0);
  EXPECT_EQ(s1, s1again);
  EXPECT_NE(s1, s2);
}

TEST_F(EngineTest, GlobalScopeKeysAreEqual) {
  v1::CheckResponse r;
  const std::string a = KeyOf(NotFinal(Req("search_web", "alice", "s1"), &r), 1);
  const std::string b = KeyOf(NotFinal(Req("search_web", "bob", "s2"), &r), 1);
  EXPECT_EQ(a, b);
}

TEST_F(EngineTest, SameCounterAcrossToolsSharesKey) {
  v1::CheckResponse r;
  const std::string search = KeyOf(NotFinal(Req("search_web", "alice", "s1"), &r), 0);
  const std::string fetch = KeyOf(NotFinal(Req("fetch_url", "alice", "s1"), &r), 0);
  const std::string other = KeyOf(NotFinal(Req("fetch_url", "alice", "s9"), &r), 0);
  EXPECT_EQ(search, fetch);
  EXPECT_NE(search, other);
}

// ---------------------------------------------------------------------------
// Complete: the counter store's answer becomes the decision.

TEST_F(EngineTest, AdmittedIsAllowWithLimitStatus) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("search_web", "g", "s"), &resp);
  AcquireResult result;
  result.admitted = true;
  result.outcomes = {LimitOutcome{true, 99, 3'600'000, 0}, LimitOutcome{true, 4321, 1'500, 0}};
  Engine().Complete(eval, result, &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.rule(), "tools.search_web");
  EXPECT_EQ(resp.policy_version(), "rev-42");
  EXPECT_FALSE(resp.has_retry_after());
  ASSERT_EQ(resp.limits_size(), 2);
  EXPECT_EQ(resp.limits(0).counter(), "web_requests");
  EXPECT_EQ(resp.limits(0).scope(), "session");
  EXPECT_EQ(resp.limits(0).max(), 100);
  EXPECT_EQ(resp.limits(0).remaining(), 99);
  EXPECT_EQ(resp.limits(0).reset_after().seconds(), 3600);
  EXPECT_EQ(resp.limits(0).reset_after().nanos(), 0);
  EXPECT_EQ(resp.limits(1).counter(), "web_fleet");
  EXPECT_EQ(resp.limits(1).scope(), "global");
  EXPECT_EQ(resp.limits(1).max(), 5000);
  EXPECT_EQ(resp.limits(1).remaining(), 4321);
  EXPECT_EQ(resp.limits(1).reset_after().seconds(), 1);
  EXPECT_EQ(resp.limits(1).reset_after().nanos(), 500'000'000);
}

TEST_F(EngineTest, TokenBucketReportsBurstAsMax) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("send_message"), &resp);
  AcquireResult result;
  result.admitted = true;
  result.outcomes = {LimitOutcome{true, 9, 2'000, 0}};
  Engine().Complete(eval, result, &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(resp.limits_size(), 1);
  EXPECT_EQ(resp.limits(0).counter(), "messages");
  EXPECT_EQ(resp.limits(0).scope(), "grant");
  EXPECT_EQ(resp.limits(0).max(), 10);
  EXPECT_EQ(resp.limits(0).remaining(), 9);
}

TEST_F(EngineTest, NotAdmittedIsRateLimitedWithLongestRetry) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("tight"), &resp);
  ASSERT_EQ(eval.checks.size(), 3u);
  AcquireResult result;
  result.admitted = false;
  result.outcomes = {LimitOutcome{true, 1, 0, 0}, LimitOutcome{false, 0, 59'000, 1'500},
                     LimitOutcome{false, 0, 3'000'000, 2'250}};
  Engine().Complete(eval, result, &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(resp.rule(), "tools.tight");
  EXPECT_EQ(resp.policy_version(), "rev-42");
  ASSERT_TRUE(resp.has_retry_after());
  EXPECT_EQ(resp.retry_after().seconds(), 2);
  EXPECT_EQ(resp.retry_after().nanos(), 250'000'000);
  // The reason names a refusing counter, not the one with room.
  EXPECT_TRUE(HasSubstr(resp.reason(), "tight_b"));
  EXPECT_EQ(resp.reason().find("tight_a"), std::string::npos);
  ASSERT_EQ(resp.limits_size(), 3);
  EXPECT_EQ(resp.limits(0).remaining(), 1);
  EXPECT_EQ(resp.limits(1).remaining(), 0);
  EXPECT_EQ(Millis(resp.limits(1).reset_after()), 59'000);
  EXPECT_EQ(Millis(resp.limits(2).reset_after()), 3'000'000);
}

TEST_F(EngineTest, RateLimitedRetryAfterIsNeverZero) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("wait_for_background_task"), &resp);
  AcquireResult result;
  result.admitted = false;
  result.outcomes = {LimitOutcome{false, 0, 0, 0}};
  Engine().Complete(eval, result, &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_GT(Millis(resp.retry_after()), 0);
  EXPECT_TRUE(HasSubstr(resp.reason(), "wait_rate"));
}

TEST_F(EngineTest, StoreErrorFailClosedDenies) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("wait_for_background_task"), &resp);
  Engine(FailureMode::kClosed)
      .Complete(eval, absl::UnavailableError("redis: connection refused"), &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_TRUE(HasSubstr(resp.reason(), "counter store"));
  EXPECT_TRUE(HasSubstr(resp.reason(), "redis: connection refused"));
  EXPECT_EQ(resp.rule(), "tools.wait_for_background_task");
  EXPECT_EQ(resp.policy_version(), "rev-42");
  EXPECT_FALSE(resp.has_retry_after());
}

TEST_F(EngineTest, StoreErrorFailOpenAllows) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("wait_for_background_task"), &resp);
  Engine(FailureMode::kOpen).Complete(eval, absl::DeadlineExceededError("timeout"), &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_TRUE(HasSubstr(resp.reason(), "counter store"));
  EXPECT_EQ(resp.policy_version(), "rev-42");
}

TEST_F(EngineTest, MalformedStoreAnswerIsAFailure) {
  v1::CheckResponse resp;
  Evaluation eval = NotFinal(Req("tight"), &resp);
  AcquireResult result;
  result.admitted = true;
  result.outcomes = {LimitOutcome{true, 1, 0, 0}};  // 1 outcome for 3 limits
  Engine(FailureMode::kClosed).Complete(eval, result, &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_TRUE(HasSubstr(resp.reason(), "counter store"));
}

// With the real in-process store: the full two-step check.
TEST_F(EngineTest, WithMemoryStoreAllowsUpToMaxThenRateLimits) {
  ManualClock clock;
  MemoryCounterStore store(&clock);
  Engine engine;
  auto check = [&](const v1::CheckRequest& req) {
    v1::CheckResponse resp;
    Evaluation eval = engine.Evaluate(*policy_, req, /*peer=*/"", &resp);
    if (!eval.final) engine.Complete(eval, store.AcquireNow(eval.checks, req.dry_run()), &resp);
    return resp;
  };
  for (int i = 0; i < 5; ++i) {
    clock.Advance(1000);
    v1::CheckResponse resp = check(Req("run_command", "g", "", R"({"command": "ls"})"));
    ASSERT_EQ(resp.decision(), v1::DECISION_ALLOW) << i << ": " << resp.reason();
    ASSERT_EQ(resp.limits_size(), 1);
    EXPECT_EQ(resp.limits(0).counter(), "commands");
    EXPECT_EQ(resp.limits(0).max(), 5);
    EXPECT_EQ(resp.limits(0).remaining(), 4 - i);
    EXPECT_EQ(Millis(resp.limits(0).reset_after()), 30'000);
  }
  // The first call was at +1s; the window is 30s; now is +5s.
  v1::CheckResponse limited = check(Req("run_command", "g", "", R"({"command": "ls"})"));
  EXPECT_EQ(limited.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(Millis(limited.retry_after()), 26'000);
  EXPECT_TRUE(HasSubstr(limited.reason(), "commands"));
  EXPECT_EQ(limited.policy_version(), "rev-42");
  // Another grant has its own counter; invalid arguments consume nothing.
  EXPECT_EQ(check(Req("run_command", "h", "", R"({"command": "ls"})")).decision(),
            v1::DECISION_ALLOW);
  EXPECT_EQ(check(Req("run_command", "h", "", R"({"command": "LS"})")).decision(),
            v1::DECISION_DENY);
  v1::CheckResponse h = check(Req("run_command", "h", "", R"({"command": "ls"})"));
  EXPECT_EQ(h.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(h.limits_size(), 1);
  EXPECT_EQ(h.limits(0).remaining(), 3);
}

// ---------------------------------------------------------------------------
// Argument schemas.

TEST_F(EngineTest, ArgsViolationsDenyAndAreAllListed) {
  v1::CheckResponse resp =
      Final(Req("run_command", "g", "", R"({"command": "RM -RF /", "timeout": 0, "extra": true})"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.rule(), "tools.run_command");
  EXPECT_EQ(resp.limits_size(), 0);
  ASSERT_EQ(resp.violations_size(), 3) << resp.DebugString();
  std::vector<std::string> paths;
  for (const auto& v : resp.violations()) {
    paths.push_back(v.path());
    EXPECT_FALSE(v.message().empty()) << v.path();
  }
  std::sort(paths.begin(), paths.end());
  EXPECT_EQ(paths, (std::vector<std::string>{"/command", "/extra", "/timeout"}));
  EXPECT_TRUE(HasSubstr(resp.reason(), "run_command"));
  EXPECT_TRUE(HasSubstr(resp.reason(), "and 2 more"));
  // The message never echoes the argument's string data.
  for (const auto& v : resp.violations()) {
    EXPECT_EQ(v.message().find("RM -RF"), std::string::npos) << v.message();
  }
}

TEST_F(EngineTest, ArgsMissingRequiredProperty) {
  v1::CheckResponse resp = Final(Req("run_command", "g", "", R"({"timeout": 5})"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  ASSERT_EQ(resp.violations_size(), 1);
  EXPECT_EQ(resp.violations(0).path(), "/command");
  EXPECT_TRUE(HasSubstr(resp.violations(0).message(), "required"));
}

TEST_F(EngineTest, ArgsTooLongAndWrongType) {
  v1::CheckResponse resp = Final(
      Req("run_command", "g", "", "{\"command\": \"" + std::string(201, 'a') + "\", \"timeout\": 1.5}"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  ASSERT_EQ(resp.violations_size(), 2) << resp.DebugString();
}

TEST_F(EngineTest, ValidArgsProceedToLimits) {
  v1::CheckResponse resp;
  Evaluation eval =
      NotFinal(Req("run_command", "g", "", R"({"command": "ls la", "timeout": 600})"), &resp);
  EXPECT_EQ(resp.violations_size(), 0);
  EXPECT_EQ(eval.checks.size(), 1u);
  // "-" is not allowed by the pattern.
  v1::CheckResponse bad = Final(Req("run_command", "g", "", R"({"command": "ls -la"})"));
  EXPECT_EQ(bad.decision(), v1::DECISION_DENY);
  ASSERT_EQ(bad.violations_size(), 1);
  EXPECT_EQ(bad.violations(0).path(), "/command");
  EXPECT_TRUE(HasSubstr(bad.violations(0).message(), "pattern"));
}

TEST_F(EngineTest, ArgsAreCheckedBeforeApproval) {
  v1::CheckResponse bad = Final(Req("approve_with_args", "g", "", R"({"n": "five"})"));
  EXPECT_EQ(bad.decision(), v1::DECISION_DENY);
  ASSERT_EQ(bad.violations_size(), 1);
  EXPECT_EQ(bad.violations(0).path(), "/n");
  v1::CheckResponse good = Final(Req("approve_with_args", "g", "", R"({"n": 5})"));
  EXPECT_EQ(good.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(good.reason(), "needs a human");
}

TEST_F(EngineTest, DeniedToolIgnoresArgs) {
  v1::CheckResponse resp = Final(Req("delete_repository", "g", "", R"({"anything": [1, 2]})"));
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.violations_size(), 0);
}

TEST_F(EngineTest, PolicyVersionIsTheRevision) {
  for (const char* tool : {"format_disk", "delete_repository", "github_x", "list_files"}) {
    v1::CheckResponse resp = Final(Req(tool));
    EXPECT_EQ(resp.policy_version(), policy_->revision()) << tool;
  }
  // A content-hash revision too.
  const std::string text = "version: \"1\"\ndefault: allow\n";
  auto p = MustLoad(text);
  ASSERT_TRUE(p);
  v1::CheckResponse resp;
  Engine().Evaluate(*p, Req("t"), /*peer=*/"", &resp);
  EXPECT_EQ(resp.policy_version(), ContentRevision({{"p.yaml", text}}));
}

}  // namespace
}  // namespace toolgate
