#include "server/counters/redis_store.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/base/log.h"

namespace toolgate {

extern const char kRedisScript[];

namespace {

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Sha1Hex(const std::string& s) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// Builds one command in RESP (the Redis protocol: an array of bulk strings)
// directly, without hiredis's printf-style formatter, which cost more per
// check than the decision itself. `out` is reused from call to call.
class RespCommand {
 public:
  explicit RespCommand(std::string* out, size_t argc) : out_(out) {
    out_->clear();
    Header('*', argc);
  }
  void Arg(absl::string_view a) {
    Header('$', a.size());
    out_->append(a.data(), a.size());
    out_->append("\r\n", 2);
  }
  void Arg(int64_t v) { Arg(absl::AlphaNum(v).Piece()); }

 private:
  void Header(char type, size_t n) {
    out_->push_back(type);
    const absl::AlphaNum digits(n);
    out_->append(digits.data(), digits.size());
    out_->append("\r\n", 2);
  }
  std::string* out_;
};

// A connection with no reply for this long is considered dead, whatever the
// per-call deadline.
constexpr int64_t kStallMillis = 2000;
constexpr int64_t kConnectTimeoutMillis = 1000;
constexpr int64_t kMaxBackoffMillis = 400;
// One script run decides at most this many calls (and limits): enough to
// amortize a run's fixed cost, small enough that a run stays short.
constexpr size_t kMaxCallsPerCommand = 64;
constexpr size_t kMaxKeysPerCommand = 256;

}  // namespace

struct RedisCounterStore::Request {
  std::vector<LimitCheck> checks;
  bool dry_run = false;
  Callback done;
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
    : options_(std::move(options)), script_(kRedisScript), script_sha_(Sha1Hex(script_)) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread([this] { Run(); });
}

RedisCounterStore::~RedisCounterStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

char RedisCounterStore::AlgorithmLetter(const LimitCheck& check) const {
  switch (check.algorithm) {
    case Algorithm::kSlidingWindow:
      return check.max <= options_.exact_log_max ? 's' : 'b';
    case Algorithm::kFixedWindow:
      return 'f';
    case Algorithm::kTokenBucket:
      return 't';
  }
  return 's';
}

// The window is part of the key: a revision that changes a counter's
// window or algorithm starts a separate counter rather than misreading (or
// resetting) the state another revision still uses.
void RedisCounterStore::AppendRedisKey(const LimitCheck& check, std::string* out) const {
  const char alg = AlgorithmLetter(check);
  absl::StrAppend(out, options_.key_prefix, "{", check.key, "}:", absl::string_view(&alg, 1), ":",
                  check.window_ms);
}

std::string RedisCounterStore::RedisKey(const LimitCheck& check) const {
  std::string key;
  AppendRedisKey(check, &key);
  return key;
}

void RedisCounterStore::Wake() {
  const uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

bool RedisCounterStore::RefusedByCache(const std::vector<LimitCheck>& checks, Callback& done) {
  if (!options_.over_limit_cache) return false;
  const int64_t now = SteadyMillis();
  AcquireResult result;
  bool refused = false;
  {
    absl::MutexLock lock(&cache_mu_);
    if (full_until_.empty()) return false;
    result.outcomes.resize(checks.size());
    for (size_t i = 0; i < checks.size(); ++i) {
      LimitOutcome& o = result.outcomes[i];
      auto it = full_until_.find(checks[i].key);
      if (it != full_until_.end() && it->second > now) {
        refused = true;
        o.has_room = false;
        o.remaining = 0;
        o.retry_after_ms = it->second - now;
        o.reset_after_ms = o.retry_after_ms;
      } else {
        o.has_room = true;
        o.known = false;  // Not consulted: Redis was not asked.
      }
    }
  }
  if (!refused) return false;
  cache_hits_.fetch_add(1, std::memory_order_relaxed);
  result.admitted = false;
  std::move(done)(std::move(result));
  return true;
}

void RedisCounterStore::RememberFull(const Request& req, const AcquireResult& result) {
  if (!options_.over_limit_cache || result.admitted) return;
  const int64_t now = SteadyMillis();
  absl::MutexLock lock(&cache_mu_);
  for (size_t i = 0; i < req.checks.size() && i < result.outcomes.size(); ++i) {
    const LimitOutcome& o = result.outcomes[i];
    if (!o.has_room && o.retry_after_ms > 0) {
      full_until_[req.checks[i].key] = now + o.retry_after_ms;
    }
  }
  if (++cache_ops_ >= std::max<size_t>(64, full_until_.size())) {
    cache_ops_ = 0;
    for (auto it = full_until_.begin(); it != full_until_.end();) {
      if (it->second <= now) {
        full_until_.erase(it++);
      } else {
        ++it;
      }
    }
  }
}

void RedisCounterStore::Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) {
  checks_.fetch_add(1, std::memory_order_relaxed);
  if (RefusedByCache(checks, done)) return;
  auto req = std::make_unique<Request>();
  req->checks = std::move(checks);
  req->dry_run = dry_run;
  req->done = std::move(done);
  req->deadline = SteadyMillis() + options_.timeout_ms;
  bool was_empty = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      std::move(req->done)(absl::UnavailableError("counter store is shutting down"));
      return;
    }
    was_empty = queue_.empty();
    queue_.push_back(std::move(req));
  }
  if (was_empty) Wake();
}

void RedisCounterStore::Complete(Request& req, absl::StatusOr<AcquireResult> result) {
  if (req.finished) return;
  req.finished = true;
  if (result.ok()) {
    RememberFull(req, *result);
  } else if (result.status().code() == absl::StatusCode::kDeadlineExceeded) {
    timeouts_.fetch_add(1, std::memory_order_relaxed);
  } else {
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
  std::move(req.done)(std::move(result));
}

void RedisCounterStore::Connect(int64_t now) {
  ctx_ = redisConnectNonBlock(options_.url.host.c_str(), options_.url.port);
  reconnects_.fetch_add(1, std::memory_order_relaxed);
  if (ctx_ == nullptr || ctx_->err) {
    const std::string why = ctx_ ? ctx_->errstr : "out of memory";
    if (ctx_) redisFree(ctx_);
    ctx_ = nullptr;
    Drop(absl::StrCat("cannot connect to ", options_.url.Redacted(), ": ", why), now);
    return;
  }
  connect_started_ = now;
  if (!options_.url.password.empty()) {
    if (options_.url.username.empty()) {
      SendInternal({"AUTH", options_.url.password});
    } else {
      SendInternal({"AUTH", options_.url.username, options_.url.password});
    }
  }
  if (options_.url.db != 0) SendInternal({"SELECT", absl::StrCat(options_.url.db)});
  // Load the script up front, so that calls can use EVALSHA from the start
  // (NOSCRIPT is still handled: the cache can be flushed at any time).
  SendInternal({"SCRIPT", "LOAD", script_});
}

void RedisCounterStore::Drop(const std::string& why, int64_t now) {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  // Log transitions, and while Redis stays unreachable, a reminder now and then.
  if (connected_.exchange(false)) {
    LogWarning("redis: connection lost: ", why);
    last_error_log_ = now;
  } else if (why != last_error_ || now - last_error_log_ > 30'000) {
    LogWarning("redis: unreachable: ", why);
    last_error_log_ = now;
  }
  last_error_ = why;
  {
    absl::MutexLock lock(&error_mu_);
    shared_error_ = why;
  }
  want_write_ = false;
  wrote_since_flush_ = false;
  commands_since_flush_ = 0;
  while (!inflight_.empty()) {
    std::unique_ptr<Pending> p = std::move(inflight_.front());
    inflight_.pop_front();
    for (auto& req : p->requests) {
      Complete(*req, absl::UnavailableError(absl::StrCat("redis: ", why)));
    }
  }
  // Jittered exponential backoff: 10ms, 20ms, ... up to kMaxBackoffMillis, x[0.5, 1.5).
  const int64_t base = std::min<int64_t>(kMaxBackoffMillis, int64_t{10} << std::min(backoff_attempts_, 6));
  ++backoff_attempts_;
  next_connect_at_ = now + static_cast<int64_t>(base * absl::Uniform<double>(rng_, 0.5, 1.5));
}

void RedisCounterStore::SendInternal(const std::vector<std::string>& argv) {
  RespCommand cmd(&command_, argv.size());
  for (const std::string& a : argv) cmd.Arg(a);
  Append({});
}

// Queues the command in command_ in the connection's output buffer; its
// reply will complete `requests` (none for internal commands).
void RedisCounterStore::Append(std::vector<std::unique_ptr<Request>> requests) {
  redisAppendFormattedCommand(ctx_, command_.data(), command_.size());
  commands_.fetch_add(1, std::memory_order_relaxed);
  auto p = std::make_unique<Pending>();
  p->requests = std::move(requests);
  p->sent_at = SteadyMillis();
  if (options_.observer != nullptr) p->sent_us = SteadyMicros();
  inflight_.push_back(std::move(p));
  wrote_since_flush_ = true;
  ++commands_since_flush_;
}

// One EVALSHA for a batch of calls:
//   EVALSHA sha numkeys key... calls (dry_run n (alg window max burst)*n)*calls
void RedisCounterStore::Send(std::vector<std::unique_ptr<Request>> requests, bool use_eval) {
  size_t keys = 0;
  for (const auto& req : requests) keys += req->checks.size();
  RespCommand cmd(&command_, 4 + keys + 2 * requests.size() + 4 * keys);
  cmd.Arg(use_eval ? absl::string_view("EVAL") : absl::string_view("EVALSHA"));
  cmd.Arg(use_eval ? script_ : script_sha_);
  cmd.Arg(static_cast<int64_t>(keys));
  for (const auto& req : requests) {
    for (const LimitCheck& c : req->checks) {
      key_.clear();
      AppendRedisKey(c, &key_);
      cmd.Arg(key_);
    }
  }
  cmd.Arg(static_cast<int64_t>(requests.size()));
  for (const auto& req : requests) {
    cmd.Arg(req->dry_run ? absl::string_view("1") : absl::string_view("0"));
    cmd.Arg(static_cast<int64_t>(req->checks.size()));
    for (const LimitCheck& c : req->checks) {
      const char alg = AlgorithmLetter(c);
      cmd.Arg(absl::string_view(&alg, 1));
      cmd.Arg(c.window_ms);
      cmd.Arg(c.max);
      cmd.Arg(c.burst);
    }
  }
  Append(std::move(requests));
}

void RedisCounterStore::Flush() {
  if (ctx_ == nullptr) return;
  if (wrote_since_flush_) {
    round_trips_.fetch_add(1, std::memory_order_relaxed);
    wrote_since_flush_ = false;
    if (options_.observer != nullptr) options_.observer->OnRedisPipeline(commands_since_flush_);
    commands_since_flush_ = 0;
  }
  int done = 0;
  while (!done) {
    if (redisBufferWrite(ctx_, &done) == REDIS_ERR) {
      Drop(absl::StrCat("write failed: ", ctx_->errstr), SteadyMillis());
      return;
    }
    if (!done) break;  // Socket buffer full (or still connecting): wait for POLLOUT.
  }
  want_write_ = !done;
}

void RedisCounterStore::ReadReplies(int64_t now) {
  if (redisBufferRead(ctx_) == REDIS_ERR) {
    Drop(ctx_->err == REDIS_ERR_EOF ? std::string("connection closed by Redis")
                                    : absl::StrCat("read failed: ", ctx_->errstr),
         now);
    return;
  }
  while (ctx_ != nullptr) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(ctx_, &reply) == REDIS_ERR) {
      Drop(absl::StrCat("protocol error: ", ctx_->errstr), now);
      return;
    }
    if (reply == nullptr) break;
    HandleReply(static_cast<redisReply*>(reply), now);
    freeReplyObject(reply);
  }
}

void RedisCounterStore::HandleReply(redisReply* reply, int64_t now) {
  if (inflight_.empty()) {
    Drop("reply without a request", now);
    return;
  }
  std::unique_ptr<Pending> p = std::move(inflight_.front());
  inflight_.pop_front();
  backoff_attempts_ = 0;
  if (!connected_.exchange(true)) LogInfo("redis: connected to ", options_.url.Redacted());
  const bool is_error = reply->type == REDIS_REPLY_ERROR;
  const std::string error = is_error ? std::string(reply->str, reply->len) : std::string();
  if (p->requests.empty()) {  // AUTH, SELECT or SCRIPT LOAD.
    if (is_error) Drop(absl::StrCat("connection setup failed: ", error), now);
    return;
  }
  if (options_.observer != nullptr && p->sent_us != 0) {
    options_.observer->OnRedisReply(SteadyMicros() - p->sent_us);
  }
  auto complete_all = [&](const absl::Status& status) {
    for (auto& req : p->requests) Complete(*req, status);
  };
  if (is_error) {
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
      complete_all(absl::UnavailableError(absl::StrCat("redis: ", error)));
      Drop(error, now);
      return;
    }
    complete_all(absl::InternalError(absl::StrCat("redis: ", error)));
    return;
  }
  // Call after call: admitted, then four integers per limit.
  size_t expected = 0;
  for (const auto& req : p->requests) expected += 1 + 4 * req->checks.size();
  bool well_formed = reply->type == REDIS_REPLY_ARRAY && reply->elements == expected;
  for (size_t i = 0; well_formed && i < reply->elements; ++i) {
    well_formed = reply->element[i]->type == REDIS_REPLY_INTEGER;
  }
  if (!well_formed) {
    complete_all(absl::InternalError("redis: unexpected reply to the limits script"));
    return;
  }
  size_t at = 0;
  for (auto& req : p->requests) {
    const size_t n = req->checks.size();
    if (reply->element[at]->integer == 2) {  // One of its keys holds another type.
      const long long k = n > 0 ? reply->element[at + 1]->integer : 0;
      Complete(*req, absl::InternalError(absl::StrCat(
                         "redis: counter key ",
                         k >= 1 && static_cast<size_t>(k) <= n ? RedisKey(req->checks[k - 1])
                                                               : std::string("?"),
                         " holds a value toolgate did not write (WRONGTYPE); nothing counted")));
      at += 1 + 4 * n;
      continue;
    }
    AcquireResult result;
    result.admitted = reply->element[at]->integer == 1;
    result.outcomes.resize(n);
    for (size_t i = 0; i < n; ++i) {
      LimitOutcome& o = result.outcomes[i];
      o.has_room = reply->element[at + 1 + 4 * i]->integer == 1;
      o.remaining = reply->element[at + 2 + 4 * i]->integer;
      o.reset_after_ms = reply->element[at + 3 + 4 * i]->integer;
      o.retry_after_ms = reply->element[at + 4 + 4 * i]->integer;
    }
    at += 1 + 4 * n;
    Complete(*req, std::move(result));
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
  if (ctx_ != nullptr && !inflight_.empty() && now - inflight_.front()->sent_at > kStallMillis) {
    Drop(absl::StrCat("no reply for ", now - inflight_.front()->sent_at, "ms"), now);
  } else if (ctx_ != nullptr && !connected_.load() && !inflight_.empty() &&
             now - connect_started_ > kConnectTimeoutMillis) {
    Drop("connect timed out", now);
  }
}

void RedisCounterStore::Run() {
  std::vector<std::unique_ptr<Request>> batch;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      batch.swap(queue_);
    }
    int64_t now = SteadyMillis();
    if (ctx_ == nullptr && now >= next_connect_at_) Connect(now);
    if (ctx_ == nullptr) {
      for (std::unique_ptr<Request>& req : batch) {
        Complete(*req, absl::UnavailableError(absl::StrCat("redis: ", last_error_)));
      }
    } else {
      // The queued calls in as few script runs as the limits below allow.
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
    batch.clear();
    if (ctx_ != nullptr && (wrote_since_flush_ || want_write_)) Flush();

    // Sleep until a reply, a new request, the next deadline, or a reconnect.
    int64_t wait = 100;
    for (const auto& p : inflight_) {
      bool found = false;
      for (const auto& req : p->requests) {
        if (!req->finished) {
          wait = std::min(wait, req->deadline - now);
          found = true;
          break;
        }
      }
      if (found) break;  // Deadlines are in FIFO order (resent NOSCRIPT calls aside).
    }
    if (ctx_ == nullptr) wait = std::min(wait, next_connect_at_ - now);
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, 0, 0}};
    int nfds = 1;
    if (ctx_ != nullptr) {
      fds[1] = {ctx_->fd, static_cast<short>(POLLIN | (want_write_ ? POLLOUT : 0)), 0};
      nfds = 2;
    }
    poll(fds, nfds, static_cast<int>(std::max<int64_t>(0, wait)));
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(wake_fd_, &v, sizeof(v));
      (void)r;
    }
    now = SteadyMillis();
    if (ctx_ != nullptr && nfds == 2) {
      if (fds[1].revents & POLLOUT) Flush();
      if (ctx_ != nullptr && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) ReadReplies(now);
    }
    ExpireOverdue(now);
  }
  // Shutting down: nothing may be left waiting.
  {
    absl::MutexLock lock(&mu_);
    batch.swap(queue_);
  }
  for (auto& req : batch) Complete(*req, absl::UnavailableError("counter store is shutting down"));
  for (auto& p : inflight_) {
    for (auto& req : p->requests) {
      Complete(*req, absl::UnavailableError("counter store is shutting down"));
    }
  }
  inflight_.clear();
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
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
