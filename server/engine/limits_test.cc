// Tests of what a call costs and of the limits over every call of a scope
// (the policy's top level, a server's or grant's section): which limits a
// call lists, in which order, at which cost, and how a refusal is worded.
// The counter store's answers are written by hand: these tests hold
// whatever the store does with costs.
#include <string>
#include <vector>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/engine/call_cost.h"
#include "server/engine/counter_key.h"
#include "server/engine/engine.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;

::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

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

v1::CheckRequest Req(const std::string& tool, const std::string& args_json = "{}",
                     const std::string& grant = "g", const std::string& server = "") {
  v1::CheckRequest req;
  req.set_tool(tool);
  req.set_grant(grant);
  req.set_server(server);
  *req.mutable_args() = Obj(args_json);
  return req;
}

// ---------------------------------------------------------------------------
// CallCost

LimitSpec CostFrom(const std::string& pointer, const std::vector<std::string>& tokens,
                   int64_t max = 10000) {
  LimitSpec spec;
  spec.counter = "spend";
  spec.rule_id = "limits[0]";
  spec.max = max;
  spec.burst = max;
  spec.window_ms = 86'400'000;
  spec.cost_from = pointer;
  spec.cost_path = tokens;
  return spec;
}

TEST(CallCost, FixedCost) {
  LimitSpec spec;
  spec.cost = 7;
  std::string problem;
  EXPECT_EQ(CallCost(spec, Obj(R"({"amount": 99})"), &problem), 7);
  EXPECT_TRUE(problem.empty());
}

TEST(CallCost, WholeNumbersUpToTheCapacity) {
  const LimitSpec spec = CostFrom("/amount", {"amount"});
  std::string problem;
  EXPECT_EQ(CallCost(spec, Obj(R"({"amount": 4000})"), &problem), 4000);
  EXPECT_EQ(CallCost(spec, Obj(R"({"amount": 4000.0})"), &problem), 4000);
  EXPECT_EQ(CallCost(spec, Obj(R"({"amount": 0})"), &problem), 0);
  EXPECT_EQ(CallCost(spec, Obj(R"({"amount": 1e4})"), &problem), 10000);
  EXPECT_EQ(CallCost(spec, Obj(R"({"amount": -0.0})"), &problem), 0);
  EXPECT_TRUE(problem.empty()) << problem;
}

TEST(CallCost, EveryInvalidValueIsNamed) {
  const LimitSpec spec = CostFrom("/amount", {"amount"});
  const std::string want =
      "must be a whole number from 0 to 10000 (the cost of limit limits[0]), got ";
  struct Case {
    const char* args;
    std::string problem;
  } cases[] = {
      {R"({})", "is required: a whole number from 0 to 10000 (the cost of limit limits[0])"},
      {R"({"other": 1})", "is required: a whole number from 0 to 10000"},
      {R"({"amount": -5})", want + "-5"},
      {R"({"amount": 10.5})", want + "10.5"},
      {R"({"amount": 10001})", want + "10001"},
      {R"({"amount": 1e300})", want + "1e+300"},
      {R"({"amount": "100"})", want + "a string"},
      {R"({"amount": true})", want + "a boolean"},
      {R"({"amount": null})", want + "null"},
      {R"({"amount": {"v": 1}})", want + "an object"},
      {R"({"amount": [1]})", want + "a list"},
  };
  for (const Case& c : cases) {
    std::string problem;
    EXPECT_EQ(CallCost(spec, Obj(c.args), &problem), -1) << c.args;
    EXPECT_TRUE(HasSubstr(problem, c.problem)) << c.args;
  }
}

TEST(CallCost, TokenBucketCapacityIsItsBurst) {
  LimitSpec spec = CostFrom("/n", {"n"}, 5);
  spec.algorithm = Algorithm::kTokenBucket;
  spec.burst = 20;
  std::string problem;
  EXPECT_EQ(CallCost(spec, Obj(R"({"n": 20})"), &problem), 20);
  EXPECT_EQ(CallCost(spec, Obj(R"({"n": 21})"), &problem), -1);
  EXPECT_TRUE(HasSubstr(problem, "from 0 to 20"));
}

TEST(CallCost, PointersIntoObjectsAndLists) {
  std::string problem;
  const pb::Struct args =
      Obj(R"({"order": {"lines": [{"qty": 3}, {"qty": 8}]}, "a/b": {"~c": 11}, "": 2})");
  EXPECT_EQ(
      CallCost(CostFrom("/order/lines/1/qty", {"order", "lines", "1", "qty"}), args, &problem), 8);
  EXPECT_EQ(CallCost(CostFrom("/a~1b/~0c", {"a/b", "~c"}), args, &problem), 11);
  EXPECT_EQ(CallCost(CostFrom("/", {""}), args, &problem), 2);
  EXPECT_TRUE(problem.empty()) << problem;
  // Not there: past the end, a leading zero, not an index, inside a number.
  for (const std::vector<std::string>& tokens : std::vector<std::vector<std::string>>{
           {"order", "lines", "2", "qty"},
           {"order", "lines", "01", "qty"},
           {"order", "lines", "-", "qty"},
           {"order", "lines", "x"},
           {"order", "lines", "0", "qty", "deeper"},
           {"order", "lines", "99999999999", "qty"},
       }) {
    problem.clear();
    EXPECT_EQ(CallCost(CostFrom("/p", tokens), args, &problem), -1) << tokens[2];
    EXPECT_TRUE(HasSubstr(problem, "is required")) << tokens[2];
  }
}

// ---------------------------------------------------------------------------
// The engine

constexpr char kPolicy[] = R"(version: "1"
revision: "r"
default: deny
limits:
  - {counter: calls, window: minute, max: 60}
  - {counter: spend, window: day, max: 10000, cost_from: /amount}
tools:
  charge:
    limits:
      - {counter: charges, window: minute, max: 5}
  read: {}
  note:
    limits:
      - {counter: calls, window: minute, max: 60, cost: 2}
  big:
    limits:
      - {window: minute, max: 10, cost: 4}
  gone:
    action: deny
  ask:
    action: require_approval
servers:
  pay:
    limits:
      - {window: hour, max: 100, scope: global}
grants:
  ci-bot:
    limits:
      - {window: hour, max: 1000, cost: 10}
  walled:
    peers: ["spiffe://x/*"]
)";

class ScopeLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_ = MustLoad(kPolicy);
    ASSERT_TRUE(policy_);
  }

  Evaluation Evaluate(const v1::CheckRequest& req, v1::CheckResponse* resp,
                      std::vector<std::string>* trace = nullptr) {
    return Engine().Evaluate(*policy_, req, "", resp, trace);
  }

  std::vector<std::string> RuleIds(const Evaluation& eval) {
    std::vector<std::string> out;
    for (const LimitSpec* s : eval.specs) out.push_back(s->rule_id);
    return out;
  }

  std::shared_ptr<const Policy> policy_;
};

TEST_F(ScopeLimitsTest, EntryThenGrantThenServerThenTopLevel) {
  v1::CheckResponse resp;
  const Evaluation eval = Evaluate(Req("charge", R"({"amount": 4000})", "ci-bot", "pay"), &resp);
  ASSERT_FALSE(eval.final);
  EXPECT_EQ(RuleIds(eval),
            (std::vector<std::string>{"tools.charge.limits[0]", "grants.ci-bot.limits[0]",
                                      "servers.pay.limits[0]", "limits[0]", "limits[1]"}));
  ASSERT_EQ(eval.checks.size(), eval.specs.size());
  ASSERT_EQ(eval.costs.size(), eval.specs.size());
  EXPECT_EQ(eval.costs, (std::vector<int64_t>{1, 10, 1, 1, 4000}));
  for (size_t i = 0; i < eval.checks.size(); ++i) {
    EXPECT_EQ(eval.checks[i].cost, eval.costs[i]);
    EXPECT_EQ(eval.checks[i].max, eval.specs[i]->max);
    EXPECT_EQ(eval.checks[i].key, CounterKey(*eval.specs[i], "ci-bot", ""));
  }
  EXPECT_EQ(resp.decision(), v1::DECISION_UNSPECIFIED);
  EXPECT_EQ(resp.rule(), "tools.charge");
}

TEST_F(ScopeLimitsTest, AnEntryWithoutLimitsIsNoLongerFinal) {
  v1::CheckResponse resp;
  Evaluation eval = Evaluate(Req("read", R"({"amount": 0})"), &resp);
  ASSERT_FALSE(eval.final);
  EXPECT_EQ(RuleIds(eval), (std::vector<std::string>{"limits[0]", "limits[1]"}));
  EXPECT_EQ(eval.costs, (std::vector<int64_t>{1, 0}));
}

TEST_F(ScopeLimitsTest, DeniedCallsListNoLimits) {
  v1::CheckResponse resp;
  Evaluation eval = Evaluate(Req("gone", R"({"amount": 1})"), &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_TRUE(eval.checks.empty());
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.rule(), "tools.gone");

  resp.Clear();
  eval = Evaluate(Req("unlisted", R"({"amount": 1})"), &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_EQ(resp.rule(), "default");

  // A caller refused by the grant's peers consumes nothing either.
  resp.Clear();
  eval = Evaluate(Req("read", R"({"amount": 1})", "walled"), &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_TRUE(eval.checks.empty());
  EXPECT_EQ(resp.rule(), "grants.walled.peers");
}

TEST_F(ScopeLimitsTest, ACounterSharedByTwoPlacesIsCheckedOnceByTheFirst) {
  v1::CheckResponse resp;
  std::vector<std::string> trace;
  const Evaluation eval = Evaluate(Req("note", R"({"amount": 5})"), &resp, &trace);
  ASSERT_FALSE(eval.final);
  EXPECT_EQ(RuleIds(eval), (std::vector<std::string>{"tools.note.limits[0]", "limits[1]"}));
  EXPECT_EQ(eval.costs, (std::vector<int64_t>{2, 5}));
  bool traced = false;
  for (const std::string& line : trace) {
    traced |= line == "limit calls at limits[0]: already checked for this call";
  }
  EXPECT_TRUE(traced);
}

TEST_F(ScopeLimitsTest, AnInvalidCostDeniesWithAViolation) {
  struct Case {
    const char* args;
    const char* got;
  } cases[] = {
      {R"({})", nullptr},
      {R"({"amount": -5})", "got -5"},
      {R"({"amount": 10.5})", "got 10.5"},
      {R"({"amount": "100"})", "got a string"},
      {R"({"amount": 20000})", "got 20000"},
  };
  for (const Case& c : cases) {
    v1::CheckResponse resp;
    const Evaluation eval = Evaluate(Req("charge", c.args), &resp);
    EXPECT_TRUE(eval.final) << c.args;
    EXPECT_TRUE(eval.checks.empty()) << c.args;
    EXPECT_TRUE(eval.specs.empty()) << c.args;
    EXPECT_EQ(resp.decision(), v1::DECISION_DENY) << c.args;
    EXPECT_EQ(resp.rule(), "limits[1]") << c.args;
    ASSERT_EQ(resp.violations_size(), 1) << c.args;
    EXPECT_EQ(resp.violations(0).path(), "/amount");
    EXPECT_TRUE(HasSubstr(resp.reason(), "arguments of \"charge\": /amount ")) << c.args;
    EXPECT_TRUE(HasSubstr(resp.reason(), "(the cost of limit limits[1])")) << c.args;
    if (c.got != nullptr) {
      EXPECT_TRUE(HasSubstr(resp.reason(), c.got)) << resp.reason();
      EXPECT_TRUE(HasSubstr(resp.violations(0).message(),
                            std::string("must be a whole number from 0 to 10000 (the cost of "
                                        "limit limits[1]), ") +
                                c.got));
    } else {
      EXPECT_TRUE(HasSubstr(resp.reason(), "/amount is required: a whole number from 0 to 10000"));
    }
  }
}

TEST_F(ScopeLimitsTest, EveryInvalidCostIsAViolation) {
  auto p = MustLoad(R"(version: "1"
tools:
  t:
    limits:
      - {window: minute, max: 10, cost_from: /a}
      - {window: minute, max: 10, cost_from: /b}
      - {window: minute, max: 10, cost_from: /c}
)");
  ASSERT_TRUE(p);
  v1::CheckResponse resp;
  const Evaluation eval = Engine().Evaluate(*p, Req("t", R"({"b": 3})"), "", &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.rule(), "tools.t.limits[0]");
  ASSERT_EQ(resp.violations_size(), 2);
  EXPECT_EQ(resp.violations(0).path(), "/a");
  EXPECT_EQ(resp.violations(1).path(), "/c");
  EXPECT_TRUE(HasSubstr(resp.reason(), "(and 1 more)"));
}

TEST_F(ScopeLimitsTest, ApprovalComesAfterTheCostIsKnownToBeValid) {
  v1::CheckResponse resp;
  Evaluation eval = Evaluate(Req("ask", R"({"amount": "lots"})"), &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.rule(), "limits[1]");

  resp.Clear();
  const v1::CheckRequest req = Req("ask", R"({"amount": 300})");
  eval = Evaluate(req, &resp);
  EXPECT_TRUE(eval.final);
  EXPECT_EQ(resp.decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_TRUE(eval.checks.empty());
  EXPECT_EQ(resp.violations_size(), 0);
  // Redeemed: every limit of the call, at its cost.
  Engine().Approve(eval, req, &resp);
  EXPECT_FALSE(eval.final);
  EXPECT_EQ(RuleIds(eval), (std::vector<std::string>{"limits[0]", "limits[1]"}));
  EXPECT_EQ(eval.costs, (std::vector<int64_t>{1, 300}));
  EXPECT_EQ(eval.checks[1].cost, 300);
}

AcquireResult Answer(const Evaluation& eval, size_t full, int64_t remaining_of_full) {
  AcquireResult r;
  r.admitted = full >= eval.specs.size();
  for (size_t i = 0; i < eval.specs.size(); ++i) {
    LimitOutcome o;
    o.has_room = i != full;
    o.remaining = i == full ? remaining_of_full : 7;
    o.retry_after_ms = i == full ? 90'000 : 0;
    o.reset_after_ms = 60'000;
    r.outcomes.push_back(o);
  }
  return r;
}

TEST_F(ScopeLimitsTest, ATopLevelRefusalIsNamedByItsRule) {
  const v1::CheckRequest req = Req("charge", R"({"amount": 2000})");
  v1::CheckResponse resp;
  std::vector<std::string> trace;
  const Evaluation eval = Evaluate(req, &resp, &trace);
  ASSERT_EQ(eval.specs.size(), 3u);  // charges, calls, spend.
  Engine().Complete(eval, Answer(eval, 2, 1000), &resp, &trace);
  EXPECT_EQ(resp.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(resp.rule(), "limits[1]");
  EXPECT_EQ(resp.reason(),
            "rate limit reached: counter \"spend\" allows 10000 per 1d (sliding_window, scope "
            "grant); this call needs 2000, 1000 remaining; retry in 1m30s");
  ASSERT_EQ(resp.limits_size(), 3);
  EXPECT_EQ(resp.limits(2).counter(), "spend");
  EXPECT_EQ(resp.limits(2).max(), 10000);
  EXPECT_EQ(resp.limits(2).remaining(), 1000);
  EXPECT_EQ(resp.retry_after().seconds(), 90);
  bool traced = false;
  for (const std::string& line : trace) {
    traced |= line ==
              "limit spend at limits[1] (10000 per 1d (sliding_window, scope grant)), cost 2000: "
              "full, 1000 remaining, retry in 1m30s";
  }
  EXPECT_TRUE(traced);
}

TEST_F(ScopeLimitsTest, AnEntryRefusalKeepsTheEntrysRuleAndWords) {
  const v1::CheckRequest req = Req("charge", R"({"amount": 2000})");
  v1::CheckResponse resp;
  const Evaluation eval = Evaluate(req, &resp);
  Engine().Complete(eval, Answer(eval, 0, 0), &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(resp.rule(), "tools.charge");
  EXPECT_EQ(
      resp.reason(),
      "rate limit reached: counter \"charges\" allows 5 per 1m (sliding_window, scope grant); "
      "retry in 1m30s");
}

TEST_F(ScopeLimitsTest, AnEntrysOwnCostIsShown) {
  const v1::CheckRequest req = Req("big", R"({"amount": 1})");
  v1::CheckResponse resp;
  const Evaluation eval = Evaluate(req, &resp);
  ASSERT_EQ(eval.costs.front(), 4);
  Engine().Complete(eval, Answer(eval, 0, 3), &resp);
  EXPECT_EQ(resp.rule(), "tools.big");
  EXPECT_TRUE(HasSubstr(resp.reason(), "counter \"big#0\" allows 10 per 1m"));
  EXPECT_TRUE(HasSubstr(resp.reason(), "this call needs 4, 3 remaining"));
}

TEST_F(ScopeLimitsTest, SectionRefusalsAreNamedByTheirRules) {
  const v1::CheckRequest req = Req("read", R"({"amount": 1})", "ci-bot", "pay");
  v1::CheckResponse resp;
  Evaluation eval = Evaluate(req, &resp);
  ASSERT_EQ(RuleIds(eval),
            (std::vector<std::string>{"grants.ci-bot.limits[0]", "servers.pay.limits[0]",
                                      "limits[0]", "limits[1]"}));
  std::vector<std::string> trace;
  Engine().Complete(eval, Answer(eval, 0, 5), &resp, &trace);
  ASSERT_FALSE(trace.empty());
  // A counter named after its place is not named twice.
  EXPECT_EQ(trace[0],
            "limit grants.ci-bot.limits[0] (1000 per 1h (sliding_window, scope grant)), cost 10: "
            "full, 5 remaining, retry in 1m30s");
  EXPECT_EQ(resp.rule(), "grants.ci-bot.limits[0]");
  EXPECT_TRUE(HasSubstr(resp.reason(), "counter \"grants.ci-bot.limits[0]\" allows 1000 per 1h"));
  EXPECT_TRUE(HasSubstr(resp.reason(), "this call needs 10, 5 remaining"));

  resp.Clear();
  eval = Evaluate(req, &resp);
  Engine().Complete(eval, Answer(eval, 1, 0), &resp);
  EXPECT_EQ(resp.rule(), "servers.pay.limits[0]");
  EXPECT_EQ(resp.reason(),
            "rate limit reached: counter \"servers.pay.limits[0]\" allows 100 per 1h "
            "(sliding_window, scope global); retry in 1m30s");
}

TEST_F(ScopeLimitsTest, AdmittedCallsKeepTheEntrysRuleAndReason) {
  const v1::CheckRequest req = Req("read", R"({"amount": 1})");
  v1::CheckResponse resp;
  const Evaluation eval = Evaluate(req, &resp);
  Engine().Complete(eval, Answer(eval, 99, 0), &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.rule(), "tools.read");
  EXPECT_EQ(resp.limits_size(), 2);
}

TEST_F(ScopeLimitsTest, AnAnswerOfTheWrongSizeIsAStoreFailure) {
  const v1::CheckRequest req = Req("read", R"({"amount": 1})");
  v1::CheckResponse resp;
  const Evaluation eval = Evaluate(req, &resp);
  AcquireResult r;
  r.admitted = true;
  r.outcomes.resize(1);
  Engine().Complete(eval, r, &resp);
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_TRUE(HasSubstr(resp.reason(), "malformed answer"));
}

}  // namespace
}  // namespace toolgate
