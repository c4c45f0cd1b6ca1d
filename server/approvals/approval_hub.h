// Waiting for approvals, and watching them: what WaitApproval and
// WatchApprovals serve from, fed by the store's fleet events.
//
// A waiter is answered exactly once: as soon as its approval is no longer
// pending (a fleet event, or a read every `poll_ms` (0: never; for Redis,
// whose subscription may miss events), up to 64 approvals a round), or at
// its deadline with the approval as it is then, or with the store's error. At most `max_waiters` wait at once
// (RESOURCE_EXHAUSTED past it), and at most `max_watchers` watch.
#ifndef TOOLGATE_SERVER_APPROVALS_APPROVAL_HUB_H_
#define TOOLGATE_SERVER_APPROVALS_APPROVAL_HUB_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "server/approvals/approval_store.h"

namespace toolgate {

struct ApprovalHubOptions {
  size_t max_waiters = 10'000;
  size_t max_watchers = 64;
  int64_t poll_ms = 0;
};

class ApprovalHub {
 public:
  using WaitDone = absl::AnyInvocable<void(absl::StatusOr<v1::Approval>) &&>;
  using WatchFn = std::function<void(v1::ApprovalEventKind, const v1::Approval&)>;

  // `store` must outlive the hub; its fleet events must go to OnEvent.
  ApprovalHub(ApprovalStore* store, ApprovalHubOptions options = {});
  ~ApprovalHub();  // Stop()s.

  // Answers every waiter still waiting (UNAVAILABLE) and stops reading the
  // store; later waits are refused. The hub may still receive events (and
  // store callbacks) until it is destroyed. Idempotent.
  void Stop();

  // A fleet event (ApprovalEvents::fleet).
  void OnEvent(v1::ApprovalEventKind kind, const v1::Approval& approval);

  // Waits for `id` until `deadline_ms` (steady clock). Returns a handle for
  // Cancel, or 0 when `done` was already called (an error, too many waiters).
  uint64_t Wait(const std::string& id, int64_t deadline_ms, WaitDone done);
  // Answers the waiter CANCELLED, if it is still waiting.
  void Cancel(uint64_t handle);

  // Calls `fn` for every event from now on, until Unwatch (0: too many
  // watchers). `fn` runs on the thread that delivers events: it must not
  // block.
  uint64_t Watch(WatchFn fn);
  void Unwatch(uint64_t handle);

  size_t waiting() const;

 private:
  struct Waiter {
    std::string id;
    int64_t deadline = 0;
    WaitDone done;
  };
  void OnEvent(v1::ApprovalEventKind kind, const v1::Approval& approval, bool to_watchers);
  // Removes the waiter and answers it (outside the lock).
  void Resolve(uint64_t handle, absl::StatusOr<v1::Approval> result);
  void Run();

  ApprovalStore* const store_;
  const ApprovalHubOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::multimap<std::string, uint64_t> by_id_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, WatchFn> watchers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APPROVALS_APPROVAL_HUB_H_
