// The three providers. Each is small: the work is in the loader, the
// watcher and the follower.
#include "server/provider/provider.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/base/ed25519.h"
#include "server/base/log.h"
#include "server/policy/loader.h"
#include "server/provider/embedded_policy.h"
#include "server/provider/policy_watcher.h"
#include "server/provider/redis_policy_follower.h"
#include "server/provider/redis_policy_store.h"
#include "server/redis/url.h"

namespace toolgate {
namespace {

// Keeps the listener and calls it under a lock, so that Stop() can wait
// out a call in progress and no call starts after it.
class ListenerSlot {
 public:
  void Set(PolicyProvider::Listener listener) {
    absl::MutexLock lock(&mu_);
    listener_ = std::move(listener);
  }
  void Clear() { Set(nullptr); }
  void Report(absl::StatusOr<std::shared_ptr<const Policy>> revision, absl::string_view trigger) {
    absl::MutexLock lock(&mu_);
    if (listener_) listener_(std::move(revision), trigger);
  }

 private:
  absl::Mutex mu_;
  PolicyProvider::Listener listener_ ABSL_GUARDED_BY(mu_);
};

class EmbeddedProvider final : public PolicyProvider {
 public:
  absl::StatusOr<std::shared_ptr<const Policy>> Load() override {
    return LoadPolicyFromSources({PolicySource{kEmbeddedPolicyName, kEmbeddedPolicy}});
  }
  absl::Status Watch(std::shared_ptr<const Policy>, Listener listener) override {
    listener_.Set(std::move(listener));
    return absl::OkStatus();
  }
  void Reload(absl::string_view trigger) override { listener_.Report(Load(), trigger); }
  void Stop() override { listener_.Clear(); }
  std::string Describe() const override {
    return "the example policy compiled into the binary (no --policy given)";
  }

 private:
  ListenerSlot listener_;
};

class FileProvider final : public PolicyProvider {
 public:
  explicit FileProvider(const ProviderOptions& options)
      : path_(options.path), interval_(options.watch_interval) {
    if (!options.watch) return;
    // Created before the first Load, so that a change made between that
    // load and Watch is still reported.
    PolicyWatcherOptions watch;
    watch.interval = options.watch_interval;
    watcher_ = std::make_unique<PolicyWatcher>(
        path_, watch, [this](absl::string_view trigger) { listener_.Report(Load(), trigger); });
  }
  ~FileProvider() override { Stop(); }

  absl::StatusOr<std::shared_ptr<const Policy>> Load() override {
    return LoadPolicyFromPath(path_);
  }
  absl::Status Watch(std::shared_ptr<const Policy>, Listener listener) override {
    listener_.Set(std::move(listener));
    if (watcher_ == nullptr) return absl::OkStatus();
    absl::Status s = watcher_->Start();
    if (!s.ok()) watcher_.reset();
    return s;
  }
  void Reload(absl::string_view trigger) override {
    // Through the watcher, so that it does not load the same files again.
    if (watcher_ != nullptr) {
      watcher_->ReloadNow(trigger);
    } else {
      listener_.Report(Load(), trigger);
    }
  }
  void Stop() override {
    if (watcher_ != nullptr) watcher_->Stop();
    listener_.Clear();
  }
  std::string Describe() const override {
    if (watcher_ == nullptr) return absl::StrCat(path_, " (reloaded on SIGHUP only)");
    return absl::StrCat(path_,
                        " (watched: ", watcher_->using_inotify() ? "file-system events, and " : "",
                        "every ", absl::FormatDuration(interval_), ")");
  }

 private:
  const std::string path_;
  const absl::Duration interval_;
  ListenerSlot listener_;
  std::unique_ptr<PolicyWatcher> watcher_;
};

class RedisProvider final : public PolicyProvider {
 public:
  RedisProvider(RedisUrl url, absl::Duration check_interval, std::vector<Ed25519PublicKey> keys)
      : url_(std::move(url)), check_interval_(check_interval), keys_(std::move(keys)) {}
  ~RedisProvider() override { Stop(); }

  absl::StatusOr<std::shared_ptr<const Policy>> Load() override {
    return LoadActivePolicyFromRedis(url_, keys_);
  }
  bool may_start_empty() const override { return true; }
  absl::Status Watch(std::shared_ptr<const Policy> current, Listener listener) override {
    listener_.Set(std::move(listener));
    follower_ = std::make_unique<RedisPolicyFollower>(
        url_, absl::ToInt64Milliseconds(check_interval_),
        current != nullptr ? current->revision() : std::string(),
        [this](std::shared_ptr<const Policy> p) { listener_.Report(std::move(p), "Redis"); },
        [this](const absl::Status& error) { listener_.Report(error, "Redis"); }, keys_);
    return absl::OkStatus();
  }
  void Reload(absl::string_view trigger) override {
    if (follower_ != nullptr) follower_->CheckNow();
  }
  void Stop() override {
    follower_.reset();
    listener_.Clear();
  }
  std::string Describe() const override {
    return absl::StrCat("the active revision in Redis at ", url_.Redacted(),
                        " (announcements, and every ", absl::FormatDuration(check_interval_), "; ",
                        keys_.empty()
                            ? std::string("signatures not required")
                            : absl::StrCat("signed by one of ", keys_.size(), " verify key(s)"),
                        ")");
  }

 private:
  const RedisUrl url_;
  const absl::Duration check_interval_;
  const std::vector<Ed25519PublicKey> keys_;
  ListenerSlot listener_;
  std::unique_ptr<RedisPolicyFollower> follower_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PolicyProvider>> MakePolicyProvider(const ProviderOptions& options) {
  if (options.path.empty()) return std::make_unique<EmbeddedProvider>();
  if (absl::StartsWith(options.path, "redis+cluster://")) {
    return absl::InvalidArgumentError(
        "--policy: policy revisions are kept in one Redis server (redis://...) or a "
        "Sentinel-managed master (redis+sentinel://...), not in a Redis Cluster; a Redis "
        "Cluster serves the counters (--redis)");
  }
  const bool redis = IsRedisUrl(options.path);
  if (!redis && !options.verify_key_files.empty()) {
    return absl::InvalidArgumentError(
        "--policy-verify-key applies only to a policy in Redis (--policy redis://...)");
  }
  if (redis) {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(options.path, options.redis_credentials);
    if (!url.ok()) return url.status();
    std::vector<Ed25519PublicKey> keys;
    for (const std::string& file : options.verify_key_files) {
      absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromPemFile(file);
      if (!key.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--policy-verify-key: ", key.status().message()));
      }
      LogInfo("policy verify key ", key->Fingerprint(), " from ", file);
      keys.push_back(*std::move(key));
    }
    if (keys.empty()) {
      LogWarning(
          "policy revisions from Redis are not verified: anyone who can write to the "
          "policy keys in Redis (",
          kPolicyKeyPrefix,
          "*) controls the policy of every server following it. Push revisions with "
          "'toolgate policy push --signing-key KEY.pem' and start servers with "
          "--policy-verify-key PUBLIC.pem");
    }
    return std::make_unique<RedisProvider>(*std::move(url), options.redis_check_interval,
                                           std::move(keys));
  }
  return std::make_unique<FileProvider>(options);
}

}  // namespace toolgate
