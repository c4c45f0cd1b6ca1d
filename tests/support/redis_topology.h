// Real Redis topologies for tests: a Sentinel set (a master, a replica and
// three sentinels) and a Redis Cluster (three masters, each with a replica),
// all redis-server processes on loopback ports (RedisProcess), killed and
// reaped on destruction.
//
// Nothing here sleeps to let a topology settle: starting, failing over and
// resharding each poll the servers themselves (ROLE, INFO, SENTINEL, CLUSTER
// INFO / NODES) until what they report is the state asked for, under a
// deadline. Failovers are made quick (Sentinel's down-after-milliseconds
// 1000, a cluster's node timeout 2000 ms): one takes a few seconds.
#ifndef TOOLGATE_TESTS_SUPPORT_REDIS_TOPOLOGY_H_
#define TOOLGATE_TESTS_SUPPORT_REDIS_TOPOLOGY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/support/redis_process.h"

namespace toolgate_test {

// How long a topology may take to form or to fail over before a wait gives
// up: a guard against hangs, many times what either takes on a busy machine.
inline constexpr absl::Duration kTopologyTimeout = absl::Seconds(60);

// One master, one replica of it, and three sentinels watching it (quorum
// 2), so that killing the master promotes the replica.
class RedisSentinelSet {
 public:
  // The name the sentinels know the master by.
  static constexpr char kMasterName[] = "toolgate";
  // Sentinel's failure detection and failover timing for this set.
  static constexpr int kDownAfterMs = 1000;
  static constexpr int kFailoverTimeoutMs = 3000;

  // Starts everything and returns once the replica is in sync and every
  // sentinel knows the master, the replica and the two other sentinels
  // (SENTINEL CKQUORUM): from then on a killed master is failed over.
  static absl::StatusOr<std::unique_ptr<RedisSentinelSet>> Start();
  ~RedisSentinelSet() = default;
  RedisSentinelSet(const RedisSentinelSet&) = delete;
  RedisSentinelSet& operator=(const RedisSentinelSet&) = delete;

  // "redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/toolgate".
  std::string url() const;

  // The data server the sentinels last reported as master (after Start:
  // the first; after WaitForNewMaster: the promoted one), and the other one.
  RedisProcess& master() { return *servers_[master_]; }
  RedisProcess& replica() { return *servers_[1 - master_]; }
  RedisProcess& sentinel(int i) { return *sentinels_[i]; }
  int sentinel_count() const { return static_cast<int>(sentinels_.size()); }

  // The master's port as sentinel `i` reports it (SENTINEL
  // GET-MASTER-ADDR-BY-NAME).
  absl::StatusOr<int> MasterPortReportedBy(int i) const;

  // SIGKILLs the master (and reaps it); returns its port.
  int KillMaster();

  struct Failover {
    int port = 0;  // The new master's.
    // The start of the last poll at which every sentinel still named the
    // old master: until then, no sentinel had reported a new one.
    absl::Time all_old_until;
    // When every sentinel had reported the new master, and it said so
    // itself (ROLE master).
    absl::Time reported_at;
  };
  // Polls until every sentinel reports a master other than `old_port` and
  // that server's ROLE says master. master() is that server afterwards.
  absl::StatusOr<Failover> WaitForNewMaster(int old_port,
                                            absl::Duration timeout = kTopologyTimeout);

  // Starts the killed server again, empty (no persistence), as a replica
  // of the current master (what Sentinel itself would make of it, some
  // seconds later), and waits until it is in sync.
  absl::Status RestartAsReplica();

 private:
  RedisSentinelSet() = default;

  std::vector<std::unique_ptr<RedisProcess>> servers_;  // [0] started as master
  std::vector<std::unique_ptr<RedisProcess>> sentinels_;
  int master_ = 0;
};

// A Redis Cluster: `masters` masters sharing the 16384 slots (as `redis-cli
// --cluster create` splits them), each with `replicas` replicas.
class RedisClusterSet {
 public:
  static constexpr int kSlots = 16384;
  static constexpr int kNodeTimeoutMs = 2000;

  // A node as CLUSTER NODES describes it.
  struct Node {
    std::string id;
    int port = 0;
    bool master = false;
    bool failed = false;                     // "fail" or "fail?" among its flags
    std::string master_id;                   // of a replica
    std::vector<std::pair<int, int>> slots;  // ranges served, inclusive
    bool Serves(int slot) const;
  };

  // Starts the nodes, creates the cluster (redis-cli --cluster create ...
  // --cluster-replicas R --cluster-yes) and returns once every node reports
  // cluster_state:ok, agrees on who serves every slot, and every replica is
  // in sync with its master.
  static absl::StatusOr<std::unique_ptr<RedisClusterSet>> Start(int masters = 3, int replicas = 1);
  ~RedisClusterSet() = default;
  RedisClusterSet(const RedisClusterSet&) = delete;
  RedisClusterSet& operator=(const RedisClusterSet&) = delete;

  // "redis+cluster://127.0.0.1:P1,..." with the masters as created (seed
  // nodes; any node would do).
  std::string url() const;

  // The slot of `key`, as Redis computes it: CRC16 (XMODEM) of the key, or
  // of its hash tag (what is between the first '{' and the next '}', when
  // that is not empty), modulo 16384.
  static int KeySlot(absl::string_view key);

  // Every node of the cluster as a live node sees it (CLUSTER NODES).
  absl::StatusOr<std::vector<Node>> Nodes() const;
  // The port of the master serving `slot`, as a live node sees it.
  absl::StatusOr<int> MasterOf(int slot) const;
  // The node process on `port` (nullptr: none).
  RedisProcess* NodeOnPort(int port) const;
  // A live node, for asking the cluster something.
  RedisProcess* AnyLiveNode() const;
  const std::vector<std::unique_ptr<RedisProcess>>& nodes() const { return nodes_; }

  // Moves `slots` (and the keys in them) to the master on `to_port` with
  // `redis-cli --cluster reshard`, then waits until every live node agrees.
  // redis-cli moves a node's slots from its lowest up: from each current
  // owner, the slots up to the highest one asked for are moved (slots
  // chosen low in their owner's range move few others). Keys are migrated
  // one slot at a time (MIGRATING/IMPORTING, MIGRATE), so a client sees
  // ASK and then MOVED redirections for them meanwhile.
  absl::Status Reshard(const std::vector<int>& slots, int to_port);

  // SIGKILLs the master serving `slot`; returns its port.
  absl::StatusOr<int> KillMasterOf(int slot);
  // Polls until a live master (the killed one's replica, promoted) serves
  // `slot` and every live node agrees and reports cluster_state:ok; returns
  // the new master's port.
  absl::StatusOr<int> WaitForPromotion(int slot, absl::Duration timeout = kTopologyTimeout);

  // Polls until every live node reports cluster_state:ok, and all agree on
  // which master serves every slot, with no slot migrating or importing.
  absl::Status WaitUntilStable(absl::Duration timeout = kTopologyTimeout) const;

  // Every key matching `pattern` on each live master: port -> keys.
  absl::StatusOr<std::map<int, std::vector<std::string>>> KeysByMaster(
      const std::string& pattern) const;

 private:
  RedisClusterSet() = default;

  std::vector<std::unique_ptr<RedisProcess>> nodes_;
  int masters_ = 0;
};

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_SUPPORT_REDIS_TOPOLOGY_H_
