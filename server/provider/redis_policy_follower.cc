#include "server/provider/redis_policy_follower.h"

#include <poll.h>

#include "absl/strings/str_cat.h"
#include "server/base/log.h"
#include "server/base/utf8.h"
#include "server/policy/loader.h"
#include "server/provider/redis_policy_store.h"
#include "server/provider/revision_signature.h"

namespace toolgate {

absl::StatusOr<RevisionFromRedis> ReadRevisionFromRedis(RedisPolicyStore& store,
                                                        const std::string& revision) {
  RevisionFromRedis out;
  auto sources = store.Sources(revision);
  if (!sources.ok()) return sources.status();
  out.sources = *std::move(sources);
  absl::StatusOr<std::optional<RevisionMetadata>> meta = store.Metadata(revision);
  if (absl::IsInternal(meta.status())) {
    // What Redis answers for a key of another type: not what push writes.
    out.unreadable_metadata = std::string(meta.status().message());
  } else if (!meta.ok()) {
    return meta.status();
  } else {
    out.metadata = *std::move(meta);
  }
  return out;
}

std::string RevisionFromRedis::Fingerprint() const {
  return absl::StrCat(RevisionDigest(sources), "/", metadata ? metadata->digest : "-", "/",
                      metadata ? metadata->signature : "-", "/", unreadable_metadata);
}

absl::StatusOr<std::shared_ptr<const Policy>> LoadRevisionFromRedis(
    const std::string& revision, const RevisionFromRedis& read,
    const std::vector<Ed25519PublicKey>& keys) {
  if (!read.unreadable_metadata.empty()) {
    return WithRejectionReason(
        absl::FailedPreconditionError(absl::StrCat("revision \"", EscapeForLog(revision),
                                                   "\" from Redis refused: its metadata is "
                                                   "unreadable: ",
                                                   read.unreadable_metadata)),
        "metadata");
  }
  if (absl::Status verified = VerifyRevision(revision, read.sources, read.metadata, keys);
      !verified.ok()) {
    return verified;
  }
  auto policy = LoadPolicyFromSources(read.sources);
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat("revision \"", EscapeForLog(revision),
                                     "\" from Redis: ", policy.status().message()));
  }
  if ((*policy)->revision() != revision) {
    return WithRejectionReason(
        absl::FailedPreconditionError(absl::StrCat("revision \"", EscapeForLog(revision),
                                                   "\" from Redis refused: its sources load as \"",
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
  auto read = ReadRevisionFromRedis(**store, *active);
  if (!read.ok()) return read.status();
  return LoadRevisionFromRedis(*active, *read, keys);
}

namespace {
// Deadline of connecting the subscriber (and of its SUBSCRIBE).
constexpr absl::Duration kSubscribeTimeout = absl::Seconds(1);
}  // namespace

RedisPolicyFollower::RedisPolicyFollower(RedisUrl url, int64_t check_interval_ms,
                                         std::string current, ActivateFn activate, ReportFn report,
                                         std::vector<Ed25519PublicKey> keys)
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

void RedisPolicyFollower::Check() {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = [&]() -> absl::StatusOr<std::shared_ptr<const Policy>> {
    auto store = RedisPolicyStore::Connect(url_);
    if (!store.ok()) return store.status();
    auto active = (*store)->ActiveRevision();
    if (!active.ok()) return active.status();
    if (*active == current_) return std::shared_ptr<const Policy>();  // Nothing new.
    auto read = ReadRevisionFromRedis(**store, *active);
    if (!read.ok()) return read.status();
    // A revision refused before is tried again only when what is stored
    // changed (content restored, signature added).
    const std::string fingerprint = read->Fingerprint();
    if (*active == last_failed_ && fingerprint == last_failed_fingerprint_) {
      return std::shared_ptr<const Policy>();
    }
    auto loaded = LoadRevisionFromRedis(*active, *read, keys_);
    if (!loaded.ok()) {
      last_failed_ = *active;
      last_failed_fingerprint_ = fingerprint;
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
  last_failed_fingerprint_.clear();
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
