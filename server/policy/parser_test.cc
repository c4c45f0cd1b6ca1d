// Tests of policy parsing: the accepted format (YAML and JSON alike), windows,
// and the located error message of every kind of invalid document.
#include "server/policy/parser.h"

#include <string>

#include "gtest/gtest.h"
#include "server/base/diagnostics.h"
#include "server/base/yaml_util.h"
#include "server/policy/loader.h"
#include "server/policy/policy.h"
#include "server/policy/policy_testing.h"

namespace toolgate {
namespace {

// The window (ms) of the only limit of tool "t" in a policy whose limit has
// the given `window:` value (YAML text).
absl::StatusOr<int64_t> WindowOf(const std::string& window_yaml) {
  auto p = Load("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: " + window_yaml +
                ", max: 1}\n");
  if (!p.ok()) return p.status();
  const ToolRule& r = (*p)->Find("t");
  if (r.limits.size() != 1) return absl::InternalError("expected one limit");
  return r.limits[0].window_ms;
}

// ---------------------------------------------------------------------------
// YAML and JSON are the same document.

void ExpectSameRule(const ToolRule& a, const ToolRule& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.rule_id, b.rule_id);
  EXPECT_EQ(a.action, b.action);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.args == nullptr, b.args == nullptr);
  ASSERT_EQ(a.limits.size(), b.limits.size()) << a.name;
  for (size_t i = 0; i < a.limits.size(); ++i) {
    EXPECT_TRUE(a.limits[i].SameDefinition(b.limits[i]))
        << a.name << ": " << a.limits[i].Describe() << " vs " << b.limits[i].Describe();
  }
}

TEST(PolicyFormat, YamlAndJsonGiveTheSamePolicy) {
  const std::string yaml = R"(version: "1"
revision: "r-1"
default: require_approval
tools:
  wait_for_background_task:
    limits:
      - counter: wait_rate
        window: minute
        max: 10
        scope: grant
  send_message:
    limits:
      - {counter: messages, window: 60, max: 30, burst: 10, algorithm: token_bucket}
      - {counter: messages_day, window: 1d, max: 500, scope: global, algorithm: fixed_window}
  delete_repository:
    action: deny
    reason: "Agents may not delete repositories"
  "github_*":
    action: require_approval
    reason: "GitHub writes need a human"
  run_command:
    args:
      type: object
      required: [command]
      properties:
        command: {type: string, maxLength: 200}
)";
  const std::string json = R"({
  "version": "1",
  "revision": "r-1",
  "default": "require_approval",
  "tools": {
    "wait_for_background_task": {
      "limits": [{"counter": "wait_rate", "window": "minute", "max": 10, "scope": "grant"}]
    },
    "send_message": {
      "limits": [
        {"counter": "messages", "window": 60, "max": 30, "burst": 10, "algorithm": "token_bucket"},
        {"counter": "messages_day", "window": "1d", "max": 500, "scope": "global",
         "algorithm": "fixed_window"}
      ]
    },
    "delete_repository": {"action": "deny", "reason": "Agents may not delete repositories"},
    "github_*": {"action": "require_approval", "reason": "GitHub writes need a human"},
    "run_command": {
      "args": {"type": "object", "required": ["command"],
               "properties": {"command": {"type": "string", "maxLength": 200}}}
    }
  }
})";
  auto py = MustLoad(yaml, "p.yaml");
  auto pj = MustLoad(json, "p.json");
  ASSERT_TRUE(py && pj);
  EXPECT_EQ(py->revision(), "r-1");
  EXPECT_EQ(pj->revision(), "r-1");
  EXPECT_EQ(py->exact_count(), 4u);
  EXPECT_EQ(pj->exact_count(), 4u);
  EXPECT_EQ(py->glob_count(), 1u);
  EXPECT_EQ(pj->glob_count(), 1u);
  ExpectSameRule(py->default_rule(), pj->default_rule());
  EXPECT_EQ(py->default_rule().action, Action::kRequireApproval);
  for (const char* tool : {"wait_for_background_task", "send_message", "delete_repository",
                           "github_push", "run_command", "unlisted"}) {
    SCOPED_TRACE(tool);
    ExpectSameRule(py->Find(tool), pj->Find(tool));
  }
  // And the values are the intended ones, not just equal.
  const ToolRule& send = pj->Find("send_message");
  ASSERT_EQ(send.limits.size(), 2u);
  EXPECT_EQ(send.limits[0].window_ms, 60'000);
  EXPECT_EQ(send.limits[0].burst, 10);
  EXPECT_EQ(send.limits[1].window_ms, 86'400'000);
  EXPECT_EQ(send.limits[1].scope, Scope::kGlobal);
}

TEST(PolicyFormat, SeedDocumentAsYamlEqualsSeedJson) {
  auto json = LoadPolicyFromPath(TOOLGATE_SOURCE_DIR "/examples/seed-policy.json");
  ASSERT_TRUE(json.ok()) << json.status();
  auto yaml = MustLoad(R"(version: "1"
default: deny
tools:
  wait_for_background_task:
    limits:
      - counter: wait_for_background_task_rate
        window: minute
        max: 10
        scope: grant
)");
  ASSERT_TRUE(yaml);
  ExpectSameRule((*json)->Find("wait_for_background_task"), yaml->Find("wait_for_background_task"));
  ExpectSameRule((*json)->default_rule(), yaml->default_rule());
}

// ---------------------------------------------------------------------------
// Windows.

TEST(PolicyWindow, Forms) {
  EXPECT_EQ(WindowOf("60").value_or(-1), 60'000);  // a number is seconds
  EXPECT_EQ(WindowOf("0.5").value_or(-1), 500);
  EXPECT_EQ(WindowOf("\"30s\"").value_or(-1), 30'000);
  EXPECT_EQ(WindowOf("30s").value_or(-1), 30'000);
  EXPECT_EQ(WindowOf("5m").value_or(-1), 300'000);
  EXPECT_EQ(WindowOf("1h").value_or(-1), 3'600'000);
  EXPECT_EQ(WindowOf("1d").value_or(-1), 86'400'000);
  EXPECT_EQ(WindowOf("500ms").value_or(-1), 500);
  EXPECT_EQ(WindowOf("second").value_or(-1), 1'000);
  EXPECT_EQ(WindowOf("minute").value_or(-1), 60'000);
  EXPECT_EQ(WindowOf("hour").value_or(-1), 3'600'000);
  EXPECT_EQ(WindowOf("day").value_or(-1), 86'400'000);
  // Same in JSON.
  auto p = MustLoad(R"({"version": "1", "tools": {"t": {"limits": [{"window": 60, "max": 1},
      {"counter": "c2", "window": "5m", "max": 1}]}}})",
                    "p.json");
  ASSERT_TRUE(p);
  ASSERT_EQ(p->Find("t").limits.size(), 2u);
  EXPECT_EQ(p->Find("t").limits[0].window_ms, 60'000);
  EXPECT_EQ(p->Find("t").limits[1].window_ms, 300'000);
}

TEST(PolicyWindow, SeveralCountsAddUp) {
  EXPECT_EQ(WindowOf("1h30m").value_or(-1), 5'400'000);
  EXPECT_EQ(WindowOf("\"1m500ms\"").value_or(-1), 60'500);
  EXPECT_FALSE(WindowOf("30d24h1ms").ok());
}

TEST(PolicyWindow, UnknownWindow) {
  const std::string msg = LoadError(R"(version: "1"
tools:
  t:
    limits:
      - counter: c
        window: fortnight
        max: 3
)");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:6:17: tools.t.limits[0].window: unknown window \"fortnight\""));
  EXPECT_EQ(CountLines(msg), 1u);
}

TEST(PolicyWindow, ZeroAndTooLongWindows) {
  std::string msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: 0, max: 1}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:18: tools.t.limits[0].window: window \"0\" must be positive"));
  msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: 32d, max: 1}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:18: tools.t.limits[0].window:"));
  EXPECT_TRUE(HasSubstr(msg, "31 days"));
  msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: 0.0001, max: 1}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:18: tools.t.limits[0].window:"));
  EXPECT_TRUE(HasSubstr(msg, "whole number of milliseconds"));
  msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: [1], max: 1}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:18: tools.t.limits[0].window must be a duration"));
}

// ---------------------------------------------------------------------------
// Errors, each with its location.

TEST(PolicyErrors, BadYamlSyntax) {
  // Located at the offending character.
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t:\n    action: deny: now\n"),
                        "p.yaml:4:17: syntax error: illegal map value"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t: {action: deny]\n"),
                        "p.yaml:3:19: syntax error: illegal flow end"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nrevision: \"x\" y\n"),
                        "p.yaml:2:15: syntax error"));
  // Bad indentation.
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  a: {}\n   b: {}\n"),
                        "p.yaml:4:4: syntax error"));
  // Unclosed at the end of the file.
  const std::string msg = LoadError("version: \"1\"\ntools:\n  t: {limits: [\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:4:1: syntax error"));
  EXPECT_EQ(CountLines(msg), 1u) << msg;
}

TEST(PolicyErrors, BadJsonSyntax) {
  const std::string msg = LoadError("{\"version\": \"1\",\n \"tools\": {\"a\": {}\n", "p.json");
  EXPECT_TRUE(HasSubstr(msg, "p.json:3:1: syntax error: end of map flow not found"));
}

TEST(PolicyErrors, EmptyDocument) {
  EXPECT_TRUE(HasSubstr(LoadError(""), "p.yaml: the policy is empty"));
  EXPECT_TRUE(HasSubstr(LoadError("# only a comment\n"), "the policy is empty"));
}

TEST(PolicyErrors, UnknownTopLevelKey) {
  const std::string msg = LoadError("version: \"1\"\ntols:\n  a: {}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:2:1: unknown key \"tols\" in the policy"));
  EXPECT_TRUE(HasSubstr(msg, "version, revision, default, tools"));
}

TEST(PolicyErrors, UnknownKeyInTool) {
  const std::string msg = LoadError("version: \"1\"\ntools:\n  foo:\n    acton: deny\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:4:5: unknown key \"acton\" in tools.foo"));
}

TEST(PolicyErrors, UnknownKeyInLimit) {
  const std::string msg = LoadError(R"(version: "1"
tools:
  foo:
    limits:
      - window: minute
        max: 3
        maximum: 4
)");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:7:9: unknown key \"maximum\" in tools.foo.limits[0]"));
  EXPECT_EQ(CountLines(msg), 1u) << msg;
}

TEST(PolicyErrors, UnknownKeyInJson) {
  const std::string msg =
      LoadError("{\"version\": \"1\",\n \"tools\": {\"a\": {\"limit\": []}}}\n", "p.json");
  EXPECT_TRUE(HasSubstr(msg, "p.json:2:18: unknown key \"limit\" in tools.a"));
}

TEST(PolicyErrors, NegativeMax) {
  const std::string msg =
      LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - window: minute\n        max: -1\n");
  EXPECT_TRUE(
      HasSubstr(msg, "p.yaml:6:14: tools.t.limits[0].max must be a positive integer, got -1"));
}

TEST(PolicyErrors, ZeroMax) {
  const std::string msg =
      LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - window: minute\n        max: 0\n");
  EXPECT_TRUE(
      HasSubstr(msg, "p.yaml:6:14: tools.t.limits[0].max must be a positive integer, got 0"));
}

TEST(PolicyErrors, NonIntegerMax) {
  std::string msg =
      LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - window: minute\n        max: 2.5\n");
  EXPECT_TRUE(HasSubstr(
      msg, "p.yaml:6:14: tools.t.limits[0].max must be a positive integer, got \"2.5\""));
  msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - window: minute\n        max: ten\n");
  EXPECT_TRUE(HasSubstr(
      msg, "p.yaml:6:14: tools.t.limits[0].max must be a positive integer, got \"ten\""));
  msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - window: minute\n        max: [1]\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:6:14: tools.t.limits[0].max must be a positive integer"));
  // A quoted number is a string, not an integer (as in JSON).
  msg = LoadError("{\"version\": \"1\", \"tools\": {\"t\": {\"limits\": [\n"
                  "  {\"window\": 60, \"max\": \"3\"}]}}}\n",
                  "p.json");
  EXPECT_TRUE(HasSubstr(msg, "p.json:2:25: tools.t.limits[0].max must be a positive integer"));
}

TEST(PolicyErrors, MissingWindowOrMax) {
  const std::string msg =
      LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - counter: c\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:9: tools.t.limits[0]: window is required"));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:9: tools.t.limits[0]: max is required"));
  EXPECT_EQ(CountLines(msg), 2u) << msg;
}

TEST(PolicyErrors, UnknownScope) {
  const std::string msg = LoadError(
      "version: \"1\"\ntools:\n  t:\n    limits:\n      - {window: minute, max: 1, scope: user}\n");
  EXPECT_TRUE(HasSubstr(
      msg, "p.yaml:5:41: tools.t.limits[0].scope must be grant, session or global, got \"user\""));
}

TEST(PolicyErrors, UnknownAlgorithm) {
  const std::string msg = LoadError(
      "version: \"1\"\ntools:\n  t:\n    limits:\n"
      "      - {window: minute, max: 1, algorithm: leaky_bucket}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:45: tools.t.limits[0].algorithm must be sliding_window, "
                             "fixed_window or token_bucket, got \"leaky_bucket\""));
}

TEST(PolicyErrors, UnknownAction) {
  std::string msg = LoadError("version: \"1\"\ntools:\n  t:\n    action: block\n");
  EXPECT_TRUE(HasSubstr(
      msg, "p.yaml:4:13: tools.t.action must be allow, deny or require_approval, got \"block\""));
  msg = LoadError("version: \"1\"\ndefault: maybe\n");
  EXPECT_TRUE(HasSubstr(
      msg, "p.yaml:2:10: default must be allow, deny or require_approval, got \"maybe\""));
}

TEST(PolicyErrors, BurstOnlyForTokenBucket) {
  std::string msg = LoadError(R"(version: "1"
tools:
  t:
    limits:
      - window: minute
        max: 5
        burst: 10
)");
  EXPECT_TRUE(
      HasSubstr(msg, "p.yaml:7:16: tools.t.limits[0].burst applies only to algorithm token_bucket"));
  msg = LoadError(R"(version: "1"
tools:
  t:
    limits:
      - {window: minute, max: 5, burst: 10, algorithm: fixed_window}
)");
  EXPECT_TRUE(
      HasSubstr(msg, "p.yaml:5:41: tools.t.limits[0].burst applies only to algorithm token_bucket"));
  // Order does not matter: burst before algorithm is still fine.
  auto p = MustLoad(R"(version: "1"
tools:
  t:
    limits:
      - {burst: 10, window: minute, max: 5, algorithm: token_bucket}
)");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Find("t").limits[0].burst, 10);
  EXPECT_EQ(p->Find("t").limits[0].max, 5);
  // A bad burst is located too.
  msg = LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n"
                  "      - {algorithm: token_bucket, window: minute, max: 5, burst: 0}\n");
  EXPECT_TRUE(
      HasSubstr(msg, "p.yaml:5:66: tools.t.limits[0].burst must be a positive integer, got 0"));
}

TEST(PolicyErrors, LimitsOnDenyEntry) {
  const std::string msg = LoadError(R"(version: "1"
tools:
  t:
    action: deny
    limits:
      - {window: minute, max: 3}
)");
  EXPECT_TRUE(HasSubstr(
      msg, "p.yaml:6:7: tools.t.limits apply only to allowed tools, but the action is deny"));
  const std::string msg2 = LoadError(R"(version: "1"
tools:
  t:
    limits:
      - {window: minute, max: 3}
    action: require_approval
)");
  EXPECT_TRUE(HasSubstr(msg2, "p.yaml:5:7: tools.t.limits apply only to allowed tools, but the "
                              "action is require_approval"));
  // An empty list is harmless.
  EXPECT_TRUE(Load("version: \"1\"\ntools:\n  t:\n    action: deny\n    limits: []\n").ok());
}

TEST(PolicyErrors, SameCounterTwiceInOneTool) {
  const std::string msg = LoadError(R"(version: "1"
tools:
  t:
    limits:
      - {counter: c, window: minute, max: 3}
      - {counter: c, window: hour, max: 30}
)");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:6:9: tools.t names counter \"c\" more than once"));
  EXPECT_EQ(CountLines(msg), 1u) << msg;
}

TEST(PolicyErrors, DefaultCounterNamesAreDistinctPerLimit) {
  // Without `counter`, each limit gets its own counter: no conflict.
  auto p = MustLoad(R"(version: "1"
tools:
  t:
    limits:
      - {window: minute, max: 3}
      - {window: hour, max: 30}
)");
  ASSERT_TRUE(p);
  const ToolRule& r = p->Find("t");
  ASSERT_EQ(r.limits.size(), 2u);
  EXPECT_NE(r.limits[0].counter, r.limits[1].counter);
}

TEST(PolicyErrors, CounterDefinedDifferentlyByTwoTools) {
  const std::string msg = LoadError(R"(version: "1"
tools:
  a:
    limits:
      - {counter: shared, window: minute, max: 3}
  b:
    limits:
      - {counter: shared, window: minute, max: 5}
)");
  // Located at the second definition, naming the first.
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:8:9: counter \"shared\" is defined here as 5 per 1m"));
  EXPECT_TRUE(HasSubstr(msg, "but at p.yaml:5:9 as 3 per 1m"));
  EXPECT_EQ(CountLines(msg), 1u) << msg;

  // Any field counts: scope.
  const std::string msg2 = LoadError(R"(version: "1"
tools:
  a:
    limits:
      - {counter: shared, window: minute, max: 3}
  b:
    limits:
      - {counter: shared, window: minute, max: 3, scope: global}
)");
  EXPECT_TRUE(HasSubstr(msg2, "p.yaml:8:9: counter \"shared\""));
  EXPECT_TRUE(HasSubstr(msg2, "p.yaml:5:9"));

  // The same definition written differently is fine.
  EXPECT_TRUE(Load(R"(version: "1"
tools:
  a:
    limits:
      - {counter: shared, window: minute, max: 3}
  b:
    limits:
      - {counter: shared, window: 60, max: 3, scope: grant, algorithm: sliding_window}
)")
                  .ok());
}

TEST(PolicyErrors, MissingVersion) {
  const std::string msg = LoadError("default: allow\ntools: {}\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:1:1: version is required"));
}

TEST(PolicyErrors, WrongVersion) {
  std::string msg = LoadError("version: \"2\"\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:1:10: version must be \"1\", got \"2\""));
  msg = LoadError("default: deny\nversion: [1]\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:2:10: version must be \"1\", got a list"));
  // An unquoted 1 is the same version.
  EXPECT_TRUE(Load("version: 1\n").ok());
}

TEST(PolicyErrors, DuplicateKey) {
  std::string msg = LoadError("version: \"1\"\ndefault: deny\ndefault: allow\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:3:1: duplicate key \"default\" in the policy"));
  msg = LoadError("version: \"1\"\ntools:\n  a: {}\n  b: {}\n  a:\n    action: deny\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:3: duplicate key \"a\" in tools"));
  msg = LoadError("{\"version\": \"1\", \"tools\": {\"a\": {\"action\": \"deny\",\n"
                  "  \"action\": \"allow\"}}}",
                  "p.json");
  EXPECT_TRUE(HasSubstr(msg, "p.json:2:3: duplicate key \"action\" in tools.a"));
}

TEST(PolicyErrors, WrongShapes) {
  EXPECT_TRUE(HasSubstr(LoadError("- a\n- b\n"), "p.yaml:1:1: the policy must be a map, got a list"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools: [a]\n"),
                        "p.yaml:2:8: tools must be a map, got a list"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t:\n    limits: {max: 1}\n"),
                        "p.yaml:4:13: tools.t.limits must be a list, got a map"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t: deny\n"),
                        "p.yaml:3:6: tools.t must be a map, got a scalar"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t:\n    limits:\n      - 5\n"),
                        "p.yaml:5:9: tools.t.limits[0] must be a map, got a scalar"));
}

TEST(PolicyErrors, TwoDocumentsInOneFile) {
  const std::string msg = LoadError("version: \"1\"\n---\nversion: \"1\"\n");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:3:1: a policy file must hold exactly one document"));
}

TEST(PolicyErrors, SeveralErrorsAreAllReported) {
  const std::string msg = LoadError(R"(version: "2"
colour: blue
tools:
  a:
    action: block
  b:
    limits:
      - {window: fortnight, max: 0, scope: user}
  c:
    action: deny
    reasn: "typo"
)");
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:1:10: version must be \"1\""));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:2:1: unknown key \"colour\""));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:5:13: tools.a.action must be"));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:8:18: tools.b.limits[0].window: unknown window"));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:8:34: tools.b.limits[0].max must be a positive integer"));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:8:44: tools.b.limits[0].scope must be"));
  EXPECT_TRUE(HasSubstr(msg, "p.yaml:11:5: unknown key \"reasn\" in tools.c"));
  EXPECT_EQ(CountLines(msg), 7u) << msg;
}

// ---------------------------------------------------------------------------
// The parser alone.

TEST(ParsePolicyDocument, ReturnsPartsWithMarks) {
  Diagnostics d("doc.yaml");
  auto doc = ParsePolicyDocument(R"(version: "1"
revision: r9
default: require_approval
tools:
  first: {}
  "second_*":
    limits:
      - {counter: k, window: 5m, max: 7}
)",
                                 d);
  ASSERT_TRUE(d.ok()) << d.ToString();
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->file, "doc.yaml");
  ASSERT_TRUE(doc->revision.has_value());
  EXPECT_EQ(*doc->revision, "r9");
  EXPECT_EQ(doc->revision_mark.line, 1);  // 0-based
  ASSERT_TRUE(doc->default_action.has_value());
  EXPECT_EQ(*doc->default_action, Action::kRequireApproval);
  ASSERT_EQ(doc->tools.size(), 2u);
  EXPECT_EQ(doc->tools[0].rule.name, "first");
  EXPECT_EQ(doc->tools[0].mark.line, 4);
  EXPECT_EQ(doc->tools[0].mark.column, 2);
  EXPECT_EQ(doc->tools[1].rule.name, "second_*");
  EXPECT_EQ(doc->tools[1].rule.rule_id, "tools.second_*");
  ASSERT_EQ(doc->tools[1].rule.limits.size(), 1u);
  ASSERT_EQ(doc->tools[1].limit_marks.size(), 1u);
  EXPECT_EQ(doc->tools[1].limit_marks[0].line, 7);
  EXPECT_EQ(doc->tools[1].rule.limits[0].window_ms, 300'000);
  EXPECT_EQ(doc->tools[1].rule.limits[0].max, 7);
  EXPECT_LT(doc->tools[0].rule.order, doc->tools[1].rule.order);
}

TEST(ParsePolicyDocument, ErrorsGiveNoDocument) {
  Diagnostics d("doc.yaml");
  auto doc = ParsePolicyDocument("version: \"1\"\ntools:\n  a: {action: nope}\n  b: {}\n", d);
  EXPECT_FALSE(doc.has_value());
  ASSERT_EQ(d.errors().size(), 1u);
  EXPECT_EQ(d.errors()[0].file, "doc.yaml");
  EXPECT_EQ(d.errors()[0].line, 3);
  EXPECT_EQ(d.errors()[0].column, 15);
  EXPECT_EQ(d.ToStatus().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// UTF-8, names and the bound on alias expansion.

TEST(PolicyUtf8, Latin1ReasonIsLocated) {
  const std::string text =
      "version: \"1\"\ndefault: allow\ntools:\n  delete_x: {action: deny, reason: \"r\xE9sum\xE9\"}\n";
  const std::string error = LoadError(text);
  EXPECT_TRUE(HasSubstr(error, "p.yaml:4:38: not valid UTF-8: byte 0xE9")) << error;
  EXPECT_TRUE(HasSubstr(error, "p.yaml:4:42: not valid UTF-8: byte 0xE9")) << error;
  // The same in JSON, and in a comment: the text must be UTF-8.
  EXPECT_TRUE(HasSubstr(
      LoadError("{\"version\": \"1\", \"tools\": {\"t\": {\"reason\": \"\xFF\"}}}", "p.json"),
      "p.json:1:45: not valid UTF-8: byte 0xFF"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\n# caf\xE9\n"), "p.yaml:2:6: not valid UTF-8"));
}

TEST(PolicyUtf8, UnicodeIsAcceptedEverywhere) {
  auto p = MustLoad(
      "version: \"1\"\ndefault: allow\ntools:\n"
      "  \"delete_?\": {action: deny, reason: \"no d\xC3\xA9l\xC3\xA9tion \xE4\xB8\xAD \xF0\x9F\x98\x80\"}\n"
      "  \"\xE4\xB8\xAD\xE6\x96\x87\": {action: deny}\n");
  ASSERT_NE(p, nullptr);
  for (const std::string tool : {"delete_\xC3\xA9", "delete_\xE4\xB8\xAD", "delete_\xF0\x9F\x98\x80"}) {
    const ToolRule& r = p->Find(tool);
    EXPECT_EQ(r.rule_id, "tools.delete_?") << tool;
    EXPECT_EQ(r.action, Action::kDeny) << tool;
    EXPECT_EQ(r.reason, "no d\xC3\xA9l\xC3\xA9tion \xE4\xB8\xAD \xF0\x9F\x98\x80");
  }
  EXPECT_EQ(p->Find("\xE4\xB8\xAD\xE6\x96\x87").action, Action::kDeny);
  EXPECT_EQ(p->Find("delete_ab").rule_id, "default");
}

TEST(PolicyUtf8, EscapesThatAreNotCharactersAreRefused) {
  // A lone surrogate escape would decode to bytes that are not UTF-8 (a
  // response carrying them could not be read by any client): refused.
  const std::string error =
      LoadError("version: \"1\"\ntools:\n  t: {action: deny, reason: \"x\\ud800\"}\n");
  EXPECT_TRUE(HasSubstr(error, "p.yaml:3:37: syntax error: invalid unicode")) << error;
  const std::string json = LoadError(
      "{\"version\": \"1\", \"tools\": {\"t\": {\"args\": {\"enum\": [\"\\udfff\"]}}}}", "p.json");
  EXPECT_TRUE(HasSubstr(json, "p.json:1:59: syntax error: invalid unicode")) << json;
}

TEST(PolicyUtf8, ScalarsThatAreNotUtf8AreLocated) {
  // What the text check cannot see (a document built otherwise) the walk
  // over the document still finds.
  YAML::Node root(YAML::NodeType::Map);
  root["reason"] = "r\xE9sum\xE9";
  Diagnostics d("f.yaml");
  EXPECT_FALSE(CheckYamlDocument(root, YamlLimits(), d));
  EXPECT_TRUE(HasSubstr(d.ToString(), "the value \"r\\xe9sum\\xe9\" is not valid UTF-8 at byte 1"))
      << d.ToString();
}

TEST(PolicyNames, ControlCharactersAreRejected) {
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  \"bad\\ntool\": {}\n"),
                        "p.yaml:3:3: a tool name \"bad\\ntool\": control character U+000A at byte 3"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ngrants:\n  \"g\\x7f\": {}\n"),
                        "p.yaml:3:3: a name in grants \"g\\x7f\": control character U+007F at byte 1"));
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\nservers:\n  \"s\\u0085\": {}\n"),
      "p.yaml:3:3: a name in servers \"s\\xc2\\x85\": control character U+0085 at byte 1"));
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\nclasses:\n  \"c\\t\": {category: write, action: deny}\n"),
      "p.yaml:3:3: a class name \"c\\t\": control character U+0009 at byte 1"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\nrevision: \"r\\e[31m\"\n"),
                        "p.yaml:2:11: revision \"r\\x1b[31m\": control character U+001B at byte 1"));
}

TEST(PolicyNames, NamesLongerThanAnyRequestMayBeAreRejected) {
  const std::string longest(1024, 'n');
  EXPECT_NE(MustLoad("version: \"1\"\ntools:\n  " + longest + ": {}\n"), nullptr);
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\ntools:\n  ? " + longest + "x\n  : {}\n"),
      "p.yaml:3:5: a tool name is 1025 bytes, longer than 1024 (the most --max-name-bytes "
      "allows): it could never match a call"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ngrants:\n  ? " + longest + "x\n  : {}\n"),
                        "a name in grants is 1025 bytes"));
}

// Billion laughs: each level lists the previous one ten times, so level k
// stands for 10^k scalars in a few hundred bytes.
std::string AliasBomb(const std::string& key, int levels) {
  std::string text =
      "version: \"1\"\ntools:\n  t:\n    args:\n      type: object\n      properties:\n"
      "        l0: {" + key + ": &l0 [x, x, x, x, x, x, x, x, x, x]}\n";
  for (int i = 1; i <= levels; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    text += "        l" + std::to_string(i) + ": {" + key + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) text += (j ? ", " : "") + prev;
    text += "]}\n";
  }
  return text;
}

TEST(PolicyBudget, AliasBombsAreRefusedWithALocation) {
  for (const auto& [key, levels] : {std::make_pair("enum", 9), std::make_pair("const", 7)}) {
    {  // 10^10 and 10^8 scalars
      const std::string text = AliasBomb(key, levels);
      EXPECT_LT(text.size(), 1000u);
      const std::string error = LoadError(text);
      EXPECT_TRUE(HasSubstr(error, "the document is too large with its aliases expanded: more "
                                   "than 2000000 nodes"))
          << key << " " << levels << ": " << error;
      EXPECT_TRUE(HasSubstr(error, "p.yaml:7:")) << error;  // A scalar of the first anchored list.
      EXPECT_EQ(CountLines(error), 1u) << error;
    }
  }
  // Long scalars reach the bound on text first.
  std::string text = "version: \"1\"\ntools:\n  t:\n    args:\n      enum: [&s \"" +
                     std::string(1 << 20, 'x') + "\"";
  for (int i = 0; i < 40; ++i) text += ", *s";
  text += "]\n";
  const std::string error = LoadError(text);
  EXPECT_TRUE(HasSubstr(error, "p.yaml:5:14: the document is too large with its aliases "
                               "expanded: more than 33554432 bytes of scalar text"))
      << error.substr(0, 300);
}

TEST(PolicyBudget, ModestAliasUseStillLoads) {
  // Aliases are fine while the expanded document stays within the bound.
  auto p = MustLoad(AliasBomb("enum", 4));  // 10^5 scalars
  ASSERT_NE(p, nullptr);
}

TEST(PolicyBudget, LimitsApplyToTheWholeDocument) {
  YamlLimits limits;
  limits.max_nodes = 10;
  Diagnostics d("f.yaml");
  ParseSingleDocument("a: [1, 2, 3]\nb: {c: d}\n", "empty", "extra", d,
                      [](const YAML::Node&) {}, limits);
  EXPECT_TRUE(d.ok()) << d.ToString();  // 1 map + 2 keys + list + 3 + map + 2 = 10
  bool called = false;
  ParseSingleDocument("a: [1, 2, 3]\nb: {c: d, e: f}\n", "empty", "extra", d,
                      [&](const YAML::Node&) { called = true; }, limits);
  EXPECT_FALSE(called);
  EXPECT_EQ(d.ToString(),
            "f.yaml:2:11: the document is too large with its aliases expanded: more than 10 nodes "
            "(each use of an alias counts every node it repeats)");
  limits = YamlLimits();
  limits.max_scalar_bytes = 5;
  Diagnostics d2("f.yaml");
  ParseSingleDocument("[ab, cd, ef]", "empty", "extra", d2, [](const YAML::Node&) {}, limits);
  EXPECT_TRUE(HasSubstr(d2.ToString(), "f.yaml:1:10: the document is too large"));
}

TEST(PolicyApprovals, ApprovalTtlFromTheEntryTheClassOrTheDefault) {
  auto p = MustLoad(R"(version: "1"
default: require_approval
tools:
  slow: {action: require_approval, approval_ttl: 2h}
  plain: {action: require_approval}
  admin_tool: {category: admin, approval_ttl: 30s}
  guarded: {category: admin}
servers:
  prod:
    tools:
      slow: {reason: "prod"}
classes:
  admin: {category: admin, action: require_approval, approval_ttl: 5m}
)", "p.yaml");
  EXPECT_EQ(p->Resolve("slow", "", "g").approval_ttl_ms, 2 * 3'600'000);
  // A section's entry that does not set it inherits it.
  EXPECT_EQ(p->Resolve("slow", "prod", "g").approval_ttl_ms, 2 * 3'600'000);
  EXPECT_EQ(p->Resolve("plain", "", "g").approval_ttl_ms, kDefaultApprovalTtlMs);
  EXPECT_EQ(p->Resolve("unlisted", "", "g").approval_ttl_ms, kDefaultApprovalTtlMs);
  // The class rule that requires approval sets it, over the entry's.
  EXPECT_EQ(p->Resolve("admin_tool", "", "g").approval_ttl_ms, 5 * 60'000);
  EXPECT_EQ(p->Resolve("guarded", "", "g").approval_ttl_ms, 5 * 60'000);
}

TEST(PolicyApprovals, ApprovalTtlIsBounded) {
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t: {approval_ttl: 500ms}\n"),
                        "p.yaml:3:21: tools.t.approval_ttl must be from 1s to 7d, got 500ms"));
  EXPECT_TRUE(HasSubstr(LoadError("version: \"1\"\ntools:\n  t: {approval_ttl: 8d}\n"),
                        "tools.t.approval_ttl must be from 1s to 7d, got 8d"));
  EXPECT_TRUE(HasSubstr(
      LoadError("version: \"1\"\nclasses:\n  c: {category: admin, action: deny, approval_ttl: x}\n"),
      "classes.c.approval_ttl"));
}

}  // namespace
}  // namespace toolgate
