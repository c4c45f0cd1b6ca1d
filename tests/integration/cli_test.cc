// Integration tests of the `toolgate` CLI: `check` against a real toolgated,
// and `lint`, whose messages must be those toolgated prints.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kCliPolicy[] = R"yaml(version: "1"
revision: "cli-test-1"
default: deny
tools:
  list_files: {}
  once:
    limits:
      - {counter: once, window: 1h, max: 1}
  per_session:
    limits:
      - {counter: per_session, window: 1h, max: 1, scope: session}
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
        command: {type: string, pattern: "^[a-z ]+$"}
)yaml";

// A loopback port that refuses connections: bound (so nobody else takes it)
// but not listening.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot reserve a loopback port";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() {
    if (fd_ >= 0) close(fd_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class CliCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = dir_.WriteFile("policy.yaml", kCliPolicy);
    auto p = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path});
    ASSERT_TRUE(p.ok()) << p.status();
    server_ = *std::move(p);
  }

  // `toolgate check --target <server> ARGS...`
  CommandResult Check(std::vector<std::string> args, const EnvVars& env = {}) {
    std::vector<std::string> argv = {CliBin(), "check", "--target", server_->address()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, env);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CliCheckTest, AllowExitsZero) {
  CommandResult r =
      Check({"--tool", "list_files", "--grant", "agent-7", "--args", R"({"k":"v"})"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("ALLOW"));
  EXPECT_THAT(r.out, HasSubstr("cli-test-1"));
  EXPECT_THAT(r.out, HasSubstr("tools.list_files"));
}

TEST_F(CliCheckTest, DenyExitsThreeWithTheReason) {
  CommandResult r = Check({"--tool", "delete_repository", "--grant", "agent-7", "--args",
                           R"({"name":"toolgate"})"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("DENY"));
  EXPECT_THAT(r.out, HasSubstr("Agents may not delete repositories"));

  CommandResult unlisted = Check({"--tool", "format_disk", "--grant", "agent-7"});
  EXPECT_EQ(unlisted.exit_code, 3) << unlisted.out << unlisted.err;
  EXPECT_THAT(unlisted.out, HasSubstr("format_disk"));
}

TEST_F(CliCheckTest, ArgumentViolationsArePrinted) {
  CommandResult r =
      Check({"--tool", "run_command", "--grant", "agent-7", "--args", R"({"command":"RM -RF"})"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("/command"));
  CommandResult ok =
      Check({"--tool", "run_command", "--grant", "agent-7", "--args", R"({"command":"ls"})"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
}

TEST_F(CliCheckTest, RateLimitedExitsFourWithRetryAfter) {
  CommandResult first = Check({"--tool", "once", "--grant", "agent-7"});
  EXPECT_EQ(first.exit_code, 0) << first.out << first.err;
  CommandResult second = Check({"--tool", "once", "--grant", "agent-7"});
  EXPECT_EQ(second.exit_code, 4) << second.out << second.err;
  EXPECT_THAT(second.out, HasSubstr("RATE_LIMITED"));
  EXPECT_THAT(second.out, HasSubstr("retry_after"));
  EXPECT_THAT(second.out, HasSubstr("once"));
}

TEST_F(CliCheckTest, RequireApprovalExitsFive) {
  CommandResult r = Check({"--tool", "github_create_issue", "--grant", "agent-7", "--server",
                           "github"});
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("REQUIRE_APPROVAL"));
  EXPECT_THAT(r.out, HasSubstr("GitHub writes need a human"));
}

TEST_F(CliCheckTest, DryRunConsumesNothing) {
  for (int i = 0; i < 3; ++i) {
    CommandResult r = Check({"--tool", "once", "--grant", "agent-dry", "--dry-run"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  EXPECT_EQ(Check({"--tool", "once", "--grant", "agent-dry"}).exit_code, 0);
  CommandResult full = Check({"--tool", "once", "--grant", "agent-dry", "--dry-run"});
  EXPECT_EQ(full.exit_code, 4) << full.out << full.err;
}

TEST_F(CliCheckTest, SessionIsSent) {
  EXPECT_EQ(Check({"--tool", "per_session", "--grant", "g", "--session", "s1"}).exit_code, 0);
  EXPECT_EQ(Check({"--tool", "per_session", "--grant", "g", "--session", "s1"}).exit_code, 4);
  EXPECT_EQ(Check({"--tool", "per_session", "--grant", "g", "--session", "s2"}).exit_code, 0);
  EXPECT_EQ(Check({"--tool", "per_session", "--grant", "g", "--session=s3"}).exit_code, 0);
}

TEST_F(CliCheckTest, PolicyVersionPinning) {
  CommandResult ok =
      Check({"--tool", "list_files", "--grant", "g", "--policy-version", "cli-test-1"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  CommandResult unknown =
      Check({"--tool", "list_files", "--grant", "g", "--policy-version", "nope"});
  EXPECT_EQ(unknown.exit_code, 6) << unknown.out << unknown.err;
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
}

TEST_F(CliCheckTest, JsonOutput) {
  CommandResult r = Check({"--tool", "list_files", "--grant", "g", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"decision\""));
  EXPECT_THAT(r.out, HasSubstr("DECISION_ALLOW"));
  EXPECT_THAT(r.out, HasSubstr("\"cli-test-1\""));
}

TEST_F(CliCheckTest, TargetFromEnvironment) {
  CommandResult r = RunCommand({CliBin(), "check", "--tool", "list_files", "--grant", "g"},
                               {{"TOOLGATE_TARGET", server_->address()}});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("cli-test-1"));
}

TEST_F(CliCheckTest, RequestsTheServerCannotDecideExitSix) {
  CommandResult r = Check({"--tool", "list_files"});  // no --grant
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(r.err, HasSubstr("grant"));
}

TEST_F(CliCheckTest, BadArgsJsonIsAUsageError) {
  for (const std::string bad : {R"({"k":)", "not json", "[1, 2]"}) {
    CommandResult r = Check({"--tool", "list_files", "--grant", "g", "--args", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("--args")) << bad;
    EXPECT_THAT(r.out, Not(HasSubstr("decision"))) << bad;
  }
}

TEST_F(CliCheckTest, UnknownFlagIsAUsageError) {
  CommandResult r = Check({"--tool", "list_files", "--grant", "g", "--colour"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("colour"));
}

TEST(CliTest, UnreachableServerExitsSix) {
  ClosedPort closed;
  CommandResult r = RunCommand({CliBin(), "check", "--target", closed.address(), "--tool",
                                "list_files", "--grant", "g", "--timeout", "2s"});
  EXPECT_EQ(r.exit_code, 6) << r.out << r.err;
  EXPECT_FALSE(r.err.empty());
  EXPECT_THAT(r.out, Not(HasSubstr("ALLOW")));
}

TEST(CliTest, NoCommandIsAUsageError) {
  EXPECT_EQ(RunCommand({CliBin()}).exit_code, 2);
  CommandResult unknown = RunCommand({CliBin(), "frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("frobnicate"));
  CommandResult help = RunCommand({CliBin(), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("check"));
  EXPECT_THAT(help.out, HasSubstr("lint"));
}

// ---- lint --------------------------------------------------------------------

TEST(CliLintTest, ExamplePoliciesAreValid) {
  const std::string seed = SourcePath("examples/seed-policy.json");
  const std::string example = SourcePath("examples/policy.yaml");
  CommandResult r = RunCommand({CliBin(), "lint", seed, example});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(seed + ": OK"));
  EXPECT_THAT(r.out, HasSubstr(example + ": OK"));
  EXPECT_THAT(r.out, HasSubstr("example-2026-11-25.1"));
  EXPECT_THAT(r.out, HasSubstr("sha256:"));
  EXPECT_EQ(r.err, "");
}

TEST(CliLintTest, NothingToLintIsAUsageError) {
  CommandResult r = RunCommand({CliBin(), "lint"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
}

TEST(CliLintTest, MissingFileIsAnError) {
  TempDir dir;
  CommandResult r = RunCommand({CliBin(), "lint", dir.path() + "/absent.yaml"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("absent.yaml"));
}

class CliLintBrokenTest : public ::testing::TestWithParam<BrokenPolicy> {};

std::vector<std::string> NonEmptyLines(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StripAsciiWhitespace(line).empty()) out.emplace_back(line);
  }
  return out;
}

TEST_P(CliLintBrokenTest, ExitsOneWithTheMessagesToolgatedPrints) {
  const BrokenPolicy& bp = GetParam();
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", bp.content);
  const std::string valid = SourcePath("examples/seed-policy.json");

  CommandResult lint = RunCommand({CliBin(), "lint", path, valid}, {}, absl::Seconds(120));
  EXPECT_EQ(lint.exit_code, 1) << lint.out << lint.err;
  EXPECT_THAT(lint.err, HasSubstr(absl::StrCat(path, ":", bp.location.substr(
                                                               std::string("policy.yaml:").size()),
                                               ": ")));
  EXPECT_THAT(lint.err, HasSubstr(bp.message));
  // The valid file given after the broken one is still checked.
  EXPECT_THAT(lint.out, HasSubstr(valid + ": OK"));
  EXPECT_THAT(lint.out, Not(HasSubstr(path + ": OK")));

  // toolgated prints the same messages for the same file.
  auto server = ServerProcess::Spawn({"--listen", "127.0.0.1:0", "--policy", path});
  ASSERT_TRUE(server.ok()) << server.status();
  // Generous: refusing an alias bomb walks its whole node budget, which
  // takes seconds in a sanitizer build on a busy machine.
  std::optional<int> status = (*server)->WaitExit(absl::Seconds(120));
  ASSERT_TRUE(status.has_value()) << "toolgated started with an invalid policy";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status;
  const std::string log = (*server)->log();
  const std::vector<std::string> lines = NonEmptyLines(lint.err);
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_THAT(log, HasSubstr(line)) << "lint printed a message toolgated did not";
  }
  // And nothing that lint left out: every located message of toolgated is in lint's output.
  for (const std::string& line : NonEmptyLines(log)) {
    if (absl::StartsWith(line, path + ":")) {
      EXPECT_THAT(lint.err, HasSubstr(line)) << "toolgated printed a message lint did not";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Broken, CliLintBrokenTest, ::testing::ValuesIn(BrokenPolicies()),
                         [](const ::testing::TestParamInfo<BrokenPolicy>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace toolgate_test
