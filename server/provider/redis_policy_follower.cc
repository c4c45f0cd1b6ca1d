#include "server/provider/redis_policy_follower.h"

#include <poll.h>

#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "server/base/utf8.h"
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
    return absl::InternalError(absl::StrCat("revision \"", EscapeForLog(*active),
                                            "\" in Redis loads as \"",
                                            EscapeForLog((*policy)->revision()), "\""));
  }
  return policy;
}

namespace {
// Deadline of connecting the subscriber (and of its SUBSCRIBE).
constexpr absl::Duration kSubscribeTimeout = absl::Seconds(1);
}  // namespace

RedisPolicyFollower::RedisPolicyFollower(RedisUrl url, int64_t check_interval_ms,
                                         std::string current, ActivateFn activate,
                                         ReportFn report)
    : url_(std::move(url)),
      interval_ms_(check_interval_ms),
      activate_(std::move(activate)),
      report_(std::move(report)),
      current_(std::move(current)) {
  absl::StatusOr<std::unique_ptr<Wakeup>> wakeup = Wakeup::Create();
  if (!wakeup.ok()) {
    LogError("policy follower: cannot start: ", wakeup.status().message(),
             "; the policy from Redis will not be followed");
    return;
  }
  wakeup_ = *std::move(wakeup);
  thread_ = std::thread([this] { Run(); });
}

RedisPolicyFollower::~RedisPolicyFollower() {
  if (wakeup_ == nullptr) return;
  wakeup_->RequestStop();
  thread_.join();
}

void RedisPolicyFollower::CheckNow() {
  if (wakeup_ != nullptr) wakeup_->Wake();
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
                          absl::StrCat("revision \"", EscapeForLog(*active), "\" from Redis: ",
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

std::unique_ptr<RedisClient> RedisPolicyFollower::Subscribe() {
  absl::StatusOr<std::unique_ptr<RedisClient>> sub = RedisClient::Connect(url_, kSubscribeTimeout);
  if (!sub.ok()) return nullptr;
  if (!(*sub)->Command({"SUBSCRIBE", absl::StrCat(kPolicyKeyPrefix, "events")}).ok()) {
    return nullptr;
  }
  return *std::move(sub);
}

void RedisPolicyFollower::Run() {
  std::unique_ptr<RedisClient> sub;
  while (!wakeup_->stop_requested()) {
    if (sub == nullptr) sub = Subscribe();
    Check();
    // Wait for an announcement, a wake-up, or the next periodic check.
    pollfd fd = {sub != nullptr ? sub->fd() : -1, POLLIN, 0};
    if (absl::StatusOr<bool> woken = wakeup_->Wait(absl::MakeSpan(&fd, 1), interval_ms_);
        !woken.ok()) {
      LogError("policy follower: ", woken.status().message(),
               "; stopped following the policy in Redis");
      return;
    }
    // Drain the messages; the check at the top of the loop acts on them.
    if (sub != nullptr && (fd.revents & (POLLIN | POLLHUP | POLLERR)) &&
        !sub->ReadAvailable().ok()) {
      sub.reset();
    }
  }
}

}  // namespace toolgate
