// Where policy revisions come from. A server owns exactly one provider:
//
//   - a file or a directory of files (file_provider.cc), watched for changes
//     (policy_watcher.h) unless watching is off;
//   - Redis (redis_provider.cc): the revision made active there by
//     `toolgate policy activate`, followed by pub/sub and polling
//     (redis_policy_follower.h);
//   - the example policy compiled into the binary, when no path is given.
//
// Every provider loads a revision at start-up (Load), reports later ones to
// one listener (Watch), loads again on demand (Reload: SIGHUP) and says what
// it is (Describe). What to do with a revision or an error (activate,
// record, log) is the server's business, in one place.
#ifndef TOOLGATE_SERVER_PROVIDER_PROVIDER_H_
#define TOOLGATE_SERVER_PROVIDER_PROVIDER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/policy/policy.h"
#include "server/redis/url.h"

namespace toolgate {

struct ProviderOptions {
  // A policy file or directory; "redis://..." for the revision active in
  // Redis; empty for the embedded example policy.
  std::string path;
  // Files: watch for changes (inotify, and a check every `watch_interval`).
  bool watch = true;
  absl::Duration watch_interval = absl::Seconds(1);
  // Redis: how often the active pointer is also polled (announcements
  // arrive by pub/sub at once).
  absl::Duration redis_check_interval = absl::Seconds(1);
  // Redis: Ed25519 public key files (PEM). With any, a revision is activated
  // only when signed by one of them (revision_signature.h). Several keys
  // allow rotating the signing key.
  std::vector<std::string> verify_key_files;
  // Redis: credentials from files, applied to the URL (ParseRedisUrl).
  RedisCredentials redis_credentials;
};

class PolicyProvider {
 public:
  // A revision loaded after start-up, or why loading one failed. `trigger`
  // says what caused the load: "policy changed on disk", "SIGHUP", ...
  using Listener = std::function<void(absl::StatusOr<std::shared_ptr<const Policy>> revision,
                                      absl::string_view trigger)>;

  virtual ~PolicyProvider() = default;

  // Loads the current revision. Errors: INVALID_ARGUMENT (every problem,
  // located), NOT_FOUND (no such file; no active revision in Redis),
  // UNAVAILABLE (Redis unreachable).
  virtual absl::StatusOr<std::shared_ptr<const Policy>> Load() = 0;

  // True when the server may start before any revision loads (Redis: one
  // may be activated later; until then checks get UNAVAILABLE).
  virtual bool may_start_empty() const { return false; }

  // From now on, reports revisions and failures to `listener`, one call at a
  // time, from the provider's own thread (or Reload's caller). `current` is
  // the revision serving (may be null). An error means changes cannot be
  // watched (Reload still works); the provider keeps the listener.
  virtual absl::Status Watch(std::shared_ptr<const Policy> current, Listener listener) = 0;

  // Loads again now, whether or not anything changed, and reports the
  // result to the listener (for Redis: asks the follower to check at once).
  virtual void Reload(absl::string_view trigger) = 0;

  // Stops reporting; no listener call runs after this returns. Idempotent.
  virtual void Stop() = 0;

  // What the revisions come from, for logs: "file /etc/toolgate/policy.yaml
  // (watched: file-system events, and every 1s)".
  virtual std::string Describe() const = 0;
};

// The provider `options.path` names. Errors (INVALID_ARGUMENT): an invalid
// redis:// URL; a verify key file that is not an Ed25519 public key (naming
// the file); verify keys without a redis:// path.
absl::StatusOr<std::unique_ptr<PolicyProvider>> MakePolicyProvider(const ProviderOptions& options);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_PROVIDER_H_
