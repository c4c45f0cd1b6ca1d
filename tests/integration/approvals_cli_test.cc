// `toolgate approvals list|show|approve|deny|watch` against a real toolgated:
// approvals made by real Check calls, decided and followed through the CLI.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// Generous: the CLI and the server share a busy machine (and sanitizers).
constexpr absl::Duration kWait = absl::Seconds(60);

constexpr char kPolicy[] = R"yaml(version: "1"
revision: "approvals-cli-1"
default: deny
tools:
  run_command:
    action: require_approval
    reason: "Shell commands need a human"
    args:
      type: object
      properties:
        command: {type: string}
  "github_*":
    action: require_approval
    reason: "GitHub writes need a human"
)yaml";

class ApprovalsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_ = dir_.WriteFile("policy.yaml", kPolicy);
    token_file_ = dir_.WriteFile("admin-token", "approver-token-1\n");
    auto p = ServerProcess::Start(
        {"--listen", "127.0.0.1:0", "--policy", policy_, "--admin-token-file", token_file_});
    ASSERT_TRUE(p.ok()) << p.status();
    server_ = *std::move(p);
    client_ = toolgate::Client::Connect(server_->address());
  }

  // `toolgate approvals ARGS... --target <admin> --admin-token-file <file>`.
  CommandResult Cli(std::vector<std::string> args, EnvVars env = {{"USER", "ci-user"}}) {
    std::vector<std::string> argv = {CliBin(), "approvals"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a : {std::string("--target"), server_->admin_address(),
                                 std::string("--admin-token-file"), token_file_}) {
      argv.push_back(a);
    }
    if (args.empty() || args[0] != "watch") {
      argv.push_back("--timeout");
      argv.push_back("20s");
    }
    return RunCommand(argv, env, kWait);
  }

  // A Check that needs approval; returns its approval id.
  std::string Pending(const std::string& tool, const std::string& grant,
                      const std::string& args_json, const std::string& session = "") {
    toolgate::v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    req.set_session(session);
    req.set_args_json(args_json);
    auto r = client_->Check(req, absl::Seconds(20));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_REQUIRE_APPROVAL);
    EXPECT_THAT(r->approval_id(), MatchesRegex("apr_[0-9a-f]{32}"));
    return r->approval_id();
  }

  // The same call with the approval's id.
  toolgate::v1::CheckResponse Redeem(const std::string& tool, const std::string& grant,
                                     const std::string& args_json, const std::string& id,
                                     const std::string& session = "") {
    toolgate::v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    req.set_session(session);
    req.set_args_json(args_json);
    req.set_approval_id(id);
    auto r = client_->Check(req, absl::Seconds(20));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : toolgate::v1::CheckResponse();
  }

  TempDir dir_;
  std::string policy_, token_file_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<toolgate::Client> client_;
};

TEST_F(ApprovalsCliTest, ListShowsATableAndFilters) {
  const std::string a = Pending("run_command", "agent-1", R"({"command":"ls"})", "s-1");
  const std::string b = Pending("github_create_issue", "agent-2", R"({"title":"x"})");

  CommandResult all = Cli({"list"});
  ASSERT_EQ(all.exit_code, 0) << all.out << all.err;
  EXPECT_THAT(all.out, HasSubstr("ID"));
  EXPECT_THAT(all.out, HasSubstr("STATE"));
  EXPECT_THAT(all.out, HasSubstr("EXPIRES"));
  EXPECT_THAT(all.out,
              MatchesRegex(absl::StrCat("(.|\n)*", a,
                                        " +pending +agent-1 +run_command +- +s-1 +[0-9]+[smh] "
                                        "+in [0-9]+m\n(.|\n)*")));
  EXPECT_THAT(all.out, HasSubstr(b));

  CommandResult by_grant = Cli({"list", "--grant", "agent-2"});
  EXPECT_EQ(by_grant.exit_code, 0) << by_grant.err;
  EXPECT_THAT(by_grant.out, HasSubstr(b));
  EXPECT_THAT(by_grant.out, Not(HasSubstr(a)));
  CommandResult by_tool = Cli({"list", "--tool", "run_command"});
  EXPECT_THAT(by_tool.out, HasSubstr(a));
  EXPECT_THAT(by_tool.out, Not(HasSubstr(b)));
  CommandResult one = Cli({"list", "--limit", "1"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(std::count(one.out.begin(), one.out.end(), '\n'), 2) << one.out;  // header + 1

  ASSERT_EQ(Cli({"approve", a}).exit_code, 0);
  CommandResult approved = Cli({"list", "--state", "approved"});
  EXPECT_THAT(approved.out, HasSubstr(a));
  EXPECT_THAT(approved.out, Not(HasSubstr(b)));
  CommandResult pending = Cli({"list", "--state", "pending"});
  EXPECT_THAT(pending.out, HasSubstr(b));
  EXPECT_THAT(pending.out, Not(HasSubstr(a)));
  CommandResult none = Cli({"list", "--state", "denied"});
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(none.out, "no approvals\n");

  CommandResult json = Cli({"list", "--output", "json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"id\":\"", a, "\"")));
  EXPECT_THAT(json.out, HasSubstr("APPROVAL_STATE_APPROVED"));
}

TEST_F(ApprovalsCliTest, ShowPrintsEveryFieldAndTheArguments) {
  const std::string id = Pending("run_command", "agent-1",
                                 R"({"command":"ls -la","opts":{"depth":2,"dirs":["/a"]}})", "s-9");
  CommandResult r = Cli({"show", id});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("id:              ", id, "\n")));
  EXPECT_THAT(r.out, HasSubstr("state:           pending\n"));
  EXPECT_THAT(r.out, HasSubstr("grant:           agent-1\n"));
  EXPECT_THAT(r.out, HasSubstr("tool:            run_command\n"));
  EXPECT_THAT(r.out, HasSubstr("session:         s-9\n"));
  EXPECT_THAT(r.out, HasSubstr("rule:            tools.run_command\n"));
  EXPECT_THAT(r.out, HasSubstr("reason:          Shell commands need a human\n"));
  EXPECT_THAT(r.out, HasSubstr("policy version:  approvals-cli-1\n"));
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*expires: +20[0-9-]+T[0-9:]+Z \\(in 1[45]m\\)\n(.|\n)*"));
  EXPECT_THAT(r.out, MatchesRegex("(.|\n)*args digest: +[0-9a-f]{64}\n(.|\n)*"));
  // Canonical JSON (keys sorted), indented.
  EXPECT_THAT(r.out, HasSubstr("arguments:\n  {\n    \"command\": \"ls -la\",\n    \"opts\": {\n"
                               "      \"depth\": 2,\n      \"dirs\": [\n        \"/a\"\n"
                               "      ]\n    }\n  }\n"));

  CommandResult json = Cli({"show", id, "--output", "json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"argsDigest\""));

  CommandResult unknown = Cli({"show", "apr_00000000000000000000000000000000"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.out << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
}

TEST_F(ApprovalsCliTest, ApproveAdmitsTheCallOnceAndIsRecorded) {
  const std::string args = R"({"command":"make test"})";
  const std::string id = Pending("run_command", "agent-1", args);
  CommandResult r = Cli({"approve", id, "--approver", "alice", "--note", "release day"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("approved ", id,
                                            " (run_command for grant agent-1) "
                                            "by alice\n")));
  EXPECT_THAT(r.out, HasSubstr("admitted once, until 20"));

  EXPECT_EQ(Redeem("run_command", "agent-1", args, id).decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_EQ(Redeem("run_command", "agent-1", args, id).decision(), toolgate::v1::DECISION_DENY);

  CommandResult show = Cli({"show", id});
  EXPECT_THAT(show.out, HasSubstr("state:           used\n"));
  EXPECT_THAT(show.out, MatchesRegex("(.|\n)*decided: +20.* by alice\n(.|\n)*"));
  EXPECT_THAT(show.out, HasSubstr("note:            release day\n"));
  EXPECT_THAT(show.out, MatchesRegex("(.|\n)*used: +20.* by decision .+\n(.|\n)*"));

  // No longer pending: refused, exit 1, the message says why.
  CommandResult again = Cli({"deny", id});
  EXPECT_EQ(again.exit_code, 1) << again.out << again.err;
  EXPECT_THAT(again.err, HasSubstr("FAILED_PRECONDITION"));
}

TEST_F(ApprovalsCliTest, CheckPrintsTheApprovalIdAndRedeemsIt) {
  auto check = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        CliBin(),  "check",   "--target", server_->address(),    "--tool",    "run_command",
        "--grant", "agent-4", "--args",   R"({"command":"df"})", "--timeout", "20s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, {}, kWait);
  };
  CommandResult asked = check({});
  ASSERT_EQ(asked.exit_code, 5) << asked.out << asked.err;
  const size_t at = asked.out.find("approval_id: ");
  ASSERT_NE(at, std::string::npos) << asked.out;
  const std::string id = asked.out.substr(at + 13, 36);
  EXPECT_THAT(id, MatchesRegex("apr_[0-9a-f]{32}"));
  ASSERT_EQ(Cli({"approve", id}).exit_code, 0);
  CommandResult allowed = check({"--approval-id", id});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.out << allowed.err;
  CommandResult again = check({"--approval-id", id});
  EXPECT_EQ(again.exit_code, 3) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("already used"));
}

TEST_F(ApprovalsCliTest, DenyIsShownToTheAgentWithTheNote) {
  const std::string args = R"({"command":"rm -rf /tmp/x"})";
  const std::string id = Pending("run_command", "agent-1", args);
  // The approver defaults to $USER.
  CommandResult r = Cli({"deny", id, "--note", "not on a Friday"}, {{"USER", "bob"}});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("denied ", id)));
  EXPECT_THAT(r.out, HasSubstr("by bob"));
  toolgate::v1::CheckResponse denied = Redeem("run_command", "agent-1", args, id);
  EXPECT_EQ(denied.decision(), toolgate::v1::DECISION_DENY);
  EXPECT_THAT(denied.reason(), HasSubstr("bob"));
  EXPECT_THAT(denied.reason(), HasSubstr("not on a Friday"));
}

TEST_F(ApprovalsCliTest, BadInputIsAUsageErrorAndSendsNothing) {
  const std::string id = Pending("run_command", "agent-1", R"({"command":"ls"})");
  struct Case {
    std::vector<std::string> args;
    EnvVars env;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"approve", id}, {{"USER", ""}}, "--approver"},
      {{"approve", id, "--approver", std::string(257, 'a')}, {}, "--approver is 257 bytes"},
      {{"deny", id, "--approver", "a", "--note", std::string(1025, 'n')}, {}, "--note is 1025"},
      {{"approve"}, {}, "name one approval id"},
      {{"approve", id, id}, {}, "name one approval id"},
      {{"show", "apr_ x"}, {}, "not an approval id"},
      {{"show", std::string(200, 'a')}, {}, "not an approval id"},
      {{"list", "--state", "maybe"}, {}, "--state must be"},
      {{"list", "--limit", "5000"}, {}, "limit"},
      {{"list", "extra"}, {}, "unexpected argument"},
      {{"list", "--output", "yaml"}, {}, "--output"},
      {{"watch", "--colour"}, {}, "colour"},
      {{"frobnicate"}, {}, "unknown command \"frobnicate\""},
  };
  for (const Case& c : cases) {
    CommandResult r = Cli(c.args, c.env);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << " " << c.message << ": " << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
  }
  // Nothing was decided.
  CommandResult show = Cli({"show", id});
  EXPECT_THAT(show.out, HasSubstr("state:           pending\n"));

  CommandResult help = RunCommand({CliBin(), "approvals", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("watch [--include-pending]"));
  CommandResult bare = RunCommand({CliBin(), "approvals"});
  EXPECT_EQ(bare.exit_code, 2);
  CommandResult top = RunCommand({CliBin(), "--help"});
  EXPECT_THAT(top.out, HasSubstr("toolgate approvals list|show|approve|deny|watch"));
}

TEST_F(ApprovalsCliTest, TheAdminTokenIsRequiredAndUnreachableServersExitSix) {
  CommandResult no_token = RunCommand(
      {CliBin(), "approvals", "list", "--target", server_->admin_address(), "--timeout", "20s"});
  EXPECT_EQ(no_token.exit_code, 6) << no_token.out << no_token.err;
  EXPECT_THAT(no_token.err, HasSubstr("UNAUTHENTICATED"));
  // The decision listener does not serve ApprovalService.
  CommandResult wrong_port = RunCommand(
      {CliBin(), "approvals", "list", "--target", server_->address(), "--timeout", "20s"});
  EXPECT_EQ(wrong_port.exit_code, 6) << wrong_port.out << wrong_port.err;
  EXPECT_THAT(wrong_port.err, HasSubstr("UNIMPLEMENTED"));
  // Nobody listening.
  CommandResult unreachable =
      RunCommand({CliBin(), "approvals", "list", "--target", "127.0.0.1:1", "--timeout", "5s"});
  EXPECT_EQ(unreachable.exit_code, 6) << unreachable.out << unreachable.err;
  CommandResult unreachable_watch =
      RunCommand({CliBin(), "approvals", "watch", "--target", "127.0.0.1:1"}, {}, kWait);
  EXPECT_EQ(unreachable_watch.exit_code, 6) << unreachable_watch.out << unreachable_watch.err;
}

TEST_F(ApprovalsCliTest, WatchPrintsOneLinePerEventUntilInterrupted) {
  const std::string args = R"({"command":"ls"})";
  const std::string first = Pending("run_command", "agent-1", args);
  auto watch =
      BackgroundCommand::Start({CliBin(), "approvals", "watch", "--include-pending", "--target",
                                server_->admin_address(), "--admin-token-file", token_file_});
  ASSERT_TRUE(watch.ok()) << watch.status();
  // Already pending when the watch started: shown first. Once it is there
  // the watch is established, and what follows is seen as it happens.
  ASSERT_TRUE((*watch)->WaitForOutput(absl::StrCat(" pending ", first), kWait))
      << (*watch)->out() << (*watch)->err();

  ASSERT_EQ(Cli({"approve", first, "--approver", "alice", "--note", "fine by me"}).exit_code, 0);
  EXPECT_TRUE((*watch)->WaitForOutput(absl::StrCat(" approved ", first), kWait))
      << (*watch)->out() << (*watch)->err();
  ASSERT_EQ(Redeem("run_command", "agent-1", args, first).decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_TRUE((*watch)->WaitForOutput(absl::StrCat(" used ", first), kWait)) << (*watch)->out();
  const std::string second = Pending("github_merge", "agent-2", R"({"pr":7})", "s-2");
  EXPECT_TRUE((*watch)->WaitForOutput(absl::StrCat(" created ", second), kWait)) << (*watch)->out();

  ASSERT_TRUE((*watch)->Signal(SIGINT));
  std::optional<int> status = (*watch)->WaitExit(kWait);
  ASSERT_TRUE(status.has_value()) << "watch did not stop on SIGINT";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "status " << *status << (*watch)->err();
  const std::string out = (*watch)->out();
  EXPECT_THAT(out, HasSubstr(absl::StrCat(" approved ", first,
                                          " grant=agent-1 tool=run_command by=alice "
                                          "note=\"fine by me\"\n")));
  EXPECT_THAT(out, MatchesRegex(absl::StrCat(
                       "(.|\n)*20[0-9-]+T[0-9:]+Z created ", second,
                       " grant=agent-2 tool=github_merge session=s-2 rule=tools\\.github_\\* "
                       "expires=20[0-9-]+T[0-9:]+Z args=\"\\{\\\\\"pr\\\\\":7\\}\"\n(.|\n)*")));
  // One line per event, nothing else.
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 4) << out;
}

TEST_F(ApprovalsCliTest, WatchFiltersAndPrintsJson) {
  auto watch = BackgroundCommand::Start({CliBin(), "approvals", "watch", "--tool", "github_merge",
                                         "--output", "json", "--target", server_->admin_address(),
                                         "--admin-token-file", token_file_});
  ASSERT_TRUE(watch.ok()) << watch.status();
  // The watch is established once it reports an event: until then, keep
  // making new calls (other arguments, so each is a new approval).
  int n = 0;
  ASSERT_TRUE(PollUntil(
      [&] {
        Pending("run_command", "agent-1", absl::StrCat(R"({"command":"ls )", n, R"("})"));
        Pending("github_merge", "agent-3", absl::StrCat(R"({"pr":)", n++, "}"));
        return absl::StrContains((*watch)->out(), "\n");
      },
      kWait))
      << (*watch)->out() << (*watch)->err();
  ASSERT_TRUE((*watch)->Signal(SIGTERM));
  std::optional<int> status = (*watch)->WaitExit(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  const std::string out = (*watch)->out();
  // One JSON event a line, each a created github_merge approval.
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    EXPECT_THAT(std::string(line), MatchesRegex("\\{.*\"kind\":\"APPROVAL_EVENT_CREATED\".*\\}"));
    EXPECT_THAT(std::string(line), HasSubstr("\"tool\":\"github_merge\""));
  }
  EXPECT_THAT(out, Not(HasSubstr("run_command")));
}

}  // namespace
}  // namespace toolgate_test
