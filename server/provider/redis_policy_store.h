// Policy revisions kept in Redis, for fleet-wide rollout.
//
// Layout (prefix "toolgate:policy:"):
//   rev:<revision>   hash: file name -> file content (the revision's sources)
//   meta:<revision>  hash: digest (SHA-256 of the sources, revision_signature.h),
//                    and when signed: signature (hex Ed25519), key (signer's
//                    fingerprint)
//   revisions        sorted set: revision, scored by push time (ms)
//   active           string: the active revision
//   history          list: previously active revisions, most recent first
//   events           pub/sub channel: the new active revision, on every change
//
// `toolgate policy push` validates a policy locally (the server's own loader)
// before storing it, so only valid revisions are ever in Redis; servers still
// validate what they read, and check the content against the recorded digest
// (and the signature, with --policy-verify-key) before activating it.
//
// A revision name is bound to its content: pushing different content under a
// pushed name is refused (ALREADY_EXISTS); pushing the same content again
// stores it again (restoring it if it was changed in Redis) and adds the
// signature if one is given.
#ifndef TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_STORE_H_
#define TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/base/ed25519.h"
#include "server/policy/loader.h"
#include "server/provider/revision_signature.h"
#include "server/redis/client.h"
#include "server/redis/url.h"

namespace toolgate {

inline constexpr char kPolicyKeyPrefix[] = "toolgate:policy:";

struct StoredRevision {
  std::string revision;
  int64_t pushed_at_ms = 0;
  bool active = false;
  bool has_digest = false;  // Pushed by a toolgate that records digests.
  std::string signed_by;    // The signer's key fingerprint; empty: unsigned.
};

// A short-lived synchronous connection for policy operations (CLI and the
// server's policy follower; never on the decision path). Connecting and each
// command must be done within `timeout`.
class RedisPolicyStore {
 public:
  static absl::StatusOr<std::unique_ptr<RedisPolicyStore>> Connect(
      const RedisUrl& url, absl::Duration timeout = absl::Seconds(2));
  ~RedisPolicyStore();

  // Stores a revision's sources with their digest, signed with `signing_key`
  // when given; returns the revision. INVALID_ARGUMENT (with every error)
  // when the policy does not load; ALREADY_EXISTS when the revision was
  // pushed with different content. Atomic: of two pushes of different
  // content under one name, exactly one wins.
  absl::StatusOr<std::string> Push(const std::vector<PolicySource>& sources,
                                   const Ed25519PrivateKey* signing_key = nullptr);
  // Makes `revision` active (it must have been pushed) and announces it.
  absl::Status Activate(const std::string& revision);
  // Re-activates the previously active revision. Returns it.
  absl::StatusOr<std::string> Rollback();
  // The active revision; NOT_FOUND when none was activated yet.
  absl::StatusOr<std::string> ActiveRevision();
  // The sources of a pushed revision.
  absl::StatusOr<std::vector<PolicySource>> Sources(const std::string& revision);
  // What was recorded beside a revision's sources; nullopt when nothing was
  // (pushed by an older toolgate, or written to Redis directly).
  absl::StatusOr<std::optional<RevisionMetadata>> Metadata(const std::string& revision);
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
