#include "server/policy/registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace toolgate {

void PolicyRegistry::Activate(std::shared_ptr<const Policy> policy) {
  absl::MutexLock lock(&mu_);
  for (auto it = loaded_.begin(); it != loaded_.end(); ++it) {
    if (it->policy->revision() == policy->revision()) {
      loaded_.erase(it);
      break;
    }
  }
  loaded_.push_front(LoadedRevision{policy, absl::Now()});
  while (loaded_.size() > keep_) loaded_.pop_back();
  active_ = std::move(policy);
}

absl::StatusOr<std::shared_ptr<const Policy>> PolicyRegistry::Get(absl::string_view version) const {
  absl::MutexLock lock(&mu_);
  if (active_ == nullptr) {
    return absl::UnavailableError(
        load_error_.empty() ? std::string("no valid policy is loaded yet")
                            : absl::StrCat("no valid policy is loaded yet: ", load_error_));
  }
  if (version.empty() || version == active_->revision()) return active_;
  for (const LoadedRevision& r : loaded_) {
    if (r.policy->revision() == version) return r.policy;
  }
  std::vector<std::string> names;
  for (const LoadedRevision& r : loaded_) names.push_back(r.policy->revision());
  return absl::NotFoundError(absl::StrCat("policy_version \"", version,
                                          "\" is not loaded (loaded: ", absl::StrJoin(names, ", "),
                                          ")"));
}

void PolicyRegistry::SetLoadError(absl::string_view error) {
  absl::MutexLock lock(&mu_);
  load_error_ = std::string(error.substr(0, kMaxLoadErrorBytes));
}

std::shared_ptr<const Policy> PolicyRegistry::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

void PolicyRegistry::SetShadow(std::shared_ptr<const Policy> shadow) {
  absl::MutexLock lock(&mu_);
  shadow_ = std::move(shadow);
}

std::shared_ptr<const Policy> PolicyRegistry::shadow() const {
  absl::MutexLock lock(&mu_);
  return shadow_;
}

std::vector<std::string> PolicyRegistry::loaded_revisions() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const LoadedRevision& r : loaded_) out.push_back(r.policy->revision());
  return out;
}

std::vector<LoadedRevision> PolicyRegistry::loaded() const {
  absl::MutexLock lock(&mu_);
  return std::vector<LoadedRevision>(loaded_.begin(), loaded_.end());
}

}  // namespace toolgate
