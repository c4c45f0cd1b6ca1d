// The policy revisions a server holds: the active one and the last few
// loaded, any of which a request may pin with `policy_version`.
#ifndef TOOLGATE_SERVER_POLICY_REGISTRY_H_
#define TOOLGATE_SERVER_POLICY_REGISTRY_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/policy/policy.h"

namespace toolgate {

struct LoadedRevision {
  std::shared_ptr<const Policy> policy;
  absl::Time loaded_at;
};

class PolicyRegistry {
 public:
  explicit PolicyRegistry(size_t keep_revisions = 5) : keep_(keep_revisions ? keep_revisions : 1) {}

  // Makes `policy` the active revision (and keeps it loaded). A revision that
  // is already loaded becomes active again without duplication.
  void Activate(std::shared_ptr<const Policy> policy);

  // The revision `version` names, or the active one when it is empty.
  // UNAVAILABLE when nothing is loaded; NOT_FOUND for an unknown revision.
  absl::StatusOr<std::shared_ptr<const Policy>> Get(absl::string_view version) const;

  std::shared_ptr<const Policy> active() const;

  // Why no revision is active yet (e.g. the one in Redis failed to load):
  // added to the UNAVAILABLE message of Get until a revision is activated.
  // Kept to its first kMaxLoadErrorBytes.
  void SetLoadError(absl::string_view error);
  static constexpr size_t kMaxLoadErrorBytes = 1024;

  // A candidate revision evaluated beside the active one (null: none).
  void SetShadow(std::shared_ptr<const Policy> shadow);
  std::shared_ptr<const Policy> shadow() const;
  std::vector<std::string> loaded_revisions() const;  // Newest first.
  std::vector<LoadedRevision> loaded() const;          // Newest first.

 private:
  const size_t keep_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Policy> active_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Policy> shadow_ ABSL_GUARDED_BY(mu_);
  std::string load_error_ ABSL_GUARDED_BY(mu_);
  std::deque<LoadedRevision> loaded_ ABSL_GUARDED_BY(mu_);  // Newest first.
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_REGISTRY_H_
