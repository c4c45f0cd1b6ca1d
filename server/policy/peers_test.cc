// Tests of `grants.<name>.peers`: the accepted forms, the compiled rule, and
// the located error of every invalid form.
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/policy/policy.h"
#include "server/policy/policy_testing.h"

namespace toolgate {
namespace {

std::string GrantWithPeers(const std::string& peers_yaml) {
  return "version: \"1\"\ngrants:\n  ci-bot:\n    peers: " + peers_yaml + "\n";
}

TEST(GrantPeers, ListOfGlobsIsCompiledIntoTheGrantsRule) {
  auto p = MustLoad(R"(version: "1"
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/sa/ci-bot", "spiffe://example.org/ns/ci/*"]
    tools: {run_command: {}}
  intern:
    default: deny
)");
  ASSERT_NE(p, nullptr);
  const PeerRule* rule = p->GrantPeers("ci-bot");
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->rule_id, "grants.ci-bot.peers");
  ASSERT_EQ(rule->patterns.size(), 2u);
  EXPECT_EQ(rule->patterns[1], "spiffe://example.org/ns/ci/*");
  // A section without peers, and a grant without a section: no rule.
  EXPECT_EQ(p->GrantPeers("intern"), nullptr);
  EXPECT_EQ(p->GrantPeers("nobody"), nullptr);
  EXPECT_EQ(p->GrantPeers(""), nullptr);
}

TEST(GrantPeers, BlockListJsonAndASectionWithOnlyPeersAreAccepted) {
  auto yaml = MustLoad(R"(version: "1"
grants:
  ci-bot:
    peers:
      - ci.example.org
      - "*.ci.example.org"
)");
  ASSERT_NE(yaml, nullptr);
  ASSERT_NE(yaml->GrantPeers("ci-bot"), nullptr);
  EXPECT_EQ(yaml->GrantPeers("ci-bot")->patterns.size(), 2u);
  auto json = MustLoad(
      R"({"version": "1", "grants": {"ci-bot": {"peers": ["ci.example.org", "*.ci.example.org"]}}})",
      "p.json");
  ASSERT_NE(json, nullptr);
  ASSERT_NE(json->GrantPeers("ci-bot"), nullptr);
  EXPECT_EQ(json->GrantPeers("ci-bot")->patterns, yaml->GrantPeers("ci-bot")->patterns);
}

TEST(GrantPeers, MatchIsAGlobAndNeverMatchesNoIdentity) {
  PeerRule rule{"grants.g.peers", {"spiffe://example.org/ns/ci/*", "exact-cn"}};
  ASSERT_NE(rule.Match("spiffe://example.org/ns/ci/sa/ci-bot"), nullptr);
  EXPECT_EQ(*rule.Match("spiffe://example.org/ns/ci/sa/ci-bot"), "spiffe://example.org/ns/ci/*");
  EXPECT_EQ(*rule.Match("exact-cn"), "exact-cn");
  EXPECT_EQ(rule.Match("spiffe://example.org/ns/prod/sa/agent-7"), nullptr);
  EXPECT_EQ(rule.Match("exact-cn2"), nullptr);
  EXPECT_EQ(rule.Match(""), nullptr);
  PeerRule any{"grants.g.peers", {"*"}};
  EXPECT_NE(any.Match("anyone"), nullptr);
  EXPECT_EQ(any.Match(""), nullptr) << "a caller without a certificate matches nothing";
  PeerRule one{"grants.g.peers", {"agent-?"}};
  EXPECT_NE(one.Match("agent-7"), nullptr);
  EXPECT_EQ(one.Match("agent-17"), nullptr);
}

TEST(GrantPeers, NotAListIsALocatedError) {
  const std::string e = LoadError(GrantWithPeers("spiffe://example.org/ci"));
  EXPECT_TRUE(HasSubstr(
      e, "p.yaml:4:12: grants.ci-bot.peers must be a list of peer patterns, got a scalar"));
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers("{a: b}")),
                        "grants.ci-bot.peers must be a list of peer patterns, got a map"));
}

TEST(GrantPeers, EmptyListIsAnError) {
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers("[]")),
                        "p.yaml:4:12: grants.ci-bot.peers must name at least one peer pattern"));
}

TEST(GrantPeers, EachPatternIsANonEmptyStringOfValidText) {
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers("[ok, \"\"]")),
                        "p.yaml:4:17: grants.ci-bot.peers[1] must not be empty"));
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers("[[a]]")),
                        "grants.ci-bot.peers[0] must be a string, got a list"));
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers("[\"a\\tb\"]")),
                        "grants.ci-bot.peers[0] \"a\\tb\": control character U+0009 at byte 1"));
  EXPECT_TRUE(HasSubstr(
      LoadError(GrantWithPeers("[\"" + std::string(kMaxPeerPatternBytes + 1, 'x') + "\"]")),
      "grants.ci-bot.peers[0] is 2049 bytes, longer than 2048"));
  // Exactly at the bound loads.
  EXPECT_NE(MustLoad(GrantWithPeers("[\"" + std::string(kMaxPeerPatternBytes, 'x') + "\"]")),
            nullptr);
}

TEST(GrantPeers, DuplicatePatternsAreReported) {
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers("[a, b, a]")),
                        "p.yaml:4:19: grants.ci-bot.peers[2] \"a\" is listed more than once"));
}

TEST(GrantPeers, TheListIsBounded) {
  std::string at_bound = "[", over = "[";
  for (size_t i = 0; i < kMaxPeerPatterns; ++i) {
    absl::StrAppend(&at_bound, i == 0 ? "" : ", ", "p", i);
    absl::StrAppend(&over, "p", i, ", ");
  }
  at_bound += "]";
  over += "last]";
  EXPECT_NE(MustLoad(GrantWithPeers(at_bound)), nullptr);
  EXPECT_TRUE(HasSubstr(LoadError(GrantWithPeers(over)),
                        "grants.ci-bot.peers lists 257 patterns, more than 256"));
}

TEST(GrantPeers, OnlyGrantSectionsTakePeers) {
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nservers:\n  github:\n    peers: [a]\n"),
                        "unknown key \"peers\" in servers.github"));
}

TEST(GrantPeers, EveryErrorIsReportedAtOnce) {
  const std::string e = LoadError(R"(version: "1"
grants:
  a: {peers: []}
  b: {peers: ["", x, x]}
)");
  EXPECT_TRUE(HasSubstr(e, "grants.a.peers must name at least one"));
  EXPECT_TRUE(HasSubstr(e, "grants.b.peers[0] must not be empty"));
  EXPECT_TRUE(HasSubstr(e, "grants.b.peers[2] \"x\" is listed more than once"));
}

}  // namespace
}  // namespace toolgate
