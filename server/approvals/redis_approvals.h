// Redis approval store: approvals shared by every server of a fleet, in the
// same Redis as the counters (any topology: one server, Sentinel, Cluster).
//
// Every operation is one run of redis_approvals.lua, atomic in Redis and
// timed by its clock. All keys carry one hash tag (`<prefix>{approvals}:`),
// so a Cluster keeps them in one slot (MOVED is followed).
//
// Threading: operations run on a RedisScriptRunner (server/redis/
// script_runner.h): queued (at most `max_queue`) and run in order by one
// worker thread over a synchronous connection; their callbacks run there.
// Approvals are rare next to checks, and off the path of calls that do not
// need them. Every operation has a deadline (`timeout_ms` from when it was
// queued): a connection that cannot be made, or a reply that does not come,
// fails it with UNAVAILABLE or DEADLINE_EXCEEDED; it never hangs.
//
// Events: each run publishes "<kind>:<id>" on `<prefix>{approvals}:events`;
// a subscriber thread turns each into a fleet event (after reading the
// approval). The worker also records expiries every `sweep_ms` (one server's
// sweep records each one: that server sends its local EXPIRED event).
#ifndef TOOLGATE_SERVER_APPROVALS_REDIS_APPROVALS_H_
#define TOOLGATE_SERVER_APPROVALS_REDIS_APPROVALS_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/approvals/approval_store.h"
#include "server/redis/client.h"
#include "server/redis/script_runner.h"
#include "server/redis/url.h"

namespace toolgate {

struct RedisApprovalOptions {
  RedisUrl url;
  std::string key_prefix = "toolgate:";
  ApprovalLimits limits;
  ApprovalEvents events;
  int64_t timeout_ms = 1000;
  int64_t sweep_ms = 1000;
  size_t max_queue = 1024;
};

class RedisApprovalStore final : public ApprovalStore {
 public:
  explicit RedisApprovalStore(RedisApprovalOptions options);
  ~RedisApprovalStore() override;

  void Create(NewApproval approval, Callback<CreatedApproval> done) override;
  void Redeem(std::string id, ApprovalBinding binding, std::string decision_id, bool dry_run,
              Callback<RedeemResult> done) override;
  void Release(std::string id, std::string decision_id, Callback<bool> done) override;
  void Decide(std::string id, bool approve, std::string approver, std::string note,
              Callback<v1::Approval> done) override;
  void Get(std::string id, Callback<v1::Approval> done) override;
  void List(ApprovalFilter filter, Callback<std::vector<v1::Approval>> done) override;
  absl::string_view kind() const override { return "redis"; }

  // True once the event subscription is in place (tests wait for it).
  bool subscribed() const;

 private:
  using ReplyFn = RedisScriptRunner::ReplyFn;

  // Queues a script run of `args` (operation first).
  void Submit(std::vector<std::string> args, ReplyFn done);
  // Runs one script call now (worker thread; `runner`: this store's,
  // which may not be in runner_ yet when the first sweep runs).
  absl::StatusOr<RedisReplyPtr> Run(RedisScriptRunner& runner,
                                    const std::vector<std::string>& args, int64_t deadline);
  // Worker thread, every sweep_ms: records the expiries due.
  void Sweep(RedisScriptRunner& runner);
  void Subscriber();
  // Reads an approval (worker thread), for events.
  absl::StatusOr<v1::Approval> GetNow(RedisScriptRunner& runner, const std::string& id,
                                      int64_t deadline);
  void Emit(const ApprovalEventFn& fn, v1::ApprovalEventKind kind, const v1::Approval& a) const;

  const RedisApprovalOptions options_;
  const std::string prefix_;  // key_prefix + "{approvals}:".

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool subscribed_ ABSL_GUARDED_BY(mu_) = false;

  std::unique_ptr<RedisScriptRunner> runner_;
  std::thread subscriber_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APPROVALS_REDIS_APPROVALS_H_
