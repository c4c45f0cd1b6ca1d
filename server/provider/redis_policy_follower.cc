#include "server/provider/redis_policy_follower.h"

#include <poll.h>

#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "server/base/utf8.h"
#include "server/policy/loader.h"
#include "server/provider/redis_policy_store.h"
#include "server/provider/revision_signature.h"

namespace toolgate {

absl::StatusOr<std::shared_ptr<const Policy>> LoadRevisionFromRedis(
    RedisPolicyStore& store, const std::string& revision,
    const std::vector<Ed25519PublicKey>& keys) {
  auto sources = store.Sources(revision);
  if (!sources.ok()) return sources.status();
  absl::StatusOr<std::optional<RevisionMetadata>> meta = store.Metadata(revision);
  if (absl::IsInternal(meta.status())) {
    // A reply Redis gives for a key of another type: not what push writes.
    return WithRejectionReason(
        absl::FailedPreconditionError(absl::StrCat("revision \"", EscapeForLog(revision),
                                                   "\" from Redis refused: its metadata is "
                                                   "unreadable: ",
                                                   meta.status().message())),
        "metadata");
  }
  if (!meta.ok()) return meta.status();
  if (absl::Status verified = VerifyRevision(revision, *sources, *meta, keys); !verified.ok()) {
    return verified;
  }
  auto policy = LoadPolicyFromSources(*sources);
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat("revision \"", EscapeForLog(revision), "\" from Redis: ",
                                     policy.status().message()));
  }
  if ((*policy)->revision() != revision) {
    return WithRejectionReason(
        absl::FailedPreconditionError(absl::StrCat(
            "revision \"", EscapeForLog(revision), "\" from Redis refused: its sources load as \"",
            EscapeForLog((*policy)->revision()), "\"")),
        "revision");
  }
  return policy;
}

absl::StatusOr<std::shared_ptr<const Policy>> LoadActivePolicyFromRedis(
    const RedisUrl& url, const std::vector<Ed25519PublicKey>& keys) {
  auto store = RedisPolicyStore::Connect(url);
  if (!store.ok()) return store.status();
  auto active = (*store)->ActiveRevision();
  if (!active.ok()) return active.status();
  return LoadRevisionFromRedis(**store, *active, keys);
}

namespace {
// Deadline of connecting the subscriber (and of its SUBSCRIBE).
constexpr absl::Duration kSubscribeTimeout = absl::Seconds(1);
}  // namespace

RedisPolicyFollower::RedisPolicyFollower(RedisUrl url, int64_t check_interval_ms,
                                         std::string current, ActivateFn activate,
                                         ReportFn report, std::vector<Ed25519PublicKey> keys)
    : url_(std::move(url)),
      interval_ms_(check_interval_ms),
      keys_(std::move(keys)),
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

void RedisPolicyFollower::Check(bool retry_failed) {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = [&]() -> absl::StatusOr<std::shared_ptr<const Policy>> {
    auto store = RedisPolicyStore::Connect(url_);
    if (!store.ok()) return store.status();
    auto active = (*store)->ActiveRevision();
    if (!active.ok()) return active.status();
    if (*active == current_) return std::shared_ptr<const Policy>();  // Nothing new.
    if (*active == last_failed_ && !retry_failed) return std::shared_ptr<const Policy>();
    auto loaded = LoadRevisionFromRedis(**store, *active, keys_);
    // Unreachable Redis or missing sources: tried again at the next check.
    if (!loaded.ok() && !absl::IsUnavailable(loaded.status()) &&
        !absl::IsDeadlineExceeded(loaded.status()) && !absl::IsNotFound(loaded.status())) {
      last_failed_ = *active;
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
  bool retry_failed = false;
  while (!wakeup_->stop_requested()) {
    if (sub == nullptr) sub = Subscribe();
    Check(retry_failed);
    retry_failed = false;
    // Wait for an announcement, a wake-up, or the next periodic check.
    pollfd fd = {sub != nullptr ? sub->fd() : -1, POLLIN, 0};
    if (absl::StatusOr<bool> woken = wakeup_->Wait(absl::MakeSpan(&fd, 1), interval_ms_);
        !woken.ok()) {
      LogError("policy follower: ", woken.status().message(),
               "; stopped following the policy in Redis");
      return;
    } else if (*woken) {
      retry_failed = true;  // CheckNow (SIGHUP).
    }
    // Drain the messages; the check at the top of the loop acts on them.
    if (sub != nullptr && (fd.revents & (POLLIN | POLLHUP | POLLERR))) {
      retry_failed = true;  // An announcement (activate, rollback).
      if (!sub->ReadAvailable().ok()) sub.reset();
    }
  }
}

}  // namespace toolgate
