#include "tests/support/redis_topology.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace toolgate_test {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

// The value of `field:` in INFO's text ("" when absent).
std::string InfoField(const std::string& info, absl::string_view field) {
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, field) && absl::ConsumePrefix(&line, ":")) {
      return std::string(line);
    }
  }
  return "";
}

// The first line of a reply's text (ROLE's role, ...).
std::string FirstLine(const std::string& text) {
  return std::string(text.substr(0, text.find('\n')));
}

// Runs redis-cli with `args`; its exit status and its output (stdout and
// stderr together). Killed when it runs past `timeout`.
struct CliResult {
  int exit_code = -1;
  std::string output;
};
CliResult RunRedisCli(const std::vector<std::string>& args, absl::Duration timeout) {
  CliResult result;
  int fds[2];
  // Close-on-exec: a process another thread starts meanwhile must not hold
  // the write end open (redis-cli's end would never be seen).
  if (pipe2(fds, O_CLOEXEC) != 0) {
    result.output = "pipe failed";
    return result;
  }
  std::vector<std::string> argv = {"redis-cli"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    result.output = "fork failed";
    return result;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execvp("redis-cli", cargv.data());
    _exit(127);
  }
  close(fds[1]);
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;  // EOF: redis-cli is done (or closed its output).
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) {
    result.output += "\n(killed: ran past " + absl::FormatDuration(timeout) + ")";
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

// Polls `cond` until it holds or `timeout` passes (DEADLINE_EXCEEDED, with
// what `cond` last wrote to `why`).
absl::Status PollFor(const std::function<bool(std::string* why)>& cond, absl::Duration timeout,
                     absl::string_view what) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string why;
  while (true) {
    why.clear();
    if (cond(&why)) return absl::OkStatus();
    if (absl::Now() >= deadline) break;
    absl::SleepFor(kPollInterval);
  }
  return absl::DeadlineExceededError(
      absl::StrCat(what, ": not within ", absl::FormatDuration(timeout), ": ", why));
}

// Parses CLUSTER NODES' text.
absl::StatusOr<std::vector<RedisClusterSet::Node>> ParseClusterNodes(const std::string& text) {
  std::vector<RedisClusterSet::Node> nodes;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 8) return absl::InternalError(absl::StrCat("bad CLUSTER NODES line: ", line));
    RedisClusterSet::Node n;
    n.id = std::string(f[0]);
    // "127.0.0.1:7000@17000[,hostname]"
    absl::string_view addr = f[1];
    addr = addr.substr(0, addr.find_first_of("@,"));
    if (!absl::SimpleAtoi(addr.substr(addr.rfind(':') + 1), &n.port)) {
      return absl::InternalError(absl::StrCat("bad address in: ", line));
    }
    for (absl::string_view flag : absl::StrSplit(f[2], ',')) {
      if (flag == "master") n.master = true;
      if (flag == "fail" || flag == "fail?") n.failed = true;
    }
    if (f[3] != "-") n.master_id = std::string(f[3]);
    for (size_t i = 8; i < f.size(); ++i) {
      if (absl::StartsWith(f[i], "[")) {
        // A slot being migrated or imported: "[93->-id]" / "[93-<-id]".
        return absl::FailedPreconditionError(absl::StrCat("slot migrating: ", line));
      }
      const std::pair<absl::string_view, absl::string_view> range =
          absl::StrSplit(f[i], absl::MaxSplits('-', 1));
      int first = 0, last = 0;
      if (!absl::SimpleAtoi(range.first, &first)) {
        return absl::InternalError(absl::StrCat("bad slot in: ", line));
      }
      last = first;
      if (!range.second.empty() && !absl::SimpleAtoi(range.second, &last)) {
        return absl::InternalError(absl::StrCat("bad slot range in: ", line));
      }
      n.slots.emplace_back(first, last);
    }
    nodes.push_back(std::move(n));
  }
  return nodes;
}

// Who serves what, as one node sees it, in a form that compares: "first-last
// port" per range, sorted; INTERNAL when the slots are not all covered.
absl::StatusOr<std::string> SlotMap(const std::vector<RedisClusterSet::Node>& nodes) {
  std::vector<std::pair<int, std::string>> ranges;
  int covered = 0;
  for (const RedisClusterSet::Node& n : nodes) {
    if (!n.master || n.failed) continue;
    for (const auto& [first, last] : n.slots) {
      ranges.emplace_back(first, absl::StrCat(first, "-", last, " ", n.port));
      covered += last - first + 1;
    }
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::string> parts;
  for (auto& r : ranges) parts.push_back(std::move(r.second));
  std::string map = absl::StrJoin(parts, ", ");
  if (covered != RedisClusterSet::kSlots) {
    return absl::InternalError(absl::StrCat(covered, " slots covered: ", map));
  }
  return map;
}

}  // namespace

// ---- RedisSentinelSet ----------------------------------------------------------

absl::StatusOr<std::unique_ptr<RedisSentinelSet>> RedisSentinelSet::Start() {
  std::unique_ptr<RedisSentinelSet> set(new RedisSentinelSet());
  auto master = RedisProcess::Start();
  if (!master.ok()) return master.status();
  const int master_port = (*master)->port();
  set->servers_.push_back(*std::move(master));
  RedisOptions replica_options;
  replica_options.args = {"--replicaof", "127.0.0.1", std::to_string(master_port)};
  auto replica = RedisProcess::Start(replica_options);
  if (!replica.ok()) return replica.status();
  const int replica_port = (*replica)->port();
  set->servers_.push_back(*std::move(replica));

  absl::Status s = PollFor(
      [&](std::string* why) {
        auto info = set->servers_[1]->Command({"INFO", "replication"});
        if (!info.ok()) return *why = info.status().ToString(), false;
        *why = "replica's link: " + InfoField(*info, "master_link_status");
        return InfoField(*info, "master_link_status") == "up";
      },
      kTopologyTimeout, "replica in sync");
  if (!s.ok()) return s;

  // The replica is named in the configuration: Sentinel would otherwise
  // learn of it only from the master's INFO, every 10 s. The other
  // sentinels it finds by itself (hello messages, every 2 s).
  const std::string config =
      absl::StrCat("sentinel monitor ", kMasterName, " 127.0.0.1 ", master_port, " 2\n",
                   "sentinel down-after-milliseconds ", kMasterName, " ", kDownAfterMs, "\n",
                   "sentinel failover-timeout ", kMasterName, " ", kFailoverTimeoutMs, "\n",
                   "sentinel parallel-syncs ", kMasterName, " 1\n", "sentinel known-replica ",
                   kMasterName, " 127.0.0.1 ", replica_port, "\n");
  RedisOptions sentinel_options;
  sentinel_options.sentinel_config = config;
  for (int i = 0; i < 3; ++i) {
    auto sentinel = RedisProcess::Start(sentinel_options);
    if (!sentinel.ok()) return sentinel.status();
    set->sentinels_.push_back(*std::move(sentinel));
  }
  for (int i = 0; i < 3; ++i) {
    const RedisProcess& sentinel = *set->sentinels_[i];
    s = PollFor(
        [&](std::string* why) {
          auto quorum = sentinel.Command({"SENTINEL", "CKQUORUM", kMasterName});
          if (!quorum.ok() || !absl::StartsWith(*quorum, "OK 3 usable")) {
            *why = quorum.ok() ? *quorum : quorum.status().ToString();
            return false;
          }
          // The replica known, connected, and not thought down.
          auto replicas = sentinel.Command({"SENTINEL", "REPLICAS", kMasterName});
          if (!replicas.ok() || !absl::StrContains(*replicas, "\nflags\nslave\n") ||
              !absl::StrContains(*replicas, "\nmaster-link-status\nok\n")) {
            *why =
                "replica not ready: " + (replicas.ok() ? *replicas : replicas.status().ToString());
            return false;
          }
          return true;
        },
        kTopologyTimeout, absl::StrCat("sentinel ", sentinel.port(), " ready"));
    if (!s.ok()) return s;
  }
  return set;
}

std::string RedisSentinelSet::url() const {
  std::vector<std::string> hosts;
  for (const auto& s : sentinels_) hosts.push_back(s->address());
  return absl::StrCat("redis+sentinel://", absl::StrJoin(hosts, ","), "/", kMasterName);
}

absl::StatusOr<int> RedisSentinelSet::MasterPortReportedBy(int i) const {
  auto reply = sentinels_[i]->Command({"SENTINEL", "GET-MASTER-ADDR-BY-NAME", kMasterName});
  if (!reply.ok()) return reply.status();
  int port = 0;
  const size_t nl = reply->find('\n');
  if (nl == std::string::npos || !absl::SimpleAtoi(reply->substr(nl + 1), &port)) {
    return absl::InternalError(absl::StrCat("bad GET-MASTER-ADDR-BY-NAME reply: ", *reply));
  }
  return port;
}

int RedisSentinelSet::KillMaster() {
  const int port = master().port();
  master().Kill();
  return port;
}

absl::StatusOr<RedisSentinelSet::Failover> RedisSentinelSet::WaitForNewMaster(
    int old_port, absl::Duration timeout) {
  Failover out;
  out.all_old_until = absl::Now();
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    const absl::Time round = absl::Now();
    std::set<int> reported;
    bool all_answered = true;
    for (int i = 0; i < sentinel_count(); ++i) {
      auto port = MasterPortReportedBy(i);
      if (port.ok()) {
        reported.insert(*port);
      } else {
        all_answered = false;
      }
    }
    last = absl::StrCat("reported masters: ", absl::StrJoin(reported, ","));
    if (all_answered && reported == std::set<int>{old_port}) out.all_old_until = round;
    if (all_answered && reported.size() == 1 && *reported.begin() != old_port) {
      const int port = *reported.begin();
      for (size_t i = 0; i < servers_.size(); ++i) {
        if (servers_[i]->port() != port || !servers_[i]->running()) continue;
        auto role = servers_[i]->Command({"ROLE"});
        if (role.ok() && FirstLine(*role) == "master") {
          master_ = static_cast<int>(i);
          out.port = port;
          out.reported_at = absl::Now();
          return out;
        }
        last += "; its ROLE: " + (role.ok() ? FirstLine(*role) : role.status().ToString());
      }
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(kPollInterval);
  }
  // What the sentinels did, from the log of one of them (its end).
  const std::string log = sentinels_[0]->log();
  return absl::DeadlineExceededError(
      absl::StrCat("no new master within ", absl::FormatDuration(timeout), ": ", last,
                   "\nsentinel log:\n", log.substr(log.size() > 4000 ? log.size() - 4000 : 0)));
}

absl::Status RedisSentinelSet::RestartAsReplica() {
  RedisProcess& server = replica();
  if (server.running()) return absl::FailedPreconditionError("no server was killed");
  if (absl::Status s = server.Restart(); !s.ok()) return s;
  auto replicaof = server.Command({"REPLICAOF", "127.0.0.1", std::to_string(master().port())});
  if (!replicaof.ok()) return replicaof.status();
  return PollFor(
      [&](std::string* why) {
        auto info = server.Command({"INFO", "replication"});
        if (!info.ok()) return *why = info.status().ToString(), false;
        *why = "link: " + InfoField(*info, "master_link_status");
        return InfoField(*info, "master_link_status") == "up";
      },
      kTopologyTimeout, "restarted server in sync");
}

// ---- RedisClusterSet -----------------------------------------------------------

bool RedisClusterSet::Node::Serves(int slot) const {
  for (const auto& [first, last] : slots) {
    if (slot >= first && slot <= last) return true;
  }
  return false;
}

int RedisClusterSet::KeySlot(absl::string_view key) {
  const size_t open = key.find('{');
  if (open != absl::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != absl::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  // CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
  uint16_t crc = 0;
  for (const char c : key) {
    crc ^= static_cast<uint16_t>(static_cast<uint8_t>(c)) << 8;
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc & (kSlots - 1);
}

absl::StatusOr<std::unique_ptr<RedisClusterSet>> RedisClusterSet::Start(int masters, int replicas) {
  if (masters < 3 || replicas < 0) {
    return absl::InvalidArgumentError("a cluster needs at least 3 masters");
  }
  std::unique_ptr<RedisClusterSet> set(new RedisClusterSet());
  set->masters_ = masters;
  std::vector<std::string> create = {"--cluster", "create"};
  RedisOptions node_options;
  node_options.args = {"--cluster-node-timeout", std::to_string(kNodeTimeoutMs)};
  node_options.cluster = true;
  for (int i = 0; i < masters * (1 + replicas); ++i) {
    auto node = RedisProcess::Start(node_options);
    if (!node.ok()) return node.status();
    create.push_back((*node)->address());
    set->nodes_.push_back(*std::move(node));
  }
  create.insert(create.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
  // redis-cli makes the first `masters` addresses the masters.
  const CliResult created = RunRedisCli(create, kTopologyTimeout);
  if (created.exit_code != 0) {
    return absl::InternalError(absl::StrCat("redis-cli --cluster create failed (exit ",
                                            created.exit_code, "):\n", created.output));
  }
  if (absl::Status s = set->WaitUntilStable(); !s.ok()) return s;
  // Every node known to every node, and every replica in sync (a failover
  // needs a replica whose data is recent).
  absl::Status s = PollFor(
      [&](std::string* why) {
        for (const auto& node : set->nodes_) {
          auto text = node->Command({"CLUSTER", "NODES"});
          if (!text.ok()) return *why = text.status().ToString(), false;
          auto nodes = ParseClusterNodes(*text);
          if (!nodes.ok() || nodes->size() != set->nodes_.size()) {
            *why = absl::StrCat(node->port(), " knows: ", *text);
            return false;
          }
          auto role = node->Command({"ROLE"});
          if (!role.ok()) return *why = role.status().ToString(), false;
          if (FirstLine(*role) != "slave") continue;
          auto info = node->Command({"INFO", "replication"});
          if (!info.ok() || InfoField(*info, "master_link_status") != "up") {
            *why = absl::StrCat("replica ", node->port(), " not in sync");
            return false;
          }
        }
        return true;
      },
      kTopologyTimeout, "cluster nodes known and replicas in sync");
  if (!s.ok()) return s;
  return set;
}

std::string RedisClusterSet::url() const {
  std::vector<std::string> seeds;
  for (int i = 0; i < masters_; ++i) seeds.push_back(nodes_[i]->address());
  return absl::StrCat("redis+cluster://", absl::StrJoin(seeds, ","));
}

RedisProcess* RedisClusterSet::NodeOnPort(int port) const {
  for (const auto& n : nodes_) {
    if (n->port() == port) return n.get();
  }
  return nullptr;
}

RedisProcess* RedisClusterSet::AnyLiveNode() const {
  for (const auto& n : nodes_) {
    if (n->running()) return n.get();
  }
  return nullptr;
}

absl::StatusOr<std::vector<RedisClusterSet::Node>> RedisClusterSet::Nodes() const {
  RedisProcess* node = AnyLiveNode();
  if (node == nullptr) return absl::FailedPreconditionError("no live node");
  auto text = node->Command({"CLUSTER", "NODES"});
  if (!text.ok()) return text.status();
  return ParseClusterNodes(*text);
}

absl::StatusOr<int> RedisClusterSet::MasterOf(int slot) const {
  auto nodes = Nodes();
  if (!nodes.ok()) return nodes.status();
  for (const Node& n : *nodes) {
    if (n.master && !n.failed && n.Serves(slot)) return n.port;
  }
  return absl::NotFoundError(absl::StrCat("no master serves slot ", slot));
}

absl::Status RedisClusterSet::WaitUntilStable(absl::Duration timeout) const {
  return PollFor(
      [&](std::string* why) {
        std::string agreed;
        for (const auto& node : nodes_) {
          if (!node->running()) continue;
          auto info = node->Command({"CLUSTER", "INFO"});
          if (!info.ok()) return *why = info.status().ToString(), false;
          if (InfoField(*info, "cluster_state") != "ok") {
            *why =
                absl::StrCat(node->port(), ": cluster_state:", InfoField(*info, "cluster_state"));
            return false;
          }
          auto text = node->Command({"CLUSTER", "NODES"});
          if (!text.ok()) return *why = text.status().ToString(), false;
          auto nodes = ParseClusterNodes(*text);
          if (!nodes.ok()) return *why = nodes.status().ToString(), false;
          // A node no longer running must be seen as failed before the
          // views can agree on what the live ones serve.
          for (const Node& n : *nodes) {
            RedisProcess* p = NodeOnPort(n.port);
            if (p != nullptr && !p->running() && n.master && !n.slots.empty()) {
              *why = absl::StrCat(node->port(), " still sees ", n.port, " serving slots");
              return false;
            }
          }
          auto map = SlotMap(*nodes);
          if (!map.ok()) return *why = map.status().ToString(), false;
          if (agreed.empty()) {
            agreed = *map;
          } else if (*map != agreed) {
            *why = absl::StrCat("views differ: ", agreed, " | ", *map);
            return false;
          }
        }
        return !agreed.empty() || (*why = "no live node", false);
      },
      timeout, "cluster stable");
}

absl::Status RedisClusterSet::Reshard(const std::vector<int>& slots, int to_port) {
  if (absl::Status s = WaitUntilStable(); !s.ok()) return s;
  auto nodes = Nodes();
  if (!nodes.ok()) return nodes.status();
  const Node* to = nullptr;
  for (const Node& n : *nodes) {
    if (n.port == to_port && n.master && !n.failed) to = &n;
  }
  if (to == nullptr) return absl::InvalidArgumentError(absl::StrCat(to_port, " is no master"));
  for (const Node& from : *nodes) {
    if (!from.master || from.failed || from.port == to_port) continue;
    // The position (from 1) of the highest slot asked for among the slots
    // `from` serves, lowest first: how many redis-cli must move.
    std::vector<int> served;
    for (const auto& [first, last] : from.slots) {
      for (int s = first; s <= last; ++s) served.push_back(s);
    }
    std::sort(served.begin(), served.end());
    int count = 0;
    for (const int slot : slots) {
      const auto it = std::lower_bound(served.begin(), served.end(), slot);
      if (it != served.end() && *it == slot) {
        count = std::max(count, static_cast<int>(it - served.begin()) + 1);
      }
    }
    if (count == 0) continue;
    const CliResult moved = RunRedisCli(
        {"--cluster", "reshard", AnyLiveNode()->address(), "--cluster-from", from.id,
         "--cluster-to", to->id, "--cluster-slots", std::to_string(count), "--cluster-yes"},
        kTopologyTimeout);
    if (moved.exit_code != 0) {
      return absl::InternalError(absl::StrCat("redis-cli --cluster reshard failed (exit ",
                                              moved.exit_code, "):\n", moved.output));
    }
  }
  if (absl::Status s = WaitUntilStable(); !s.ok()) return s;
  for (const int slot : slots) {
    auto owner = MasterOf(slot);
    if (!owner.ok()) return owner.status();
    if (*owner != to_port) {
      return absl::InternalError(absl::StrCat("slot ", slot, " is served by ", *owner,
                                              " after the reshard, not ", to_port));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> RedisClusterSet::KillMasterOf(int slot) {
  auto port = MasterOf(slot);
  if (!port.ok()) return port.status();
  RedisProcess* node = NodeOnPort(*port);
  if (node == nullptr) return absl::InternalError(absl::StrCat("no node on ", *port));
  node->Kill();
  return *port;
}

absl::StatusOr<int> RedisClusterSet::WaitForPromotion(int slot, absl::Duration timeout) {
  if (absl::Status s = WaitUntilStable(timeout); !s.ok()) return s;
  auto port = MasterOf(slot);
  if (!port.ok()) return port.status();
  RedisProcess* node = NodeOnPort(*port);
  if (node == nullptr || !node->running()) {
    return absl::InternalError(absl::StrCat("slot ", slot, " is served by ", *port, ", not live"));
  }
  auto role = node->Command({"ROLE"});
  if (!role.ok()) return role.status();
  if (FirstLine(*role) != "master") {
    return absl::InternalError(
        absl::StrCat(*port, " serves slot ", slot, " but is a ", FirstLine(*role)));
  }
  return *port;
}

absl::StatusOr<std::map<int, std::vector<std::string>>> RedisClusterSet::KeysByMaster(
    const std::string& pattern) const {
  auto nodes = Nodes();
  if (!nodes.ok()) return nodes.status();
  std::map<int, std::vector<std::string>> out;
  for (const Node& n : *nodes) {
    RedisProcess* p = NodeOnPort(n.port);
    if (!n.master || n.failed || p == nullptr || !p->running()) continue;
    auto keys = p->Keys(pattern);
    if (!keys.ok()) return keys.status();
    out[n.port] = *std::move(keys);
  }
  return out;
}

}  // namespace toolgate_test
