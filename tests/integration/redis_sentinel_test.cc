// Three toolgated following a real Redis Sentinel set (--redis
// redis+sentinel://S1,S2,S3/toolgate: a master, its replica, three
// sentinels, tests/support/redis_topology.h), and what they do when the
// master is killed under load.
//
// What each test proves, and the bounds chosen:
// - MasterKilledUnderLoad (failure modes closed and open): six callers
//   check without pause over the three servers while the master is killed.
//   Every check is answered with gRPC OK within 10x --redis-timeout (500 ms:
//   5 s; the client's own deadline is 30 s), before, during and after the
//   failover. Every check sent after the kill and answered before any
//   sentinel named a new master is decided by the failure mode (closed:
//   DENY, open: ALLOW, each saying "counter store failed"): nothing else
//   could have decided it. Each server decides from Redis again (a fresh
//   limit of 5 admits exactly 5) within 10 s of the sentinels reporting the
//   new master: 10x toolgated's 1 s re-check of the sentinels, which
//   +switch-master makes unneeded in the usual case. No server exits, and
//   each reports the store connected again, failures seen and the failover
//   followed (AdminService/GetStatus; `toolgate status` names the
//   sentinels).
//   Sentinel's own part (down-after 1 s, then election and promotion)
//   takes a few seconds and is not under test: 60 s is only a guard.
// - WaitReplicasKeepsCountsAcrossAFailover (--redis-wait-replicas 1): 300
//   concurrent checks against a global max of 50 admit exactly 50 while the
//   replica is up (--redis-timeout 2 s: ample for a WAIT on loopback); then
//   the master is killed, and once the sentinels report the new master the
//   killed server is started again as its replica (so that WAIT can be met
//   again): within 10 s (+ one 2 s WAIT) of that, every server finds the
//   counter still full on the new master (RATE_LIMITED from Redis, with the
//   over-limit cache off): every admission answered had reached the
//   replica.
// - WaitReplicasWithoutAReplicaRefusesNothingItCannotCount: with the replica
//   killed, WAIT 1 cannot be met: each admission is decided by the failure
//   mode (closed: DENY) while its unit stays counted on the master, and once
//   the limit is used up the refusals come from Redis, at once (no WAIT is
//   sent for a refusal, so none queues behind one); the connection is never
//   dropped for it. --redis-timeout 1 s: each WAIT runs out after 750 ms, a
//   quarter of a second before the calls' deadline.
// - AnUnknownMasterNameIsDecidedByTheFailureModeAndSaidInStatus: a master
//   name no sentinel knows: every check is answered by the failure mode, and
//   status says what the sentinels answered.
// - PolicyRevisionsFollowTheMasterAcrossAFailover: `toolgate policy --redis
//   redis+sentinel://...` and `toolgated --policy redis+sentinel://...` reach
//   the master the sentinels name; after a failover a revision pushed to the
//   new master is followed (within 60 s; the follower polls every 1 s).
#include <signal.h>

#include <algorithm>
#include <functional>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/checks.h"
#include "tests/integration/process.h"
#include "tests/support/redis_topology.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

// A guard against hangs, far beyond what anything here takes.
constexpr absl::Duration kWait = absl::Seconds(60);
// How soon after the sentinels report a new master every server must
// decide from Redis again: 10x toolgated's periodic re-check (1 s).
constexpr absl::Duration kResumeBound = absl::Seconds(10);

constexpr char kPolicy[] = R"(
version: "1"
tools:
  loaded:
    limits: [{counter: loaded, window: hour, max: 1000000, scope: grant}]
  counted:
    limits: [{counter: counted, window: hour, max: 5, scope: global}]
  fleet:
    limits: [{counter: fleet, window: hour, max: 50, scope: global}]
)";

class RedisSentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto set = RedisSentinelSet::Start();
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = *std::move(set);
  }

  // Three servers on kPolicy, following the sentinels.
  void StartServers(std::vector<std::string> extra) {
    const std::string policy = dir_.WriteFile("policy.yaml", kPolicy);
    for (int i = 0; i < 3; ++i) {
      std::vector<std::string> args = {"--listen",      "127.0.0.1:0", "--policy", policy,
                                       "--watch=false", "--redis",     set_->url()};
      args.insert(args.end(), extra.begin(), extra.end());
      auto s = ServerProcess::Start(args);
      ASSERT_TRUE(s.ok()) << s.status();
      clients_.push_back(toolgate::Client::Connect((*s)->address()));
      admins_.push_back(toolgate::Client::Connect((*s)->admin_address()));
      servers_.push_back(*std::move(s));
    }
  }

  // Polls every server at once (PollEach) until each answer satisfied
  // `done` once; a test failure, with the server's log, for each that did
  // not by `deadline`. Returns how long after `since` the last one did.
  absl::Duration PollServers(const std::function<CheckRequest()>& make,
                             const std::function<bool(const CheckResponse&)>& done,
                             absl::Time since, absl::Time deadline) {
    std::vector<std::string> last;
    const std::vector<absl::Time> when = PollEach(clients_, make, done, deadline, &last);
    absl::Duration slowest;
    for (size_t s = 0; s < when.size(); ++s) {
      EXPECT_NE(when[s], absl::InfiniteFuture())
          << "server " << s << " not there in time; last answer: " << last[s] << "\n"
          << servers_[s]->log();
      slowest = std::max(slowest, when[s] - since);
    }
    return slowest;
  }

  // Every server decides `tool` (a fresh grant each time) from Redis, not by
  // the failure mode, by `deadline`.
  absl::Duration WaitUntilDecidedByRedis(const std::string& tool, absl::Time since,
                                         absl::Time deadline) {
    return PollServers([&] { return Req(tool, absl::StrCat("probe-", probes_++)); },
                       [](const CheckResponse& r) { return !ByFailureMode(r); }, since, deadline);
  }

  int probes_ = 0;
  TempDir dir_;
  std::unique_ptr<RedisSentinelSet> set_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::unique_ptr<toolgate::Client>> clients_;
  std::vector<std::unique_ptr<toolgate::Client>> admins_;
};

class RedisSentinelFailureModeTest : public RedisSentinelTest,
                                     public ::testing::WithParamInterface<std::string> {};

TEST_P(RedisSentinelFailureModeTest, MasterKilledUnderLoad) {
  const std::string mode = GetParam();
  const absl::Duration deadline = absl::Milliseconds(500);
  ASSERT_NO_FATAL_FAILURE(StartServers({"--redis-timeout", "500ms", "--redis-failure-mode", mode}));
  // Decided by the master first.
  WaitUntilDecidedByRedis("loaded", absl::Now(), absl::Now() + kWait);

  // The callers' own deadline is far past the bound checked below.
  CheckLoad load(
      clients_, 6,
      [](int t, int i) { return Req("loaded", absl::StrCat("caller", t, "-", i % 50)); },
      absl::Seconds(30));
  ASSERT_TRUE(load.WaitForAnswers(60, kWait));
  const int old_master = set_->master().port();
  set_->KillMaster();
  const absl::Time killed = absl::Now();
  auto failover = set_->WaitForNewMaster(old_master, kWait);
  ASSERT_TRUE(failover.ok()) << failover.status();
  // The load goes on until every server decides from Redis again.
  const absl::Duration resumed = WaitUntilDecidedByRedis("loaded", failover->reported_at,
                                                         failover->reported_at + kResumeBound);
  ASSERT_TRUE(load.WaitForAnswers(60, absl::Now(), kWait));
  const std::vector<TimedCheck> checks = load.Stop();

  int while_down = 0, after = 0;
  absl::Duration slowest;
  for (const TimedCheck& c : checks) {
    ASSERT_TRUE(c.result.ok()) << "every check must be decided: " << c.result.status();
    slowest = std::max(slowest, c.end - c.start);
    if (c.start >= killed && c.end <= failover->all_old_until) {
      // Sent after the kill, answered before any sentinel named a new
      // master: only the failure mode can have decided it.
      ++while_down;
      EXPECT_TRUE(ByFailureMode(*c.result)) << c.result->reason();
      EXPECT_EQ(c.result->decision(),
                mode == "closed" ? toolgate::v1::DECISION_DENY : toolgate::v1::DECISION_ALLOW);
    }
    if (c.start >= failover->reported_at + resumed) ++after;
  }
  EXPECT_LE(slowest, 10 * deadline) << checks.size() << " checks";
  EXPECT_GT(while_down, 0) << "no check fell between the kill and the failover";
  std::cout << "failure mode " << mode << ": " << checks.size() << " checks, slowest "
            << absl::FormatDuration(slowest) << "; " << while_down
            << " while the master was down; sentinels reported the new master "
            << absl::FormatDuration(failover->reported_at - killed)
            << " after the kill; every server decided from Redis " << absl::FormatDuration(resumed)
            << " after that; " << after << " checks after\n";

  // A limit counts again: exactly 5 of 8 admitted, over the three servers.
  int admitted = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = clients_[i % 3]->Check(Req("counted", absl::StrCat("g", i)), absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(ByFailureMode(*r)) << r->reason();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) ++admitted;
  }
  EXPECT_EQ(admitted, 5);

  for (size_t s = 0; s < servers_.size(); ++s) {
    EXPECT_TRUE(servers_[s]->Running()) << "server " << s;
    auto status = admins_[s]->GetStatus();
    ASSERT_TRUE(status.ok()) << status.status();
    const auto& cs = status->counter_store();
    EXPECT_TRUE(absl::StartsWith(cs.address(), "redis+sentinel://")) << cs.address();
    for (int i = 0; i < set_->sentinel_count(); ++i) {
      EXPECT_THAT(cs.address(), HasSubstr(set_->sentinel(i).address()));
    }
    EXPECT_TRUE(cs.connected()) << cs.last_error();
    EXPECT_GE(cs.failures() + cs.timeouts(), 1u) << "server " << s << " saw no failure";
    auto followed = StoreCount(cs, "topology_changes");
    ASSERT_TRUE(followed.ok()) << followed.status();
    EXPECT_GE(*followed, 1u) << "server " << s << " followed no failover";
  }
  // The CLI says the same.
  CommandResult cli = RunCommand({CliBin(), "status", "--target", servers_[0]->admin_address()});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("counter store:    redis redis+sentinel://"));
  EXPECT_THAT(cli.out, HasSubstr("(connected)"));
}

INSTANTIATE_TEST_SUITE_P(Modes, RedisSentinelFailureModeTest, ::testing::Values("closed", "open"),
                         [](const auto& info) { return info.param; });

TEST_F(RedisSentinelTest, WaitReplicasKeepsCountsAcrossAFailover) {
  // The over-limit cache is off so that the check after the failover asks
  // the new master, not the cache.
  ASSERT_NO_FATAL_FAILURE(StartServers(
      {"--redis-timeout", "2s", "--redis-wait-replicas", "1", "--no-redis-over-limit-cache"}));
  std::vector<CheckRequest> requests;
  for (int i = 0; i < 300; ++i) requests.push_back(Req("fleet", absl::StrCat("g", i % 7)));
  int allow = 0, limited = 0;
  for (const auto& r : CheckAll(clients_, requests)) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(ByFailureMode(*r)) << r->reason();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) ++allow;
    if (r->decision() == toolgate::v1::DECISION_RATE_LIMITED) ++limited;
  }
  EXPECT_EQ(allow, 50);
  EXPECT_EQ(limited, 250);

  const int old_master = set_->master().port();
  set_->KillMaster();
  auto failover = set_->WaitForNewMaster(old_master, kWait);
  ASSERT_TRUE(failover.ok()) << failover.status();
  // The killed server back as the new master's replica (empty; it gets
  // the new master's data), so that WAIT can be satisfied again. Then every
  // server finds the counter still full on the new master (a refusal from
  // Redis, not from the failure mode, nor from a cache).
  ASSERT_TRUE(set_->RestartAsReplica().ok());
  const absl::Time replica_back = absl::Now();
  PollServers(
      [] { return Req("fleet", "after"); },
      [](const CheckResponse& r) { return r.decision() == toolgate::v1::DECISION_RATE_LIMITED; },
      replica_back, replica_back + kResumeBound + absl::Seconds(2));
  for (auto& server : servers_) EXPECT_TRUE(server->Running());
}

TEST_F(RedisSentinelTest, WaitReplicasWithoutAReplicaRefusesNothingItCannotCount) {
  // No replica can acknowledge: each admission's WAIT runs out, so an
  // admitted call is decided by the failure mode (closed: DENY), while its
  // unit stays counted on the master; once the counter is full, refusals
  // come from Redis at once (not held for a WAIT). Nothing is admitted that
  // the replicas do not have, and the connection is never dropped for it.
  ASSERT_NO_FATAL_FAILURE(StartServers(
      {"--redis-timeout", "1s", "--redis-wait-replicas", "1", "--no-redis-over-limit-cache"}));
  set_->replica().Kill();
  std::vector<toolgate::v1::Decision> seen;
  for (int i = 0; i < 12; ++i) {
    absl::StatusOr<CheckResponse> r = clients_[0]->Check(Req("counted", "g"));
    ASSERT_TRUE(r.ok()) << r.status();
    if (i < 5) {
      EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY) << i << ": " << r->reason();
      EXPECT_TRUE(ByFailureMode(*r)) << r->reason();
      // ("the admission reached 0 of 1 replicas in time", or, when the WAIT's
      // answer is later than the deadline, "no answer within 1000ms".)
    } else {
      EXPECT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED) << i << ": " << r->reason();
      EXPECT_FALSE(ByFailureMode(*r)) << r->reason();
    }
  }
  auto status = admins_[0]->GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(status->counter_store().connected()) << status->counter_store().last_error();
  EXPECT_EQ(status->counter_store().connects(), 1u) << "the connection was dropped";
  EXPECT_TRUE(servers_[0]->Running());
}

TEST_F(RedisSentinelTest, PolicyRevisionsFollowTheMasterAcrossAFailover) {
  // `toolgate policy` and `--policy redis+sentinel://...` reach whichever
  // server the sentinels name master: a revision pushed after a failover
  // (to the new master) is followed by a server that started on the old one.
  auto policy = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {CliBin(), "policy"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--redis", set_->url()});
    return RunCommand(argv);
  };
  auto text = [](const std::string& revision) {
    return absl::StrCat("version: \"1\"\nrevision: \"", revision,
                        "\"\ntools:\n  read_file: {}\n");
  };
  CommandResult pushed = policy({"push", dir_.WriteFile("a.yaml", text("rev-a")), "--activate"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.out << pushed.err;
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", set_->url()});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto serves = [&](const std::string& revision) {
    return PollUntil(
        [&] {
          auto r = client->Check(Req("read_file", "g"), absl::Seconds(2));
          return r.ok() && r->policy_version() == revision;
        },
        kWait);
  };
  ASSERT_TRUE(serves("rev-a")) << (*server)->log();

  const int old_master = set_->master().port();
  set_->KillMaster();
  auto failover = set_->WaitForNewMaster(old_master, kWait);
  ASSERT_TRUE(failover.ok()) << failover.status();
  pushed = policy({"push", dir_.WriteFile("b.yaml", text("rev-b")), "--activate"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.out << pushed.err;
  EXPECT_TRUE(serves("rev-b")) << (*server)->log();
  EXPECT_TRUE((*server)->Running());
}

TEST_F(RedisSentinelTest, AnUnknownMasterNameIsDecidedByTheFailureModeAndSaidInStatus) {
  std::string url = set_->url();
  const size_t slash = url.rfind('/');
  ASSERT_NE(slash, std::string::npos);
  url = url.substr(0, slash) + "/no-such-master";
  const std::string policy = dir_.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", policy,
                                      "--watch=false", "--redis", url});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  auto admin = toolgate::Client::Connect((*server)->admin_address());
  // Every check is answered, by the failure mode; status says why.
  std::string last_error;
  EXPECT_TRUE(PollUntil(
      [&] {
        auto r = client->Check(Req("counted", "g"));
        EXPECT_TRUE(r.ok()) << r.status();
        if (!r.ok()) return true;
        EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY) << r->reason();
        EXPECT_TRUE(ByFailureMode(*r)) << r->reason();
        auto status = admin->GetStatus();
        if (!status.ok()) return false;
        EXPECT_FALSE(status->counter_store().connected());
        last_error = status->counter_store().last_error();
        return absl::StrContains(last_error, "knows no master named \"no-such-master\"");
      },
      kWait))
      << last_error << "\n"
      << (*server)->log();
  EXPECT_TRUE((*server)->Running());
}

}  // namespace
}  // namespace toolgate_test
