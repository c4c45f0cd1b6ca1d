// A rolling restart as a gateway sees it: a client spreading ~3,000 checks
// over three toolgated (sharing one real redis-server) while one of them gets
// SIGTERM, drains, exits 0 and comes back on a new port. The client does what
// a real gateway does: round-robin over the servers it knows, and a call that
// fails with UNAVAILABLE or CANCELLED (the server is draining or gone) is
// retried once on another server. Not one check may go undecided.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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

using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

// One server as the gateway knows it.
struct Backend {
  std::string address;
  std::unique_ptr<toolgate::Client> client;
  std::atomic<int> answered{0};
};

// The gateway's view of the fleet: a list of backends it rotates over.
// Backends can be replaced while calls are in flight.
class Gateway {
 public:
  void Set(size_t slot, const std::string& address) {
    auto b = std::make_shared<Backend>();
    b->address = address;
    b->client = toolgate::Client::Connect("ipv4:" + address);
    std::lock_guard<std::mutex> lock(mu_);
    if (slot >= backends_.size()) backends_.resize(slot + 1);
    backends_[slot] = std::move(b);
  }

  std::shared_ptr<Backend> Get(size_t slot) {
    std::lock_guard<std::mutex> lock(mu_);
    return backends_.at(slot);
  }

  // One check: the next backend in turn; on UNAVAILABLE or CANCELLED, once
  // more on the following one.
  absl::StatusOr<CheckResponse> Check(const CheckRequest& req) {
    const size_t first = next_.fetch_add(1);
    absl::StatusOr<CheckResponse> r = absl::UnknownError("not sent");
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::shared_ptr<Backend> b;
      {
        std::lock_guard<std::mutex> lock(mu_);
        b = backends_[(first + attempt) % backends_.size()];
      }
      r = b->client->Check(req, absl::Seconds(10));
      if (r.ok()) {
        b->answered.fetch_add(1);
        return r;
      }
      if (r.status().code() != absl::StatusCode::kUnavailable &&
          r.status().code() != absl::StatusCode::kCancelled) {
        return r;
      }
      if (attempt == 0) retries_.fetch_add(1);
    }
    return r;
  }

  int retries() const { return retries_.load(); }

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<Backend>> backends_;
  std::atomic<size_t> next_{0};
  std::atomic<int> retries_{0};
};

TEST(RestartTest, ChecksSpreadOverThreeServersSurviveASigtermAndRestart) {
  constexpr int kWorkers = 8;
  constexpr int kRestartAt = 1500;    // Checks sent before SIGTERM.
  constexpr int kAfterRejoin = 1500;  // Checks sent after the server is back.
  const absl::Duration kPace = absl::Microseconds(1000);  // At most 1,000 checks a second.

  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  TempDir dir;
  // Every call consumes a fleet-wide counter in Redis, which never fills.
  const std::string policy = dir.WriteFile("policy.yaml", R"(
version: "1"
revision: restart-test
tools:
  restart_tool:
    limits: [{counter: restart_calls, window: hour, max: 1000000, scope: global}]
)");
  const std::vector<std::string> args = {"--listen",         "127.0.0.1:0", "--policy",
                                         policy,             "--redis",     (*redis)->url(),
                                         "--redis-timeout",  "5s",          "--shutdown-grace",
                                         "5s"};
  std::vector<std::unique_ptr<ServerProcess>> servers;
  Gateway gateway;
  for (int i = 0; i < 3; ++i) {
    auto s = ServerProcess::Start(args);
    ASSERT_TRUE(s.ok()) << s.status();
    gateway.Set(i, (*s)->address());
    servers.push_back(*std::move(s));
  }

  // Checks keep coming until kAfterRejoin after the restarted server is
  // back, however long the restart takes: so the restart happens while calls
  // are being sent, whatever the machine's speed.
  std::atomic<int> sent{0};
  std::atomic<int> limit{std::numeric_limits<int>::max()};
  std::atomic<int> allowed{0};
  std::mutex failures_mu;
  std::vector<std::string> failures;
  const absl::Time t0 = absl::Now();
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&] {
      while (true) {
        const int i = sent.fetch_add(1);
        if (i >= limit.load()) {
          sent.fetch_sub(1);
          return;
        }
        // Paced (at most 1,000 a second), so that a slow restart does not
        // make for a flood of checks.
        const absl::Duration wait = (t0 + i * kPace) - absl::Now();
        if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
        CheckRequest req;
        req.set_tool("restart_tool");
        req.set_grant(absl::StrCat("agent-", i % 17));
        req.set_request_id(absl::StrCat("restart-", i));
        absl::StatusOr<CheckResponse> r = gateway.Check(req);
        if (!r.ok()) {
          std::lock_guard<std::mutex> lock(failures_mu);
          failures.push_back(absl::StrCat("check ", i, ": ", r.status().ToString()));
        } else if (r->decision() == toolgate::v1::DECISION_ALLOW) {
          allowed.fetch_add(1);
        }
      }
    });
  }
  // Should an assertion below end the test early: stop the workers first.
  struct StopWorkers {
    std::atomic<int>& limit;
    std::vector<std::thread>& workers;
    ~StopWorkers() {
      limit = 0;
      for (std::thread& t : workers) {
        if (t.joinable()) t.join();
      }
    }
  } stop_workers{limit, workers};

  // Midway: SIGTERM server 1, wait for its clean exit, start it again on a
  // new port and put it back in the gateway's list.
  while (sent.load() < kRestartAt) absl::SleepFor(absl::Milliseconds(1));
  const int sent_at_sigterm = sent.load();
  ASSERT_TRUE(servers[1]->Signal(SIGTERM));
  // 15 s: 3x the 5 s grace, and 10x more than draining takes.
  const std::optional<int> status = servers[1]->WaitExit(absl::Seconds(15));
  const int sent_at_exit = sent.load();
  auto again = ServerProcess::Start(args);
  ASSERT_TRUE(again.ok()) << again.status();
  const std::string old_address = servers[1]->address();
  gateway.Set(1, (*again)->address());
  const int sent_at_rejoin = sent.load();
  limit = sent_at_rejoin + kAfterRejoin;

  for (std::thread& t : workers) t.join();
  const absl::Duration took = absl::Now() - t0;
  const int checks = sent.load();

  ASSERT_TRUE(status.has_value()) << "the SIGTERM'd server did not exit; log:\n"
                                  << servers[1]->log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "raw wait status " << *status << "; log:\n"
      << servers[1]->log();
  EXPECT_THAT(servers[1]->log(), ::testing::HasSubstr("received SIGTERM"));
  EXPECT_NE((*again)->address(), old_address);

  EXPECT_THAT(failures, ::testing::IsEmpty())
      << failures.size() << " of " << checks << " checks got no decision";
  EXPECT_EQ(allowed.load(), checks);
  // The restart really happened while checks were being sent, and the
  // restarted server took its share afterwards.
  EXPECT_GT(sent_at_sigterm, 0);
  EXPECT_LT(sent_at_exit, checks);
  EXPECT_EQ(checks, sent_at_rejoin + kAfterRejoin) << "the run ended before the server came back";
  EXPECT_GT(gateway.Get(1)->answered.load(), 0);
  for (size_t i : {0, 2}) EXPECT_GT(gateway.Get(i)->answered.load(), 0);
  // Every admitted call was counted exactly once in Redis: a retried call
  // consumed nothing on the server that refused it.
  {
    CheckRequest req;
    req.set_tool("restart_tool");
    req.set_grant("agent-last");
    absl::StatusOr<CheckResponse> last = gateway.Check(req);
    ASSERT_TRUE(last.ok()) << last.status();
    ASSERT_EQ(last->limits_size(), 1);
    EXPECT_EQ(last->limits(0).remaining(), 1000000 - (checks + 1));
  }
  for (auto& s : servers) {
    if (s->Running()) {
      EXPECT_TRUE(s->Signal(SIGTERM));
    }
  }
  EXPECT_TRUE((*again)->Signal(SIGTERM));
  const std::optional<int> again_status = (*again)->WaitExit(absl::Seconds(15));
  ASSERT_TRUE(again_status.has_value());
  EXPECT_TRUE(WIFEXITED(*again_status) && WEXITSTATUS(*again_status) == 0);

  std::cerr << "restart test: " << checks << " checks in " << absl::FormatDuration(took) << ", "
            << gateway.retries() << " retried on another server; SIGTERM after " << sent_at_sigterm
            << ", exited after " << sent_at_exit << ", back after " << sent_at_rejoin << "\n";
}

}  // namespace
}  // namespace toolgate_test
