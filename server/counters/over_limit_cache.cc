#include "server/counters/over_limit_cache.h"

#include <algorithm>

namespace toolgate {
namespace {
constexpr size_t kSweepEvery = 64;
}  // namespace

std::optional<AcquireResult> OverLimitCache::Refusal(const std::vector<LimitCheck>& checks) {
  if (count_.load(std::memory_order_relaxed) == 0) return std::nullopt;
  const int64_t now = clock_->NowMillis();
  AcquireResult result;
  bool refused = false;
  bool due = false;
  absl::MutexLock lock(&mu_);
  result.outcomes.resize(checks.size());
  for (size_t i = 0; i < checks.size(); ++i) {
    LimitOutcome& o = result.outcomes[i];
    auto it = entries_.find(checks[i].key);
    if (it != entries_.end() && it->second.full_until > now && it->second.Refuses(checks[i])) {
      if (now >= it->second.recheck_at) {
        due = true;  // Redis is to be asked (unless another entry refuses).
        o.has_room = true;
        o.known = false;
        continue;
      }
      refused = true;
      o.has_room = false;
      o.remaining = it->second.remaining;
      o.retry_after_ms = it->second.full_until - now;
      o.reset_after_ms = o.retry_after_ms;
    } else {
      o.has_room = true;
      o.known = false;  // Not consulted: Redis was not asked.
    }
  }
  if (!refused) {
    if (due) {
      // This call is the re-check: the calls until its answer (and for
      // recheck_ms) are still refused.
      for (const LimitCheck& c : checks) {
        auto it = entries_.find(c.key);
        if (it != entries_.end() && it->second.Refuses(c) && now >= it->second.recheck_at) {
          it->second.recheck_at = now + recheck_ms_;
        }
      }
    }
    return std::nullopt;
  }
  result.admitted = false;
  return result;
}

void OverLimitCache::Remember(const std::vector<LimitCheck>& checks, const AcquireResult& result,
                              int64_t asked_at) {
  // An admitted call has room on every limit: there is nothing to forget
  // when nothing is held (only this thread adds entries).
  if (result.admitted && count_.load(std::memory_order_relaxed) == 0) return;
  const int64_t now = clock_->NowMillis();
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < checks.size() && i < result.outcomes.size(); ++i) {
    const LimitOutcome& o = result.outcomes[i];
    const LimitCheck& c = checks[i];
    if (!o.known) continue;
    if (o.has_room) {
      // Forgotten, if it was learned for this definition (another
      // definition's refusal is not Redis's answer to this one).
      auto it = entries_.find(c.key);
      if (it != entries_.end() && it->second.Matches(c)) entries_.erase(it);
    } else if (o.retry_after_ms > 0 && asked_at + o.retry_after_ms > now) {
      entries_[c.key] = Entry{c.algorithm,
                              c.window_ms,
                              c.max,
                              c.burst,
                              c.cost,
                              o.remaining,
                              /*full_until=*/asked_at + o.retry_after_ms,
                              /*recheck_at=*/now + recheck_ms_};
    }
  }
  MaybeSweep(now);
  count_.store(entries_.size(), std::memory_order_relaxed);
}

void OverLimitCache::Forget(const std::vector<LimitCheck>& checks) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  absl::MutexLock lock(&mu_);
  for (const LimitCheck& c : checks) entries_.erase(c.key);
  count_.store(entries_.size(), std::memory_order_relaxed);
}

void OverLimitCache::MaybeSweep(int64_t now) {
  if (++ops_since_sweep_ < std::max(kSweepEvery, entries_.size())) return;
  ops_since_sweep_ = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.full_until <= now) {
      entries_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t OverLimitCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace toolgate
