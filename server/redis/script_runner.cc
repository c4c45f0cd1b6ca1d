#include "server/redis/script_runner.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "server/base/clock.h"
#include "server/base/digest.h"
#include "server/redis/cluster.h"

namespace toolgate {
namespace {

int64_t NowMillis() { return SteadyClock::Get()->NowMillis(); }

// Reconnecting waits at least this long after a failure.
constexpr int64_t kReconnectMillis = 200;
// A run follows at most this many MOVED replies or lost connections.
constexpr int kMaxAttempts = 4;
// Slots remembered at most (a Cluster has 16384).
constexpr size_t kMaxSlotEntries = 16384;

std::string ConnectionKey(const RedisUrl& url) {
  if (url.mode == RedisMode::kSentinel) return "sentinel";
  return RedisHost{url.host, url.port}.ToString();
}

}  // namespace

RedisScriptRunner::RedisScriptRunner(ScriptRunnerOptions options)
    : options_(std::move(options)), sha_(Sha1Hex(options_.script)) {
  default_target_ = options_.url.mode == RedisMode::kCluster
                        ? options_.url.At(options_.url.hosts.front())
                        : options_.url;
  worker_ = std::thread([this] { Worker(); });
}

RedisScriptRunner::~RedisScriptRunner() {
  Stop();
  worker_.join();
}

void RedisScriptRunner::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

void RedisScriptRunner::Submit(std::vector<std::string> keys, std::vector<std::string> args,
                               ReplyFn done) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError(absl::StrCat(options_.name, " is shutting down"));
    } else if (queue_.size() >= options_.max_queue) {
      refused = absl::UnavailableError(absl::StrCat(options_.name, ": ", options_.max_queue,
                                                    " operations are waiting for Redis already"));
    } else {
      Op& op = queue_.emplace_back();
      op.keys = std::move(keys);
      op.args = std::move(args);
      op.deadline = NowMillis() + options_.timeout_ms;
      op.done = std::move(done);
      return;
    }
  }
  std::move(done)(std::move(refused));
}

void RedisScriptRunner::Worker() {
  for (;;) {
    Op op;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      if (options_.tick_ms > 0) {
        const int64_t wait = std::max<int64_t>(1, last_tick_ + options_.tick_ms - NowMillis());
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(wait));
      } else {
        mu_.Await(absl::Condition(&ready));
      }
      if (queue_.empty()) {
        if (stopping_) break;
      } else {
        op = std::move(queue_.front());
        queue_.pop_front();
      }
    }
    const int64_t now = NowMillis();
    if (op.done == nullptr) {
      if (options_.tick_ms > 0 && now - last_tick_ >= options_.tick_ms) {
        last_tick_ = now;
        if (options_.tick) options_.tick(*this);
      }
      continue;
    }
    if (now >= op.deadline) {
      std::move(op.done)(absl::DeadlineExceededError(
          absl::StrCat(options_.name, ": Redis did not answer in time")));
      continue;
    }
    std::move(op.done)(RunNow(op.keys, op.args, op.deadline));
  }
  // Whatever is still queued is answered, never dropped.
  std::deque<Op> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(queue_);
  }
  for (Op& op : left) {
    std::move(op.done)(absl::UnavailableError(absl::StrCat(options_.name, " is shutting down")));
  }
}

RedisUrl RedisScriptRunner::TargetFor(const std::string& key) const {
  if (options_.url.mode != RedisMode::kCluster || key.empty()) return default_target_;
  auto it = slot_masters_.find(KeySlot(key));
  return it == slot_masters_.end() ? default_target_ : options_.url.At(it->second);
}

absl::StatusOr<RedisClient*> RedisScriptRunner::ClientFor(const RedisUrl& at, int64_t deadline) {
  const std::string key = ConnectionKey(at);
  auto it = clients_.find(key);
  if (it != clients_.end()) return it->second.get();
  const int64_t now = NowMillis();
  if (now < next_connect_at_) {
    return absl::UnavailableError(absl::StrCat("redis: ", last_error_));
  }
  absl::StatusOr<std::unique_ptr<RedisClient>> c =
      RedisClient::Connect(at, absl::Milliseconds(std::max<int64_t>(1, deadline - now)));
  if (!c.ok()) {
    last_error_ = std::string(c.status().message());
    next_connect_at_ = now + kReconnectMillis;
    if (options_.url.mode == RedisMode::kCluster) {
      next_seed_ = (next_seed_ + 1) % options_.url.hosts.size();
      default_target_ = options_.url.At(options_.url.hosts[next_seed_]);
    }
    return c.status();
  }
  RedisClient* client = c->get();
  clients_[key] = *std::move(c);
  return client;
}

absl::StatusOr<RedisReplyPtr> RedisScriptRunner::RunNow(const std::vector<std::string>& keys,
                                                        const std::vector<std::string>& args,
                                                        int64_t deadline) {
  std::vector<std::string> argv = {"EVALSHA", sha_, absl::StrCat(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string first_key = keys.empty() ? std::string() : keys.front();
  absl::Status last = absl::UnavailableError(absl::StrCat("redis: ", last_error_));
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    if (NowMillis() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(options_.name, ": Redis did not answer in time"));
    }
    const RedisUrl target = TargetFor(first_key);
    absl::StatusOr<RedisClient*> client = ClientFor(target, deadline);
    if (!client.ok()) return client.status();
    absl::StatusOr<RedisReplyPtr> reply = (*client)->Command(argv);
    if (reply.ok()) return reply;
    last = reply.status();
    const absl::string_view msg = reply.status().message();
    if (absl::StrContains(msg, "NOSCRIPT")) {
      argv[0] = "EVAL";
      argv[1] = options_.script;
      continue;
    }
    absl::string_view error = msg;
    absl::ConsumePrefix(&error, "redis: ");
    if (std::optional<Redirect> to = ParseRedirect(error, RedisHost{target.host, target.port})) {
      if (slot_masters_.size() < kMaxSlotEntries || slot_masters_.contains(to->slot)) {
        slot_masters_[to->slot] = to->to;
      }
      if (first_key.empty()) default_target_ = options_.url.At(to->to);
      continue;
    }
    if (reply.status().code() != absl::StatusCode::kInternal ||
        absl::StartsWith(error, "READONLY") || absl::StartsWith(error, "LOADING") ||
        absl::StartsWith(error, "MASTERDOWN")) {
      // Lost, late, or not a master (any more): connect again (a Sentinel
      // URL asks the sentinels for the master again; a Cluster forgets
      // where the slot was).
      last_error_ = std::string(error);
      clients_.erase(ConnectionKey(target));
      if (options_.url.mode == RedisMode::kCluster && !first_key.empty()) {
        slot_masters_.erase(KeySlot(first_key));
      }
      continue;
    }
    return reply;  // A Redis error about the data: no retry helps.
  }
  return last;
}

}  // namespace toolgate
