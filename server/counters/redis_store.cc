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

constexpr char kShuttingDown[] = "counter store is shutting down";

// Calls failed by a counter key's content are logged at most this often.
constexpr int64_t kKeyErrorLogMillis = 10'000;

}  // namespace

struct RedisCounterStore::Request : ScriptCall {
  Callback done;
  int64_t asked_at = 0;  // When Acquire queued it.
  int64_t deadline = 0;
  bool finished = false;
};

// One command written: the batch of calls its reply completes (none for
// AUTH, SELECT and SCRIPT LOAD).
struct RedisCounterStore::Pending {
  std::vector<std::unique_ptr<Request>> requests;
  int64_t sent_at = 0;
  int64_t sent_us = 0;  // For the observer's latency; 0 without an observer.
};

RedisCounterStore::RedisCounterStore(RedisStoreOptions options)
    : options_(std::move(options)),
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
  auto req = std::make_unique<Request>();
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

void RedisCounterStore::Complete(Request& req, absl::StatusOr<AcquireResult> result) {
  if (req.finished) return;
  req.finished = true;
  if (result.ok()) {
    if (options_.over_limit_cache) cache_.Remember(req.checks, *result, req.asked_at);
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

void RedisCounterStore::Connect(int64_t now) {
  absl::StatusOr<std::unique_ptr<RedisConnection>> conn = RedisConnection::Open(options_.url);
  reconnects_.fetch_add(1, std::memory_order_relaxed);
  if (!conn.ok()) {
    Drop(conn.status().message(), now);
    return;
  }
  conn_ = *std::move(conn);
  connect_started_ = now;
  setup_pending_ = 0;
  for (const std::vector<std::string>& argv : HandshakeCommands(options_.url)) {
    SendInternal(argv);
    ++setup_pending_;
  }
  // Load the script up front, so that calls can use EVALSHA from the start
  // (NOSCRIPT is still handled: the cache can be flushed at any time).
  SendInternal({"SCRIPT", "LOAD", codec_.script()});
  ++setup_pending_;
}

void RedisCounterStore::Drop(absl::string_view why, int64_t now) {
  conn_.reset();
  // Log transitions, and while Redis stays unreachable, a reminder now and then.
  // (An authentication failure says so, not "unreachable".)
  const absl::string_view what =
      absl::StartsWith(why, "authentication failed") ? "" : "unreachable: ";
  if (connected_.exchange(false)) {
    LogWarning("redis: connection lost: ", why);
    last_error_log_ = now;
  } else if (why != last_error_ || now - last_error_log_ > 30'000) {
    LogWarning("redis: ", what, why);
    last_error_log_ = now;
  }
  last_error_ = std::string(why);
  {
    absl::MutexLock lock(&error_mu_);
    shared_error_ = last_error_;
  }
  wrote_since_flush_ = false;
  commands_since_flush_ = 0;
  while (!inflight_.empty()) {
    std::unique_ptr<Pending> p = std::move(inflight_.front());
    inflight_.pop_front();
    for (auto& req : p->requests) {
      Complete(*req, absl::UnavailableError(absl::StrCat("redis: ", last_error_)));
    }
  }
  next_connect_at_ = now + backoff_.NextDelayMs(rng_);
}

void RedisCounterStore::SendInternal(const std::vector<std::string>& argv) {
  EncodeCommand(argv, &command_);
  Append({});
}

// Queues the command in command_ on the connection; its reply will complete
// `requests` (none for internal commands).
void RedisCounterStore::Append(std::vector<std::unique_ptr<Request>> requests) {
  conn_->Append(command_);
  commands_.fetch_add(1, std::memory_order_relaxed);
  auto p = std::make_unique<Pending>();
  p->requests = std::move(requests);
  p->sent_at = NowMillis();
  if (options_.observer != nullptr) p->sent_us = SteadyMicros();
  inflight_.push_back(std::move(p));
  wrote_since_flush_ = true;
  ++commands_since_flush_;
}

absl::Span<const ScriptCall* const> RedisCounterStore::Calls(
    const std::vector<std::unique_ptr<Request>>& requests) {
  calls_.clear();
  for (const std::unique_ptr<Request>& req : requests) calls_.push_back(req.get());
  return calls_;
}

void RedisCounterStore::Send(std::vector<std::unique_ptr<Request>> requests, bool use_eval) {
  codec_.EncodeBatch(Calls(requests), use_eval, &command_);
  Append(std::move(requests));
}

void RedisCounterStore::SendAll(std::vector<std::unique_ptr<Request>>& batch) {
  size_t i = 0;
  while (i < batch.size()) {
    std::vector<std::unique_ptr<Request>> group;
    size_t keys = 0;
    while (i < batch.size() && group.size() < kMaxCallsPerCommand &&
           (group.empty() || keys + batch[i]->checks.size() <= kMaxKeysPerCommand)) {
      keys += batch[i]->checks.size();
      group.push_back(std::move(batch[i++]));
    }
    Send(std::move(group), /*use_eval=*/false);
  }
}

void RedisCounterStore::Flush() {
  if (conn_ == nullptr) return;
  if (wrote_since_flush_) {
    round_trips_.fetch_add(1, std::memory_order_relaxed);
    wrote_since_flush_ = false;
    if (options_.observer != nullptr) options_.observer->OnRedisPipeline(commands_since_flush_);
    commands_since_flush_ = 0;
  }
  // What the socket does not take now waits for POLLOUT.
  if (absl::StatusOr<bool> written = conn_->Write(); !written.ok()) {
    Drop(written.status().message(), NowMillis());
  }
}

void RedisCounterStore::ReadReplies(int64_t now) {
  if (absl::Status read = conn_->Read(); !read.ok()) {
    Drop(read.message(), now);
    return;
  }
  while (conn_ != nullptr) {
    absl::StatusOr<RedisReplyPtr> reply = conn_->NextReply();
    if (!reply.ok()) {
      Drop(reply.status().message(), now);
      return;
    }
    if (*reply == nullptr) break;
    HandleReply(**reply, now);
  }
}

void RedisCounterStore::HandleReply(const redisReply& reply, int64_t now) {
  if (inflight_.empty()) {
    Drop("reply without a request", now);
    return;
  }
  std::unique_ptr<Pending> p = std::move(inflight_.front());
  inflight_.pop_front();
  const absl::string_view error = IsErrorReply(reply) ? ReplyText(reply) : absl::string_view();
  if (IsAuthError(error)) {
    // A refused AUTH, or NOAUTH for any command: the calls with it fail, and
    // the connection is dropped and tried again after the backoff.
    const std::string why = AuthFailure(error);
    const absl::Status failed = absl::UnavailableError(absl::StrCat("redis: ", why));
    for (auto& req : p->requests) Complete(*req, failed);
    Drop(why, now);
    return;
  }
  if (p->requests.empty()) {  // AUTH, SELECT or SCRIPT LOAD.
    if (IsErrorReply(reply)) {
      Drop(absl::StrCat("connection setup failed: ", error), now);
      return;
    }
    // Connected once every setup command succeeded, not before.
    if (setup_pending_ > 0 && --setup_pending_ == 0) {
      backoff_.Reset();
      if (!connected_.exchange(true)) LogInfo("redis: connected to ", options_.url.Redacted());
    }
    return;
  }
  if (options_.observer != nullptr && p->sent_us != 0) {
    options_.observer->OnRedisReply(SteadyMicros() - p->sent_us);
  }
  if (absl::StartsWith(error, "NOSCRIPT")) {
    // The script cache was emptied: send the calls still waiting again,
    // with the script itself.
    std::vector<std::unique_ptr<Request>> waiting;
    for (auto& req : p->requests) {
      if (!req->finished) waiting.push_back(std::move(req));
    }
    if (!waiting.empty()) {
      script_reloads_.fetch_add(1, std::memory_order_relaxed);
      Send(std::move(waiting), /*use_eval=*/true);
      Flush();
    }
    return;
  }
  if (absl::StartsWith(error, "READONLY") || absl::StartsWith(error, "LOADING") ||
      absl::StartsWith(error, "MASTERDOWN")) {
    const absl::Status unavailable = absl::UnavailableError(absl::StrCat("redis: ", error));
    for (auto& req : p->requests) Complete(*req, unavailable);
    Drop(error, now);
    return;
  }
  const absl::Status decoded = codec_.DecodeBatch(
      reply, Calls(p->requests),
      [&](size_t i, absl::StatusOr<AcquireResult> result) {
        if (!result.ok()) LogKeyError(result.status(), now);
        Complete(*p->requests[i], std::move(result));
      });
  if (!decoded.ok()) {
    for (auto& req : p->requests) Complete(*req, decoded);
  }
}

void RedisCounterStore::ExpireOverdue(int64_t now) {
  for (auto& p : inflight_) {
    for (auto& req : p->requests) {
      if (!req->finished && req->deadline <= now) {
        Complete(*req, absl::DeadlineExceededError(absl::StrCat("redis: no answer within ",
                                                                options_.timeout_ms, "ms")));
      }
    }
  }
  if (conn_ != nullptr && !inflight_.empty() && now - inflight_.front()->sent_at > kStallMillis) {
    Drop(absl::StrCat("no reply for ", now - inflight_.front()->sent_at, "ms"), now);
  } else if (conn_ != nullptr && !connected_.load() && !inflight_.empty() &&
             now - connect_started_ > kConnectTimeoutMillis) {
    Drop("connect timed out", now);
  }
}

int64_t RedisCounterStore::WaitMs(int64_t now) const {
  int64_t wait = kIdleWaitMillis;
  // The first call still waiting: deadlines are in FIFO order (resent
  // NOSCRIPT calls aside).
  for (const auto& p : inflight_) {
    auto waiting = std::find_if(p->requests.begin(), p->requests.end(),
                                [](const std::unique_ptr<Request>& r) { return !r->finished; });
    if (waiting != p->requests.end()) {
      wait = std::min(wait, (*waiting)->deadline - now);
      break;
    }
  }
  if (conn_ == nullptr) wait = std::min(wait, next_connect_at_ - now);
  return std::max<int64_t>(0, wait);
}

void RedisCounterStore::Run() {
  std::vector<std::unique_ptr<Request>> batch;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      batch.swap(queue_);
    }
    int64_t now = NowMillis();
    if (conn_ == nullptr && now >= next_connect_at_) Connect(now);
    if (conn_ == nullptr) {
      for (std::unique_ptr<Request>& req : batch) {
        Complete(*req, absl::UnavailableError(absl::StrCat("redis: ", last_error_)));
      }
    } else {
      SendAll(batch);
    }
    batch.clear();
    if (conn_ != nullptr && (wrote_since_flush_ || conn_->want_write())) Flush();

    // Sleep until a reply, a new request, the next deadline, or a reconnect.
    pollfd fd = {-1, 0, 0};
    if (conn_ != nullptr) {
      fd = {conn_->fd(), static_cast<short>(POLLIN | (conn_->want_write() ? POLLOUT : 0)), 0};
    }
    if (absl::StatusOr<bool> woken = wakeup_->Wait(absl::MakeSpan(&fd, 1), WaitMs(now));
        !woken.ok() && !logged_poll_error_) {
      logged_poll_error_ = true;  // Deadlines still hold: the loop goes on.
      LogError("redis: I/O thread: ", woken.status().message());
    }
    now = NowMillis();
    if (conn_ != nullptr) {
      if (fd.revents & POLLOUT) Flush();
      if (conn_ != nullptr && (fd.revents & (POLLIN | POLLHUP | POLLERR))) ReadReplies(now);
    }
    ExpireOverdue(now);
  }
  Shutdown();
}

// Nothing may be left waiting.
void RedisCounterStore::Shutdown() {
  std::vector<std::unique_ptr<Request>> queued;
  {
    absl::MutexLock lock(&mu_);
    queued.swap(queue_);
  }
  const absl::Status shutting_down = absl::UnavailableError(kShuttingDown);
  for (auto& req : queued) Complete(*req, shutting_down);
  for (auto& p : inflight_) {
    for (auto& req : p->requests) Complete(*req, shutting_down);
  }
  inflight_.clear();
  conn_.reset();
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
  s.connected = connected_.load();
  absl::MutexLock lock(&error_mu_);
  s.last_error = shared_error_;
  return s;
}

}  // namespace toolgate
