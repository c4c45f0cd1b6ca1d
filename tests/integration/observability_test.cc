// Metrics (--metrics-listen) and the decision log (--decision-log) of a real
// toolgated.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "server/base/ed25519.h"
#include "tests/integration/process.h"
#include "tests/integration/scrape.h"
#include "tests/support/redis_process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(
version: "1"
revision: "obs-1"
default: deny
tools:
  read_file: {}
  limited:
    limits: [{counter: c, window: hour, max: 2}]
  delete_repository:
    action: deny
    reason: "no"
  run_command:
    args:
      type: object
      properties:
        command: {type: string, pattern: "^[a-z ]+$"}
)";

// Sum of the toolgate_checks_total samples with decision="d".
double ChecksByDecision(const std::string& text, const std::string& decision) {
  double total = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "toolgate_checks_total{") &&
        absl::StrContains(line, absl::StrCat("decision=\"", decision, "\""))) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) total += v;
    }
  }
  return total;
}

toolgate::v1::CheckRequest Req(const std::string& tool, const std::string& args_json = "{}") {
  toolgate::v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant("g");
  r.set_session("sess");
  r.set_request_id(absl::StrCat("req-", tool));
  auto args = toolgate::ParseArgsJson(args_json);
  EXPECT_TRUE(args.ok());
  *r.mutable_args() = *args;
  return r;
}

// Runs a known set of checks: 3 allow, 1 rate_limited, 3 deny.
void RunKnownChecks(toolgate::Client& client) {
  ASSERT_TRUE(client.Check(Req("read_file", R"({"path":"/etc/hosts"})")).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.Check(Req("limited")).ok());  // 2 allow, 1 RL.
  ASSERT_TRUE(client.Check(Req("delete_repository", R"({"repo":"x"})")).ok());
  ASSERT_TRUE(client.Check(Req("unlisted")).ok());
  ASSERT_TRUE(client.Check(Req("run_command", R"({"command":"rm -rf /"})")).ok());  // Deny.
}

std::vector<google::protobuf::Struct> ParseLines(const std::string& text) {
  std::vector<google::protobuf::Struct> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    google::protobuf::Struct s;
    const auto status = google::protobuf::util::JsonStringToMessage(std::string(line), &s);
    EXPECT_TRUE(status.ok()) << status.ToString() << ": " << line;
    out.push_back(std::move(s));
  }
  return out;
}

TEST(ObservabilityTest, MetricsCountExactlyTheChecksMade) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", path, "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string metrics = MetricsAddress(**server);
  ASSERT_TRUE(absl::StartsWith(metrics, "127.0.0.1:")) << (*server)->log();
  ASSERT_NE(metrics, "127.0.0.1:0");

  std::string text = HttpGet(metrics, "/metrics");
  ASSERT_THAT(text, HasSubstr("toolgate_policy_info{revision=\"obs-1\"} 1")) << text;
  EXPECT_EQ(ChecksByDecision(text, "allow"), 0);

  auto client = toolgate::Client::Connect((*server)->address());
  ASSERT_NE(client, nullptr);
  RunKnownChecks(*client);
  ASSERT_FALSE(client->Check(Req("")).ok());  // INVALID_ARGUMENT: no decision.

  text = HttpGet(metrics, "/metrics");
  EXPECT_EQ(ChecksByDecision(text, "allow"), 3) << text;
  EXPECT_EQ(ChecksByDecision(text, "rate_limited"), 1) << text;
  EXPECT_EQ(ChecksByDecision(text, "deny"), 3) << text;
  EXPECT_EQ(ChecksByDecision(text, "require_approval"), 0) << text;
  EXPECT_EQ(Sample(text, "toolgate_checks_total{decision=\"allow\",rule=\"tools.limited\",api=\"toolgate\"}"), 2)
      << text;
  EXPECT_EQ(
      Sample(text, "toolgate_checks_total{decision=\"rate_limited\",rule=\"tools.limited\",api=\"toolgate\"}"), 1)
      << text;
  EXPECT_EQ(Sample(text, "toolgate_check_errors_total{code=\"INVALID_ARGUMENT\"}"), 1) << text;
  EXPECT_EQ(Sample(text, "toolgate_check_duration_seconds_count"), 8) << text;
  EXPECT_EQ(Sample(text, "toolgate_policy_reloads_total{result=\"ok\"}"), 0) << text;

  // A reload is counted, and the info metric follows the new revision.
  dir.WriteFile("policy.yaml", absl::StrReplaceAll(kPolicy, {{"obs-1", "obs-2"}}));
  ASSERT_TRUE((*server)->Signal(SIGHUP));
  ASSERT_TRUE((*server)->WaitForLog("revision obs-2", absl::Seconds(10))) << (*server)->log();
  text = HttpGet(metrics, "/metrics");
  EXPECT_THAT(text, HasSubstr("toolgate_policy_info{revision=\"obs-2\"} 1")) << text;
  EXPECT_GE(Sample(text, "toolgate_policy_reloads_total{result=\"ok\"}"), 1) << text;

  // Graceful shutdown still works with the metrics endpoint up.
  ASSERT_TRUE((*server)->Signal(SIGTERM));
  const std::optional<int> status = (*server)->WaitExit(absl::Seconds(15));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << (*server)->log();
}

TEST(ObservabilityTest, DecisionLogHasOneJsonLinePerCheck) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  const std::string log_path = absl::StrCat(dir.path(), "/decisions.jsonl");
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path,
                                      "--decision-log", log_path, "--metrics-listen",
                                      "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  ASSERT_NE(client, nullptr);
  RunKnownChecks(*client);
  ASSERT_FALSE(client->Check(Req("")).ok());  // Errors are not decisions: not logged.

  const std::string metrics = HttpGet(MetricsAddress(**server), "/metrics");
  EXPECT_EQ(Sample(metrics, "toolgate_decision_log_dropped_total"), 0) << metrics;

  ASSERT_TRUE((*server)->Signal(SIGTERM));
  ASSERT_TRUE((*server)->WaitExit(absl::Seconds(15)).has_value());
  EXPECT_THAT((*server)->log(), HasSubstr("7 entries written, 0 dropped"));

  const std::vector<google::protobuf::Struct> lines = ParseLines(ReadFileOrEmpty(log_path));
  ASSERT_EQ(lines.size(), 7u) << ReadFileOrEmpty(log_path);
  std::map<std::string, int> by_decision;
  std::set<std::string> ids;
  for (const google::protobuf::Struct& s : lines) {
    const auto& f = s.fields();
    for (const char* key : {"decision_id", "time", "api", "tool", "server", "grant", "session",
                            "request_id", "decision", "reason", "rule", "revision", "latency_us",
                            "args_sha256"}) {
      EXPECT_EQ(f.count(key), 1u) << key;
    }
    EXPECT_EQ(f.count("args"), 0u) << "no args unless opted in";
    EXPECT_EQ(f.at("revision").string_value(), "obs-1");
    EXPECT_EQ(f.at("api").string_value(), "toolgate");
    EXPECT_EQ(f.at("grant").string_value(), "g");
    EXPECT_EQ(f.at("session").string_value(), "sess");
    EXPECT_EQ(f.at("request_id").string_value(), "req-" + f.at("tool").string_value());
    EXPECT_EQ(f.at("args_sha256").string_value().size(), 64u);
    EXPECT_TRUE(absl::EndsWith(f.at("time").string_value(), "Z"));
    ids.insert(f.at("decision_id").string_value());
    ++by_decision[f.at("decision").string_value()];
  }
  EXPECT_EQ(ids.size(), 7u);
  EXPECT_EQ(by_decision["allow"], 3);
  EXPECT_EQ(by_decision["rate_limited"], 1);
  EXPECT_EQ(by_decision["deny"], 3);
}

TEST(ObservabilityTest, DecisionLogArgsOnlyForOptedInTools) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  const std::string log_path = absl::StrCat(dir.path(), "/decisions.jsonl");
  auto server =
      ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path},
                           {{"TOOLGATE_DECISION_LOG", log_path},
                            {"TOOLGATE_DECISION_LOG_ARGS", "run_*"}});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  ASSERT_NE(client, nullptr);
  RunKnownChecks(*client);
  ASSERT_TRUE((*server)->Signal(SIGTERM));
  ASSERT_TRUE((*server)->WaitExit(absl::Seconds(15)).has_value());

  const std::vector<google::protobuf::Struct> lines = ParseLines(ReadFileOrEmpty(log_path));
  ASSERT_EQ(lines.size(), 7u);
  int with_args = 0;
  for (const google::protobuf::Struct& s : lines) {
    const auto& f = s.fields();
    const bool is_run = f.at("tool").string_value() == "run_command";
    ASSERT_EQ(f.count("args"), is_run ? 1u : 0u) << f.at("tool").string_value();
    if (is_run) {
      ++with_args;
      EXPECT_EQ(f.at("args").struct_value().fields().at("command").string_value(), "rm -rf /");
      EXPECT_EQ(f.at("decision").string_value(), "deny");
    }
  }
  EXPECT_EQ(with_args, 1);
}

}  // namespace
// The reader of stdout (the decision log) goes away: toolgated is not killed
// by SIGPIPE, keeps deciding, and counts (and reports) the lost entries.
TEST(ObservabilityTest, DecisionLogToAClosedPipeIsCountedAndTheServerLivesOn) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  auto server = ServerProcess::StartWithStdout({"--listen", "127.0.0.1:0", "--policy", path,
                                                "--decision-log", "stdout", "--metrics-listen",
                                                "127.0.0.1:0"},
                                               fds[1]);
  close(fds[1]);
  close(fds[0]);  // The reader is gone: every write now fails with EPIPE.
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<toolgate::v1::CheckResponse> r = client->Check(Req("read_file", R"({"path":"/x"})"));
    ASSERT_TRUE(r.ok()) << r.status() << "\n" << (*server)->log();
  }
  double lost = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((lost = Sample(HttpGet(MetricsAddress(**server), "/metrics"),
                        "toolgate_decision_log_write_errors_total")) < 5 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(lost, 5);
  EXPECT_TRUE((*server)->Running()) << (*server)->log();
  EXPECT_THAT((*server)->log(), HasSubstr("write failed: Broken pipe"));
  EXPECT_TRUE(client->Check(Req("read_file", R"({"path":"/x"})")).ok());
}

// A decision log on a full disk: the failures are counted, not silent.
TEST(ObservabilityTest, DecisionLogOnAFullDiskIsCounted) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", path,
                                      "--decision-log", "/dev/full", "--metrics-listen",
                                      "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->Check(Req("unlisted")).ok());
  ASSERT_TRUE((*server)->Signal(SIGTERM));
  ASSERT_TRUE((*server)->WaitExit(absl::Seconds(15)).has_value());
  EXPECT_THAT((*server)->log(), HasSubstr("No space left on device"));
  EXPECT_THAT((*server)->log(), HasSubstr("0 entries written, 0 dropped (queue full), 3 failed to write"));
}

// The reader of stderr (the server log) goes away: toolgated is not killed by
// SIGPIPE, keeps deciding, and counts the lines it could not write.
TEST(ObservabilityTest, ServerLogToAClosedPipeIsCountedAndTheServerLivesOn) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  const std::string bin = ToolgatedBin();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(fds[1], 2);
    execl(bin.c_str(), bin.c_str(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
          "--policy", path.c_str(), "--metrics-listen", "127.0.0.1:0", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  close(null_fd);
  // Read the log until both addresses are known, then stop reading.
  std::string log, address, metrics;
  auto find = [&](const std::string& needle) {
    const size_t at = log.find(needle);
    if (at == std::string::npos) return std::string();
    const size_t start = at + needle.size();
    const size_t end = log.find_first_of(" \n", start);
    return end == std::string::npos ? std::string() : log.substr(start, end - start);
  };
  while (address.empty() || metrics.empty()) {
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);  // Ends at EOF if it exits.
    if (n <= 0) break;
    log.append(buf, static_cast<size_t>(n));
    address = find("toolgated listening on ");
    metrics = find("metrics listening on ");
  }
  close(fds[0]);  // The reader is gone: every log line now fails with EPIPE.
  ASSERT_FALSE(address.empty()) << log;
  ASSERT_FALSE(metrics.empty()) << log;
  ASSERT_EQ(kill(pid, SIGHUP), 0);  // A reload logs a line.
  double lost = 0;
  const absl::Time until = absl::Now() + absl::Seconds(60);
  while ((lost = Sample(HttpGet(metrics, "/metrics"), "toolgate_log_write_errors_total")) < 1 &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(lost, 1);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0) << "toolgated exited, status " << status;
  auto client = toolgate::Client::Connect(address);
  EXPECT_TRUE(client->Check(Req("read_file", R"({"path":"/x"})")).ok());
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
}

TEST(ObservabilityTest, RefusedPolicyRevisionsAreCountedByReason) {
  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  TempDir dir;
  const toolgate::Ed25519PrivateKey generated = toolgate::Ed25519PrivateKey::Generate();
  const std::string key = dir.WriteFile("k.pem", generated.PrivatePem());
  const std::string pub = dir.WriteFile("k.pub.pem", generated.PublicPem());
  auto push = [&](const std::string& revision, std::vector<std::string> extra) {
    const std::string file = dir.WriteFile(
        revision + ".yaml", absl::StrCat("version: \"1\"\nrevision: \"", revision, "\"\n"));
    std::vector<std::string> argv = {CliBin(), "policy", "push", file, "--redis", (*redis)->url()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv).exit_code;
  };
  ASSERT_EQ(push("signed", {"--signing-key", key, "--activate"}), 0);
  auto server =
      ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", (*redis)->url(),
                            "--policy-verify-key", pub, "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string metrics = MetricsAddress(**server);
  auto wait_for = [&](const std::string& series, double want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      if (Sample(HttpGet(metrics, "/metrics"), series) == want) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  };
  EXPECT_TRUE(wait_for("toolgate_policy_rejected_total{reason=\"unsigned\"}", 0));
  ASSERT_EQ(push("plain", {"--activate"}), 0);
  EXPECT_TRUE(wait_for("toolgate_policy_rejected_total{reason=\"unsigned\"}", 1));
  ASSERT_EQ(push("changed", {"--signing-key", key}), 0);
  ASSERT_TRUE((*redis)
                  ->Command({"HSET", "toolgate:policy:rev:changed", "changed.yaml",
                             "version: \"1\"\nrevision: \"changed\"\ndefault: allow\n"})
                  .ok());
  ASSERT_EQ(
      RunCommand({CliBin(), "policy", "activate", "changed", "--redis", (*redis)->url()}).exit_code,
      0);
  EXPECT_TRUE(wait_for("toolgate_policy_rejected_total{reason=\"digest\"}", 1));
  EXPECT_THAT(HttpGet(metrics, "/metrics"),
              HasSubstr("toolgate_policy_info{revision=\"signed\"} 1"));
}

}  // namespace toolgate_test
