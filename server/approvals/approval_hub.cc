#include "server/approvals/approval_hub.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/base/clock.h"

namespace toolgate {
namespace {

int64_t NowMillis() { return SteadyClock::Get()->NowMillis(); }

// Ids read per poll round (each a store read).
constexpr size_t kPollsPerRound = 64;

bool Settled(const v1::Approval& a) { return a.state() != v1::APPROVAL_STATE_PENDING; }

}  // namespace

ApprovalHub::ApprovalHub(ApprovalStore* store, ApprovalHubOptions options)
    : store_(store), options_(options) {
  thread_ = std::thread([this] { Run(); });
}

ApprovalHub::~ApprovalHub() { Stop(); }

void ApprovalHub::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  absl::flat_hash_map<uint64_t, Waiter> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(waiters_);
    by_id_.clear();
  }
  for (auto& [handle, w] : left) {
    std::move(w.done)(absl::UnavailableError("toolgated is shutting down"));
  }
}

size_t ApprovalHub::waiting() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

void ApprovalHub::Resolve(uint64_t handle, absl::StatusOr<v1::Approval> result) {
  WaitDone done;
  {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(handle);
    if (it == waiters_.end()) return;  // Answered already.
    done = std::move(it->second.done);
    for (auto [b, e] = by_id_.equal_range(it->second.id); b != e; ++b) {
      if (b->second == handle) {
        by_id_.erase(b);
        break;
      }
    }
    waiters_.erase(it);
  }
  std::move(done)(std::move(result));
}

void ApprovalHub::OnEvent(v1::ApprovalEventKind kind, const v1::Approval& approval) {
  OnEvent(kind, approval, true);
}

void ApprovalHub::OnEvent(v1::ApprovalEventKind kind, const v1::Approval& approval,
                          bool to_watchers) {
  std::vector<uint64_t> ready;
  std::vector<WatchFn> watchers;
  {
    absl::MutexLock lock(&mu_);
    if (Settled(approval)) {
      for (auto [b, e] = by_id_.equal_range(approval.id()); b != e; ++b) ready.push_back(b->second);
    }
    if (to_watchers) {
      for (const auto& [h, fn] : watchers_) watchers.push_back(fn);
    }
  }
  for (uint64_t h : ready) Resolve(h, approval);
  for (const WatchFn& fn : watchers) fn(kind, approval);
}

uint64_t ApprovalHub::Wait(const std::string& id, int64_t deadline_ms, WaitDone done) {
  uint64_t handle = 0;
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("toolgated is shutting down");
    } else if (waiters_.size() >= options_.max_waiters) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat(options_.max_waiters, " calls are waiting for approvals already"));
    } else {
      // Registered before the first read: an event that comes meanwhile is
      // not missed.
      handle = ++next_handle_;
      waiters_.emplace(handle, Waiter{id, deadline_ms, std::move(done)});
      by_id_.emplace(id, handle);
    }
  }
  if (handle == 0) {
    std::move(done)(std::move(refused));
    return 0;
  }
  store_->Get(id, [this, handle](absl::StatusOr<v1::Approval> a) {
    if (!a.ok() || Settled(*a)) Resolve(handle, std::move(a));
  });
  return handle;
}

void ApprovalHub::Cancel(uint64_t handle) {
  Resolve(handle, absl::CancelledError("the call was cancelled"));
}

uint64_t ApprovalHub::Watch(WatchFn fn) {
  absl::MutexLock lock(&mu_);
  if (watchers_.size() >= options_.max_watchers) return 0;
  const uint64_t handle = ++next_handle_;
  watchers_.emplace(handle, std::move(fn));
  return handle;
}

void ApprovalHub::Unwatch(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(handle);
}

void ApprovalHub::Run() {
  const bool polls = options_.poll_ms > 0;
  int64_t next_poll = polls ? NowMillis() + options_.poll_ms : INT64_MAX;
  std::string cursor;  // Polls go round the ids waited for, a few at a time.
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    int64_t wake = std::min<int64_t>(next_poll, NowMillis() + 1000);
    for (const auto& [h, w] : waiters_) wake = std::min(wake, w.deadline);
    const int64_t now = NowMillis();
    if (wake > now) {
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(wake - now));
      continue;
    }
    // Past their deadline: answered with the approval as it is now. Due a
    // poll: read again (an event may have been missed).
    std::vector<std::pair<uint64_t, std::string>> due;
    std::vector<std::string> poll;
    for (const auto& [h, w] : waiters_) {
      if (w.deadline <= now) due.emplace_back(h, w.id);
    }
    if (now >= next_poll) {
      next_poll = now + options_.poll_ms;
      auto it = by_id_.upper_bound(cursor);
      for (size_t n = 0; n < kPollsPerRound && !by_id_.empty(); ++n) {
        if (it == by_id_.end()) it = by_id_.begin();
        if (!poll.empty() && it->first == poll.front()) break;  // Round done.
        poll.push_back(it->first);
        cursor = it->first;
        it = by_id_.upper_bound(it->first);
      }
    }
    // Due waiters are pushed past their deadline so that they are not taken
    // twice while their read is on its way.
    for (const auto& [h, id] : due) waiters_[h].deadline = INT64_MAX;
    mu_.Unlock();
    for (const auto& [h, id] : due) {
      store_->Get(id, [this, h = h](absl::StatusOr<v1::Approval> a) { Resolve(h, std::move(a)); });
    }
    for (const std::string& id : poll) {
      store_->Get(id, [this](absl::StatusOr<v1::Approval> a) {
        if (a.ok() && Settled(*a)) OnEvent(v1::APPROVAL_EVENT_UNSPECIFIED, *a, /*watchers=*/false);
      });
    }
    mu_.Lock();
  }
}

}  // namespace toolgate
