#include "client/cli/approval_format.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

google::protobuf::Timestamp At(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

const absl::Time kNow = absl::FromUnixSeconds(1'796'000'000);  // 2026-11-30T...

v1::Approval Pending() {
  v1::Approval a;
  a.set_id("apr_0123456789abcdef0123456789abcdef");
  a.set_state(v1::APPROVAL_STATE_PENDING);
  a.set_grant("agent-7");
  a.set_tool("run_command");
  a.set_server("shell");
  a.set_rule("tools.run_command");
  a.set_reason("Shell commands need a human");
  a.set_policy_version("rev-1");
  a.set_args_json(R"({"command":"ls -l","opts":{"all":true,"paths":["/a","/b"]},"x":[]})");
  a.set_args_digest(std::string(64, 'f'));
  *a.mutable_created_at() = At(kNow - absl::Minutes(3));
  *a.mutable_expires_at() = At(kNow + absl::Minutes(12));
  return a;
}

TEST(ApprovalFormatTest, StateNamesRoundTrip) {
  for (auto s : {v1::APPROVAL_STATE_PENDING, v1::APPROVAL_STATE_APPROVED, v1::APPROVAL_STATE_DENIED,
                 v1::APPROVAL_STATE_EXPIRED, v1::APPROVAL_STATE_USED}) {
    EXPECT_EQ(ParseApprovalState(ApprovalStateName(s)), s);
  }
  EXPECT_EQ(ApprovalStateName(v1::APPROVAL_STATE_PENDING), "pending");
  EXPECT_EQ(ParseApprovalState("Approved"), v1::APPROVAL_STATE_APPROVED);
  EXPECT_EQ(ParseApprovalState("unspecified"), std::nullopt);
  EXPECT_EQ(ParseApprovalState("maybe"), std::nullopt);
  EXPECT_EQ(ParseApprovalState(""), std::nullopt);
  EXPECT_EQ(ApprovalStateName(static_cast<v1::ApprovalState>(99)), "unspecified");
  EXPECT_EQ(ApprovalEventName(v1::APPROVAL_EVENT_CREATED), "created");
  EXPECT_EQ(ApprovalEventName(static_cast<v1::ApprovalEventKind>(99)), "unspecified");
}

TEST(ApprovalFormatTest, PrettyJsonIndentsWithoutTouchingTokens) {
  EXPECT_EQ(PrettyJson(R"({"a":1,"b":[true,null],"c":{},"d":[]})"),
            "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ],\n  \"c\": {},\n  \"d\": []\n}");
  // Braces, commas, colons and escaped quotes inside strings are text.
  EXPECT_EQ(PrettyJson(R"({"k{,}":"v:[\"x\",]\\"})"), "{\n  \"k{,}\": \"v:[\\\"x\\\",]\\\\\"\n}");
  // Numbers keep their text.
  EXPECT_EQ(PrettyJson(R"({"n":1e+300,"m":-0.10})"), "{\n  \"n\": 1e+300,\n  \"m\": -0.10\n}");
  EXPECT_EQ(PrettyJson("{}"), "{}");
  EXPECT_EQ(PrettyJson(" { } "), "{}");
}

TEST(ApprovalFormatTest, PrettyJsonLeavesWhatItCannotIndent) {
  for (const std::string bad :
       {"{\"a\":1", "{\"a\":1}}", "[1,2}", "\"open", "{\"a\"]", "1,2", "a:b"}) {
    EXPECT_EQ(PrettyJson(bad), bad);
  }
  // Deeper than it indents: unchanged, not blown up.
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_EQ(PrettyJson(deep), deep);
  const std::string ok = std::string(64, '[') + "1" + std::string(64, ']');
  EXPECT_NE(PrettyJson(ok), ok);
}

TEST(ApprovalFormatTest, ShortDurations) {
  EXPECT_EQ(ShortDuration(absl::Seconds(0)), "0s");
  EXPECT_EQ(ShortDuration(absl::Seconds(45)), "45s");
  EXPECT_EQ(ShortDuration(absl::Seconds(-45)), "45s");
  EXPECT_EQ(ShortDuration(absl::Minutes(12) + absl::Seconds(59)), "12m");
  EXPECT_EQ(ShortDuration(absl::Hours(3)), "3h");
  EXPECT_EQ(ShortDuration(absl::Hours(3) + absl::Minutes(5)), "3h5m");
  EXPECT_EQ(ShortDuration(absl::Hours(52)), "2d4h");
  EXPECT_EQ(ShortDuration(absl::Hours(48)), "2d");
}

TEST(ApprovalFormatTest, PrintableEscapesControlCharacters) {
  EXPECT_EQ(Printable("plain text, ünïcode"), "plain text, ünïcode");
  EXPECT_EQ(Printable("a\nb\x1b[2Jc\x7f"), "a\\x0ab\\x1b[2Jc\\x7f");
}

TEST(ApprovalFormatTest, TableAlignsColumnsAndShowsAgeAndExpiry) {
  v1::Approval used = Pending();
  used.set_id("apr_ffffffffffffffffffffffffffffffff");
  used.set_state(v1::APPROVAL_STATE_USED);
  used.set_grant("g");
  used.set_server("");
  used.set_session("s-1");
  *used.mutable_created_at() = At(kNow - absl::Hours(2));
  const std::string table = FormatApprovalTable({Pending(), used}, kNow);
  EXPECT_EQ(table,
            "ID                                    STATE    GRANT    TOOL         SERVER  "
            "SESSION  AGE  EXPIRES\n"
            "apr_0123456789abcdef0123456789abcdef  pending  agent-7  run_command  shell   "
            "-        3m   in 12m\n"
            "apr_ffffffffffffffffffffffffffffffff  used     g        run_command  -       "
            "s-1      2h   -\n");
}

TEST(ApprovalFormatTest, DetailsShowEveryFieldAndIndentedArguments) {
  v1::Approval a = Pending();
  a.set_state(v1::APPROVAL_STATE_DENIED);
  a.set_request_id("req-9");
  *a.mutable_decided_at() = At(kNow - absl::Minutes(1));
  a.set_decided_by("alice");
  a.set_note("not on\nFriday");
  const std::string out = FormatApprovalDetails(a, kNow);
  EXPECT_THAT(out, HasSubstr("id:              apr_0123456789abcdef0123456789abcdef\n"));
  EXPECT_THAT(out, HasSubstr("state:           denied\n"));
  EXPECT_THAT(out, HasSubstr("server:          shell\n"));
  EXPECT_THAT(out, HasSubstr("session:         -\n"));
  EXPECT_THAT(out, HasSubstr("rule:            tools.run_command\n"));
  EXPECT_THAT(out, HasSubstr("reason:          Shell commands need a human\n"));
  EXPECT_THAT(out, HasSubstr("policy version:  rev-1\n"));
  EXPECT_THAT(out, HasSubstr("request id:      req-9\n"));
  EXPECT_THAT(out, HasSubstr("(3m ago)"));
  EXPECT_THAT(out, HasSubstr("(in 12m)"));
  EXPECT_THAT(out, HasSubstr("(1m ago) by alice\n"));
  EXPECT_THAT(out, HasSubstr("note:            not on\\x0aFriday\n"));
  EXPECT_THAT(out, HasSubstr("used:            -\n"));
  EXPECT_THAT(out, HasSubstr("args digest:     ffff"));
  EXPECT_THAT(out, HasSubstr("arguments:\n  {\n    \"command\": \"ls -l\",\n    \"opts\": {\n"
                             "      \"all\": true,\n"));
}

TEST(ApprovalFormatTest, EventsAreOneLineOfFields) {
  v1::ApprovalEvent created;
  created.set_kind(v1::APPROVAL_EVENT_CREATED);
  *created.mutable_approval() = Pending();
  const std::string line = FormatApprovalEvent(created);
  EXPECT_THAT(line, HasSubstr("created apr_0123456789abcdef0123456789abcdef grant=agent-7 "
                              "tool=run_command server=shell rule=tools.run_command expires="));
  EXPECT_THAT(line, HasSubstr(R"(args="{\"command\":\"ls -l\",)"));
  EXPECT_THAT(line, Not(HasSubstr("session=")));
  EXPECT_THAT(line, Not(HasSubstr("\n")));

  v1::ApprovalEvent denied;
  denied.set_kind(v1::APPROVAL_EVENT_DENIED);
  *denied.mutable_approval() = Pending();
  denied.mutable_approval()->set_decided_by("bob");
  denied.mutable_approval()->set_note("no\nway");
  *denied.mutable_approval()->mutable_decided_at() = At(absl::FromUnixSeconds(1'796'000'100));
  const std::string d = FormatApprovalEvent(denied);
  EXPECT_THAT(d, HasSubstr("denied apr_"));
  EXPECT_THAT(d, HasSubstr(R"(by=bob note="no\\x0away")"));
  EXPECT_THAT(d, Not(HasSubstr("args=")));
  EXPECT_EQ(d.substr(0, 20),
            absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(1'796'000'100),
                             absl::UTCTimeZone()));

  // Long arguments are cut, on a character boundary.
  v1::ApprovalEvent big = created;
  big.mutable_approval()->set_args_json("{\"k\":\"" + std::string(300, 'x') + "\"}");
  EXPECT_THAT(FormatApprovalEvent(big), HasSubstr("x...\""));
  EXPECT_LT(FormatApprovalEvent(big).size(), 400u);
}

}  // namespace
}  // namespace toolgate::cli
