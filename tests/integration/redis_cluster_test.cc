// Three toolgated sharing a real Redis Cluster (--redis
// redis+cluster://M1,M2,M3: three masters, each with a replica,
// tests/support/redis_topology.h).
//
// A counter instance's keys carry a hash tag, toolgate:{COUNTER|SCOPE}:...
// (the suffix may change; keys are matched by their {...} part), so one
// counter lives in one slot; counter and grant names below are chosen for
// the slot (and so the master) their keys land in, and the tests assert
// where that is. Stored counts are read through the servers themselves: a
// dry run of a tool that names only that counter reports what Redis holds
// (with the over-limit cache off, so Redis is asked).
//
// What each test proves, and the bounds chosen:
// - GlobalLimitIsExactAcrossThreeServers: 300 concurrent checks against a
//   global max of 50, spread over the servers: exactly 50 ALLOW, 250
//   RATE_LIMITED, and the counter's key is on the master serving its slot.
//   Status (RPC and `toolgate status`) names the cluster, connected.
// - LimitsInDifferentSlotsAreAllOrNothing: each call has a global limit (40)
//   and a per-grant limit (10) whose keys are in different slots on
//   different masters; 300 concurrent calls, half on one hot grant (refused
//   by its grant's limit while the global one has room) and half over ten
//   others (refused by the global limit while their grant's has room).
//   Never over-admitted (at most 40 in all, at most 10 per grant). Once
//   settled (polled, at most 10 s: a refund of a reservation made in one
//   slot when another refused), every stored count equals the calls
//   admitted: refused calls consumed nothing. Then calls one at a time with
//   fresh grants are admitted until the global limit refuses: 40 in all,
//   exactly (nothing lost to a reservation not given back). The servers
//   report refunds made, and none failed. (A concurrent observer may see
//   fewer than 40 admitted while reservations are outstanding: a call can
//   be refused for room another call's reservation holds until it is given
//   back. That is allowed; over-admission is not.)
// - ReshardingUnderLoadNeitherOverAdmitsNorLoses: six callers check without
//   pause, with the cache off (every check asks Redis), on 12 grants of a
//   limit of 5 (full most of the time) and 6 grants of a large limit (always
//   admitting), all of whose keys are in slots that `redis-cli --cluster
//   reshard` then moves to another master, keys and all, during the load
//   (ASK, then MOVED). Every check is answered (gRPC OK), by Redis (not the
//   failure mode; --redis-timeout 5 s); no grant of the small limit has more
//   than 5 admitted; once settled, every stored count equals the calls
//   admitted; the keys are on the new master only; the servers report
//   redirections followed.
// - MasterKilledUnderLoadDecisionsResume: six callers check without pause
//   while the master serving a counter's slot is killed and its replica
//   promoted. Every check is answered with gRPC OK within 10x
//   --redis-timeout (500 ms: 5 s; the callers' deadline is 30 s). Every
//   server decides from Redis again, on a key of that slot, within 20 s of
//   the promotion being agreed by every node (twice toolgated's periodic
//   refresh of the slot map, 10 s; a lost node or CLUSTERDOWN makes it ask
//   sooner); a fresh limit of 5 on that slot then admits exactly 5 of 8. No
//   server exits; the servers report the slot map changing. Redis's own
//   failover (node timeout 2 s, then an election) is not under test: 60 s
//   is a guard.
#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/substitute.h"
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
// How long refunds of cross-slot reservations may take to land.
constexpr absl::Duration kSettle = absl::Seconds(10);
// How soon after a failover is agreed every server decides from Redis
// again: twice toolgated's periodic refresh of the slot map.
constexpr absl::Duration kResumeBound = absl::Seconds(20);

// The slot of a counter instance's keys: their hash tag is
// "{COUNTER|*}" (global) or "{COUNTER|g|GRANT}" (per grant).
int GlobalSlot(const std::string& counter) {
  return RedisClusterSet::KeySlot(absl::StrCat("{", counter, "|*}"));
}
int GrantSlot(const std::string& counter, const std::string& grant) {
  return RedisClusterSet::KeySlot(absl::StrCat("{", counter, "|g|", grant, "}"));
}

// The first of prefix0, prefix1, ... that `fits`.
std::string Pick(const std::string& prefix, const std::function<bool(const std::string&)>& fits) {
  for (int i = 0; i < 10'000'000; ++i) {
    std::string name = absl::StrCat(prefix, i);
    if (fits(name)) return name;
  }
  ADD_FAILURE() << "no name fits for " << prefix;
  return prefix;
}

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = RedisClusterSet::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  void StartServers(const std::string& policy, std::vector<std::string> extra) {
    const std::string path = dir_.WriteFile("policy.yaml", policy);
    for (int i = 0; i < 3; ++i) {
      std::vector<std::string> args = {"--listen",      "127.0.0.1:0", "--policy",     path,
                                       "--watch=false", "--redis",     cluster_->url()};
      args.insert(args.end(), extra.begin(), extra.end());
      auto s = ServerProcess::Start(args);
      ASSERT_TRUE(s.ok()) << s.status();
      clients_.push_back(toolgate::Client::Connect((*s)->address()));
      admins_.push_back(toolgate::Client::Connect((*s)->admin_address()));
      servers_.push_back(*std::move(s));
    }
  }

  int MasterOf(int slot) {
    auto port = cluster_->MasterOf(slot);
    EXPECT_TRUE(port.ok()) << port.status();
    return port.value_or(-1);
  }

  // What Redis holds for the counter `probe_tool` names (its only limit,
  // of `max`), for `grant`: a dry run that would be admitted reports the
  // room left after it.
  absl::StatusOr<int64_t> Stored(const std::string& probe_tool, const std::string& grant,
                                 int64_t max) {
    CheckRequest r = Req(probe_tool, grant);
    r.set_dry_run(true);
    auto a = clients_[0]->Check(r, absl::Seconds(10));
    if (!a.ok()) return a.status();
    if (ByFailureMode(*a) || a->limits_size() != 1) {
      return absl::UnavailableError(absl::StrCat("not decided by Redis: ", a->reason()));
    }
    const int64_t room =
        a->limits(0).remaining() + (a->decision() == toolgate::v1::DECISION_ALLOW ? 1 : 0);
    return max - room;
  }

  // Polls until Stored(...) == expected (true), up to kSettle.
  void ExpectSettlesTo(const std::string& probe_tool, const std::string& grant, int64_t max,
                       int64_t expected) {
    std::string last;
    const bool settled = PollUntil(
        [&] {
          auto n = Stored(probe_tool, grant, max);
          last = n.ok() ? absl::StrCat(*n) : n.status().ToString();
          return n.ok() && *n == expected;
        },
        kSettle);
    EXPECT_TRUE(settled) << probe_tool << " for " << grant << ": stored " << last << ", admitted "
                         << expected;
  }

  // `field` of every server's counter store status, summed.
  uint64_t SumOfStoreCounts(const std::string& field) {
    uint64_t sum = 0;
    for (size_t s = 0; s < admins_.size(); ++s) {
      auto status = admins_[s]->GetStatus();
      EXPECT_TRUE(status.ok()) << status.status();
      if (!status.ok()) continue;
      auto n = StoreCount(status->counter_store(), field);
      EXPECT_TRUE(n.ok()) << n.status();
      sum += n.value_or(0);
    }
    return sum;
  }

  TempDir dir_;
  std::unique_ptr<RedisClusterSet> cluster_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::unique_ptr<toolgate::Client>> clients_;
  std::vector<std::unique_ptr<toolgate::Client>> admins_;
};

TEST_F(RedisClusterTest, GlobalLimitIsExactAcrossThreeServers) {
  constexpr char kPolicy[] = R"(
version: "1"
tools:
  fleet_tool:
    limits: [{counter: fleet, window: hour, max: 50, scope: global}]
)";
  ASSERT_NO_FATAL_FAILURE(StartServers(kPolicy, {"--redis-timeout", "5s"}));
  std::vector<CheckRequest> requests;
  for (int i = 0; i < 300; ++i) requests.push_back(Req("fleet_tool", absl::StrCat("g", i % 7)));
  int allow = 0, limited = 0;
  for (const auto& r : CheckAll(clients_, requests)) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(ByFailureMode(*r)) << r->reason();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) ++allow;
    if (r->decision() == toolgate::v1::DECISION_RATE_LIMITED) ++limited;
  }
  EXPECT_EQ(allow, 50);
  EXPECT_EQ(limited, 250);

  // Its keys are on the master serving its slot, and only there.
  const int owner = MasterOf(GlobalSlot("fleet"));
  auto keys = cluster_->KeysByMaster("toolgate:{fleet|\\*}*");
  ASSERT_TRUE(keys.ok()) << keys.status();
  for (const auto& [port, list] : *keys) {
    if (port == owner) {
      EXPECT_FALSE(list.empty()) << "no key on " << port;
    } else {
      EXPECT_TRUE(list.empty()) << "master " << port << ": " << absl::StrJoin(list, " ");
    }
  }

  for (size_t s = 0; s < admins_.size(); ++s) {
    auto status = admins_[s]->GetStatus();
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(absl::StartsWith(status->counter_store().address(), "redis+cluster://"))
        << status->counter_store().address();
    EXPECT_TRUE(status->counter_store().connected()) << status->counter_store().last_error();
  }
  CommandResult cli = RunCommand({CliBin(), "status", "--target", servers_[0]->admin_address()});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_THAT(cli.out, HasSubstr("counter store:    redis redis+cluster://"));
}

TEST_F(RedisClusterTest, LimitsInDifferentSlotsAreAllOrNothing) {
  constexpr int kTotal = 40, kPerGrant = 10;
  // The global counter's slot, and every grant's counter in another slot
  // on another master.
  const int total_slot = GlobalSlot("total");
  const int total_master = MasterOf(total_slot);
  auto elsewhere = [&](const std::string& grant) {
    const int slot = GrantSlot("per_grant", grant);
    return slot != total_slot && MasterOf(slot) != total_master;
  };
  const std::string hot = Pick("hot", elsewhere);
  std::vector<std::string> cold;
  for (int i = 0; i < 10; ++i) cold.push_back(Pick(absl::StrCat("cold", i, "-"), elsewhere));
  for (const std::string& g : cold) {
    ASSERT_NE(GrantSlot("per_grant", g), total_slot);
    ASSERT_NE(MasterOf(GrantSlot("per_grant", g)), total_master);
  }
  ASSERT_NE(MasterOf(GrantSlot("per_grant", hot)), total_master);

  // The probe tools name one counter each (tools naming a counter share it).
  constexpr char kPolicy[] = R"(
version: "1"
tools:
  pair:
    limits:
      - {counter: total, window: hour, max: $0, scope: global}
      - {counter: per_grant, window: hour, max: $1, scope: grant}
  probe_total:
    limits: [{counter: total, window: hour, max: $0, scope: global}]
  probe_grant:
    limits: [{counter: per_grant, window: hour, max: $1, scope: grant}]
)";
  ASSERT_NO_FATAL_FAILURE(StartServers(absl::Substitute(kPolicy, kTotal, kPerGrant),
                                       {"--redis-timeout", "5s", "--no-redis-over-limit-cache"}));

  std::vector<CheckRequest> requests;
  for (int i = 0; i < 300; ++i) {
    requests.push_back(Req("pair", i % 2 == 0 ? hot : cold[(i / 2) % cold.size()]));
  }
  std::map<std::string, int> allowed;
  int allow = 0, by_total = 0, by_grant = 0;
  const auto results = CheckAll(clients_, requests);
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(ByFailureMode(*r)) << r->reason();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) {
      ++allow;
      ++allowed[requests[i].grant()];
      continue;
    }
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED) << r->reason();
    for (const auto& l : r->limits()) {
      if (l.remaining() == 0 && l.counter() == "total") ++by_total;
      if (l.remaining() == 0 && l.counter() == "per_grant") ++by_grant;
    }
  }
  std::cout << "two slots: " << allow << " admitted (" << allowed[hot]
            << " on the hot grant); refusals reporting the global limit full: " << by_total
            << ", a grant's limit full: " << by_grant << "\n";
  EXPECT_LE(allow, kTotal);
  for (const auto& [grant, n] : allowed) EXPECT_LE(n, kPerGrant) << grant;

  // Settled: each counter holds exactly what was admitted.
  ExpectSettlesTo("probe_total", "any", kTotal, allow);
  ExpectSettlesTo("probe_grant", hot, kPerGrant, allowed[hot]);
  for (const std::string& g : cold) ExpectSettlesTo("probe_grant", g, kPerGrant, allowed[g]);

  // Room given back is room: one call at a time, fresh grants, until the
  // global limit refuses: kTotal admitted in all.
  int more = 0;
  for (int i = 0; i <= kTotal; ++i) {
    auto r = clients_[i % 3]->Check(Req("pair", absl::StrCat("fresh", i)), absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(ByFailureMode(*r)) << r->reason();
    if (r->decision() != toolgate::v1::DECISION_ALLOW) break;
    ++more;
  }
  EXPECT_EQ(allow + more, kTotal) << allow << " concurrently, then " << more;

  // Refusals in one slot gave back what another slot had reserved, and
  // every such refund was delivered.
  EXPECT_GE(SumOfStoreCounts("refunds"), 1u);
  EXPECT_EQ(SumOfStoreCounts("refund_failures"), 0u);
}

TEST_F(RedisClusterTest, ReshardingUnderLoadNeitherOverAdmitsNorLoses) {
  constexpr int kSmall = 5;
  // Keys in slots 0..63: the lowest of their master's range, which
  // redis-cli moves first.
  const int from = MasterOf(0);
  int to = -1;
  auto nodes = cluster_->Nodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  for (const auto& n : *nodes) {
    if (n.master && n.port != from) to = n.port;
  }
  ASSERT_NE(to, -1);
  std::vector<std::string> small, big;
  std::set<int> slots;
  for (int i = 0; i < 12; ++i) {
    small.push_back(Pick(absl::StrCat("s", i, "-"),
                         [](const std::string& g) { return GrantSlot("small", g) < 64; }));
    slots.insert(GrantSlot("small", small.back()));
  }
  for (int i = 0; i < 6; ++i) {
    big.push_back(Pick(absl::StrCat("b", i, "-"),
                       [](const std::string& g) { return GrantSlot("big", g) < 64; }));
    slots.insert(GrantSlot("big", big.back()));
  }
  for (const int slot : slots) ASSERT_EQ(MasterOf(slot), from) << slot;

  constexpr char kPolicy[] = R"(
version: "1"
tools:
  small_tool:
    limits: [{counter: small, window: hour, max: $0, scope: grant}]
  big_tool:
    limits: [{counter: big, window: hour, max: 1000000, scope: grant}]
)";
  ASSERT_NO_FATAL_FAILURE(StartServers(absl::Substitute(kPolicy, kSmall),
                                       {"--redis-timeout", "5s", "--no-redis-over-limit-cache"}));

  CheckLoad load(clients_, 6, [&](int t, int n) {
    return n % 2 == 0 ? Req("small_tool", small[(t + n / 2) % small.size()])
                      : Req("big_tool", big[(t + n / 2) % big.size()]);
  });
  ASSERT_TRUE(load.WaitForAnswers(300, kWait));
  const absl::Time reshard_start = absl::Now();
  const absl::Status resharded =
      cluster_->Reshard(std::vector<int>(slots.begin(), slots.end()), to);
  const absl::Time reshard_end = absl::Now();
  ASSERT_TRUE(load.WaitForAnswers(300, reshard_end, kWait));
  const std::vector<TimedCheck> checks = load.Stop();
  ASSERT_TRUE(resharded.ok()) << resharded;

  std::map<std::string, int> allowed;
  int during = 0;
  for (const TimedCheck& c : checks) {
    ASSERT_TRUE(c.result.ok()) << "every check must be decided: " << c.result.status();
    EXPECT_FALSE(ByFailureMode(*c.result)) << c.result->reason();
    if (c.end >= reshard_start && c.start <= reshard_end) ++during;
    if (c.result->decision() == toolgate::v1::DECISION_ALLOW) ++allowed[c.request.grant()];
  }
  std::cout << "resharding " << slots.size() << " slots from " << from << " to " << to << " took "
            << absl::FormatDuration(reshard_end - reshard_start) << "; " << checks.size()
            << " checks, " << during << " during it\n";
  EXPECT_GT(during, 0);
  for (const std::string& g : small) {
    EXPECT_LE(allowed[g], kSmall) << "over-admitted: grant " << g;
    ExpectSettlesTo("small_tool", g, kSmall, allowed[g]);
  }
  for (const std::string& g : big) ExpectSettlesTo("big_tool", g, 1000000, allowed[g]);

  // The keys moved with their slots: every counter instance's keys (by
  // their hash tag) are on the new master, and no key of toolgate is
  // anywhere else.
  std::set<std::string> expected, found;
  for (const std::string& g : small) expected.insert(absl::StrCat("{small|g|", g, "}"));
  for (const std::string& g : big) expected.insert(absl::StrCat("{big|g|", g, "}"));
  auto keys = cluster_->KeysByMaster("toolgate:{*");
  ASSERT_TRUE(keys.ok()) << keys.status();
  for (const auto& [port, list] : *keys) {
    if (port != to) {
      EXPECT_TRUE(list.empty()) << port << ": " << absl::StrJoin(list, " ");
      continue;
    }
    for (const std::string& key : list) {
      const size_t open = key.find('{'), close = key.find('}');
      ASSERT_NE(close, std::string::npos) << key;
      found.insert(key.substr(open, close - open + 1));
    }
  }
  EXPECT_EQ(found, expected);
  // The servers learnt of the move from Redis (MOVED, or ASK meanwhile).
  EXPECT_GE(SumOfStoreCounts("redirects"), 1u);
}

TEST_F(RedisClusterTest, MasterKilledUnderLoadDecisionsResume) {
  const absl::Duration deadline = absl::Milliseconds(500);
  // Both counters in one slot's master, the one killed.
  const int victim_slot = GlobalSlot("resume");
  const int victim = MasterOf(victim_slot);
  const std::string counted =
      Pick("counted", [&](const std::string& c) { return MasterOf(GlobalSlot(c)) == victim; });
  constexpr char kPolicy[] = R"(
version: "1"
tools:
  loaded:
    limits: [{counter: loaded, window: hour, max: 1000000, scope: grant}]
  resume_probe:
    limits: [{counter: resume, window: hour, max: 1000000, scope: global}]
  counted:
    limits: [{counter: $0, window: hour, max: 5, scope: global}]
)";
  ASSERT_NO_FATAL_FAILURE(
      StartServers(absl::Substitute(kPolicy, counted), {"--redis-timeout", "500ms"}));

  // The callers' own deadline is far past the bound checked below.
  CheckLoad load(
      clients_, 6,
      [](int t, int n) { return Req("loaded", absl::StrCat("caller", t, "-", n % 50)); },
      absl::Seconds(30));
  ASSERT_TRUE(load.WaitForAnswers(60, kWait));
  auto killed_port = cluster_->KillMasterOf(victim_slot);
  ASSERT_TRUE(killed_port.ok()) << killed_port.status();
  ASSERT_EQ(*killed_port, victim);
  const absl::Time killed = absl::Now();
  auto promoted = cluster_->WaitForPromotion(victim_slot, kWait);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  const absl::Time agreed = absl::Now();

  // Every server decides on the slot's key from Redis again, in bound.
  std::vector<std::string> last;
  const std::vector<absl::Time> resumed = PollEach(
      clients_, [] { return Req("resume_probe", "g"); },
      [](const CheckResponse& r) {
        return !ByFailureMode(r) && r.decision() == toolgate::v1::DECISION_ALLOW;
      },
      agreed + kResumeBound, &last);
  absl::Duration slowest_resume;
  for (size_t s = 0; s < resumed.size(); ++s) {
    EXPECT_NE(resumed[s], absl::InfiniteFuture())
        << "server " << s << " does not decide from Redis; last: " << last[s] << "\n"
        << servers_[s]->log();
    slowest_resume = std::max(slowest_resume, resumed[s] - agreed);
  }
  ASSERT_TRUE(load.WaitForAnswers(60, absl::Now(), kWait));
  const std::vector<TimedCheck> checks = load.Stop();

  absl::Duration slowest;
  int by_failure_mode = 0;
  for (const TimedCheck& c : checks) {
    ASSERT_TRUE(c.result.ok()) << "every check must be decided: " << c.result.status();
    slowest = std::max(slowest, c.end - c.start);
    if (ByFailureMode(*c.result)) ++by_failure_mode;
  }
  EXPECT_LE(slowest, 10 * deadline) << checks.size() << " checks";
  std::cout << "master " << victim << " killed: replica " << *promoted << " serves slot "
            << victim_slot << " " << absl::FormatDuration(agreed - killed)
            << " later (agreed by every node); every server decided from Redis "
            << absl::FormatDuration(slowest_resume) << " after that; " << checks.size()
            << " checks, slowest " << absl::FormatDuration(slowest) << ", " << by_failure_mode
            << " by the failure mode\n";

  // A limit on the promoted master counts exactly.
  int admitted = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = clients_[i % 3]->Check(Req("counted", absl::StrCat("g", i)), absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(ByFailureMode(*r)) << r->reason();
    if (r->decision() == toolgate::v1::DECISION_ALLOW) ++admitted;
  }
  EXPECT_EQ(admitted, 5);
  for (auto& server : servers_) EXPECT_TRUE(server->Running());
  EXPECT_GE(SumOfStoreCounts("topology_changes"), 1u) << "no server saw the slot map change";
}

}  // namespace
}  // namespace toolgate_test
