// In-process approval store, for a single server. Expiry is read from the
// clock on every operation; a sweeper thread records expiries every
// `sweep_ms` so that EXPIRED events are sent without anyone asking.
#ifndef TOOLGATE_SERVER_APPROVALS_MEMORY_APPROVALS_H_
#define TOOLGATE_SERVER_APPROVALS_MEMORY_APPROVALS_H_

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/approvals/approval_store.h"
#include "server/base/clock.h"

namespace toolgate {

class MemoryApprovalStore final : public ApprovalStore {
 public:
  // `clock` (wall time) must outlive the store. `sweep_ms` <= 0: no sweeper
  // thread (SweepNow() records expiries).
  MemoryApprovalStore(const Clock* clock, ApprovalLimits limits, ApprovalEvents events,
                      int64_t sweep_ms = 1000);
  ~MemoryApprovalStore() override;

  void Create(NewApproval approval, Callback<CreatedApproval> done) override;
  void Redeem(std::string id, ApprovalBinding binding, std::string decision_id, bool dry_run,
              Callback<RedeemResult> done) override;
  void Release(std::string id, std::string decision_id, Callback<bool> done) override;
  void Decide(std::string id, bool approve, std::string approver, std::string note,
              Callback<v1::Approval> done) override;
  void Get(std::string id, Callback<v1::Approval> done) override;
  void List(ApprovalFilter filter, Callback<std::vector<v1::Approval>> done) override;
  absl::string_view kind() const override { return "in_process"; }

  bool ReleaseNow(const std::string& id, const std::string& decision_id);
  // Records every expiry due now (and forgets what is past retention).
  void SweepNow();
  // Records held (open and closed).
  size_t size() const;

 private:
  struct Record {
    v1::Approval approval;  // Its state as recorded (expiry applied on reading).
    std::string binding_key;
    int64_t created_ms = 0, expires_ms = 0;
    bool open() const;  // Pending or approved (as recorded).
  };
  using Event = std::pair<v1::ApprovalEventKind, v1::Approval>;

  // The approval as a reader sees it: expired once past its expiry.
  v1::Approval View(const Record& r, int64_t now) const;
  void Close(Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SweepLocked(int64_t now, std::vector<Event>* events) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(std::vector<Event>& events);
  void RunSweeper();

  const Clock* const clock_;
  const ApprovalLimits limits_;
  const ApprovalEvents events_;
  const int64_t sweep_ms_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> by_binding_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> open_by_grant_ ABSL_GUARDED_BY(mu_);
  int64_t open_ ABSL_GUARDED_BY(mu_) = 0;
  // Creation order (ms, sequence) -> id, for List and forgetting.
  std::map<std::pair<int64_t, uint64_t>, std::string> order_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_sweep_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread sweeper_;
};

// The binding as one string (for lookups of the same call).
std::string BindingKey(const ApprovalBinding& b);

// Fills a Timestamp from Unix milliseconds.
void SetMillis(int64_t ms, google::protobuf::Timestamp* t);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APPROVALS_MEMORY_APPROVALS_H_
