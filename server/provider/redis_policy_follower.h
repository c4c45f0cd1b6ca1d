// Follows the active policy revision stored in Redis (see
// server/provider/redis_policy_store.h): subscribes to the announcement channel
// and, as a safety net for lost messages or connections, also checks the
// active pointer every `check_interval_ms`. A new active revision is loaded,
// validated and handed to `activate`; one that fails is reported through
// `report` and the current revision keeps serving. Every revision is checked
// against its recorded digest, and with verify keys, its signature
// (revision_signature.h) before it is handed over.
#ifndef TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_
#define TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "server/base/ed25519.h"
#include "server/base/wakeup.h"
#include "server/policy/loader.h"
#include "server/policy/policy.h"
#include "server/provider/revision_signature.h"
#include "server/redis/client.h"
#include "server/redis/url.h"

namespace toolgate {

class RedisPolicyStore;

// A revision as read from Redis: its sources and what was recorded at push.
struct RevisionFromRedis {
  std::vector<PolicySource> sources;
  std::optional<RevisionMetadata> metadata;  // None recorded: nullopt.
  std::string unreadable_metadata;           // Why the record could not be read.
  // Changes whenever any of the above does.
  std::string Fingerprint() const;
};
absl::StatusOr<RevisionFromRedis> ReadRevisionFromRedis(RedisPolicyStore& store,
                                                        const std::string& revision);

// Checks `read` with VerifyRevision (against `keys`) and compiles it; it
// must load as `revision`. Errors name the revision; a refusal carries its
// reason (RevisionRejectionReason).
absl::StatusOr<std::shared_ptr<const Policy>> LoadRevisionFromRedis(
    const std::string& revision, const RevisionFromRedis& read,
    const std::vector<Ed25519PublicKey>& keys);

// Loads the active revision from Redis (NOT_FOUND when none is active), as
// LoadRevisionFromRedis.
absl::StatusOr<std::shared_ptr<const Policy>> LoadActivePolicyFromRedis(
    const RedisUrl& url, const std::vector<Ed25519PublicKey>& keys = {});

class RedisPolicyFollower {
 public:
  using ActivateFn = std::function<void(std::shared_ptr<const Policy>)>;
  using ReportFn = std::function<void(const absl::Status&)>;

  // `current` is the revision already serving (may be empty).
  // A revision refused is reported once; it is tried again when what is
  // stored for it changes (read at each check while it is the active one).
  RedisPolicyFollower(RedisUrl url, int64_t check_interval_ms, std::string current,
                      ActivateFn activate, ReportFn report,
                      std::vector<Ed25519PublicKey> keys = {});
  ~RedisPolicyFollower();

  // Checks the active pointer now (SIGHUP).
  void CheckNow();

 private:
  void Run();
  void Check();
  // A connection subscribed to the announcement channel; null when Redis
  // cannot be reached (the periodic check still runs).
  std::unique_ptr<RedisClient> Subscribe();

  const RedisUrl url_;
  const int64_t interval_ms_;
  const std::vector<Ed25519PublicKey> keys_;
  ActivateFn activate_;
  ReportFn report_;
  std::string current_;      // I/O thread only.
  std::string last_failed_;  // Don't report the same broken revision every second.
  std::string last_failed_fingerprint_;  // RevisionFromRedis::Fingerprint of it.
  std::unique_ptr<Wakeup> wakeup_;  // Null when it could not be created: no thread.
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_
