// Tests of what the observers make of the caller's identity: the decision
// log records it, the shadow revision is evaluated for the same caller.
#include "server/service/observers.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/policy/loader.h"
#include "server/policy/registry.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::shared_ptr<const Policy> Load(const std::string& text) {
  auto p = LoadPolicyFromSources({{"p.yaml", text}});
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

constexpr char kActive[] = R"(version: "1"
revision: "active"
default: allow
)";

constexpr char kShadowWithPeers[] = R"(version: "1"
revision: "shadow"
default: allow
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
)";

// The lines written by a decision log, after Close().
std::vector<std::string> LogLines(const std::vector<std::string>& peers) {
  absl::Mutex mu;
  std::string text;
  DecisionLogOptions options;
  options.destination = "test";
  DecisionLog log(options, [&](absl::string_view lines) {
    absl::MutexLock lock(&mu);
    absl::StrAppend(&text, lines);
    return true;
  });
  DecisionLogObserver observer(&log);
  const std::shared_ptr<const Policy> policy = Load(kActive);
  v1::CheckRequest req;
  req.set_tool("t");
  req.set_grant("ci-bot");
  v1::CheckResponse resp;
  resp.set_decision(v1::DECISION_ALLOW);
  resp.set_rule("default");
  ShadowView shadow;
  for (const std::string& peer : peers) {
    observer.OnDecision(
        DecisionRecord{req, resp, *policy, false, shadow, absl::ZeroDuration(), peer});
  }
  log.Close();
  absl::MutexLock lock(&mu);
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

google::protobuf::Struct ParseLine(const std::string& line) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &s).ok()) << line;
  return s;
}

TEST(DecisionLogObserverPeer, ThePeerIsRecordedAndLeftOutWithoutOne) {
  const std::vector<std::string> lines =
      LogLines({"spiffe://example.org/ns/ci/sa/ci-bot", "", "cn\"with\nquote"});
  ASSERT_EQ(lines.size(), 3u);
  const google::protobuf::Struct with = ParseLine(lines[0]);
  ASSERT_EQ(with.fields().count("peer"), 1u) << lines[0];
  EXPECT_EQ(with.fields().at("peer").string_value(), "spiffe://example.org/ns/ci/sa/ci-bot");
  EXPECT_EQ(with.fields().at("grant").string_value(), "ci-bot");
  EXPECT_EQ(ParseLine(lines[1]).fields().count("peer"), 0u) << lines[1];
  EXPECT_THAT(lines[1], Not(HasSubstr("peer")));
  // Escaped like every other value: still one line, read back as written.
  EXPECT_EQ(ParseLine(lines[2]).fields().at("peer").string_value(), "cn\"with\nquote");
}

TEST(ShadowComparerPeer, TheShadowRevisionSeesTheSameCaller) {
  PolicyRegistry registry;
  const std::shared_ptr<const Policy> active = Load(kActive);
  registry.Activate(active);
  registry.SetShadow(Load(kShadowWithPeers));
  v1::CheckRequest req;
  req.set_tool("t");
  req.set_grant("ci-bot");
  const Engine engine;

  ShadowView allowed =
      ShadowComparer::Evaluate(registry, engine, *active, req, "spiffe://example.org/ns/ci/sa/a");
  ASSERT_NE(allowed.policy, nullptr);
  EXPECT_EQ(allowed.decision, v1::DECISION_ALLOW);
  EXPECT_EQ(allowed.rule, "default");

  ShadowView other = ShadowComparer::Evaluate(registry, engine, *active, req,
                                              "spiffe://example.org/ns/prod/sa/agent-7");
  EXPECT_EQ(other.decision, v1::DECISION_DENY);
  EXPECT_EQ(other.rule, "grants.ci-bot.peers");

  ShadowView none = ShadowComparer::Evaluate(registry, engine, *active, req, "");
  EXPECT_EQ(none.decision, v1::DECISION_DENY);
  EXPECT_EQ(none.rule, "grants.ci-bot.peers");

  // And the comparison counts the difference the peers rule makes.
  ShadowComparer comparer;
  v1::CheckResponse resp;
  resp.set_decision(v1::DECISION_ALLOW);
  resp.set_rule("default");
  comparer.OnDecision(DecisionRecord{req, resp, *active, false, allowed, absl::ZeroDuration(),
                                     "spiffe://example.org/ns/ci/sa/a"});
  comparer.OnDecision(DecisionRecord{req, resp, *active, false, other, absl::ZeroDuration(),
                                     "spiffe://example.org/ns/prod/sa/agent-7"});
  EXPECT_EQ(comparer.compared(), 2u);
  EXPECT_EQ(comparer.differed(), 1u);
}

}  // namespace
}  // namespace toolgate
