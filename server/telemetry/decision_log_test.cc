#include "server/telemetry/decision_log.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/json_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/digest.h"

namespace toolgate {
namespace {

google::protobuf::Struct ParseStruct(const std::string& json) {
  google::protobuf::Struct s;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << ": " << json;
  return s;
}

// Polls `done` every millisecond for up to 30 s.
template <typename F>
bool PollUntilTrue(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

DecisionLogEntry Entry(const std::string& tool, int n) {
  DecisionLogEntry e;
  e.decision_id = absl::StrCat("id-", n);
  e.time = absl::FromUnixMillis(1'795'000'000'123);
  e.tool = tool;
  e.server = "github";
  e.grant = "agent-7";
  e.session = "s1";
  e.request_id = absl::StrCat("req-", n);
  e.decision = "deny";
  e.reason = "Agents may not \"delete\"\n repositories";
  e.rule = "tools.delete_repository";
  e.revision = "2026-11-25.1";
  e.latency_us = 42;
  (*e.args.mutable_fields())["command"].set_string_value("ls -la");
  (*e.args.mutable_fields())["timeout"].set_number_value(30);
  return e;
}

// Collects lines written to the log.
struct Collected {
  absl::Mutex mu;
  std::string text;
  DecisionLog::Sink Sink() {
    return [this](absl::string_view line) {
      absl::MutexLock lock(&mu);
      absl::StrAppend(&text, line);
      return true;
    };
  }
  std::vector<std::string> Lines() {
    absl::MutexLock lock(&mu);
    std::vector<std::string> out = absl::StrSplit(text, '\n', absl::SkipEmpty());
    return out;
  }
};

TEST(DecisionLogTest, ApiSaysHowTheCallArrived) {
  DecisionLogEntry e = Entry("delete_repository", 1);
  e.api = CheckApi::kExtAuthz;
  EXPECT_EQ(ParseStruct(DecisionLogLine(e, false)).fields().at("api").string_value(), "ext_authz");
  e.event = "approval_created";  // Events are not calls: no api.
  EXPECT_EQ(ParseStruct(DecisionLogLine(e, false)).fields().count("api"), 0u);
}

TEST(DecisionLogTest, LineHasEveryFieldAndNoArgsByDefault) {
  const DecisionLogEntry e = Entry("delete_repository", 1);
  const std::string line = DecisionLogLine(e, /*with_args=*/false);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  const google::protobuf::Struct s = ParseStruct(line);
  const auto& f = s.fields();
  EXPECT_EQ(f.at("decision_id").string_value(), "id-1");
  EXPECT_EQ(f.at("time").string_value(), "2026-11-18T11:06:40.123Z");
  EXPECT_EQ(f.at("api").string_value(), "toolgate");
  EXPECT_EQ(f.at("tool").string_value(), "delete_repository");
  EXPECT_EQ(f.at("server").string_value(), "github");
  EXPECT_EQ(f.at("grant").string_value(), "agent-7");
  EXPECT_EQ(f.at("session").string_value(), "s1");
  EXPECT_EQ(f.at("request_id").string_value(), "req-1");
  EXPECT_EQ(f.at("decision").string_value(), "deny");
  EXPECT_EQ(f.at("reason").string_value(), "Agents may not \"delete\"\n repositories");
  EXPECT_EQ(f.at("rule").string_value(), "tools.delete_repository");
  EXPECT_EQ(f.at("revision").string_value(), "2026-11-25.1");
  EXPECT_EQ(f.at("latency_us").number_value(), 42);
  EXPECT_EQ(f.at("args_sha256").string_value(), Sha256Hex(R"({"command":"ls -la","timeout":30})"));
  EXPECT_EQ(f.count("args"), 0u);

  const google::protobuf::Struct with = ParseStruct(DecisionLogLine(e, /*with_args=*/true));
  ASSERT_EQ(with.fields().count("args"), 1u);
  EXPECT_EQ(with.fields().at("args").struct_value().fields().at("command").string_value(),
            "ls -la");
}

TEST(DecisionLogTest, HashGrantWithoutKeyIsPlainSha256) {
  DecisionLogEntry e = Entry("delete_repository", 1);
  e.rule = "grants.agent-7.tools.delete_repository";
  DecisionLogHashing hashing;
  hashing.hash_grant = true;
  const std::string line = DecisionLogLine(e, /*with_args=*/false, hashing);
  EXPECT_EQ(line.find("agent-7"), std::string::npos) << line;
  const auto f = ParseStruct(line).fields();
  EXPECT_EQ(f.count("grant"), 0u);
  EXPECT_EQ(f.at("grant_sha256").string_value(), Sha256Hex("agent-7"));
  EXPECT_EQ(f.at("rule").string_value(),
            "grants." + Sha256Hex("agent-7") + ".tools.delete_repository");
  EXPECT_EQ(f.at("args_sha256").string_value(), Sha256Hex(R"({"command":"ls -la","timeout":30})"));
  EXPECT_EQ(f.count("args_hmac_sha256"), 0u);
  // A rule that is not this grant's section is left as it is.
  e.rule = "grants.agent-70.tools.x";
  EXPECT_EQ(ParseStruct(DecisionLogLine(e, false, hashing)).fields().at("rule").string_value(),
            "grants.agent-70.tools.x");
}

TEST(DecisionLogTest, KeyMakesEveryHashAnHmacUnderItsOwnName) {
  const DecisionLogEntry e = Entry("delete_repository", 1);
  const std::string args = R"({"command":"ls -la","timeout":30})";
  DecisionLogHashing keyed;
  keyed.key = "0123456789abcdef0123456789abcdef";
  auto f = ParseStruct(DecisionLogLine(e, false, keyed)).fields();
  EXPECT_EQ(f.count("args_sha256"), 0u);
  EXPECT_EQ(f.at("args_hmac_sha256").string_value(), HmacSha256Hex(keyed.key, args));
  EXPECT_NE(f.at("args_hmac_sha256").string_value(), Sha256Hex(args));
  EXPECT_EQ(f.at("grant").string_value(), "agent-7");  // Not hashed unless asked.

  keyed.hash_grant = true;
  f = ParseStruct(DecisionLogLine(e, false, keyed)).fields();
  EXPECT_EQ(f.count("grant"), 0u);
  EXPECT_EQ(f.count("grant_sha256"), 0u);
  EXPECT_EQ(f.at("grant_hmac_sha256").string_value(), HmacSha256Hex(keyed.key, "agent-7"));
  // Another key, other hashes: a reader without the key cannot confirm a guess.
  DecisionLogHashing other = keyed;
  other.key = "another key, at least 16 bytes";
  const auto g = ParseStruct(DecisionLogLine(e, false, other)).fields();
  EXPECT_NE(g.at("grant_hmac_sha256").string_value(), f.at("grant_hmac_sha256").string_value());
  EXPECT_NE(g.at("args_hmac_sha256").string_value(), f.at("args_hmac_sha256").string_value());
}

TEST(DecisionLogTest, PeerOnlyWhenTheCallerHasAnIdentity) {
  DecisionLogEntry e = Entry("delete_repository", 1);
  EXPECT_EQ(ParseStruct(DecisionLogLine(e, false)).fields().count("peer"), 0u);
  e.peer = "spiffe://example.org/ns/ci/sa/ci-bot";
  google::protobuf::Struct s = ParseStruct(DecisionLogLine(e, false));
  ASSERT_EQ(s.fields().count("peer"), 1u);
  EXPECT_EQ(s.fields().at("peer").string_value(), "spiffe://example.org/ns/ci/sa/ci-bot");
  // From a certificate: escaped like every value, the line stays one line of JSON.
  e.peer = "cn\n\"x\":1";
  const std::string line = DecisionLogLine(e, false);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_EQ(ParseStruct(line).fields().at("peer").string_value(), "cn\n\"x\":1");
}

TEST(DecisionLogTest, ReservationsOnDecisionsAndAsShortEventLines) {
  DecisionLogEntry e = Entry("charge", 1);
  EXPECT_EQ(ParseStruct(DecisionLogLine(e, false)).fields().count("reservation_id"), 0u);
  e.reservation_id = "rsv_0123";
  EXPECT_EQ(ParseStruct(DecisionLogLine(e, false)).fields().at("reservation_id").string_value(),
            "rsv_0123");

  DecisionLogEntry settled;
  settled.event = "reservation_settled";
  settled.decision_id = "dec-9";
  settled.time = absl::FromUnixMillis(1'700'000'000'123);
  settled.reservation_id = "rsv_0123";
  settled.outcome = "succeeded";
  settled.cost = 2;
  EXPECT_EQ(DecisionLogLine(settled, true),
            "{\"event\":\"reservation_settled\",\"decision_id\":\"dec-9\",\"time\":"
            "\"2023-11-14T22:13:20.123Z\",\"reservation_id\":\"rsv_0123\",\"outcome\":"
            "\"succeeded\",\"cost\":2}");
  settled.event = "reservation_expired";
  settled.outcome = "expired";
  settled.cost = -1;  // None given: left out.
  EXPECT_EQ(ParseStruct(DecisionLogLine(settled, false)).fields().count("cost"), 0u);
}

TEST(DecisionLogTest, OneParseableLinePerEntryArgsOnlyWhenOptedIn) {
  Collected out;
  DecisionLogOptions options;
  options.destination = "test";
  options.args_tools = {"run_*", "exact_tool"};
  {
    DecisionLog log(options, out.Sink());
    EXPECT_TRUE(log.LogsArgsOf("run_command"));
    EXPECT_TRUE(log.LogsArgsOf("exact_tool"));
    EXPECT_FALSE(log.LogsArgsOf("exact_tool2"));
    EXPECT_FALSE(log.LogsArgsOf("read_file"));
    for (int i = 0; i < 50; ++i) {
      EXPECT_TRUE(log.Log(Entry(i % 2 ? "run_command" : "read_file", i)));
    }
    log.Close();
    EXPECT_EQ(log.written(), 50u);
    EXPECT_EQ(log.dropped(), 0u);
    EXPECT_FALSE(log.Log(Entry("read_file", 99)));  // Closed.
  }
  const std::vector<std::string> lines = out.Lines();
  ASSERT_EQ(lines.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    const google::protobuf::Struct s = ParseStruct(lines[i]);
    EXPECT_EQ(s.fields().at("decision_id").string_value(), absl::StrCat("id-", i));
    EXPECT_EQ(s.fields().count("args_sha256"), 1u);
    EXPECT_EQ(s.fields().count("args"), i % 2 ? 1u : 0u) << lines[i];
  }
}

TEST(DecisionLogTest, FullQueueDropsWithoutBlocking) {
  absl::Notification release, writing;
  std::atomic<int> sunk{0};
  DecisionLogOptions options;
  options.destination = "blocked";
  options.queue_capacity = 1;
  DecisionLog log(options, [&](absl::string_view line) {
    if (!writing.HasBeenNotified()) writing.Notify();
    release.WaitForNotification();  // A reader that never reads, until released.
    sunk.fetch_add(static_cast<int>(std::count(line.begin(), line.end(), '\n')));
    return true;
  });
  // The writer takes the first entry and blocks in the sink.
  ASSERT_TRUE(log.Log(Entry("read_file", 0)));
  writing.WaitForNotification();
  // One more fits the queue; the rest are dropped, each at once.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(log.Log(Entry("read_file", 1)));
  int dropped = 0;
  for (int i = 2; i < 1002; ++i) {
    if (!log.Log(Entry("read_file", i))) ++dropped;
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(dropped, 1000);
  EXPECT_EQ(log.dropped(), 1000u);
  // Dropping never waits for the sink (which stays blocked until released
  // below): 1001 calls take about a millisecond; 1 s is 10x more than a
  // sanitizer build on a busy machine needs.
  EXPECT_LT(took, std::chrono::seconds(1));
  release.Notify();
  log.Close();
  EXPECT_EQ(sunk.load(), 2);
  EXPECT_EQ(log.written(), 2u);
  EXPECT_EQ(log.dropped(), 1000u);
}

TEST(DecisionLogTest, WritesToAFileAndFlushesOnClose) {
  char dir_template[] = "/tmp/toolgate-dlog-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = absl::StrCat(dir_template, "/decisions.jsonl");
  DecisionLogOptions options;
  options.destination = path;
  absl::StatusOr<std::unique_ptr<DecisionLog>> log = DecisionLog::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < 3; ++i) (*log)->Log(Entry("read_file", i));
  (*log)->Close();
  std::FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 3u);
  for (const std::string& line : lines) ParseStruct(line);
  unlink(path.c_str());
  rmdir(dir_template);

  options.destination = "/nonexistent-dir/x.jsonl";
  EXPECT_FALSE(DecisionLog::Open(options).ok());
}

TEST(DecisionLogTest, QueueIsBoundedInBytes) {
  absl::Notification release, writing;
  DecisionLogOptions options;
  options.destination = "blocked";
  options.queue_capacity = 1'000'000;  // Only the bytes bound applies.
  DecisionLogEntry big = Entry("read_file", 1);
  (*big.args.mutable_fields())["blob"].set_string_value(std::string(100'000, 'x'));
  const size_t big_bytes = DecisionLogEntryBytes(big);
  ASSERT_GT(big_bytes, 200'000u);
  options.queue_bytes = 5 * big_bytes;
  DecisionLog log(options, [&](absl::string_view) {
    if (!writing.HasBeenNotified()) writing.Notify();
    release.WaitForNotification();
    return true;
  });
  ASSERT_TRUE(log.Log(Entry("read_file", 0)));  // Taken by the writer, which blocks.
  writing.WaitForNotification();
  int queued = 0;
  for (int i = 0; i < 20; ++i) queued += log.Log(big) ? 1 : 0;
  EXPECT_EQ(queued, 5);
  EXPECT_EQ(log.dropped(), 15u);
  release.Notify();
  log.Close();
  EXPECT_EQ(log.written(), 6u);
}

TEST(DecisionLogTest, FailedWritesAreCountedAndLaterWritesStillTried) {
  std::atomic<int> calls{0};
  std::atomic<bool> fail{true};
  DecisionLogOptions options;
  options.destination = "failing";
  auto log = std::make_unique<DecisionLog>(options, [&](absl::string_view) {
    calls.fetch_add(1);
    if (fail.load()) {
      errno = ENOSPC;
      return false;
    }
    return true;
  });
  ASSERT_TRUE(log->Log(Entry("read_file", 0)));
  ASSERT_TRUE(PollUntilTrue([&] { return log->write_errors() == 1; }));
  fail = false;
  ASSERT_TRUE(log->Log(Entry("read_file", 1)));
  log->Close();
  EXPECT_EQ(log->write_errors(), 1u);
  EXPECT_EQ(log->written(), 1u);
  EXPECT_EQ(log->dropped(), 0u);
}

TEST(DecisionLogTest, AFullDiskIsCountedNotSilent) {
  DecisionLogOptions options;
  options.destination = "/dev/full";  // Every write fails with ENOSPC.
  absl::StatusOr<std::unique_ptr<DecisionLog>> log = DecisionLog::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->Log(Entry("read_file", i)));
  (*log)->Close();
  EXPECT_EQ((*log)->write_errors(), 3u);
  EXPECT_EQ((*log)->written(), 0u);
}

}  // namespace
}  // namespace toolgate
