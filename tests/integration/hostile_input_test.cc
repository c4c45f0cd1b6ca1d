// Hostile names, policies and revisions against real toolgated processes
// over real gRPC: non-ASCII tool names and globs, names that are not UTF-8,
// hold control characters or are too long, alias bombs in a Redis revision,
// and dangling policy symlinks.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

constexpr absl::Duration kWait = absl::Seconds(30);

constexpr char kPolicy[] = R"(version: "1"
revision: "unicode-1"
default: allow
tools:
  "delete_?": {action: deny, reason: "no single-character deletes"}
  "中文_*": {action: require_approval}
  read_file:
    args:
      type: object
      properties:
        path: {type: string}
)";

CheckRequest Req(const std::string& tool, const std::string& grant = "g") {
  CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  return r;
}

class HostileInputTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> extra = {}) {
    const std::string path = dir_.WriteFile("policy.yaml", kPolicy);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", path};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = ServerProcess::Start(args);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = toolgate::Client::Connect(server_->address());
    admin_ = toolgate::Client::Connect(server_->admin_address());
  }

  // The status of a check that must fail.
  absl::Status CheckError(const CheckRequest& req) {
    auto r = client_->Check(req, absl::Seconds(10));
    EXPECT_FALSE(r.ok()) << r->ShortDebugString();
    return r.ok() ? absl::OkStatus() : r.status();
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<toolgate::Client> client_;
  std::unique_ptr<toolgate::Client> admin_;  // On the admin listener.
};

TEST_F(HostileInputTest, NonAsciiToolNamesAreDeniedByTheGlob) {
  StartServer();
  // é (2 bytes), 中 (3 bytes), 😀 (4 bytes): one character each, so
  // `delete_?` matches and the default allow does not apply.
  for (const std::string tool : {"delete_é", "delete_中", "delete_😀", "delete_x"}) {
    auto r = client_->Check(Req(tool), absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << tool << ": " << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY) << tool;
    EXPECT_EQ(r->rule(), "tools.delete_?") << tool;
    EXPECT_EQ(r->reason(), "no single-character deletes");
  }
  auto two = client_->Check(Req("delete_中中"), absl::Seconds(10));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->decision(), toolgate::v1::DECISION_ALLOW);
  auto cjk = client_->Check(Req("中文_写"), absl::Seconds(10));
  ASSERT_TRUE(cjk.ok()) << cjk.status();
  EXPECT_EQ(cjk->decision(), toolgate::v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(cjk->rule(), "tools.中文_*");
}

TEST_F(HostileInputTest, BadNamesGetInvalidArgumentNamingTheField) {
  StartServer();
  struct Case {
    CheckRequest req;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({Req("delete_\xE9x"), "tool: not valid UTF-8 at byte 7"});
  cases.push_back({Req("list_files", "g\xC3"), "grant: not valid UTF-8 at byte 1"});
  cases.push_back({Req("tool\nINFO forged line"), "tool: control character U+000A at byte 4"});
  cases.push_back({Req("t", std::string(1 << 20, 'g')),
                   "grant: 1048576 bytes, longer than --max-name-bytes (256)"});
  {
    CheckRequest r = Req("t");
    r.set_session("s\x1B[2J");
    cases.push_back({r, "session: control character U+001B at byte 1"});
  }
  {
    CheckRequest r = Req("t");
    r.set_server("\xED\xA0\x80");
    cases.push_back({r, "server: not valid UTF-8 at byte 0"});
  }
  {
    CheckRequest r = Req("t");
    r.set_request_id(std::string(1025, 'r'));
    cases.push_back({r, "request_id: 1025 bytes, longer than 1024 (4 x --max-name-bytes)"});
  }
  {
    CheckRequest r = Req("t");
    r.set_policy_version("v\xFF");
    cases.push_back({r, "policy_version: not valid UTF-8 at byte 1"});
  }
  {
    CheckRequest r = Req("read_file");
    (*r.mutable_args()->mutable_fields())["path"].set_string_value("/tmp/\xE9t\xE9");
    cases.push_back({r, "args.path: string value not valid UTF-8 at byte 5"});
  }
  {
    CheckRequest r = Req("read_file");
    auto& list = *(*r.mutable_args()->mutable_fields())["opts"].mutable_list_value();
    list.add_values()->set_string_value("ok");
    (*list.add_values()->mutable_struct_value()->mutable_fields())["k\xFF"].set_bool_value(true);
    cases.push_back({r, "args.opts[1]: key not valid UTF-8 at byte 1"});
  }
  for (const Case& c : cases) {
    const absl::Status s = CheckError(c.req);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message << ": " << s;
    EXPECT_EQ(s.message(), c.message);
  }
  // The server still answers, and logged no protobuf parse error per call.
  auto ok = client_->Check(Req("read_file"), absl::Seconds(10));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_THAT(server_->log(), Not(HasSubstr("libprotobuf")));
  EXPECT_THAT(server_->log(), Not(HasSubstr("INFO forged line")));

  // Explain applies the same rules.
  auto explained = admin_->Explain(Req("tool\tx"), absl::Seconds(10));
  ASSERT_FALSE(explained.ok());
  EXPECT_EQ(explained.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(explained.status().message(), "tool: control character U+0009 at byte 4");
}

TEST_F(HostileInputTest, MaxNameBytesFlag) {
  StartServer({"--max-name-bytes", "10"});
  auto ok = client_->Check(Req("delete_中"), absl::Seconds(10));  // 10 bytes
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->decision(), toolgate::v1::DECISION_DENY);
  const absl::Status s = CheckError(Req("delete_中x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "tool: 11 bytes, longer than --max-name-bytes (10)");
}

TEST_F(HostileInputTest, ArgsOverTheLimitAreInvalidArgument) {
  StartServer({"--max-args-bytes", "1024"});
  for (size_t len : {size_t{2000}, size_t{256} << 10}) {
    CheckRequest r = Req("read_file");
    (*r.mutable_args()->mutable_fields())["path"].set_string_value(std::string(len, 'p'));
    const absl::Status s = CheckError(r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << len << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("--max-args-bytes")) << s;
  }
}

TEST(DanglingPolicySymlinkTest, ServerRefusesToStartNamingTheFile) {
  TempDir dir;
  dir.WriteFile("base.yaml", "version: \"1\"\ndefault: allow\n");
  const std::string link = dir.path() + "/deny.yaml";
  ASSERT_EQ(::symlink("/nonexistent/deny-rules.yaml", link.c_str()), 0);
  auto p = ServerProcess::Spawn({"--listen", "127.0.0.1:0", "--policy", dir.path()});
  ASSERT_TRUE(p.ok()) << p.status();
  std::optional<int> status = (*p)->WaitExit(kWait);
  ASSERT_TRUE(status.has_value()) << "toolgated started without the linked rules";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << *status;
  EXPECT_THAT((*p)->log(), HasSubstr(link + ": symbolic link to /nonexistent/deny-rules.yaml, "
                                            "which does not exist"));
  // lint says the same.
  CommandResult lint = RunCommand({CliBin(), "lint", dir.path()});
  EXPECT_EQ(lint.exit_code, 1) << lint.out << lint.err;
  EXPECT_THAT(lint.err, HasSubstr(link + ": symbolic link"));
}

TEST(RedisRevisionTest, ServerStartsOnAnAliasBombRevisionAndServesTheNextGoodOne) {
  auto redis_or = RedisProcess::Start();
  ASSERT_TRUE(redis_or.ok()) << redis_or.status();
  std::unique_ptr<RedisProcess> redis = *std::move(redis_or);
  // Written directly, as a writer that skipped validation (or an older
  // release) could have: `toolgate policy push` refuses it.
  const std::string bomb = AliasBombPolicy("enum", 9);
  ASSERT_TRUE(redis->Command({"HSET", "toolgate:policy:rev:bomb", "policy.yaml", bomb}).ok());
  ASSERT_TRUE(redis->Command({"ZADD", "toolgate:policy:revisions", "1", "bomb"}).ok());
  ASSERT_TRUE(redis->Command({"SET", "toolgate:policy:active", "bomb"}).ok());
  TempDir dir;
  const std::string bomb_path = dir.WriteFile("bomb.yaml", bomb);
  CommandResult refused =
      RunCommand({CliBin(), "policy", "push", bomb_path, "--redis", redis->url()}, {},
                 absl::Seconds(120));
  EXPECT_NE(refused.exit_code, 0) << refused.out;
  EXPECT_THAT(refused.err, HasSubstr("too large with its aliases expanded"));

  // Generous: refusing the bomb walks its whole node budget, which takes
  // seconds in a sanitizer build on a busy machine.
  auto server_or = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", redis->url(), "--policy-check-interval", "200ms"},
      {}, absl::Seconds(120));
  ASSERT_TRUE(server_or.ok()) << server_or.status();
  std::unique_ptr<ServerProcess> server = *std::move(server_or);
  auto client = toolgate::Client::Connect(server->address());
  auto admin = toolgate::Client::Connect(server->admin_address());

  auto r = client->Check(Req("read_file"), absl::Seconds(10));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("too large with its aliases expanded"));
  auto status = admin->GetStatus(absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->active_revision(), "");
  EXPECT_THAT(status->last_reload_error(), HasSubstr("too large with its aliases expanded"));
  CommandResult cli_status =
      RunCommand({CliBin(), "status", "--target", server->admin_address()});
  EXPECT_THAT(cli_status.out + cli_status.err, HasSubstr("too large with its aliases expanded"));
  ASSERT_TRUE(server->Running());

  // A good revision activated afterwards is served.
  const std::string good =
      dir.WriteFile("good.yaml", "version: \"1\"\nrevision: \"good-1\"\ndefault: allow\n");
  CommandResult pushed =
      RunCommand({CliBin(), "policy", "push", good, "--activate", "--redis", redis->url()});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.out << pushed.err;
  ASSERT_TRUE(PollUntil(
      [&] {
        auto c = client->Check(Req("read_file"), absl::Seconds(2));
        return c.ok() && c->policy_version() == "good-1";
      },
      kWait))
      << server->log();
  auto after = admin->GetStatus(absl::Seconds(10));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->active_revision(), "good-1");
  EXPECT_EQ(after->last_reload_error(), "");
}

}  // namespace
}  // namespace toolgate_test
