// The topology harness itself, against real redis-server processes: a
// Sentinel set fails over when its master is killed, a cluster forms,
// reshards a slot with its keys, and promotes a killed master's replica;
// everything is gone once the harness is.
#include "tests/support/redis_topology.h"

#include <hiredis/hiredis.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// True when something accepts TCP connections on the port.
bool Listening(int port) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  const bool up = c != nullptr && c->err == 0;
  if (c) redisFree(c);
  return up;
}

TEST(RedisTopologyTest, KeySlotAgreesWithRedis) {
  RedisOptions options;
  options.cluster = true;
  auto node = RedisProcess::Start(options);
  ASSERT_TRUE(node.ok()) << node.status();
  const std::vector<std::string> keys = {"",
                                         "a",
                                         "foo",
                                         "{user1000}.following",
                                         "foo{}{bar}",
                                         "foo{{bar}}zap",
                                         "foo{bar}{zap}",
                                         "{}x",
                                         "x{",
                                         "toolgate:{fleet|*}:s:3600000",
                                         "toolgate:{per_grant|g|grant3}:s:3600000",
                                         std::string("bin\0\xff{t}", 8)};
  for (const std::string& key : keys) {
    auto slot = (*node)->Command({"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(slot.ok()) << slot.status();
    EXPECT_EQ(absl::StrCat(RedisClusterSet::KeySlot(key)), *slot) << key;
  }
}

TEST(RedisTopologyTest, SentinelSetFailsOverToTheReplica) {
  auto set = RedisSentinelSet::Start();
  ASSERT_TRUE(set.ok()) << set.status();
  RedisSentinelSet& s = **set;
  EXPECT_EQ(s.url(), absl::StrCat("redis+sentinel://127.0.0.1:", s.sentinel(0).port(),
                                  ",127.0.0.1:", s.sentinel(1).port(),
                                  ",127.0.0.1:", s.sentinel(2).port(), "/toolgate"));
  const int old_master = s.master().port();
  const int replica = s.replica().port();
  for (int i = 0; i < s.sentinel_count(); ++i) {
    EXPECT_EQ(s.MasterPortReportedBy(i).value_or(-1), old_master) << "sentinel " << i;
  }
  // Written, and on the replica before the master dies (WAIT).
  ASSERT_EQ(s.master().Command({"SET", "k", "v"}).value_or("?"), "OK");
  ASSERT_EQ(s.master().Command({"WAIT", "1", "10000"}).value_or("?"), "1");
  EXPECT_THAT(s.replica().Command({"SET", "k", "w"}).status().message(), HasSubstr("READONLY"));

  const absl::Time killed = absl::Now();
  EXPECT_EQ(s.KillMaster(), old_master);
  EXPECT_FALSE(Listening(old_master));
  auto failover = s.WaitForNewMaster(old_master);
  ASSERT_TRUE(failover.ok()) << failover.status();
  EXPECT_EQ(failover->port, replica);
  EXPECT_EQ(s.master().port(), replica);
  EXPECT_GE(failover->all_old_until, killed);
  EXPECT_LT(failover->all_old_until, failover->reported_at);
  std::cout << "sentinels reported the new master "
            << absl::FormatDuration(failover->reported_at - killed) << " after the kill\n";
  for (int i = 0; i < s.sentinel_count(); ++i) {
    EXPECT_EQ(s.MasterPortReportedBy(i).value_or(-1), replica) << "sentinel " << i;
  }
  EXPECT_EQ(s.master().Command({"GET", "k"}).value_or("?"), "v");
  EXPECT_EQ(s.master().Command({"SET", "k", "w"}).value_or("?"), "OK");

  // The old master back, as a replica of the new one, with its data.
  ASSERT_TRUE(s.RestartAsReplica().ok());
  EXPECT_EQ(s.replica().port(), old_master);
  EXPECT_EQ(s.master().Command({"WAIT", "1", "10000"}).value_or("?"), "1");
  EXPECT_EQ(s.replica().Command({"GET", "k"}).value_or("?"), "w");

  // Gone with the harness.
  std::vector<int> ports = {replica, old_master};
  for (int i = 0; i < s.sentinel_count(); ++i) ports.push_back(s.sentinel(i).port());
  set->reset();
  for (const int port : ports) EXPECT_FALSE(Listening(port)) << port;
}

TEST(RedisTopologyTest, ClusterFormsReshardsAndPromotesAReplica) {
  auto set = RedisClusterSet::Start();
  ASSERT_TRUE(set.ok()) << set.status();
  RedisClusterSet& c = **set;
  EXPECT_THAT(c.url(), StartsWith("redis+cluster://127.0.0.1:"));
  auto nodes = c.Nodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 6u);
  int masters = 0;
  for (const auto& n : *nodes) {
    if (n.master) {
      ++masters;
      EXPECT_FALSE(n.slots.empty()) << n.port;
    } else {
      EXPECT_FALSE(n.master_id.empty()) << n.port;
    }
  }
  EXPECT_EQ(masters, 3);

  // A key lives on the master MasterOf names; the others redirect.
  const std::string key = "toolgate:{harness|*}:s:1000";
  const int slot = RedisClusterSet::KeySlot(key);
  auto owner = c.MasterOf(slot);
  ASSERT_TRUE(owner.ok()) << owner.status();
  ASSERT_EQ(c.NodeOnPort(*owner)->Command({"SET", key, "1"}).value_or("?"), "OK");
  int other = 0;
  for (const auto& n : *nodes) {
    if (n.master && n.port != *owner) other = n.port;
  }
  ASSERT_NE(other, 0);
  EXPECT_THAT(c.NodeOnPort(other)->Command({"GET", key}).status().message(),
              HasSubstr(absl::StrCat("MOVED ", slot, " 127.0.0.1:", *owner)));

  // Resharded, with its key, to another master.
  ASSERT_TRUE(c.Reshard({slot}, other).ok());
  EXPECT_EQ(c.MasterOf(slot).value_or(-1), other);
  EXPECT_EQ(c.NodeOnPort(other)->Command({"GET", key}).value_or("?"), "1");
  EXPECT_THAT(c.NodeOnPort(*owner)->Command({"GET", key}).status().message(),
              HasSubstr(absl::StrCat("MOVED ", slot, " 127.0.0.1:", other)));
  auto keys = c.KeysByMaster("toolgate:{harness|*}*");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ((*keys)[other], std::vector<std::string>{key});
  EXPECT_TRUE((*keys)[*owner].empty());

  // Its new master killed: the replica takes the slot over, with the key.
  ASSERT_EQ(c.NodeOnPort(other)->Command({"WAIT", "1", "10000"}).value_or("?"), "1");
  const absl::Time killed = absl::Now();
  auto dead = c.KillMasterOf(slot);
  ASSERT_TRUE(dead.ok()) << dead.status();
  EXPECT_EQ(*dead, other);
  auto promoted = c.WaitForPromotion(slot);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  std::cout << "replica promoted " << absl::FormatDuration(absl::Now() - killed)
            << " after the kill\n";
  EXPECT_NE(*promoted, other);
  EXPECT_EQ(c.NodeOnPort(*promoted)->Command({"GET", key}).value_or("?"), "1");

  std::vector<int> ports;
  for (const auto& n : c.nodes()) ports.push_back(n->port());
  set->reset();
  for (const int port : ports) EXPECT_FALSE(Listening(port)) << port;
}

}  // namespace
}  // namespace toolgate_test
