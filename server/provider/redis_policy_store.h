// Policy revisions kept in Redis, for fleet-wide rollout.
//
// Layout (prefix "toolgate:policy:"):
//   rev:<revision>   hash: file name -> file content (the revision's sources)
//   revisions        sorted set: revision, scored by push time (ms)
//   active           string: the active revision
//   history          list: previously active revisions, most recent first
//   events           pub/sub channel: the new active revision, on every change
//
// `toolgate policy push` validates a policy locally (the server's own loader)
// before storing it, so only valid revisions are ever in Redis; servers still
// validate what they read.
#ifndef TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_STORE_H_
#define TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/policy/loader.h"
#include "server/redis/client.h"
#include "server/redis/url.h"

namespace toolgate {

inline constexpr char kPolicyKeyPrefix[] = "toolgate:policy:";

struct StoredRevision {
  std::string revision;
  int64_t pushed_at_ms = 0;
  bool active = false;
};

// A short-lived synchronous connection for policy operations (CLI and the
// server's policy follower; never on the decision path). Connecting and each
// command must be done within `timeout`.
class RedisPolicyStore {
 public:
  static absl::StatusOr<std::unique_ptr<RedisPolicyStore>> Connect(
      const RedisUrl& url, absl::Duration timeout = absl::Seconds(2));
  ~RedisPolicyStore();

  // Stores a revision's sources; returns the revision. INVALID_ARGUMENT (with
  // every error) when the policy does not load.
  absl::StatusOr<std::string> Push(const std::vector<PolicySource>& sources);
  // Makes `revision` active (it must have been pushed) and announces it.
  absl::Status Activate(const std::string& revision);
  // Re-activates the previously active revision. Returns it.
  absl::StatusOr<std::string> Rollback();
  // The active revision; NOT_FOUND when none was activated yet.
  absl::StatusOr<std::string> ActiveRevision();
  // The sources of a pushed revision.
  absl::StatusOr<std::vector<PolicySource>> Sources(const std::string& revision);
  // Pushed revisions, newest first.
  absl::StatusOr<std::vector<StoredRevision>> List();

 private:
  explicit RedisPolicyStore(std::unique_ptr<RedisClient> client);
  // Runs a command; the scripts' own errors as NOT_FOUND (no such revision)
  // and FAILED_PRECONDITION (nothing to roll back to).
  absl::StatusOr<RedisReplyPtr> Run(absl::Span<const std::string> argv);

  std::unique_ptr<RedisClient> client_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_STORE_H_
