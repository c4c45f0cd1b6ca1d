#include "server/counters/over_limit_cache.h"

#include <algorithm>

namespace toolgate {
namespace {
constexpr size_t kSweepEvery = 64;
}  // namespace

std::optional<AcquireResult> OverLimitCache::Refusal(const std::vector<LimitCheck>& checks) {
  const int64_t now = clock_->NowMillis();
  AcquireResult result;
  bool refused = false;
  absl::MutexLock lock(&mu_);
  if (full_until_.empty()) return std::nullopt;
  result.outcomes.resize(checks.size());
  for (size_t i = 0; i < checks.size(); ++i) {
    LimitOutcome& o = result.outcomes[i];
    auto it = full_until_.find(checks[i].key);
    if (it != full_until_.end() && it->second > now) {
      refused = true;
      o.has_room = false;
      o.remaining = 0;
      o.retry_after_ms = it->second - now;
      o.reset_after_ms = o.retry_after_ms;
    } else {
      o.has_room = true;
      o.known = false;  // Not consulted: Redis was not asked.
    }
  }
  if (!refused) return std::nullopt;
  result.admitted = false;
  return result;
}

void OverLimitCache::Remember(const std::vector<LimitCheck>& checks, const AcquireResult& result,
                              int64_t asked_at) {
  if (result.admitted) return;
  const int64_t now = clock_->NowMillis();
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < checks.size() && i < result.outcomes.size(); ++i) {
    const LimitOutcome& o = result.outcomes[i];
    if (!o.has_room && o.retry_after_ms > 0 && asked_at + o.retry_after_ms > now) {
      full_until_[checks[i].key] = asked_at + o.retry_after_ms;
    }
  }
  MaybeSweep(now);
}

void OverLimitCache::MaybeSweep(int64_t now) {
  if (++ops_since_sweep_ < std::max(kSweepEvery, full_until_.size())) return;
  ops_since_sweep_ = 0;
  for (auto it = full_until_.begin(); it != full_until_.end();) {
    if (it->second <= now) {
      full_until_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t OverLimitCache::size() const {
  absl::MutexLock lock(&mu_);
  return full_until_.size();
}

}  // namespace toolgate
