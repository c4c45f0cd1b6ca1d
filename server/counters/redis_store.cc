#include "server/counters/redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/base/clock.h"
#include "server/base/log.h"
#include "server/redis/reply.h"
#include "server/redis/resp.h"

namespace toolgate {
namespace {

int64_t NowMillis() { return SteadyClock::Get()->NowMillis(); }

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A connection with no reply for this long is considered dead, whatever the
// per-call deadline.
constexpr int64_t kStallMillis = 2000;
constexpr int64_t kConnectTimeoutMillis = 1000;
// The longest sleep of the I/O thread with nothing due.
constexpr int64_t kIdleWaitMillis = 100;
// One script run decides at most this many calls (and limits): enough to
// amortize a run's fixed cost, small enough that a run stays short.
constexpr size_t kMaxCallsPerCommand = 64;
constexpr size_t kMaxKeysPerCommand = 256;
// Cluster: a part follows at most this many MOVED/ASK/TRYAGAIN replies.
constexpr int kMaxRedirects = 5;
// Cluster: TRYAGAIN (a multi-key command on a slot being migrated) is sent
// again after this long.
constexpr int64_t kTryAgainMillis = 2;
// Cluster: the slot map is asked for at most this often, and a CLUSTER
// SLOTS without an answer for this long is asked of another node.
constexpr int64_t kSlotsMinIntervalMillis = 100;
constexpr int64_t kSlotsTimeoutMillis = 1000;
// A cluster may name at most this many nodes (a bound on connections).
constexpr size_t kMaxNodes = 1024;

constexpr char kShuttingDown[] = "counter store is shutting down";

// Calls failed by a counter key's content are logged at most this often, and
// so are refunds that could not be delivered.
constexpr int64_t kKeyErrorLogMillis = 10'000;

}  // namespace

// What a command's reply is for.
enum PendingKind { kScript, kSetup, kRole, kAsking, kSlots, kWait };

struct RedisCounterStore::Request {
  std::vector<LimitCheck> checks;  // A cross-slot call's (a one-part call's are in its part).
  bool dry_run = false;
  Callback done;
  int64_t asked_at = 0;  // When Acquire queued it.
  int64_t deadline = 0;
  bool finished = false;
  // Cross-slot calls:
  size_t parts_left = 0;
  bool refused = false;  // A part refused.
  bool failed = false;   // A part failed, or the deadline passed: answered.
  AcquireResult merged;
  // Parts that consumed, to give back if the call is not admitted.
  std::vector<std::pair<std::vector<LimitCheck>, int64_t>> consumed;
  // A Refund() (not a call): the admission's Redis time, and its callback.
  int64_t refund_at_ms = 0;
  RefundCallback refund_done;
  absl::Status refund_status;  // Cross-slot: the first part's failure.
};

struct RedisCounterStore::Part : ScriptCall {
  std::shared_ptr<Request> req;  // Null for a refund.
  std::vector<size_t> index;     // Positions in req->checks; empty: the call's only part.
  int slot = 0;
  int redirects = 0;
  int64_t deadline = 0;
};

struct RedisCounterStore::Pending {
  PendingKind kind = kScript;
  PartList parts;
  // kScript: its number on the connection; kWait: the last script it covers.
  uint64_t seq = 0;
  int64_t sent_at = 0;
  int64_t sent_us = 0;  // For the observer's latency; 0 without an observer.
};

struct RedisCounterStore::Node {
  RedisHost address;
  RedisUrl url;
  std::unique_ptr<RedisConnection> conn;
  std::deque<std::unique_ptr<Pending>> inflight;
  bool ready = false;  // Every setup command succeeded.
  size_t setup_pending = 0;
  int64_t connect_started = 0;
  int64_t next_connect_at = 0;
  Backoff backoff;
  std::string last_error = "not connected yet";
  int64_t last_error_log = 0;
  bool wrote_since_flush = false;
  size_t commands_since_flush = 0;
  bool serves_slots = false;  // Cluster: a master in the current map.
  // --redis-wait-replicas: at most one WAIT is outstanding; it covers every
  // script written before it, and their admissions are held until it answers.
  uint64_t scripts_sent = 0;
  uint64_t waited_through = 0;
  bool wait_outstanding = false;
  struct Held {
    std::unique_ptr<Part> part;
    AcquireResult result;
    int64_t stamp = 0;
    uint64_t seq = 0;
  };
  std::vector<Held> held;
};

RedisCounterStore::RedisCounterStore(RedisStoreOptions options)
    : options_(std::move(options)),
      mode_(options_.url.mode),
      codec_(options_.key_prefix, options_.exact_log_max),
      cache_(SteadyClock::Get(), options_.over_limit_recheck_ms) {
  absl::StatusOr<std::unique_ptr<Wakeup>> wakeup = Wakeup::Create();
  if (!wakeup.ok()) {
    start_error_ = absl::StrCat("cannot start the I/O thread: ", wakeup.status().message());
    LogError("redis: ", start_error_);
    absl::MutexLock lock(&error_mu_);
    shared_error_ = start_error_;
    return;
  }
  wakeup_ = *std::move(wakeup);
  switch (mode_) {
    case RedisMode::kSingle:
      NodeAt(RedisHost{options_.url.host, options_.url.port});
      break;
    case RedisMode::kSentinel: {
      // The node's address is the master's, once the sentinels name it.
      NodeAt(RedisHost{"", 0});
      SentinelOptions sentinel;
      sentinel.url = options_.url;
      sentinel.recheck_ms = options_.sentinel_recheck_ms;
      Wakeup* w = wakeup_.get();
      sentinel.on_change = [w] { w->Wake(); };
      sentinel_ = std::make_unique<SentinelWatcher>(std::move(sentinel));
      break;
    }
    case RedisMode::kCluster:
      slot_owner_.assign(kClusterSlots, -1);
      for (const RedisHost& seed : options_.url.hosts) NodeAt(seed);
      break;
  }
  thread_ = std::thread([this] { Run(); });
}

RedisCounterStore::~RedisCounterStore() {
  if (wakeup_ == nullptr) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  wakeup_->Wake();
  thread_.join();
  sentinel_.reset();
}

std::string RedisCounterStore::RedisKey(const LimitCheck& check) const { return codec_.Key(check); }

void RedisCounterStore::Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) {
  checks_.fetch_add(1, std::memory_order_relaxed);
  if (options_.over_limit_cache) {
    if (std::optional<AcquireResult> refusal = cache_.Refusal(checks)) {
      cache_hits_.fetch_add(1, std::memory_order_relaxed);
      std::move(done)(*std::move(refusal));
      return;
    }
  }
  if (wakeup_ == nullptr) {
    failures_.fetch_add(1, std::memory_order_relaxed);
    std::move(done)(absl::UnavailableError(absl::StrCat("redis: ", start_error_)));
    return;
  }
  auto req = std::make_shared<Request>();
  req->checks = std::move(checks);
  req->dry_run = dry_run;
  req->done = std::move(done);
  req->asked_at = NowMillis();
  req->deadline = req->asked_at + options_.timeout_ms;
  bool was_empty = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      std::move(req->done)(absl::UnavailableError(kShuttingDown));
      return;
    }
    was_empty = queue_.empty();
    queue_.push_back(std::move(req));
  }
  if (was_empty) wakeup_->Wake();
}

void RedisCounterStore::Refund(std::vector<LimitCheck> checks, int64_t consumed_at_ms,
                               RefundCallback done) {
  if (checks.empty() || consumed_at_ms <= 0) {
    std::move(done)(absl::OkStatus());
    return;
  }
  // Units come back: this server's cached refusals of them are stale.
  if (options_.over_limit_cache) cache_.Forget(checks);
  if (wakeup_ == nullptr) {
    std::move(done)(absl::UnavailableError(absl::StrCat("redis: ", start_error_)));
    return;
  }
  auto req = std::make_shared<Request>();
  req->checks = std::move(checks);
  req->refund_at_ms = consumed_at_ms;
  req->refund_done = std::move(done);
  req->asked_at = NowMillis();
  // A refund has longer than a call to land (as a cross-slot one does).
  req->deadline = req->asked_at + std::max<int64_t>(1000, options_.timeout_ms);
  refunds_.fetch_add(1, std::memory_order_relaxed);
  bool was_empty = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      std::move(req->refund_done)(absl::UnavailableError(kShuttingDown));
      return;
    }
    was_empty = queue_.empty();
    queue_.push_back(std::move(req));
  }
  if (was_empty) wakeup_->Wake();
}

void RedisCounterStore::Complete(Request& req, absl::StatusOr<AcquireResult> result,
                                 const std::vector<LimitCheck>& checks) {
  if (req.finished) return;
  req.finished = true;
  if (req.refund_at_ms > 0) {
    if (!result.ok()) refund_failures_.fetch_add(1, std::memory_order_relaxed);
    std::move(req.refund_done)(result.ok() ? absl::OkStatus() : result.status());
    return;
  }
  if (result.ok()) {
    if (options_.over_limit_cache) cache_.Remember(checks, *result, req.asked_at);
  } else if (result.status().code() == absl::StatusCode::kDeadlineExceeded) {
    timeouts_.fetch_add(1, std::memory_order_relaxed);
  } else {
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
  std::move(req.done)(std::move(result));
}

void RedisCounterStore::LogKeyError(const absl::Status& error, int64_t now) {
  if (last_key_error_log_ != 0 && now - last_key_error_log_ < kKeyErrorLogMillis) {
    ++key_errors_unlogged_;
    return;
  }
  LogWarning(error.message(), "; the calls using it fail",
             key_errors_unlogged_ == 0
                 ? std::string()
                 : absl::StrCat(" (", key_errors_unlogged_, " more such failures in the last ",
                                (now - last_key_error_log_) / 1000, " s)"));
  last_key_error_log_ = now;
  key_errors_unlogged_ = 0;
}

// ---- Nodes and connections ----

RedisCounterStore::Node& RedisCounterStore::NodeAt(const RedisHost& address) {
  const std::string name = address.ToString();
  if (auto it = node_index_.find(name); it != node_index_.end()) return *nodes_[it->second];
  auto node = std::make_unique<Node>();
  node->address = address;
  node->url = options_.url.At(address);
  node_index_[name] = static_cast<int>(nodes_.size());
  nodes_.push_back(std::move(node));
  return *nodes_.back();
}

std::string RedisCounterStore::Where(const Node& node) const {
  if (mode_ == RedisMode::kSingle || node.address.host.empty()) return "";
  return absl::StrCat(node.address.ToString(), ": ");
}

bool RedisCounterStore::EnsureConnection(Node& node, int64_t now) {
  if (node.conn == nullptr && now >= node.next_connect_at) Connect(node, now);
  return node.conn != nullptr;
}

void RedisCounterStore::Connect(Node& node, int64_t now) {
  if (mode_ == RedisMode::kSentinel) {
    const SentinelWatcher::Master master = sentinel_->Current();
    if (!master.address.has_value() && master.error.empty()) {
      // The sentinels have not answered yet (they are asked at start): no
      // warning, and no backoff beyond a short wait.
      node.next_connect_at = now + 10;
      node.last_error = "no master known yet from the sentinels";
      return;
    }
    if (!master.address.has_value()) {
      Drop(node,
           absl::StrCat("no master known yet from the sentinels",
                        master.error.empty() ? std::string() : absl::StrCat(": ", master.error)),
           now);
      return;
    }
    node.address = *master.address;
    node.url = options_.url.At(node.address);
    master_generation_ = master.generation;
    absl::MutexLock lock(&error_mu_);
    shared_master_ = node.address.ToString();
  }
  absl::StatusOr<std::unique_ptr<RedisConnection>> conn = RedisConnection::Open(node.url);
  reconnects_.fetch_add(1, std::memory_order_relaxed);
  if (!conn.ok()) {
    Drop(node, conn.status().message(), now);
    return;
  }
  node.conn = *std::move(conn);
  node.connect_started = now;
  node.ready = false;
  node.setup_pending = 0;
  for (const std::vector<std::string>& argv : HandshakeCommands(node.url)) {
    SendInternal(node, kSetup, argv);
  }
  // A server the sentinels named may not be a master (yet, or any more).
  if (mode_ == RedisMode::kSentinel) SendInternal(node, kRole, {"ROLE"});
  // Load the script up front, so that calls can use EVALSHA from the start
  // (NOSCRIPT is still handled: the cache can be flushed at any time).
  SendInternal(node, kSetup, {"SCRIPT", "LOAD", codec_.script()});
}

void RedisCounterStore::Drop(Node& node, absl::string_view why, int64_t now) {
  node.conn.reset();
  const std::string where = Where(node);
  // Log transitions, and while Redis stays unreachable, a reminder now and then.
  // (An authentication failure says so, not "unreachable".)
  const absl::string_view what =
      absl::StartsWith(why, "authentication failed") ? "" : "unreachable: ";
  if (node.ready) {
    LogWarning("redis: connection lost: ", where, why);
    node.last_error_log = now;
  } else if (why != node.last_error || now - node.last_error_log > 30'000) {
    LogWarning("redis: ", what, where, why);
    node.last_error_log = now;
  }
  node.ready = false;
  node.last_error = std::string(why);
  {
    absl::MutexLock lock(&error_mu_);
    shared_error_ = absl::StrCat(where, node.last_error);
  }
  node.wrote_since_flush = false;
  node.commands_since_flush = 0;
  // Before the parts are failed: a refund they cause must not reconnect here.
  node.next_connect_at = now + node.backoff.NextDelayMs(rng_);
  const absl::Status lost = absl::UnavailableError(absl::StrCat("redis: ", where, node.last_error));
  std::deque<std::unique_ptr<Pending>> inflight;
  inflight.swap(node.inflight);
  std::vector<Node::Held> held;
  held.swap(node.held);
  node.scripts_sent = node.waited_through = 0;
  node.wait_outstanding = false;
  for (Node::Held& h : held) Finish(std::move(h.part), lost, 0, now);
  for (std::unique_ptr<Pending>& p : inflight) {
    if (p->kind == kSlots) slots_asked_of_ = -1;
    FailParts(p->parts, lost, now);
  }
  if (mode_ == RedisMode::kSentinel) sentinel_->Recheck();
  if (mode_ == RedisMode::kCluster) RequestSlots(now);
}

void RedisCounterStore::SendInternal(Node& node, int kind, const std::vector<std::string>& argv) {
  EncodeCommand(argv, &command_);
  auto p = std::make_unique<Pending>();
  p->kind = static_cast<PendingKind>(kind);
  if (kind == kSetup || kind == kRole) ++node.setup_pending;
  Append(node, std::move(p));
}

// Queues the command in command_ on the node's connection.
void RedisCounterStore::Append(Node& node, std::unique_ptr<Pending> pending) {
  node.conn->Append(command_);
  commands_.fetch_add(1, std::memory_order_relaxed);
  pending->sent_at = NowMillis();
  if (options_.observer != nullptr && pending->kind == kScript) pending->sent_us = SteadyMicros();
  node.inflight.push_back(std::move(pending));
  node.wrote_since_flush = true;
  ++node.commands_since_flush;
}

absl::Span<const ScriptCall* const> RedisCounterStore::Calls(const PartList& parts) {
  calls_.clear();
  for (const std::unique_ptr<Part>& part : parts) calls_.push_back(part.get());
  return calls_;
}

void RedisCounterStore::SendScript(Node& node, PartList parts, bool use_eval) {
  codec_.EncodeBatch(Calls(parts), use_eval, &command_);
  auto p = std::make_unique<Pending>();
  p->kind = kScript;
  p->seq = ++node.scripts_sent;
  p->parts = std::move(parts);
  Append(node, std::move(p));
}

void RedisCounterStore::MaybeWait(Node& node) {
  if (options_.wait_replicas <= 0 || node.conn == nullptr || node.wait_outstanding) return;
  // Only for admissions held and not yet covered: a WAIT blocks the
  // connection, and refusals must not queue behind one for nothing.
  const bool uncovered = std::any_of(node.held.begin(), node.held.end(), [&](const Node::Held& h) {
    return h.seq > node.waited_through;
  });
  if (!uncovered) return;
  // Within what is left of the earliest deadline it answers for (WAIT 0
  // would wait forever): a WAIT blocks the connection while it waits.
  const int64_t now = NowMillis();
  int64_t wait_ms = options_.timeout_ms;
  for (const Node::Held& h : node.held) {
    if (h.seq > node.waited_through) wait_ms = std::min(wait_ms, h.part->deadline - now);
  }
  // Three quarters of it: a WAIT that runs out answers before the calls'
  // deadline, so they say why ("reached 0 of 1 replicas").
  EncodeCommand({"WAIT", absl::StrCat(options_.wait_replicas),
                 absl::StrCat(std::max<int64_t>(1, wait_ms * 3 / 4))},
                &command_);
  auto w = std::make_unique<Pending>();
  w->kind = kWait;
  w->seq = node.scripts_sent;
  node.waited_through = node.scripts_sent;
  node.wait_outstanding = true;
  Append(node, std::move(w));
}

void RedisCounterStore::SendTo(Node& node, PartList parts, bool asking, int64_t now) {
  if (!EnsureConnection(node, now)) {
    FailParts(parts,
              absl::UnavailableError(absl::StrCat("redis: ", Where(node), node.last_error)),
              now);
    return;
  }
  if (asking) {
    // ASKING holds for the next command only: one per script run.
    for (std::unique_ptr<Part>& part : parts) {
      SendInternal(node, kAsking, {"ASKING"});
      PartList one;
      one.push_back(std::move(part));
      SendScript(node, std::move(one), /*use_eval=*/false);
    }
    return;
  }
  size_t i = 0;
  while (i < parts.size()) {
    PartList group;
    size_t keys = 0;
    while (i < parts.size() && group.size() < kMaxCallsPerCommand &&
           (group.empty() || keys + parts[i]->checks.size() <= kMaxKeysPerCommand)) {
      keys += parts[i]->checks.size();
      group.push_back(std::move(parts[i++]));
    }
    SendScript(node, std::move(group), /*use_eval=*/false);
  }
}

void RedisCounterStore::Route(PartList parts, int64_t now) {
  if (parts.empty()) return;
  if (mode_ != RedisMode::kCluster) {
    SendTo(*nodes_.front(), std::move(parts), /*asking=*/false, now);
    return;
  }
  // By slot (a script run's keys must all be in one slot), in order.
  absl::flat_hash_map<int, PartList> by_slot;
  std::vector<int> order;
  for (std::unique_ptr<Part>& part : parts) {
    const int owner = slots_known_ ? slot_owner_[part->slot] : -1;
    if (owner < 0) {
      unrouted_.push_back(std::move(part));
      continue;
    }
    PartList& list = by_slot[part->slot];
    if (list.empty()) order.push_back(part->slot);
    list.push_back(std::move(part));
  }
  if (!unrouted_.empty()) RequestSlots(now);
  for (int slot : order) {
    SendTo(*nodes_[slot_owner_[slot]], std::move(by_slot[slot]), /*asking=*/false, now);
  }
}

void RedisCounterStore::Submit(std::vector<std::shared_ptr<Request>>& requests, int64_t now) {
  PartList parts;
  parts.reserve(requests.size());
  for (std::shared_ptr<Request>& req : requests) {
    if (mode_ != RedisMode::kCluster) {
      auto part = std::make_unique<Part>();
      part->checks = std::move(req->checks);
      part->dry_run = req->dry_run;
      part->refund_at_ms = req->refund_at_ms;
      part->deadline = req->deadline;
      part->req = std::move(req);
      parts.push_back(std::move(part));
      continue;
    }
    // One part per slot, in the order of the call's limits.
    std::vector<int> slots;
    std::vector<std::unique_ptr<Part>> own;
    for (size_t i = 0; i < req->checks.size(); ++i) {
      const int slot = KeySlot(codec_.Key(req->checks[i]));
      auto it = std::find(slots.begin(), slots.end(), slot);
      if (it == slots.end()) {
        slots.push_back(slot);
        own.push_back(std::make_unique<Part>());
        own.back()->slot = slot;
        it = slots.end() - 1;
      }
      Part& part = *own[it - slots.begin()];
      part.checks.push_back(req->checks[i]);
      part.index.push_back(i);
    }
    if (own.size() == 1) {
      own.front()->index.clear();  // The call's only part: it holds the call's limits.
      req->checks.clear();
    } else {
      req->parts_left = own.size();
      req->merged.outcomes.resize(req->checks.size());
    }
    for (std::unique_ptr<Part>& part : own) {
      part->dry_run = req->dry_run;
      part->refund_at_ms = req->refund_at_ms;
      part->deadline = req->deadline;
      part->req = req;
      parts.push_back(std::move(part));
    }
  }
  Route(std::move(parts), now);
}

// ---- Answers ----

void RedisCounterStore::FailParts(PartList& parts, const absl::Status& status, int64_t now) {
  for (std::unique_ptr<Part>& part : parts) {
    if (part != nullptr) Finish(std::move(part), status, 0, now);
  }
  parts.clear();
}

void RedisCounterStore::Refund(std::vector<LimitCheck> checks, int64_t stamp, int64_t now) {
  if (shutting_down_) {
    refund_failures_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto part = std::make_unique<Part>();
  part->checks = std::move(checks);
  part->refund_at_ms = stamp;
  part->slot = KeySlot(codec_.Key(part->checks.front()));
  // A refund has longer than a call to land: until then its units are
  // counted (under-admission), never the other way.
  part->deadline = now + std::max<int64_t>(1000, options_.timeout_ms);
  refunds_.fetch_add(1, std::memory_order_relaxed);
  PartList one;
  one.push_back(std::move(part));
  Route(std::move(one), now);
}

void RedisCounterStore::Finish(std::unique_ptr<Part> part, absl::StatusOr<AcquireResult> result,
                               int64_t stamp, int64_t now) {
  if (part->refund_at_ms > 0 && part->req != nullptr) {
    // A Refund(): answered once every part of it answered.
    Request& req = *part->req;
    if (!result.ok() && req.refund_status.ok()) req.refund_status = result.status();
    if (part->index.empty() || --req.parts_left == 0) {
      if (req.refund_status.ok()) {
        Complete(req, AcquireResult{}, req.checks);
      } else {
        Complete(req, req.refund_status, req.checks);
      }
    }
    return;
  }
  if (part->refund_at_ms > 0) {
    if (!result.ok()) {
      refund_failures_.fetch_add(1, std::memory_order_relaxed);
      if (now - last_refund_failure_log_ >= kKeyErrorLogMillis) {
        last_refund_failure_log_ = now;
        LogWarning("redis: a cross-slot reservation could not be given back (",
                   result.status().message(),
                   "); its units stay counted until their window ends");
      }
    }
    return;
  }
  if (result.ok() && result->admitted && !part->dry_run) {
    for (LimitOutcome& o : result->outcomes) o.consumed_at_ms = stamp;
  }
  std::shared_ptr<Request> req = std::move(part->req);
  if (part->index.empty()) {  // The call's only part.
    Complete(*req, std::move(result), part->checks);
    return;
  }
  // A part of a cross-slot call.
  --req->parts_left;
  if (!result.ok()) {
    if (!req->failed && !req->finished) {
      req->failed = true;
      Complete(*req, result.status(), req->checks);
    }
    req->failed = true;
    for (auto& [checks, at] : req->consumed) Refund(std::move(checks), at, now);
    req->consumed.clear();
    return;
  }
  for (size_t i = 0; i < part->index.size() && i < result->outcomes.size(); ++i) {
    req->merged.outcomes[part->index[i]] = result->outcomes[i];
  }
  if (result->admitted) {
    if (!req->dry_run) {
      if (req->failed || req->refused) {
        Refund(std::move(part->checks), stamp, now);
      } else {
        req->consumed.emplace_back(std::move(part->checks), stamp);
      }
    }
  } else if (!req->refused) {
    req->refused = true;
    // Give back what the other slots reserved now, not once all answered.
    for (auto& [checks, at] : req->consumed) Refund(std::move(checks), at, now);
    req->consumed.clear();
  }
  if (req->parts_left == 0 && !req->failed) {
    req->merged.admitted = !req->refused;
    req->consumed.clear();
    Complete(*req, std::move(req->merged), req->checks);
  }
}

// ---- I/O ----

void RedisCounterStore::Flush(Node& node) {
  if (node.conn == nullptr) return;
  MaybeWait(node);
  if (node.wrote_since_flush) {
    round_trips_.fetch_add(1, std::memory_order_relaxed);
    node.wrote_since_flush = false;
    if (options_.observer != nullptr) options_.observer->OnRedisPipeline(node.commands_since_flush);
    node.commands_since_flush = 0;
  }
  // What the socket does not take now waits for POLLOUT.
  if (absl::StatusOr<bool> written = node.conn->Write(); !written.ok()) {
    Drop(node, written.status().message(), NowMillis());
  }
}

void RedisCounterStore::ReadReplies(Node& node, int64_t now) {
  if (absl::Status read = node.conn->Read(); !read.ok()) {
    Drop(node, read.message(), now);
    return;
  }
  while (node.conn != nullptr) {
    absl::StatusOr<RedisReplyPtr> reply = node.conn->NextReply();
    if (!reply.ok()) {
      Drop(node, reply.status().message(), now);
      return;
    }
    if (*reply == nullptr) break;
    HandleReply(node, **reply, now);
  }
}

void RedisCounterStore::HandleReply(Node& node, const redisReply& reply, int64_t now) {
  if (node.inflight.empty()) {
    Drop(node, "reply without a request", now);
    return;
  }
  std::unique_ptr<Pending> p = std::move(node.inflight.front());
  node.inflight.pop_front();
  const absl::string_view error = IsErrorReply(reply) ? ReplyText(reply) : absl::string_view();
  if (IsAuthError(error)) {
    // A refused AUTH, or NOAUTH for any command: the calls with it fail, and
    // the connection is dropped and tried again after the backoff.
    const std::string why = AuthFailure(error);
    FailParts(p->parts, absl::UnavailableError(absl::StrCat("redis: ", why)), now);
    Drop(node, why, now);
    return;
  }
  switch (p->kind) {
    case kSetup:
    case kRole:
      if (IsErrorReply(reply)) {
        Drop(node, absl::StrCat("connection setup failed: ", error), now);
        return;
      }
      if (p->kind == kRole &&
          (reply.type != REDIS_REPLY_ARRAY || reply.elements == 0 ||
           ReplyText(*reply.element[0]) != "master")) {
        Drop(node,
             absl::StrCat("not a master (ROLE says ",
                          reply.type == REDIS_REPLY_ARRAY && reply.elements > 0
                              ? std::string(ReplyText(*reply.element[0]))
                              : std::string("nothing"),
                          "): waiting for the sentinels to name the new one"),
             now);
        return;
      }
      // Connected once every setup command succeeded, not before.
      if (node.setup_pending > 0 && --node.setup_pending == 0) {
        node.backoff.Reset();
        node.ready = true;
        LogInfo("redis: connected to ", node.url.Redacted(),
                mode_ == RedisMode::kSentinel
                    ? absl::StrCat(" (master \"", options_.url.master_name, "\")")
                    : std::string());
      }
      return;
    case kAsking:
      return;  // The script after it carries the answer.
    case kSlots:
      HandleSlots(node, reply, now);
      return;
    case kWait: {
      // Admissions count only once the replicas have them.
      node.wait_outstanding = false;
      const int64_t acks = reply.type == REDIS_REPLY_INTEGER ? reply.integer : -1;
      std::vector<Node::Held> held;
      for (auto it = node.held.begin(); it != node.held.end();) {
        if (it->seq <= p->seq) {
          held.push_back(std::move(*it));
          it = node.held.erase(it);
        } else {
          ++it;
        }
      }
      for (Node::Held& h : held) {
        if (acks >= options_.wait_replicas) {
          Finish(std::move(h.part), std::move(h.result), h.stamp, now);
        } else {
          Finish(std::move(h.part),
                 absl::UnavailableError(absl::StrCat(
                     "redis: the admission reached ", std::max<int64_t>(acks, 0), " of ",
                     options_.wait_replicas, " replicas in time",
                     IsErrorReply(reply) ? absl::StrCat(" (", error, ")") : std::string())),
                 h.stamp, now);
        }
      }
      // Scripts written since: the next WAIT covers them.
      Flush(node);
      return;
    }
    case kScript:
      HandleScriptReply(node, std::move(p), reply, now);
      return;
  }
}

void RedisCounterStore::HandleScriptReply(Node& node, std::unique_ptr<Pending> p,
                                          const redisReply& reply, int64_t now) {
  const absl::string_view error = IsErrorReply(reply) ? ReplyText(reply) : absl::string_view();
  if (options_.observer != nullptr && p->sent_us != 0) {
    options_.observer->OnRedisReply(SteadyMicros() - p->sent_us);
  }
  PartList redo;
  for (std::unique_ptr<Part>& part : p->parts) redo.push_back(std::move(part));
  auto fail = [&](const absl::Status& status) { FailParts(redo, status, now); };
  if (absl::StartsWith(error, "NOSCRIPT")) {
    // The script cache was emptied: send the calls again, with the script.
    script_reloads_.fetch_add(1, std::memory_order_relaxed);
    SendScript(node, std::move(redo), /*use_eval=*/true);
    Flush(node);
    return;
  }
  if (mode_ == RedisMode::kCluster && !error.empty()) {
    std::optional<Redirect> redirect = ParseRedirect(error, node.address);
    const bool try_again = absl::StartsWith(error, "TRYAGAIN");
    if (redirect.has_value() || try_again) {
      redirects_.fetch_add(1, std::memory_order_relaxed);
      PartList again;
      for (std::unique_ptr<Part>& part : redo) {
        if (++part->redirects > kMaxRedirects) {
          PartList one;
          one.push_back(std::move(part));
          FailParts(one,
                    absl::UnavailableError(absl::StrCat("redis: still redirected after ",
                                                        kMaxRedirects, " tries: ", error)),
                    now);
        } else {
          again.push_back(std::move(part));
        }
      }
      if (again.empty()) return;
      if (try_again) {
        for (auto& part : again) retry_.emplace_back(now + kTryAgainMillis, std::move(part));
        return;
      }
      if (nodes_.size() >= kMaxNodes && !node_index_.contains(redirect->to.ToString())) {
        FailParts(again, absl::UnavailableError("redis: too many cluster nodes"), now);
        return;
      }
      Node& to = NodeAt(redirect->to);
      if (!redirect->ask) {
        // The slot has moved for good: send there from now on, and learn
        // the rest of the map.
        slot_owner_[redirect->slot] = node_index_[to.address.ToString()];
        to.serves_slots = true;
        RequestSlots(now);
      }
      SendTo(to, std::move(again), redirect->ask, now);
      Flush(to);
      return;
    }
    if (absl::StartsWith(error, "CLUSTERDOWN")) {
      RequestSlots(now);
      fail(absl::UnavailableError(absl::StrCat("redis: ", error)));
      return;
    }
  }
  if (absl::StartsWith(error, "READONLY") || absl::StartsWith(error, "LOADING") ||
      absl::StartsWith(error, "MASTERDOWN")) {
    fail(absl::UnavailableError(absl::StrCat("redis: ", error)));
    Drop(node, error, now);
    return;
  }
  int64_t stamp = 0;
  // (Each is set by DecodeBatch when it returns OK.)
  std::vector<absl::StatusOr<AcquireResult>> results(redo.size());
  const absl::Status decoded = codec_.DecodeBatch(
      reply, Calls(redo),
      [&](size_t i, absl::StatusOr<AcquireResult> result) {
        if (!result.ok()) LogKeyError(result.status(), now);
        results[i] = std::move(result);
      },
      &stamp);
  if (!decoded.ok()) {
    fail(decoded);
    return;
  }
  for (size_t i = 0; i < redo.size(); ++i) {
    // With --redis-wait-replicas, an admission waits for the replicas;
    // refusals, dry runs and refunds are answered at once.
    if (options_.wait_replicas > 0 && results[i].ok() && results[i]->admitted &&
        !redo[i]->dry_run && redo[i]->refund_at_ms == 0) {
      node.held.push_back(Node::Held{std::move(redo[i]), *std::move(results[i]), stamp, p->seq});
      continue;
    }
    Finish(std::move(redo[i]), std::move(results[i]), stamp, now);
  }
  if (!node.held.empty()) Flush(node);  // Sends the WAIT they need.
}

// ---- Cluster slot map ----

void RedisCounterStore::RequestSlots(int64_t now) {
  if (mode_ != RedisMode::kCluster) return;
  if (slots_asked_of_ >= 0 && now - slots_asked_at_ < kSlotsTimeoutMillis) return;
  if (slots_asked_at_ != 0 && now - slots_asked_at_ < kSlotsMinIntervalMillis) return;
  // Any node will do; the ones that are connected first, then in turn.
  int chosen = -1;
  for (size_t i = 0; i < nodes_.size() && chosen < 0; ++i) {
    if (nodes_[i]->ready) chosen = static_cast<int>(i);
  }
  for (size_t tries = 0; tries < nodes_.size() && chosen < 0; ++tries) {
    const size_t i = next_slots_node_++ % nodes_.size();
    if (EnsureConnection(*nodes_[i], now)) chosen = static_cast<int>(i);
  }
  slots_asked_at_ = now;
  if (chosen < 0) {
    // None can be reached now: each call waiting for the map fails at its deadline.
    slots_asked_of_ = -1;
    return;
  }
  slots_asked_of_ = chosen;
  SendInternal(*nodes_[chosen], kSlots, {"CLUSTER", "SLOTS"});
}

void RedisCounterStore::HandleSlots(Node& node, const redisReply& reply, int64_t now) {
  slots_asked_of_ = -1;
  absl::StatusOr<std::vector<SlotRange>> ranges =
      IsErrorReply(reply)
          ? absl::UnavailableError(absl::StrCat("CLUSTER SLOTS: ", ReplyText(reply)))
          : ParseClusterSlots(reply, node.address);
  if (!ranges.ok()) {
    LogWarning("redis: ", node.address.ToString(), ": ", ranges.status().message());
    return;
  }
  std::vector<int> owner(kClusterSlots, -1);
  for (auto& n : nodes_) n->serves_slots = false;
  for (const SlotRange& r : *ranges) {
    if (nodes_.size() >= kMaxNodes && !node_index_.contains(r.master.ToString())) continue;
    Node& master = NodeAt(r.master);
    master.serves_slots = true;
    const int index = node_index_[master.address.ToString()];
    std::fill(owner.begin() + r.first, owner.begin() + r.last + 1, index);
  }
  if (owner != slot_owner_) {
    if (slots_known_) topology_changes_.fetch_add(1, std::memory_order_relaxed);
    LogInfo("redis: cluster slot map from ", node.address.ToString(), ": ", ranges->size(),
            " ranges",
            std::count(owner.begin(), owner.end(), -1) > 0
                ? absl::StrCat(", ", std::count(owner.begin(), owner.end(), -1),
                               " slots unserved")
                : std::string());
    slot_owner_ = std::move(owner);
  }
  slots_known_ = true;
  slots_refreshed_at_ = now;
  // One connection per master, opened now rather than by its first call.
  for (auto& n : nodes_) {
    if (n->serves_slots) EnsureConnection(*n, now);
  }
  PartList waiting;
  waiting.swap(unrouted_);
  PartList routable;
  for (std::unique_ptr<Part>& part : waiting) {
    if (slot_owner_[part->slot] >= 0) {
      routable.push_back(std::move(part));
    } else {
      unrouted_.push_back(std::move(part));  // Unserved: waits for a later map, or its deadline.
    }
  }
  Route(std::move(routable), now);
}

// ---- Sentinel ----

void RedisCounterStore::FollowMaster(int64_t now) {
  const SentinelWatcher::Master master = sentinel_->Current();
  if (master.generation == master_generation_ || !master.address.has_value()) return;
  Node& node = *nodes_.front();
  if (node.conn != nullptr && node.address == *master.address) {
    master_generation_ = master.generation;
    return;
  }
  topology_changes_.fetch_add(1, std::memory_order_relaxed);
  if (node.conn != nullptr) {
    Drop(node, absl::StrCat("the sentinels now name ", master.address->ToString(), " master"),
         now);
  }
  // To the new master at once, not after a backoff.
  node.backoff.Reset();
  node.next_connect_at = now;
  Connect(node, now);
}

// ---- The loop ----

void RedisCounterStore::ExpireOverdue(int64_t now) {
  auto expire = [&](Part& part) {
    if (part.req != nullptr && !part.req->finished && part.req->deadline <= now) {
      Request& req = *part.req;
      if (!part.index.empty()) {
        // A cross-slot call: what its parts reserved is given back.
        req.failed = true;
        for (auto& [checks, at] : req.consumed) Refund(std::move(checks), at, now);
        req.consumed.clear();
      }
      Complete(req,
               absl::DeadlineExceededError(
                   absl::StrCat("redis: no answer within ", options_.timeout_ms, "ms")),
               part.index.empty() ? part.checks : req.checks);
    }
  };
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node* node = nodes_[i].get();
    for (auto& p : node->inflight) {
      for (auto& part : p->parts) expire(*part);
    }
    for (Node::Held& h : node->held) expire(*h.part);
    if (node->conn != nullptr && !node->inflight.empty() &&
        now - node->inflight.front()->sent_at > kStallMillis) {
      Drop(*node, absl::StrCat("no reply for ", now - node->inflight.front()->sent_at, "ms"), now);
    } else if (node->conn != nullptr && !node->ready && !node->inflight.empty() &&
               now - node->connect_started > kConnectTimeoutMillis) {
      Drop(*node, "connect timed out", now);
    }
  }
  // Parts waiting for a map or a retry: failed at their deadline.
  auto overdue = [&](const std::unique_ptr<Part>& part) { return part->deadline <= now; };
  PartList late;
  for (auto it = unrouted_.begin(); it != unrouted_.end();) {
    if (overdue(*it)) {
      late.push_back(std::move(*it));
      it = unrouted_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = retry_.begin(); it != retry_.end();) {
    if (overdue(it->second)) {
      late.push_back(std::move(it->second));
      it = retry_.erase(it);
    } else {
      ++it;
    }
  }
  if (!late.empty()) {
    FailParts(late,
              absl::DeadlineExceededError(absl::StrCat(
                  "redis: no answer within ", options_.timeout_ms, "ms",
                  slots_known_ ? std::string() : " (the cluster's slot map is not known yet)")),
              now);
  }
  // Retries that are due.
  PartList due;
  for (auto it = retry_.begin(); it != retry_.end();) {
    if (it->first <= now) {
      due.push_back(std::move(it->second));
      it = retry_.erase(it);
    } else {
      ++it;
    }
  }
  Route(std::move(due), now);
  if (mode_ == RedisMode::kCluster &&
      ((slots_known_ && now - slots_refreshed_at_ > options_.cluster_refresh_ms) ||
       (!slots_known_ && slots_asked_of_ < 0) || !unrouted_.empty())) {
    RequestSlots(now);
  }
}

int64_t RedisCounterStore::WaitMs(int64_t now) const {
  int64_t wait = kIdleWaitMillis;
  for (const auto& node : nodes_) {
    // The first call still waiting: deadlines are in FIFO order (resent
    // calls aside).
    bool found = false;
    for (const auto& p : node->inflight) {
      for (const auto& part : p->parts) {
        if (part->req != nullptr && !part->req->finished) {
          wait = std::min(wait, part->req->deadline - now);
          found = true;
          break;
        }
      }
      if (found) break;
    }
    for (const Node::Held& h : node->held) {
      if (h.part->req != nullptr && !h.part->req->finished) {
        wait = std::min(wait, h.part->req->deadline - now);
      }
    }
    if (node->conn == nullptr && !node->inflight.empty()) {
      wait = std::min(wait, node->next_connect_at - now);
    }
  }
  if (!nodes_.empty() && nodes_.front()->conn == nullptr && mode_ != RedisMode::kCluster) {
    wait = std::min(wait, nodes_.front()->next_connect_at - now);
  }
  for (const auto& part : unrouted_) wait = std::min(wait, part->deadline - now);
  for (const auto& [at, part] : retry_) wait = std::min(wait, at - now);
  return std::max<int64_t>(0, wait);
}

void RedisCounterStore::UpdateConnected() {
  bool connected = false;
  if (mode_ != RedisMode::kCluster) {
    connected = nodes_.front()->ready;
  } else if (slots_known_) {
    connected = true;
    for (const auto& node : nodes_) {
      if (node->serves_slots && !node->ready) connected = false;
    }
  }
  connected_.store(connected, std::memory_order_relaxed);
}

void RedisCounterStore::Run() {
  std::vector<std::shared_ptr<Request>> batch;
  std::vector<pollfd> fds;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      batch.swap(queue_);
    }
    int64_t now = NowMillis();
    if (mode_ == RedisMode::kSentinel) FollowMaster(now);
    if (mode_ != RedisMode::kCluster) EnsureConnection(*nodes_.front(), now);
    if (mode_ == RedisMode::kCluster && !slots_known_) RequestSlots(now);
    if (mode_ == RedisMode::kCluster) {
      // Every master of the map stays connected (reopened after its backoff).
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i]->serves_slots) EnsureConnection(*nodes_[i], now);
      }
    }
    if (!batch.empty()) Submit(batch, now);
    batch.clear();
    fds.clear();
    for (auto& node : nodes_) {
      if (node->conn != nullptr && (node->wrote_since_flush || node->conn->want_write())) {
        Flush(*node);
      }
      fds.push_back({node->conn != nullptr ? node->conn->fd() : -1,
                     static_cast<short>(node->conn != nullptr
                                            ? POLLIN | (node->conn->want_write() ? POLLOUT : 0)
                                            : 0),
                     0});
    }
    UpdateConnected();

    // Sleep until a reply, a new request, the next deadline, or a reconnect.
    if (absl::StatusOr<bool> woken = wakeup_->Wait(absl::MakeSpan(fds), WaitMs(now));
        !woken.ok() && !logged_poll_error_) {
      logged_poll_error_ = true;  // Deadlines still hold: the loop goes on.
      LogError("redis: I/O thread: ", woken.status().message());
    }
    now = NowMillis();
    // (Replies may add nodes: only the ones polled are looked at.)
    for (size_t i = 0; i < fds.size(); ++i) {
      Node& node = *nodes_[i];
      if (node.conn == nullptr || node.conn->fd() != fds[i].fd) continue;
      if (fds[i].revents & POLLOUT) Flush(node);
      if (node.conn != nullptr && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        ReadReplies(node, now);
      }
    }
    ExpireOverdue(now);
  }
  Shutdown();
}

// Nothing may be left waiting.
void RedisCounterStore::Shutdown() {
  shutting_down_ = true;
  std::vector<std::shared_ptr<Request>> queued;
  {
    absl::MutexLock lock(&mu_);
    queued.swap(queue_);
  }
  const absl::Status shutting_down = absl::UnavailableError(kShuttingDown);
  for (auto& req : queued) Complete(*req, shutting_down, req->checks);
  const int64_t now = NowMillis();
  for (auto& node : nodes_) {
    for (auto& p : node->inflight) FailParts(p->parts, shutting_down, now);
    for (Node::Held& h : node->held) Finish(std::move(h.part), shutting_down, 0, now);
    node->held.clear();
    node->inflight.clear();
    node->conn.reset();
  }
  FailParts(unrouted_, shutting_down, now);
  for (auto& [at, part] : retry_) {
    PartList one;
    one.push_back(std::move(part));
    FailParts(one, shutting_down, now);
  }
  retry_.clear();
}

CounterStoreStatus RedisCounterStore::Status() const {
  CounterStoreStatus s;
  s.kind = "redis";
  s.address = options_.url.Redacted();
  s.checks = checks_.load();
  s.commands = commands_.load();
  s.round_trips = round_trips_.load();
  s.cache_hits = cache_hits_.load();
  s.timeouts = timeouts_.load();
  s.failures = failures_.load();
  s.connects = reconnects_.load();
  s.script_reloads = script_reloads_.load();
  s.redirects = redirects_.load();
  s.refunds = refunds_.load();
  s.refund_failures = refund_failures_.load();
  s.topology_changes = topology_changes_.load();
  s.connected = connected_.load();
  absl::MutexLock lock(&error_mu_);
  s.last_error = shared_error_;
  if (!shared_master_.empty()) absl::StrAppend(&s.address, " (master ", shared_master_, ")");
  return s;
}

}  // namespace toolgate
