// Tests of the limit keys beyond a counter's definition (`cost`,
// `cost_from`, `settle`), of `limits` lists over a whole scope (the
// policy's top level, `servers.<name>`, `grants.<name>`), of each limit's
// rule id, and of every error they can give.
#include <string>

#include "gtest/gtest.h"
#include "server/policy/loader.h"
#include "server/policy/policy.h"
#include "server/policy/policy_testing.h"

namespace toolgate {
namespace {

// The only limit of tool "t", whose limit is `{window: minute, <fields>}`.
LimitSpec LimitOfT(const std::string& fields) {
  auto p = MustLoad("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: minute, " +
                    fields + "}\n");
  if (p == nullptr) return {};
  const ToolRule& r = p->Find("t");
  EXPECT_EQ(r.limits.size(), 1u);
  return r.limits.empty() ? LimitSpec{} : r.limits[0];
}

std::string LimitErrorOfT(const std::string& fields) {
  return LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: minute, " + fields +
                   "}\n");
}

TEST(LimitCost, DefaultsToOneWithoutSettlement) {
  const LimitSpec l = LimitOfT("max: 5");
  EXPECT_EQ(l.cost, 1);
  EXPECT_TRUE(l.cost_from.empty());
  EXPECT_TRUE(l.cost_path.empty());
  EXPECT_FALSE(l.settle);
  EXPECT_EQ(l.rule_id, "tools.t.limits[0]");
}

TEST(LimitCost, FixedCostUpToTheCapacity) {
  EXPECT_EQ(LimitOfT("max: 5, cost: 5").cost, 5);
  EXPECT_EQ(LimitOfT("max: 5, cost: 2").cost, 2);
  // A token bucket's capacity is its burst.
  EXPECT_EQ(LimitOfT("max: 5, algorithm: token_bucket, burst: 20, cost: 20").cost, 20);
}

TEST(LimitCost, CostErrors) {
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost: 0"),
                        "p.yaml:5:40: tools.t.limits[0].cost must be a positive integer, got 0"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost: -1"),
                        "tools.t.limits[0].cost must be a positive integer, got -1"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost: 1.5"),
                        "tools.t.limits[0].cost must be a positive integer, got \"1.5\""));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost: \"2\""),
                        "tools.t.limits[0].cost must be a positive integer, got \"2\""));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost: 6"),
                        "p.yaml:5:40: tools.t.limits[0].cost 6 is more than the limit's max (5): "
                        "no call could ever be admitted"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 50, algorithm: token_bucket, burst: 10, cost: 11"),
                        "tools.t.limits[0].cost 11 is more than the limit's burst (10)"));
}

TEST(LimitCost, CostFromIsAJsonPointer) {
  LimitSpec l = LimitOfT("max: 10000, cost_from: /amount");
  EXPECT_EQ(l.cost_from, "/amount");
  ASSERT_EQ(l.cost_path.size(), 1u);
  EXPECT_EQ(l.cost_path[0], "amount");

  // RFC 6901: "~1" is "/", "~0" is "~", empty tokens and array indexes.
  l = LimitOfT("max: 10, cost_from: \"/a~1b/~0c/~01//3\"");
  ASSERT_EQ(l.cost_path.size(), 5u);
  EXPECT_EQ(l.cost_path[0], "a/b");
  EXPECT_EQ(l.cost_path[1], "~c");
  EXPECT_EQ(l.cost_path[2], "~1");
  EXPECT_EQ(l.cost_path[3], "");
  EXPECT_EQ(l.cost_path[4], "3");
  EXPECT_EQ(l.cost, 1);  // Unused with cost_from.

  l = LimitOfT("max: 10, cost_from: /");
  ASSERT_EQ(l.cost_path.size(), 1u);
  EXPECT_EQ(l.cost_path[0], "");
}

TEST(LimitCost, CostFromErrors) {
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: amount"),
                        "p.yaml:5:45: tools.t.limits[0].cost_from must be a JSON Pointer into the "
                        "arguments starting with \"/\" (e.g. /amount), got \"amount\""));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: \"\""),
                        "tools.t.limits[0].cost_from must be a JSON Pointer"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: [a]"),
                        "tools.t.limits[0].cost_from must be a string, got a list"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: /a~2"),
                        "tools.t.limits[0].cost_from \"/a~2\": \"~\" at byte 2 must be followed "
                        "by 0 or 1 (\"~0\" is \"~\", \"~1\" is \"/\")"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: /a~"),
                        "\"~\" at byte 2 must be followed by 0 or 1"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: \"/a\\tb\""),
                        "tools.t.limits[0].cost_from \"/a\\tb\": control character U+0009"));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost: 1, cost_from: /a"),
                        "p.yaml:5:54: tools.t.limits[0]: set cost or cost_from, not both"));
  // Bounds: length and depth.
  const std::string long_pointer = "/" + std::string(kMaxCostFromBytes, 'a');
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: " + long_pointer),
                        "tools.t.limits[0].cost_from is 1025 bytes, longer than 1024"));
  std::string deep;
  for (size_t i = 0; i <= kMaxCostFromTokens; ++i) deep += "/a";
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, cost_from: " + deep),
                        "tools.t.limits[0].cost_from has 257 reference tokens, more than 256"));
  std::string deepest;
  for (size_t i = 0; i < kMaxCostFromTokens; ++i) deepest += "/a";
  EXPECT_EQ(LimitOfT("max: 5, cost_from: " + deepest).cost_path.size(), kMaxCostFromTokens);
}

TEST(LimitSettle, RequiredOrNone) {
  EXPECT_TRUE(LimitOfT("max: 5, settle: required").settle);
  EXPECT_FALSE(LimitOfT("max: 5, settle: none").settle);
  EXPECT_TRUE(
      HasSubstr(LimitErrorOfT("max: 5, settle: yes"),
                "p.yaml:5:42: tools.t.limits[0].settle must be required or none, got \"yes\""));
  EXPECT_TRUE(HasSubstr(LimitErrorOfT("max: 5, settle: {a: 1}"),
                        "tools.t.limits[0].settle must be a string, got a map"));
}

constexpr char kScopes[] = R"(version: "1"
limits:
  - {counter: calls, window: minute, max: 60}
  - {window: day, max: 10000, cost_from: /amount, settle: required}
tools:
  a:
    limits:
      - {window: minute, max: 5}
      - {window: minute, max: 7, cost: 2}
servers:
  github:
    limits:
      - {window: minute, max: 30}
    tools:
      b:
        limits:
          - {window: minute, max: 3}
grants:
  ci-bot:
    limits:
      - {window: hour, max: 100, scope: global}
      - {counter: calls, window: minute, max: 60, cost: 3}
)";

TEST(ScopeLimits, EveryPlaceHasItsListAndRuleIds) {
  auto p = MustLoad(kScopes);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->limits().size(), 2u);
  EXPECT_EQ(p->limits()[0].rule_id, "limits[0]");
  EXPECT_EQ(p->limits()[0].counter, "calls");
  EXPECT_EQ(p->limits()[1].rule_id, "limits[1]");
  // An unnamed counter is named after its place.
  EXPECT_EQ(p->limits()[1].counter, "limits[1]");
  EXPECT_EQ(p->limits()[1].cost_from, "/amount");
  EXPECT_TRUE(p->limits()[1].settle);

  const ToolRule& a = p->Find("a");
  ASSERT_EQ(a.limits.size(), 2u);
  EXPECT_EQ(a.limits[0].rule_id, "tools.a.limits[0]");
  EXPECT_EQ(a.limits[0].counter, "a#0");  // As before.
  EXPECT_EQ(a.limits[1].rule_id, "tools.a.limits[1]");
  EXPECT_EQ(a.limits[1].cost, 2);

  Resolution r = p->Resolve("b", "github", "ci-bot");
  ASSERT_EQ(r.limits->size(), 1u);
  EXPECT_EQ((*r.limits)[0].rule_id, "servers.github.tools.b.limits[0]");
  EXPECT_EQ((*r.limits)[0].counter, "servers.github.tools.b#0");
  ASSERT_EQ(r.server_limits->size(), 1u);
  EXPECT_EQ((*r.server_limits)[0].rule_id, "servers.github.limits[0]");
  EXPECT_EQ((*r.server_limits)[0].counter, "servers.github.limits[0]");
  ASSERT_EQ(r.grant_limits->size(), 2u);
  EXPECT_EQ((*r.grant_limits)[0].rule_id, "grants.ci-bot.limits[0]");
  EXPECT_EQ((*r.grant_limits)[0].scope, Scope::kGlobal);
  EXPECT_EQ((*r.grant_limits)[1].counter, "calls");
  EXPECT_EQ((*r.grant_limits)[1].cost, 3);  // A shared counter, its own cost.
  EXPECT_EQ(r.policy_limits, &p->limits());
  EXPECT_TRUE(r.HasLimits());

  // Outside the sections: only the top level.
  r = p->Resolve("zzz", "other", "someone");
  EXPECT_TRUE(r.limits->empty());
  EXPECT_TRUE(r.server_limits->empty());
  EXPECT_TRUE(r.grant_limits->empty());
  EXPECT_EQ(r.policy_limits->size(), 2u);
  EXPECT_TRUE(r.HasLimits());
}

TEST(ScopeLimits, NoListsNoLimits) {
  auto p = MustLoad("version: \"1\"\ntools:\n  a: {}\n");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->limits().empty());
  const Resolution r = p->Resolve("a", "s", "g");
  EXPECT_FALSE(r.HasLimits());
  EXPECT_FALSE(Resolution{}.HasLimits());
}

TEST(ScopeLimits, Errors) {
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nlimits: {window: minute, max: 1}\n"),
                        "p.yaml:2:9: limits must be a list, got a map"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nlimits:\n  - {max: 1}\n"),
                        "p.yaml:3:5: limits[0]: window is required"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nlimits:\n  - {window: 1m, max: 1, cost: 2}\n"),
                        "limits[0].cost 2 is more than the limit's max (1)"));
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\nlimits:\n  - {counter: c, window: 1m, max: 1}\n  - {counter: c, "
                "window: 1m, max: 1}\n"),
      "p.yaml:4:5: limits names counter \"c\" more than once"));
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\ngrants:\n  g:\n    limits:\n      - {window: 1m, max: 1, tools: "
                "x}\n"),
      "p.yaml:5:30: unknown key \"tools\" in grants.g.limits[0] (expected one of: counter, window, "
      "max, scope, algorithm, burst, cost, cost_from, settle)"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nservers:\n  s:\n    limits: 3\n"),
                        "p.yaml:4:13: servers.s.limits must be a list, got a scalar"));
  EXPECT_TRUE(HasSubstr(
      LoadError(
          "version: \"1\"\nservers:\n  s:\n    limits:\n      - {counter: c, window: 1m, max: "
          "1}\n      - {counter: c, window: 1m, max: 1}\n"),
      "p.yaml:6:9: servers.s.limits names counter \"c\" more than once"));
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\ngrants:\n  g:\n    limits:\n      - {window: 1m, max: 1, "
                "cost_from: x}\n"),
      "grants.g.limits[0].cost_from must be a JSON Pointer"));
}

TEST(ScopeLimits, ASharedCounterHasOneDefinition) {
  const std::string e = LoadError(R"(version: "1"
limits:
  - {counter: calls, window: minute, max: 60}
tools:
  a:
    limits:
      - {counter: calls, window: minute, max: 61}
grants:
  g:
    limits:
      - {counter: calls, window: hour, max: 60}
)");
  // Entries are checked first, then the top level, then sections.
  EXPECT_TRUE(HasSubstr(e,
                        "p.yaml:3:5: counter \"calls\" is defined here as 60 per 1m "
                        "(sliding_window, scope grant) but at p.yaml:7:9 as 61 per 1m "
                        "(sliding_window, scope grant); places sharing a counter must define "
                        "it the same way"));
  EXPECT_TRUE(HasSubstr(e,
                        "p.yaml:11:9: counter \"calls\" is defined here as 60 per 1h "
                        "(sliding_window, scope grant) but at p.yaml:7:9 as 61 per 1m"));
  // Cost, cost_from and settle are the place's own.
  EXPECT_NE(MustLoad(R"(version: "1"
limits:
  - {counter: calls, window: minute, max: 60, settle: required}
tools:
  a:
    limits:
      - {counter: calls, window: minute, max: 60, cost: 2}
grants:
  g:
    limits:
      - {counter: calls, window: minute, max: 60, cost_from: /n}
)"),
            nullptr);
}

TEST(ScopeLimits, TopLevelLimitsComeFromOneFile) {
  auto p = LoadPolicyFromSources({
      {"a.yaml", "version: \"1\"\nlimits:\n  - {window: minute, max: 60}\n"},
      {"b.yaml", "version: \"1\"\ntools:\n  t: {}\nlimits:\n  - {window: hour, max: 600}\n"},
  });
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(HasSubstr(std::string(p.status().message()),
                        "b.yaml:5:3: limits (top level) are already set at a.yaml:3:3; set them "
                        "in one file of the policy"));
  // One file's list, another's tools: fine.
  p = LoadPolicyFromSources({
      {"a.yaml", "version: \"1\"\nlimits:\n  - {window: minute, max: 60}\n"},
      {"b.yaml", "version: \"1\"\ntools:\n  t: {}\n"},
  });
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->limits().size(), 1u);
}

TEST(ScopeLimits, JsonAsYaml) {
  auto p = MustLoad(R"({"version": "1",
  "limits": [{"window": "day", "max": 10000, "cost_from": "/amount"}],
  "grants": {"g": {"limits": [{"window": 60, "max": 5, "cost": 5, "settle": "required"}]}}})",
                    "p.json");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->limits().size(), 1u);
  EXPECT_EQ(p->limits()[0].cost_path, std::vector<std::string>{"amount"});
  const Resolution r = p->Resolve("t", "", "g");
  ASSERT_EQ(r.grant_limits->size(), 1u);
  EXPECT_EQ((*r.grant_limits)[0].cost, 5);
  EXPECT_TRUE((*r.grant_limits)[0].settle);
}

}  // namespace
}  // namespace toolgate
