#include "server/provider/redis_policy_follower.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "server/policy/loader.h"
#include "server/provider/redis_policy_store.h"

namespace toolgate {

absl::StatusOr<std::shared_ptr<const Policy>> LoadActivePolicyFromRedis(const RedisUrl& url) {
  auto store = RedisPolicyStore::Connect(url);
  if (!store.ok()) return store.status();
  auto active = (*store)->ActiveRevision();
  if (!active.ok()) return active.status();
  auto sources = (*store)->Sources(*active);
  if (!sources.ok()) return sources.status();
  auto policy = LoadPolicyFromSources(*sources);
  if (!policy.ok()) return policy.status();
  if ((*policy)->revision() != *active) {
    return absl::InternalError(absl::StrCat("revision \"", *active, "\" in Redis loads as \"",
                                            (*policy)->revision(), "\""));
  }
  return policy;
}

RedisPolicyFollower::RedisPolicyFollower(RedisUrl url, int64_t check_interval_ms,
                                         std::string current, ActivateFn activate,
                                         ReportFn report)
    : url_(std::move(url)),
      interval_ms_(check_interval_ms),
      activate_(std::move(activate)),
      report_(std::move(report)),
      current_(std::move(current)) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread([this] { Run(); });
}

RedisPolicyFollower::~RedisPolicyFollower() {
  stop_ = true;
  const uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
  thread_.join();
  close(wake_fd_);
}

void RedisPolicyFollower::CheckNow() {
  check_now_ = true;
  const uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

void RedisPolicyFollower::Check() {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = [&]() -> absl::StatusOr<std::shared_ptr<const Policy>> {
    auto store = RedisPolicyStore::Connect(url_);
    if (!store.ok()) return store.status();
    auto active = (*store)->ActiveRevision();
    if (!active.ok()) return active.status();
    if (*active == current_) return std::shared_ptr<const Policy>();  // Nothing new.
    if (*active == last_failed_) return std::shared_ptr<const Policy>();
    auto sources = (*store)->Sources(*active);
    if (!sources.ok()) return sources.status();
    auto loaded = LoadPolicyFromSources(*sources);
    if (!loaded.ok()) {
      last_failed_ = *active;
      return absl::Status(loaded.status().code(),
                          absl::StrCat("revision \"", *active, "\" from Redis: ",
                                       loaded.status().message()));
    }
    return loaded;
  }();
  if (!policy.ok()) {
    if (!absl::IsNotFound(policy.status()) || !current_.empty()) report_(policy.status());
    return;
  }
  if (*policy == nullptr) return;
  current_ = (*policy)->revision();
  last_failed_.clear();
  activate_(*std::move(policy));
}

void RedisPolicyFollower::Run() {
  const std::string channel = absl::StrCat(kPolicyKeyPrefix, "events");
  redisContext* sub = nullptr;
  while (!stop_) {
    if (sub == nullptr) {
      const timeval tv{1, 0};
      sub = redisConnectWithTimeout(url_.host.c_str(), url_.port, tv);
      bool ok = sub != nullptr && !sub->err;
      if (ok && !url_.password.empty()) {
        auto* r = static_cast<redisReply*>(
            url_.username.empty()
                ? redisCommand(sub, "AUTH %b", url_.password.data(), url_.password.size())
                : redisCommand(sub, "AUTH %b %b", url_.username.data(), url_.username.size(),
                               url_.password.data(), url_.password.size()));
        ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
      }
      if (ok) {
        auto* r = static_cast<redisReply*>(
            redisCommand(sub, "SUBSCRIBE %b", channel.data(), channel.size()));
        ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
      }
      if (!ok) {
        if (sub) redisFree(sub);
        sub = nullptr;
      }
    }
    Check();
    check_now_ = false;
    // Wait for an announcement, a wake-up, or the next periodic check.
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {sub ? sub->fd : -1, POLLIN, 0}};
    poll(fds, sub ? 2 : 1, static_cast<int>(interval_ms_));
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      ssize_t n = read(wake_fd_, &v, sizeof(v));
      (void)n;
    }
    if (sub != nullptr && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      // Drain the messages; the check at the top of the loop acts on them.
      if (redisBufferRead(sub) == REDIS_ERR) {
        redisFree(sub);
        sub = nullptr;
        continue;
      }
      void* reply = nullptr;
      while (redisGetReplyFromReader(sub, &reply) == REDIS_OK && reply != nullptr) {
        freeReplyObject(reply);
        reply = nullptr;
      }
    }
  }
  if (sub != nullptr) redisFree(sub);
}

}  // namespace toolgate
