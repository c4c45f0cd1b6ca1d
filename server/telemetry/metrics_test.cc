#include "server/telemetry/metrics.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The exposition's sample lines (no comments) that start with `prefix`.
std::vector<std::string> Samples(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, prefix)) out.emplace_back(line);
  }
  return out;
}

TEST(MetricsTest, ChecksAreLabelledByApi) {
  Metrics m;
  m.RecordCheck(v1::DECISION_DENY, "default", absl::Microseconds(10));
  m.RecordCheck(v1::DECISION_DENY, "default", absl::Microseconds(10), CheckApi::kExtAuthz);
  m.RecordCheck(v1::DECISION_DENY, "default", absl::Microseconds(10), CheckApi::kExtAuthz);
  EXPECT_THAT(Samples(m.Exposition(), "toolgate_checks_total"),
              ::testing::UnorderedElementsAre(
                  "toolgate_checks_total{decision=\"deny\",rule=\"default\",api=\"toolgate\"} 1",
                  "toolgate_checks_total{decision=\"deny\",rule=\"default\",api=\"ext_authz\"} 2"));
  EXPECT_EQ(m.CheckTotals().by_decision[v1::DECISION_DENY], 3u);
}

TEST(MetricsTest, CountsChecksByDecisionAndRule) {
  Metrics m;
  for (int i = 0; i < 3; ++i) {
    m.RecordCheck(v1::DECISION_ALLOW, "tools.read_file", absl::Microseconds(30));
  }
  m.RecordCheck(v1::DECISION_RATE_LIMITED, "tools.read_file", absl::Microseconds(80));
  m.RecordCheck(v1::DECISION_DENY, "tools.delete_repository", absl::Microseconds(10));
  m.RecordCheck(v1::DECISION_DENY, "default", absl::Microseconds(10));
  m.RecordCheck(v1::DECISION_REQUIRE_APPROVAL, "tools.github_*", absl::Milliseconds(2));
  m.RecordError(absl::StatusCode::kInvalidArgument, absl::Microseconds(5));

  const std::string text = m.Exposition();
  EXPECT_THAT(Samples(text, "toolgate_checks_total"),
              ::testing::UnorderedElementsAre(
                  "toolgate_checks_total{decision=\"allow\",rule=\"tools.read_file\",api=\"toolgate\"} 3",
                  "toolgate_checks_total{decision=\"rate_limited\",rule=\"tools.read_file\",api=\"toolgate\"} 1",
                  "toolgate_checks_total{decision=\"deny\",rule=\"tools.delete_repository\",api=\"toolgate\"} 1",
                  "toolgate_checks_total{decision=\"deny\",rule=\"default\",api=\"toolgate\"} 1",
                  "toolgate_checks_total{decision=\"require_approval\",rule=\"tools.github_*\",api=\"toolgate\"} 1"))
      << text;
  // The totals status reports are the same tally.
  const Metrics::Totals totals = m.CheckTotals();
  EXPECT_EQ(totals.by_decision[v1::DECISION_ALLOW], 3u);
  EXPECT_EQ(totals.by_decision[v1::DECISION_RATE_LIMITED], 1u);
  EXPECT_EQ(totals.by_decision[v1::DECISION_DENY], 2u);
  EXPECT_EQ(totals.by_decision[v1::DECISION_REQUIRE_APPROVAL], 1u);
  EXPECT_EQ(totals.errors, 1u);
  EXPECT_THAT(text, HasSubstr("# TYPE toolgate_checks_total counter"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_errors_total{code=\"INVALID_ARGUMENT\"} 1"));

  // Every check, decided or not, is in the latency histogram.
  EXPECT_THAT(text, HasSubstr("# TYPE toolgate_check_duration_seconds histogram"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_count 8\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_bucket{le=\"+Inf\"} 8\n"));
  // 5us, 10us, 10us under 25us; 30us under 50us; 80us under 100us; 2ms under 2.5ms.
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_bucket{le=\"2.5e-05\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_bucket{le=\"5e-05\"} 6\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_bucket{le=\"0.0001\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_bucket{le=\"0.001\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_check_duration_seconds_bucket{le=\"0.0025\"} 8\n"));
}

TEST(MetricsTest, PolicyInfoAndReloads) {
  Metrics m;
  std::string revision = "2026-11-25.1";
  MetricsSources sources;
  sources.active_revision = [&revision] { return revision; };
  m.SetSources(sources);
  m.RecordPolicyReload(true);
  m.RecordPolicyReload(false);
  m.RecordPolicyReload(true);
  std::string text = m.Exposition();
  EXPECT_THAT(text, HasSubstr("toolgate_policy_info{revision=\"2026-11-25.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_policy_reloads_total{result=\"ok\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_policy_reloads_total{result=\"failed\"} 1\n"));

  revision = "sha256:0123456789ab";
  text = m.Exposition();
  EXPECT_THAT(Samples(text, "toolgate_policy_info"),
              ::testing::ElementsAre("toolgate_policy_info{revision=\"sha256:0123456789ab\"} 1"));
}

TEST(MetricsTest, RefusedPolicyRevisionsAreCountedByReason) {
  Metrics m;
  std::string text = m.Exposition();
  EXPECT_THAT(text, HasSubstr("toolgate_policy_rejected_total{reason=\"signature\"} 0\n"))
      << "every reason is exposed from the start";
  m.RecordPolicyRejected("digest");
  m.RecordPolicyRejected("signature");
  m.RecordPolicyRejected("signature");
  m.RecordPolicyRejected("something new");
  text = m.Exposition();
  EXPECT_THAT(text, HasSubstr("toolgate_policy_rejected_total{reason=\"digest\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_policy_rejected_total{reason=\"signature\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_policy_rejected_total{reason=\"unsigned\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_policy_rejected_total{reason=\"other\"} 1\n"));
}

TEST(MetricsTest, RedisAndDecisionLogSources) {
  Metrics m;
  {
    // Without sources, none of their metrics.
    const std::string text = m.Exposition();
    EXPECT_THAT(text, Not(HasSubstr("toolgate_redis_")));
    EXPECT_THAT(text, Not(HasSubstr("toolgate_decision_log_dropped_total")));
  }
  MetricsSources sources;
  sources.store_status = [] {
    CounterStoreStatus s;
    s.kind = "redis";
    s.timeouts = 4;
    s.failures = 2;
    s.cache_hits = 7;
    s.connected = true;
    return s;
  };
  sources.decision_log_dropped = [] { return uint64_t{5}; };
  m.SetSources(sources);
  RedisStoreObserver& observer = m;
  observer.OnRedisReply(120);    // 120us
  observer.OnRedisReply(3'000);  // 3ms
  observer.OnRedisPipeline(1);
  observer.OnRedisPipeline(3);
  observer.OnRedisPipeline(40);

  const std::string text = m.Exposition();
  EXPECT_THAT(text, HasSubstr("toolgate_redis_errors_total{kind=\"timeout\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_errors_total{kind=\"failure\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_over_limit_cache_hits_total 7\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_connected 1\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_command_duration_seconds_count 2\n"));
  EXPECT_THAT(text,
              HasSubstr("toolgate_redis_command_duration_seconds_bucket{le=\"0.00025\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_pipeline_commands_count 3\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_pipeline_commands_sum 44\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_redis_pipeline_commands_bucket{le=\"4\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("toolgate_decision_log_dropped_total 5\n"));
}

TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Metrics m;
  constexpr int kThreads = 8, kPerThread = 20'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        m.RecordCheck(i % 2 ? v1::DECISION_ALLOW : v1::DECISION_DENY,
                      absl::StrCat("tools.t", (t + i) % 5), absl::Microseconds(1));
      }
    });
  }
  // Scrapes while recording must be safe.
  for (int i = 0; i < 20; ++i) (void)m.Exposition();
  for (std::thread& t : threads) t.join();
  const std::string text = m.Exposition();
  EXPECT_THAT(text, HasSubstr(absl::StrCat("toolgate_check_duration_seconds_count ",
                                           kThreads * kPerThread, "\n")));
  uint64_t total = 0;
  for (const std::string& line : Samples(text, "toolgate_checks_total{")) {
    uint64_t n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(line.substr(line.rfind(' ') + 1), &n)) << line;
    total += n;
  }
  EXPECT_EQ(total, static_cast<uint64_t>(kThreads * kPerThread));
}

TEST(MetricsTest, EndpointServesOnAFreePort) {
  auto metrics = std::make_shared<Metrics>();
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0", metrics);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  EXPECT_TRUE(absl::StartsWith((*endpoint)->address(), "127.0.0.1:"));
  EXPECT_NE((*endpoint)->address(), "127.0.0.1:0");

  EXPECT_FALSE(MetricsEndpoint::Start("no-port", metrics).ok());
}

}  // namespace
}  // namespace toolgate
