// Signed, content-bound policy revisions in Redis (toolgate policy push
// --signing-key, toolgated --policy-verify-key) with real toolgated
// processes, a real redis-server and keys generated at test time.
//
// The takeovers tested are what anyone who can write to Redis could do
// before: store an allow-all revision with raw commands and make it active,
// or change the content of the active revision under its name.
#include <signal.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/ed25519.h"
#include "tests/integration/process.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using toolgate::v1::CheckRequest;
using toolgate::v1::DECISION_ALLOW;
using toolgate::v1::DECISION_DENY;

constexpr absl::Duration kWait = absl::Seconds(30);
constexpr char kPrefix[] = "toolgate:policy:";

// A policy that denies delete_repository (or allows it) and allows read_file.
std::string PolicyText(const std::string& revision, const std::string& delete_action) {
  return absl::StrCat("version: \"1\"\nrevision: \"", revision,
                      "\"\ntools:\n  delete_repository: {action: ", delete_action,
                      "}\n  read_file: {}\n");
}

// What the takeover stores: everything allowed.
std::string AllowAll(const std::string& revision) {
  return absl::StrCat("version: \"1\"\nrevision: \"", revision, "\"\ndefault: allow\n");
}

CheckRequest Req(const std::string& tool) {
  CheckRequest r;
  r.set_tool(tool);
  r.set_grant("g");
  return r;
}

// Polls until `client` answers with `revision`.
bool WaitForRevision(toolgate::Client& client, const std::string& revision) {
  const absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    auto r = client.Check(Req("read_file"), absl::Seconds(2));
    if (r.ok() && r->policy_version() == revision) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

// Polls GetStatus (on the admin listener) until its last reload error
// contains `needle`.
bool WaitForStatusError(const ServerProcess& server, const std::string& needle) {
  auto client = toolgate::Client::Connect(server.admin_address());
  const absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    auto s = client->GetStatus();
    if (s.ok() && absl::StrContains(s->last_reload_error(), needle)) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

class SignedRevisionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
  }

  // Generates an Ed25519 key pair (OpenSSL's EVP API) into NAME.pem and
  // NAME.pub.pem, as `openssl genpkey -algorithm ed25519` and `openssl pkey
  // -pubout` write them.
  struct KeyPair {
    std::string private_pem, public_pem;
  };
  KeyPair GenerateKey(const std::string& name) {
    const toolgate::Ed25519PrivateKey key = toolgate::Ed25519PrivateKey::Generate();
    return {dir_.WriteFile(name + ".pem", key.PrivatePem()),
            dir_.WriteFile(name + ".pub.pem", key.PublicPem())};
  }

  CommandResult Policy(std::vector<std::string> args) {
    std::vector<std::string> argv = {CliBin(), "policy"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--redis");
    argv.push_back(redis_->url());
    return RunCommand(argv);
  }
  // Pushes `text` signed with `key` (unsigned when empty) and activates it.
  void PushAndActivate(const std::string& revision, const std::string& text,
                       const std::string& key) {
    const std::string file = dir_.WriteFile(revision + ".yaml", text);
    std::vector<std::string> args = {"push", file, "--activate"};
    if (!key.empty()) args.insert(args.end(), {"--signing-key", key});
    CommandResult r = Policy(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  absl::StatusOr<std::unique_ptr<ServerProcess>> StartServer(
      const std::vector<std::string>& verify_keys) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", redis_->url()};
    for (const std::string& k : verify_keys) args.insert(args.end(), {"--policy-verify-key", k});
    return ServerProcess::Start(args);
  }

  // Raw Redis commands: no toolgate involved.
  void Raw(const std::vector<std::string>& argv) {
    auto r = redis_->Command(argv);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  TempDir dir_;
  std::unique_ptr<RedisProcess> redis_;
};

TEST_F(SignedRevisionTest, TakeoversThroughRedisAreRefusedByEveryServer) {
  const KeyPair key = GenerateKey("release");
  PushAndActivate("rev-a", PolicyText("rev-a", "deny"), key.private_pem);

  std::vector<std::unique_ptr<ServerProcess>> servers;
  std::vector<std::unique_ptr<toolgate::Client>> clients;
  for (int i = 0; i < 2; ++i) {
    auto s = StartServer({key.public_pem});
    ASSERT_TRUE(s.ok()) << s.status();
    clients.push_back(toolgate::Client::Connect((*s)->address()));
    servers.push_back(*std::move(s));
  }
  for (auto& c : clients) {
    auto r = c->Check(Req("delete_repository"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->policy_version(), "rev-a");
    EXPECT_EQ(r->decision(), DECISION_DENY);
  }

  // Takeover 1: an unsigned allow-all revision made active with four raw
  // commands.
  Raw({"HSET", absl::StrCat(kPrefix, "rev:evil"), "policy.yaml", AllowAll("evil")});
  Raw({"ZADD", absl::StrCat(kPrefix, "revisions"), "1", "evil"});
  Raw({"SET", absl::StrCat(kPrefix, "active"), "evil"});
  Raw({"PUBLISH", absl::StrCat(kPrefix, "events"), "evil"});
  for (size_t i = 0; i < servers.size(); ++i) {
    ASSERT_TRUE(servers[i]->WaitForLog("revision \"evil\" from Redis refused", kWait))
        << servers[i]->log();
    EXPECT_TRUE(WaitForStatusError(*servers[i], "no recorded digest or signature"));
    auto r = clients[i]->Check(Req("delete_repository"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->policy_version(), "rev-a") << "the previous revision keeps deciding";
    EXPECT_EQ(r->decision(), DECISION_DENY);
    auto status = toolgate::Client::Connect(servers[i]->admin_address())->GetStatus();
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status->active_revision(), "rev-a");
  }
  {
    // A server started now finds no acceptable revision: it serves, and
    // answers UNAVAILABLE saying why.
    auto fresh = StartServer({key.public_pem});
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    auto client = toolgate::Client::Connect((*fresh)->address());
    auto r = client->Check(Req("delete_repository"));
    ASSERT_FALSE(r.ok()) << "decided by " << r->policy_version();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("revision \"evil\" from Redis refused"));
    EXPECT_TRUE(WaitForStatusError(**fresh, "no recorded digest or signature"));
  }

  // Back to the signed revision (already serving: nothing changes there).
  ASSERT_EQ(Policy({"activate", "rev-a"}).exit_code, 0);
  // Takeover 2: the active signed revision's content replaced under its name.
  Raw({"HSET", absl::StrCat(kPrefix, "rev:rev-a"), "rev-a.yaml", AllowAll("rev-a")});
  Raw({"PUBLISH", absl::StrCat(kPrefix, "events"), "rev-a"});
  for (auto& s : servers) ASSERT_TRUE(s->Signal(SIGHUP));  // Checked again: nothing new.
  {
    auto fresh = StartServer({key.public_pem});
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    auto client = toolgate::Client::Connect((*fresh)->address());
    auto r = client->Check(Req("delete_repository"));
    ASSERT_FALSE(r.ok()) << "a new server took the changed content: " << r->decision();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("does not match the digest recorded"));
    EXPECT_TRUE(WaitForStatusError(**fresh, "does not match the digest recorded"));
  }
  for (auto& c : clients) {
    auto r = c->Check(Req("delete_repository"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->policy_version(), "rev-a");
    EXPECT_EQ(r->decision(), DECISION_DENY) << "the fleet is not split";
  }

  // Pushing changed content under the signed name through toolgate is
  // refused too.
  const std::string changed = dir_.WriteFile("changed.yaml", PolicyText("rev-a", "allow"));
  CommandResult refused = Policy({"push", changed, "--signing-key", key.private_pem});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err,
              HasSubstr("revision \"rev-a\" was already pushed with different content"));

  // A properly signed push and activation is taken up everywhere.
  PushAndActivate("rev-b", PolicyText("rev-b", "allow"), key.private_pem);
  for (size_t i = 0; i < clients.size(); ++i) {
    ASSERT_TRUE(WaitForRevision(*clients[i], "rev-b"));
    auto r = clients[i]->Check(Req("delete_repository"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->decision(), DECISION_ALLOW);
    auto status = toolgate::Client::Connect(servers[i]->admin_address())->GetStatus();
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status->last_reload_error(), "");
  }
  const CommandResult list = Policy({"list"});
  EXPECT_THAT(list.out, HasSubstr("* rev-b"));
  EXPECT_THAT(list.out, HasSubstr("signed by key"));
  EXPECT_THAT(list.out, HasSubstr("evil"));
  EXPECT_THAT(list.out, HasSubstr("no digest"));
}

TEST_F(SignedRevisionTest, RotatedKeysAreAcceptedAndOthersRefused) {
  const KeyPair old_key = GenerateKey("old");
  const KeyPair new_key = GenerateKey("new");
  const KeyPair stranger = GenerateKey("stranger");
  PushAndActivate("rev-1", PolicyText("rev-1", "deny"), old_key.private_pem);
  auto server = StartServer({old_key.public_pem, new_key.public_pem});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  ASSERT_TRUE(WaitForRevision(*client, "rev-1"));

  PushAndActivate("rev-2", PolicyText("rev-2", "deny"), new_key.private_pem);
  ASSERT_TRUE(WaitForRevision(*client, "rev-2")) << "signed with the second key";

  PushAndActivate("rev-3", PolicyText("rev-3", "allow"), stranger.private_pem);
  ASSERT_TRUE((*server)->WaitForLog("revision \"rev-3\" from Redis refused", kWait));
  EXPECT_TRUE(WaitForStatusError(**server, "does not verify with any of the 2"));
  PushAndActivate("rev-4", PolicyText("rev-4", "allow"), "");
  ASSERT_TRUE((*server)->WaitForLog("revision \"rev-4\" from Redis refused", kWait));
  EXPECT_TRUE(WaitForStatusError(**server, "it is not signed"));
  auto r = client->Check(Req("delete_repository"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->policy_version(), "rev-2");
  EXPECT_EQ(r->decision(), DECISION_DENY);
}

TEST_F(SignedRevisionTest, WithoutAVerifyKeyTheServerWarnsAndStillBindsNamesToContent) {
  PushAndActivate("rev-1", PolicyText("rev-1", "deny"), "");
  auto server = StartServer({});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_THAT((*server)->log(),
              HasSubstr("anyone who can write to the policy keys in Redis (toolgate:policy:*) "
                        "controls the policy"));
  EXPECT_THAT((*server)->log(), HasSubstr("--policy-verify-key"));
  auto client = toolgate::Client::Connect((*server)->address());
  ASSERT_TRUE(WaitForRevision(*client, "rev-1"));

  // Content changed under a pushed name, then activated: refused.
  const std::string two = dir_.WriteFile("two.yaml", PolicyText("rev-2", "deny"));
  ASSERT_EQ(Policy({"push", two}).exit_code, 0);
  Raw({"HSET", absl::StrCat(kPrefix, "rev:rev-2"), "two.yaml", AllowAll("rev-2")});
  ASSERT_EQ(Policy({"activate", "rev-2"}).exit_code, 0);
  ASSERT_TRUE((*server)->WaitForLog("revision \"rev-2\" from Redis refused", kWait));
  EXPECT_TRUE(WaitForStatusError(**server, "does not match the digest recorded"));
  auto r = client->Check(Req("delete_repository"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->policy_version(), "rev-1");

  // Pushing the same content again restores it; announced, it is taken up.
  ASSERT_EQ(Policy({"push", two, "--activate"}).exit_code, 0);
  ASSERT_TRUE(WaitForRevision(*client, "rev-2"));
}

TEST_F(SignedRevisionTest, BadKeyFilesAreClearErrors) {
  const KeyPair key = GenerateKey("k");
  const std::string not_pem = dir_.WriteFile("not.pem", "hello\n");
  const std::string missing = dir_.path() + "/missing.pem";
  struct Case {
    std::string file, want;
  };
  for (const Case& c : std::vector<Case>{{key.private_pem, "a private key, not a public key"},
                                         {not_pem, "not a PEM file"},
                                         {missing, "missing.pem"}}) {
    auto p = ServerProcess::Spawn(
        {"--listen", "127.0.0.1:0", "--policy", redis_->url(), "--policy-verify-key", c.file});
    ASSERT_TRUE(p.ok()) << p.status();
    std::optional<int> status = (*p)->WaitExit(kWait);
    ASSERT_TRUE(status.has_value()) << "toolgated started with verify key " << c.file;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status;
    EXPECT_THAT((*p)->log(), HasSubstr(c.file));
    EXPECT_THAT((*p)->log(), HasSubstr(c.want));
  }
  // A verify key with a policy that is not in Redis.
  const std::string file = dir_.WriteFile("p.yaml", PolicyText("p", "deny"));
  auto p = ServerProcess::Spawn(
      {"--listen", "127.0.0.1:0", "--policy", file, "--policy-verify-key", key.public_pem});
  ASSERT_TRUE(p.ok());
  std::optional<int> status = (*p)->WaitExit(kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_THAT((*p)->log(), HasSubstr("--policy-verify-key applies only to a policy in Redis"));

  // The CLI: a public key as signing key; nothing is pushed.
  CommandResult r = Policy({"push", file, "--signing-key", key.public_pem});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(key.public_pem));
  EXPECT_THAT(r.err, HasSubstr("a public key, not a private key"));
  auto keys = redis_->Keys();
  ASSERT_TRUE(keys.ok());
  EXPECT_TRUE(keys->empty());
}

}  // namespace
}  // namespace toolgate_test
