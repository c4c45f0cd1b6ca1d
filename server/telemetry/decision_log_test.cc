#include "server/telemetry/decision_log.h"

#include <unistd.h>

#include <algorithm>
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
#include "google/protobuf/util/message_differencer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

google::protobuf::Struct ParseStruct(const std::string& json) {
  google::protobuf::Struct s;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << ": " << json;
  return s;
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

TEST(DecisionLogTest, CanonicalJsonSortsKeys) {
  google::protobuf::Struct a, b;
  (*a.mutable_fields())["zeta"].set_string_value("z");
  (*a.mutable_fields())["alpha"].set_number_value(1);
  (*(*a.mutable_fields())["mid"].mutable_struct_value()->mutable_fields())["y"].set_null_value(
      google::protobuf::NULL_VALUE);
  (*(*b.mutable_fields())["mid"].mutable_struct_value()->mutable_fields())["y"].set_null_value(
      google::protobuf::NULL_VALUE);
  (*b.mutable_fields())["alpha"].set_number_value(1);
  (*b.mutable_fields())["zeta"].set_string_value("z");
  EXPECT_EQ(CanonicalJson(a), CanonicalJson(b));
  EXPECT_EQ(CanonicalJson(a), R"({"alpha":1,"mid":{"y":null},"zeta":"z"})");
  EXPECT_EQ(CanonicalJson(google::protobuf::Struct()), "{}");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(DecisionLogTest, CanonicalJsonRoundTripsThroughProtobufJson) {
  google::protobuf::Struct args = ParseStruct(R"({
    "s": "quote \" backslash \\ newline \n tab \t bell \u0007 é 日本 😀",
    "n": [0, -3, 1.5, 1e300, -2.5e-7, 9007199254740993, 123456789012],
    "b": true, "z": null,
    "o": {"b": {"deep": [[], {}]}, "a": ""}
  })");
  const std::string json = CanonicalJson(args);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  const google::protobuf::Struct back = ParseStruct(json);
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(args, back))
      << json << "\n" << back.DebugString();
  EXPECT_THAT(json, HasSubstr(R"("o":{"a":"","b":{"deep":[[],{}]}})"));

  // Invalid UTF-8 is replaced, so the line stays valid JSON.
  google::protobuf::Struct bad;
  (*bad.mutable_fields())["k"].set_string_value(std::string("a\xff\xc3" "b", 4));
  EXPECT_EQ(CanonicalJson(bad), "{\"k\":\"a\xEF\xBF\xBD\xEF\xBF\xBD" "b\"}");
  ParseStruct(CanonicalJson(bad));
}

TEST(DecisionLogTest, LineHasEveryFieldAndNoArgsByDefault) {
  const DecisionLogEntry e = Entry("delete_repository", 1);
  const std::string line = DecisionLogLine(e, /*with_args=*/false);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  const google::protobuf::Struct s = ParseStruct(line);
  const auto& f = s.fields();
  EXPECT_EQ(f.at("decision_id").string_value(), "id-1");
  EXPECT_EQ(f.at("time").string_value(), "2026-11-18T11:06:40.123Z");
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

}  // namespace
}  // namespace toolgate
