// Tests of `grants.<name>.peers` as a call is decided: the caller's identity
// (DecisionTask::peer) against the grant's patterns, through the Decider with
// the in-process counter store, and in Explain.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/decider/decider.h"
#include "server/decider/explain.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-peers"
default: deny
tools:
  search_web:
    limits:
      - {counter: web, window: 1m, max: 2}
  delete_repository: {action: deny, reason: "never"}
  run_command: {category: execute, risk: high}
classes:
  high_risk:
    min_risk: high
    action: require_approval
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/sa/ci-bot", "spiffe://example.org/ns/build/*"]
    bypass_classes: [high_risk]
    default: allow
  open:
    default: allow
)";

constexpr char kCiBot[] = "spiffe://example.org/ns/ci/sa/ci-bot";
constexpr char kAgent[] = "spiffe://example.org/ns/prod/sa/agent-7";

class PeersTest : public ::testing::Test {
 protected:
  PeersTest() : store_(&clock_), decider_(&store_, Engine(), ArgsLimits()) {
    auto p = LoadPolicyFromSources({{"p.yaml", kPolicy}});
    EXPECT_TRUE(p.ok()) << p.status();
    policy_ = *p;
  }

  v1::CheckResponse Decide(const std::string& tool, const std::string& grant,
                           const std::string& peer) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    v1::CheckResponse resp;
    DecisionTask task;
    task.policy = policy_;
    task.request = &req;
    task.response = &resp;
    task.peer = peer;
    bool done = false;
    decider_.Decide(task, [&done] { done = true; });
    EXPECT_TRUE(done);
    return resp;
  }

  v1::ExplainResponse Explain(const std::string& tool, const std::string& grant,
                              const std::string& peer) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    absl::StatusOr<v1::ExplainResponse> got = absl::UnknownError("not called");
    ExplainCheck(
        decider_, policy_, req, [&](absl::StatusOr<v1::ExplainResponse> r) { got = std::move(r); },
        peer);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::ExplainResponse();
  }

  ManualClock clock_;
  MemoryCounterStore store_;
  Decider decider_;
  std::shared_ptr<const Policy> policy_;
};

TEST_F(PeersTest, AnAllowedPeerIsDecidedAsWithoutThePeersRule) {
  // The grant's own default, its class bypass and the general entries apply
  // exactly as for a grant without `peers`.
  v1::CheckResponse r = Decide("run_command", "ci-bot", kCiBot);
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(r.rule(), "tools.run_command");
  r = Decide("delete_repository", "ci-bot", kCiBot);
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_EQ(r.rule(), "tools.delete_repository");
  EXPECT_EQ(r.reason(), "never");
  r = Decide("unlisted", "ci-bot", "spiffe://example.org/ns/build/sa/runner");  // the glob
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(r.rule(), "grants.ci-bot.default");
  r = Decide("search_web", "ci-bot", kCiBot);
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(r.limits_size(), 1);
  EXPECT_EQ(r.limits(0).remaining(), 1);
}

TEST_F(PeersTest, AnotherPeerIsDeniedByTheRuleWithTheCallerNamed) {
  const v1::CheckResponse r = Decide("run_command", "ci-bot", kAgent);
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_EQ(r.rule(), "grants.ci-bot.peers");
  EXPECT_EQ(r.policy_version(), "rev-peers");
  EXPECT_EQ(r.reason(),
            "grant \"ci-bot\" may be asserted only by peers matching grants.ci-bot.peers; "
            "caller is \"spiffe://example.org/ns/prod/sa/agent-7\"");
  // A near miss of the glob is another peer too.
  EXPECT_EQ(Decide("run_command", "ci-bot", "spiffe://example.org/ns/buildx/sa/a").rule(),
            "grants.ci-bot.peers");
}

TEST_F(PeersTest, NoPeerIdentityIsDenied) {
  const v1::CheckResponse r = Decide("run_command", "ci-bot", "");
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_EQ(r.rule(), "grants.ci-bot.peers");
  EXPECT_EQ(r.reason(),
            "grant \"ci-bot\" may be asserted only by peers matching grants.ci-bot.peers; "
            "caller presented no client certificate");
}

TEST_F(PeersTest, ThePeersRuleComesBeforeEntriesAndClasses) {
  // Even a tool every caller is denied is refused by the peers rule first:
  // a refused caller learns nothing of the grant's entries.
  EXPECT_EQ(Decide("delete_repository", "ci-bot", kAgent).rule(), "grants.ci-bot.peers");
  EXPECT_EQ(Decide("no_such_tool", "ci-bot", kAgent).rule(), "grants.ci-bot.peers");
}

TEST_F(PeersTest, GrantsWithoutPeersIgnoreTheCaller) {
  for (const std::string& peer : {std::string(), std::string(kAgent), std::string(kCiBot)}) {
    v1::CheckResponse r = Decide("run_command", "open", peer);
    EXPECT_EQ(r.decision(), v1::DECISION_REQUIRE_APPROVAL) << peer;
    EXPECT_EQ(r.rule(), "classes.high_risk") << peer;
    r = Decide("unlisted", "open", peer);
    EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << peer;
    EXPECT_EQ(r.rule(), "grants.open.default") << peer;
    // A grant with no section at all.
    EXPECT_EQ(Decide("unlisted", "other", peer).rule(), "default") << peer;
  }
}

TEST_F(PeersTest, ARefusedCallConsumesNothing) {
  // search_web allows 2 a minute per grant; refused calls asserting ci-bot
  // must not use up ci-bot's quota.
  for (int i = 0; i < 5; ++i) {
    const v1::CheckResponse r = Decide("search_web", "ci-bot", i % 2 == 0 ? kAgent : "");
    EXPECT_EQ(r.decision(), v1::DECISION_DENY);
    EXPECT_EQ(r.limits_size(), 0);
  }
  EXPECT_EQ(store_.KeyCount(), 0u) << "no counter was even created";
  v1::CheckResponse r = Decide("search_web", "ci-bot", kCiBot);
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(r.limits_size(), 1);
  EXPECT_EQ(r.limits(0).remaining(), 1);
  r = Decide("search_web", "ci-bot", kCiBot);
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search_web", "ci-bot", kCiBot).decision(), v1::DECISION_RATE_LIMITED);
  // Still the peers rule, not the limit, for another caller once it is full.
  EXPECT_EQ(Decide("search_web", "ci-bot", kAgent).rule(), "grants.ci-bot.peers");
}

TEST_F(PeersTest, ExplainShowsThePeerStep) {
  v1::ExplainResponse e = Explain("run_command", "ci-bot", kCiBot);
  EXPECT_EQ(e.decision().decision(), v1::DECISION_ALLOW);
  EXPECT_THAT(e.steps(),
              Contains(HasSubstr("grants.ci-bot.peers: caller is \"" + std::string(kCiBot) +
                                 "\", matches \"" + kCiBot + "\"")));
  e = Explain("run_command", "ci-bot", kAgent);
  EXPECT_EQ(e.decision().decision(), v1::DECISION_DENY);
  EXPECT_EQ(e.decision().rule(), "grants.ci-bot.peers");
  EXPECT_THAT(e.steps(), Contains("grants.ci-bot.peers: caller is \"" + std::string(kAgent) +
                                  "\", matches none of 2 patterns"));
  // Without a peer (the default), Explain explains a caller without a certificate.
  e = Explain("run_command", "ci-bot", "");
  EXPECT_EQ(e.decision().rule(), "grants.ci-bot.peers");
  EXPECT_THAT(e.steps(), Contains("grants.ci-bot.peers: caller presented no client certificate, "
                                  "matches none of 2 patterns"));
  // A grant without peers has no peer step.
  e = Explain("run_command", "open", kAgent);
  EXPECT_THAT(e.steps(), ::testing::Not(Contains(HasSubstr(".peers"))));
}

TEST_F(PeersTest, APeerThatIsNotCleanTextIsEscapedInTheReason) {
  const v1::CheckResponse r = Decide("run_command", "ci-bot", std::string("evil\n\xff\"cn"));
  EXPECT_EQ(r.rule(), "grants.ci-bot.peers");
  EXPECT_THAT(r.reason(), HasSubstr("caller is \"evil\\n\\xff\\\"cn\""));
  // The reason stays one line of valid text, so the response serializes.
  std::string wire;
  EXPECT_TRUE(r.SerializeToString(&wire));
}

}  // namespace
}  // namespace toolgate
