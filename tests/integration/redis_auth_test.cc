// Secrets given as files: Redis credentials (--redis-username-file,
// --redis-password-file, for toolgated and `toolgate policy`) against a real
// redis-server whose users are the ACL rules deploy/redis-dev ships, and the
// decision log's hashed grant and keyed hashes (--decision-log-hash-grant,
// --decision-log-hash-key-file) of a real toolgated.
#include <signal.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/base/digest.h"
#include "tests/integration/process.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"
#include "yaml-cpp/yaml.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kServerPassword[] = "srv-5f1c9a7e3b2d4c6a8e0f";
constexpr char kAdminPassword[] = "adm-9b7d5f3a1c2e4a6c8e0b";

std::string PolicyText(const std::string& revision) {
  return absl::StrCat("version: \"1\"\nrevision: \"", revision,
                      "\"\ndefault: deny\ntools:\n"
                      "  limited:\n    limits: [{counter: c, window: hour, max: 2}]\n"
                      "grants:\n  secret-grant-7:\n    tools:\n"
                      "      special: {action: allow}\n");
}

toolgate::v1::CheckRequest Req(const std::string& tool, const std::string& grant = "g") {
  toolgate::v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  r.set_session("s");
  (*r.mutable_args()->mutable_fields())["path"].set_string_value("/etc/hosts");
  return r;
}

// The "user NAME RULES..." lines of deploy/redis-dev's ACL file, by name.
std::map<std::string, std::vector<std::string>> ShippedAclRules() {
  std::map<std::string, std::vector<std::string>> out;
  for (const YAML::Node& doc :
       YAML::LoadAllFromFile(SourcePath("deploy/redis-dev/configmap-redis.yaml"))) {
    const std::string acl = doc["data"]["users.acl"].as<std::string>();
    for (absl::string_view line : absl::StrSplit(acl, '\n', absl::SkipEmpty())) {
      std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (words.size() < 2 || words[0] != "user") continue;
      out[words[1]] = std::vector<std::string>(words.begin() + 2, words.end());
    }
  }
  return out;
}

class RedisAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    // The users exactly as deploy/redis-dev defines them, with passwords.
    // (The default user stays on here: the test's helpers use it.)
    const auto rules = ShippedAclRules();
    ASSERT_TRUE(rules.count("default") && rules.count("toolgate") && rules.count("toolgate-admin"));
    EXPECT_EQ(rules.at("default"), std::vector<std::string>{"off"});
    for (const auto& [user, password] :
         {std::pair<std::string, std::string>{"toolgate", kServerPassword},
          {"toolgate-admin", kAdminPassword}}) {
      std::vector<std::string> argv = {"ACL", "SETUSER", user};
      argv.insert(argv.end(), rules.at(user).begin(), rules.at(user).end());
      argv.push_back(absl::StrCat(">", password));
      auto set = redis_->Command(argv);
      ASSERT_TRUE(set.ok()) << set.status();
    }
    server_user_ = dir_.WriteFile("server-user", "toolgate\n");
    server_password_ = dir_.WriteFile("server-password", absl::StrCat(kServerPassword, "\n"));
    admin_user_ = dir_.WriteFile("admin-user", "toolgate-admin\n");
    admin_password_ = dir_.WriteFile("admin-password", absl::StrCat(kAdminPassword, "\n"));
  }

  CommandResult Policy(std::vector<std::string> args, const std::string& user,
                       const std::string& password) {
    std::vector<std::string> argv = {CliBin(), "policy"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a :
         {std::string("--redis"), redis_->url(), std::string("--redis-username-file"), user,
          std::string("--redis-password-file"), password}) {
      argv.push_back(a);
    }
    return RunCommand(argv);
  }

  // The names of the users connected to Redis now (CLIENT LIST's user=).
  std::vector<std::string> ConnectedUsers() {
    std::vector<std::string> users;
    auto list = redis_->Command({"CLIENT", "LIST"});
    EXPECT_TRUE(list.ok()) << list.status();
    for (absl::string_view line : absl::StrSplit(list.value_or(""), '\n', absl::SkipEmpty())) {
      for (absl::string_view field : absl::StrSplit(line, ' ')) {
        if (absl::ConsumePrefix(&field, "user=")) users.emplace_back(field);
      }
    }
    return users;
  }

  TempDir dir_;
  std::unique_ptr<RedisProcess> redis_;
  std::string server_user_, server_password_, admin_user_, admin_password_;
};

TEST_F(RedisAuthTest, TheShippedAclUsersRunToolgateWithPasswordsFromFiles) {
  // Rollout as the admin user, with the password from a file.
  const std::string policy = dir_.WriteFile("p.yaml", PolicyText("auth-1"));
  CommandResult pushed = Policy({"push", policy, "--activate"}, admin_user_, admin_password_);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  // The servers' user may read policies, not write them.
  CommandResult refused = Policy({"push", policy}, server_user_, server_password_);
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_THAT(refused.err, HasSubstr("NOPERM"));

  // A server following Redis and counting in it, as the ACL user; nothing
  // secret on its command line or in its environment.
  auto server = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", redis_->url(), "--redis", redis_->url()},
      {{"TOOLGATE_REDIS_USERNAME_FILE", server_user_},
       {"TOOLGATE_REDIS_PASSWORD_FILE", server_password_}});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  std::vector<toolgate::v1::Decision> decisions;
  for (int i = 0; i < 3; ++i) {
    auto r = client->Check(Req("limited"));
    ASSERT_TRUE(r.ok()) << r.status();
    decisions.push_back(r->decision());
  }
  EXPECT_EQ(decisions, (std::vector<toolgate::v1::Decision>{toolgate::v1::DECISION_ALLOW,
                                                            toolgate::v1::DECISION_ALLOW,
                                                            toolgate::v1::DECISION_RATE_LIMITED}))
      << (*server)->log();
  auto keys = redis_->Keys("toolgate:{*");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_FALSE(keys->empty()) << "the counters are not in Redis";
  const std::vector<std::string> users = ConnectedUsers();
  EXPECT_GE(std::count(users.begin(), users.end(), "toolgate"), 2)
      << "counters and the policy follower connect as the ACL user";

  const std::string cmdline = ReadFileOrEmpty(absl::StrCat("/proc/", (*server)->pid(), "/cmdline"));
  const std::string environ = ReadFileOrEmpty(absl::StrCat("/proc/", (*server)->pid(), "/environ"));
  ASSERT_FALSE(cmdline.empty());
  EXPECT_THAT(cmdline, Not(HasSubstr(kServerPassword)));
  EXPECT_THAT(environ, Not(HasSubstr(kServerPassword)));
  EXPECT_THAT((*server)->log(), Not(HasSubstr(kServerPassword)));
  EXPECT_THAT((*server)->log(), Not(HasSubstr("/proc/PID/cmdline")));  // No inline warning.

  // The rollout reaches it through the announcement channel the user may read.
  const std::string next = dir_.WriteFile("p2.yaml", PolicyText("auth-2"));
  ASSERT_EQ(Policy({"push", next, "--activate"}, admin_user_, admin_password_).exit_code, 0);
  EXPECT_TRUE((*server)->WaitForLog("auth-2", absl::Seconds(30))) << (*server)->log();
}

TEST_F(RedisAuthTest, AWrongPasswordIsRefusedByRedisAndNeverLogged) {
  const std::string wrong = dir_.WriteFile("wrong", "not-the-password-0123\n");
  auto server =
      ServerProcess::Start({"--listen", "127.0.0.1:0", "--redis", redis_->url(),
                            "--redis-username-file", server_user_, "--redis-password-file", wrong});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto r = client->Check(Req("wait_for_background_task"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);  // Fail closed.
  EXPECT_TRUE((*server)->WaitForLog("authentication failed", absl::Seconds(30)))
      << (*server)->log();
  EXPECT_THAT((*server)->log(), Not(HasSubstr("not-the-password-0123")));
}

TEST_F(RedisAuthTest, BadCredentialFilesAreClearErrorsAtStart) {
  const std::string empty = dir_.WriteFile("empty", "\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::string inline_url =
      absl::StrCat("redis://toolgate:", kServerPassword, "@127.0.0.1:", redis_->port());
  const std::vector<Case> cases = {
      {{"--redis-password-file", empty}, "--redis-password-file: " + empty + " is empty"},
      {{"--redis-password-file", dir_.path() + "/missing"}, "--redis-password-file: "},
      {{"--redis-password-file", dir_.path()}, "--redis-password-file: "},
      {{"--redis-username-file", server_user_},
       "--redis-username-file needs --redis-password-file"},
      {{"--redis-username-file", empty, "--redis-password-file", server_password_},
       "--redis-username-file: "},
      {{"--redis", inline_url, "--redis-password-file", server_password_},
       "--redis-password-file: the Redis URL redis://toolgate:***@127.0.0.1"},
      {{"--policy", inline_url, "--redis-password-file", server_password_},
       "--redis-password-file: the Redis URL"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    std::vector<std::string> argv = {ToolgatedBin(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_THAT(r.err, Not(HasSubstr(kServerPassword)));
  }
  // The CLI says the same.
  CommandResult cli = RunCommand(
      {CliBin(), "policy", "list", "--redis", redis_->url(), "--redis-password-file", empty});
  EXPECT_EQ(cli.exit_code, 2);
  EXPECT_THAT(cli.err, HasSubstr("--redis-password-file: " + empty + " is empty"));
}

TEST_F(RedisAuthTest, AnInlinePasswordStillWorksWithAWarningThatNamesTheFileFlag) {
  const std::string url =
      absl::StrCat("redis://toolgate:", kServerPassword, "@127.0.0.1:", redis_->port());
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--redis", url});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto r = client->Check(Req("wait_for_background_task"));  // Counted in Redis.
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << (*server)->log();
  auto keys = redis_->Keys("toolgate:{*");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_FALSE(keys->empty());
  const std::string log = (*server)->log();
  EXPECT_THAT(log, HasSubstr("/proc/PID/cmdline"));
  EXPECT_THAT(log, HasSubstr("--redis-password-file"));
  EXPECT_THAT(log, Not(HasSubstr(kServerPassword)));
  // Once, not per connection.
  size_t count = 0;
  for (size_t at = log.find("/proc/PID/cmdline"); at != std::string::npos;
       at = log.find("/proc/PID/cmdline", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u);
}

// ---- decision log ----------------------------------------------------------------

std::vector<google::protobuf::Struct> LogLines(const std::string& path) {
  std::vector<google::protobuf::Struct> out;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(path), '\n', absl::SkipEmpty())) {
    google::protobuf::Struct s;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &s).ok()) << line;
    out.push_back(std::move(s));
  }
  return out;
}

TEST(DecisionLogHashingTest, HashedGrantAndKeyedHashesFromARealServer) {
  TempDir dir;
  const std::string policy = dir.WriteFile("p.yaml", PolicyText("log-1"));
  const std::string key = "k3y-0123456789abcdef-0123456789";
  const std::string key_file = dir.WriteFile("key", key + "\n");
  const std::string canonical_args = R"({"path":"/etc/hosts"})";

  struct Variant {
    std::vector<std::string> flags;
    std::string grant_field, grant_value, args_field, args_value;
  };
  const std::vector<Variant> variants = {
      {{}, "grant", "secret-grant-7", "args_sha256", toolgate::Sha256Hex(canonical_args)},
      {{"--decision-log-hash-grant"},
       "grant_sha256",
       toolgate::Sha256Hex("secret-grant-7"),
       "args_sha256",
       toolgate::Sha256Hex(canonical_args)},
      {{"--decision-log-hash-key-file", key_file},
       "grant",
       "secret-grant-7",
       "args_hmac_sha256",
       toolgate::HmacSha256Hex(key, canonical_args)},
      {{"--decision-log-hash-grant", "--decision-log-hash-key-file", key_file},
       "grant_hmac_sha256",
       toolgate::HmacSha256Hex(key, "secret-grant-7"),
       "args_hmac_sha256",
       toolgate::HmacSha256Hex(key, canonical_args)},
  };
  int n = 0;
  for (const Variant& v : variants) {
    SCOPED_TRACE(absl::StrJoin(v.flags, " "));
    const std::string log_path = absl::StrCat(dir.path(), "/decisions-", n++, ".jsonl");
    std::vector<std::string> args = {"--listen", "127.0.0.1:0",    "--policy",
                                     policy,     "--decision-log", log_path};
    args.insert(args.end(), v.flags.begin(), v.flags.end());
    auto server = ServerProcess::Start(args);
    ASSERT_TRUE(server.ok()) << server.status();
    auto client = toolgate::Client::Connect((*server)->address());
    auto r = client->Check(Req("special", "secret-grant-7"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW);
    // The log is written by its own thread: SIGTERM flushes it.
    ASSERT_TRUE((*server)->Signal(SIGTERM));
    ASSERT_TRUE((*server)->WaitExit(absl::Seconds(60)).has_value());
    const auto lines = LogLines(log_path);
    ASSERT_EQ(lines.size(), 1u) << ReadFileOrEmpty(log_path);
    const auto& f = lines[0].fields();
    EXPECT_EQ(f.count("grant") + f.count("grant_sha256") + f.count("grant_hmac_sha256"), 1u);
    EXPECT_EQ(f.count("args_sha256") + f.count("args_hmac_sha256"), 1u);
    ASSERT_TRUE(f.count(v.grant_field)) << ReadFileOrEmpty(log_path);
    EXPECT_EQ(f.at(v.grant_field).string_value(), v.grant_value);
    ASSERT_TRUE(f.count(v.args_field)) << ReadFileOrEmpty(log_path);
    EXPECT_EQ(f.at(v.args_field).string_value(), v.args_value);
    if (v.grant_field != "grant") {
      // The grant's section is named in the rule id: by the hash, too.
      EXPECT_THAT(ReadFileOrEmpty(log_path), Not(HasSubstr("secret-grant-7")));
      EXPECT_EQ(f.at("rule").string_value(), "grants." + v.grant_value + ".tools.special");
    }
  }
}

TEST(DecisionLogHashingTest, ABadKeyFileIsAClearErrorAtStart) {
  TempDir dir;
  const std::string short_key = dir.WriteFile("short", "fifteen-bytes!!\n");
  CommandResult r = RunCommand(
      {ToolgatedBin(), "--listen", "127.0.0.1:0", "--decision-log-hash-key-file", short_key});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--decision-log-hash-key-file: the key must be at least 16 bytes"));
  EXPECT_THAT(r.err, Not(HasSubstr("fifteen-bytes")));
  CommandResult missing = RunCommand({ToolgatedBin(), "--listen", "127.0.0.1:0",
                                      "--decision-log-hash-key-file", dir.path() + "/none"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("--decision-log-hash-key-file: "));
}

}  // namespace
}  // namespace toolgate_test
