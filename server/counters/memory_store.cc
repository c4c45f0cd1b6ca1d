#include "server/counters/memory_store.h"

#include <algorithm>
#include <optional>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace toolgate {

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

}  // namespace

MemoryCounterStore::MemoryCounterStore(const Clock* clock) : clock_(clock) {}

// A counter's state belongs to its definition: a revision that changes the
// window or the algorithm starts a separate counter instead of resetting the
// one other (pinned) revisions still use.
std::string MemoryCounterStore::StorageKey(const LimitCheck& check) {
  return absl::StrCat(check.key, "|", static_cast<int>(check.algorithm), ":", check.window_ms);
}

size_t MemoryCounterStore::ShardOf(const std::string& key) { return absl::HashOf(key) % kShards; }

MemoryCounterStore::LockedShards::LockedShards(std::array<Shard, kShards>& shards,
                                               const std::vector<LimitCheck>& checks)
    : shards_(shards), shard_of_(checks.size()), key_(checks.size()) {
  for (size_t i = 0; i < checks.size(); ++i) {
    key_[i] = StorageKey(checks[i]);
    shard_of_[i] = ShardOf(key_[i]);
    used_[shard_of_[i]] = true;
  }
  ForEach([](Shard& shard) { shard.mu.Lock(); });
}

MemoryCounterStore::LockedShards::~LockedShards() {
  ForEach([](Shard& shard) { shard.mu.Unlock(); });
}

// Brings `c` up to `now` (drops expired log entries, rolls the fixed window,
// refills the bucket) and reports its state as if `pending` more units were
// taken.
LimitOutcome MemoryCounterStore::Evaluate(Counter& c, const LimitCheck& check, int64_t now) {
  const int64_t window = check.window_ms;
  if (c.algorithm != check.algorithm || c.window_ms != window) {
    // A new counter, or its definition changed with a new policy: start fresh.
    c = Counter();
    c.algorithm = check.algorithm;
    c.window_ms = window;
    c.units = check.burst * window;
    c.refilled_at = now;
    c.window_index = now / window;
  }
  LimitOutcome out;
  const int64_t cost = check.cost;
  switch (check.algorithm) {
    case Algorithm::kSlidingWindow: {
      while (!c.log.empty() && c.log.front().at <= now - window) c.log.pop_front();
      const int64_t count = c.LogSum();
      out.has_room = cost == 0 || count + cost <= check.max;
      out.remaining = std::max<int64_t>(0, check.max - count);
      out.reset_after_ms = c.log.empty() ? 0 : c.log.back().at + window - now;
      if (!out.has_room) {
        // The call fits once the oldest entries holding at least
        // count + cost - max units have left the window: the first entry
        // whose running total reaches that.
        const int64_t target = c.log.front().total - c.log.front().cost + count + cost - check.max;
        auto it = std::lower_bound(c.log.begin(), c.log.end(), target,
                                   [](const Entry& e, int64_t t) { return e.total < t; });
        out.retry_after_ms = it == c.log.end() ? window : it->at + window - now;
      }
      break;
    }
    case Algorithm::kFixedWindow: {
      const int64_t index = now / window;
      if (index != c.window_index) {
        c.window_index = index;
        c.count = 0;
      }
      const int64_t window_end = (index + 1) * window;
      out.has_room = cost == 0 || c.count + cost <= check.max;
      out.remaining = std::max<int64_t>(0, check.max - c.count);
      out.reset_after_ms = c.count > 0 ? window_end - now : 0;
      if (!out.has_room) out.retry_after_ms = window_end - now;
      break;
    }
    case Algorithm::kTokenBucket: {
      const int64_t capacity = check.burst * window;
      if (now > c.refilled_at) {
        // (now - refilled_at) * max cannot overflow before the bucket is full:
        // clamp the elapsed time first.
        const int64_t elapsed =
            std::min<int64_t>(now - c.refilled_at, CeilDiv(capacity, check.max));
        c.units = std::min(capacity, c.units + elapsed * check.max);
        c.refilled_at = now;
      }
      c.units = std::min(c.units, capacity);
      out.has_room = c.units >= cost * window;
      out.remaining = c.units / window;
      out.reset_after_ms = CeilDiv(capacity - c.units, check.max);
      if (!out.has_room) out.retry_after_ms = CeilDiv(cost * window - c.units, check.max);
      break;
    }
  }
  return out;
}

// Takes the call's cost from `c` (already brought up to `now` by Evaluate).
void MemoryCounterStore::Consume(Counter& c, const LimitCheck& check, int64_t now) {
  const int64_t cost = check.cost;
  if (cost == 0) return;
  switch (check.algorithm) {
    case Algorithm::kSlidingWindow:
      if (!c.log.empty() && c.log.back().at == now) {
        c.log.back().cost += cost;
        c.log.back().total += cost;
      } else {
        c.log.push_back(Entry{now, cost, (c.log.empty() ? 0 : c.log.back().total) + cost});
      }
      c.expires_at = now + check.window_ms;
      break;
    case Algorithm::kFixedWindow:
      c.count += cost;
      c.expires_at = (c.window_index + 1) * check.window_ms;
      break;
    case Algorithm::kTokenBucket:
      c.units -= cost * check.window_ms;
      c.expires_at = now + CeilDiv(check.burst * check.window_ms - c.units, check.max);
      break;
  }
}

// Gives back up to check.cost units that the admission at `at` took from `c`
// (brought up to `now` by Evaluate), as far as they still count.
void MemoryCounterStore::GiveBack(Counter& c, const LimitCheck& check, int64_t at, int64_t now) {
  const int64_t units = check.cost;
  if (units <= 0) return;
  switch (check.algorithm) {
    case Algorithm::kSlidingWindow: {
      // Expired entries are gone (Evaluate); a live one of that time holds
      // the admission's units (merged with others of the same ms).
      auto it = std::lower_bound(c.log.begin(), c.log.end(), at,
                                 [](const Entry& e, int64_t t) { return e.at < t; });
      if (it == c.log.end() || it->at != at) return;
      const int64_t g = std::min(units, it->cost);
      it->cost -= g;
      // The running totals from it on: entries after it are the admissions
      // since, few for a settlement that follows its call.
      for (auto j = it; j != c.log.end(); ++j) j->total -= g;
      break;
    }
    case Algorithm::kFixedWindow:
      if (at / check.window_ms == c.window_index) c.count -= std::min(units, c.count);
      break;
    case Algorithm::kTokenBucket:
      c.units = std::min(check.burst * check.window_ms, c.units + units * check.window_ms);
      c.expires_at = now + CeilDiv(check.burst * check.window_ms - c.units, check.max);
      break;
  }
}

// The state a counter shows after the call's cost is taken.
static void ApplyPending(LimitOutcome& out, const LimitCheck& check, int64_t now,
                         int64_t fixed_window_end) {
  if (check.cost == 0) return;  // Nothing taken: the counter's own state.
  out.remaining = std::max<int64_t>(0, out.remaining - check.cost);
  switch (check.algorithm) {
    case Algorithm::kSlidingWindow:
      out.reset_after_ms = check.window_ms;
      break;
    case Algorithm::kFixedWindow:
      out.reset_after_ms = fixed_window_end - now;
      break;
    case Algorithm::kTokenBucket:
      out.reset_after_ms += CeilDiv(check.cost * check.window_ms, check.max);
      break;
  }
}

void MemoryCounterStore::SweepLocked(Shard& shard, int64_t now) {
  shard.ops_since_sweep = 0;
  for (auto it = shard.counters.begin(); it != shard.counters.end();) {
    if (it->second.expires_at <= now) {
      shard.counters.erase(it++);
    } else {
      ++it;
    }
  }
}

AcquireResult MemoryCounterStore::AcquireNow(const std::vector<LimitCheck>& checks, bool dry_run) {
  AcquireResult result;
  result.outcomes.resize(checks.size());
  LockedShards locked(shards_, checks);
  const int64_t now = clock_->NowMillis();

  // Phase 1: evaluate every limit on up-to-date state. Counters that do not
  // exist yet are evaluated on a scratch copy and only stored if consumed.
  std::vector<std::optional<Counter>> scratch(checks.size());
  std::vector<Counter*> state(checks.size());
  result.admitted = true;
  for (size_t i = 0; i < checks.size(); ++i) {
    Shard& shard = locked.shard_of(i);
    auto it = shard.counters.find(locked.key(i));
    state[i] = it != shard.counters.end() ? &it->second : &scratch[i].emplace();
    result.outcomes[i] = Evaluate(*state[i], checks[i], now);
    result.admitted = result.admitted && result.outcomes[i].has_room;
  }
  // Phase 2: all or nothing.
  if (result.admitted) {
    for (size_t i = 0; i < checks.size(); ++i) {
      ApplyPending(result.outcomes[i], checks[i], now,
                   (now / checks[i].window_ms + 1) * checks[i].window_ms);
      if (dry_run) continue;
      result.outcomes[i].consumed_at_ms = now;
      Counter* c = state[i];
      if (scratch[i].has_value()) {
        c = &locked.shard_of(i)
                 .counters.emplace(locked.key(i), std::move(*scratch[i]))
                 .first->second;
      }
      Consume(*c, checks[i], now);
    }
  }
  locked.ForEach([now](Shard& shard) {
    if (++shard.ops_since_sweep >= std::max<size_t>(64, shard.counters.size())) {
      SweepLocked(shard, now);
    }
  });
  return result;
}

void MemoryCounterStore::Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) {
  std::move(done)(AcquireNow(checks, dry_run));
}

void MemoryCounterStore::RefundNow(const std::vector<LimitCheck>& checks, int64_t consumed_at_ms) {
  LockedShards locked(shards_, checks);
  const int64_t now = clock_->NowMillis();
  for (size_t i = 0; i < checks.size(); ++i) {
    Shard& shard = locked.shard_of(i);
    auto it = shard.counters.find(locked.key(i));
    if (it == shard.counters.end()) continue;  // Gone: nothing of it counts any more.
    Counter& c = it->second;
    if (c.algorithm != checks[i].algorithm || c.window_ms != checks[i].window_ms) continue;
    Evaluate(c, checks[i], now);  // Up to now: expired units are not given back.
    GiveBack(c, checks[i], consumed_at_ms, now);
  }
}

void MemoryCounterStore::Refund(std::vector<LimitCheck> checks, int64_t consumed_at_ms,
                                RefundCallback done) {
  RefundNow(checks, consumed_at_ms);
  std::move(done)(absl::OkStatus());
}

size_t MemoryCounterStore::KeyCount() const {
  size_t n = 0;
  for (const Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    n += shard.counters.size();
  }
  return n;
}

CounterStoreStatus MemoryCounterStore::Status() const {
  CounterStoreStatus s;
  s.kind = "in_process";
  s.connected = true;
  s.keys = KeyCount();
  return s;
}

}  // namespace toolgate
