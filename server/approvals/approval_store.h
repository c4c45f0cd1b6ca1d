// Where approvals live: in process (memory_approvals.h) for one server, or
// in Redis (redis_approvals.h) shared by a fleet, beside the counters.
//
// An approval is bound to one exact call (ApprovalBinding) and moves
// through states (toolgate/v1/approval.proto):
//
//   pending --approve--> approved --redeem--> used
//      |                    |   ^---release---'   (the call was then refused)
//      '--deny--> denied    '--(expiry)--> expired   (pending, too)
//
// Every store gives the same answers for the same operations; the tests
// run one suite over both (approval_store_test.cc).
//
// Bounds (ApprovalLimits): at most `max_open` approvals open (pending or
// approved, not expired) at once, and `max_open_per_grant` per grant, so that
// one grant cannot crowd out the others; a closed approval (decided, used,
// expired) is kept for `retention_ms` after its expiry, so that `show` and a
// late redemption can say what became of it, and then forgotten; at most
// 10 x max_open records are held in all (the oldest closed ones go first).
// A record holds the call's arguments (at most --max-args-bytes).
#ifndef TOOLGATE_SERVER_APPROVALS_APPROVAL_STORE_H_
#define TOOLGATE_SERVER_APPROVALS_APPROVAL_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "toolgate/v1/approval.pb.h"

namespace toolgate {

// The call an approval is bound to.
struct ApprovalBinding {
  std::string grant, tool, server, session;
  std::string args_digest;  // Sha256Hex of the arguments' CanonicalJson.
};

// What Create records besides the binding.
struct NewApproval {
  ApprovalBinding binding;
  std::string args_json;  // Canonical JSON of the arguments.
  std::string rule, reason, policy_version, request_id;
  int64_t ttl_ms = 0;  // > 0.
};

struct ApprovalLimits {
  int64_t max_open = 1000;
  int64_t max_open_per_grant = 100;
  int64_t retention_ms = 3'600'000;
  // Records held at most, open and closed: past it, the oldest closed ones
  // are forgotten before their retention ends.
  int64_t max_records() const { return 10 * max_open; }
};

// Bounds of what an approver writes (DecideApproval).
inline constexpr size_t kMaxApproverBytes = 256;
inline constexpr size_t kMaxApprovalNoteBytes = 1024;
// ListApprovals: default and largest `limit`; at most kListScan records
// (newest first) are looked at per call.
inline constexpr int kDefaultListLimit = 100;
inline constexpr int kMaxListLimit = 1000;
inline constexpr int kListScan = 5000;

struct CreatedApproval {
  v1::Approval approval;
  bool created = false;  // False: the same call's open approval, returned again.
};

enum class RedeemOutcome {
  kRedeemed,  // Approved and bound to this call: now used (unless a dry run).
  kNotFound,
  kMismatch,  // Bound to another call: `field` says which binding differs.
  kPending,
  kDenied,
  kExpired,
  kUsed,
};

struct RedeemResult {
  RedeemOutcome outcome = RedeemOutcome::kNotFound;
  std::string field;  // kMismatch: "grant", "tool", "server", "session" or "arguments".
  v1::Approval approval;  // Unless kNotFound; for kMismatch, only its id and state.
};

struct ApprovalFilter {
  v1::ApprovalState state = v1::APPROVAL_STATE_UNSPECIFIED;
  std::string grant, tool;
  int limit = kDefaultListLimit;
};

// An approval event: what happened and the approval as it is after it.
using ApprovalEventFn = std::function<void(v1::ApprovalEventKind, const v1::Approval&)>;

struct ApprovalEvents {
  // Events this server caused (its creations, decisions, redemptions,
  // expiries it recorded): for the decision log and metrics. Each event of
  // the fleet reaches exactly one server's `local`.
  ApprovalEventFn local;
  // Every event of the fleet (in process: the same as `local`), as soon as
  // this server learns of it: for WaitApproval and WatchApprovals. Best
  // effort across a fleet (a lost Redis subscription loses events): waiters
  // also read the approval again now and then.
  ApprovalEventFn fleet;
};

class ApprovalStore {
 public:
  template <typename T>
  using Callback = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

  virtual ~ApprovalStore() = default;

  // Records a pending approval for the call, or returns the open one
  // (pending, or approved and not used) already bound to the same call.
  // RESOURCE_EXHAUSTED when max_open or max_open_per_grant is reached.
  virtual void Create(NewApproval approval, Callback<CreatedApproval> done) = 0;

  // Uses the approval `id` for the call `binding`: marks it used by
  // `decision_id` when it is approved, bound to exactly this call and not
  // expired; otherwise says why not. With `dry_run`, only checks.
  virtual void Redeem(std::string id, ApprovalBinding binding, std::string decision_id,
                      bool dry_run, Callback<RedeemResult> done) = 0;

  // Gives back a redemption whose call was refused after all (rate limited,
  // counter store failed closed): `id` is approved again (true), if it is
  // still used by `decision_id` (else false). Answered once recorded, so
  // that the refused call's answer leaves after it: a retry right away,
  // on any server, finds the approval usable.
  virtual void Release(std::string id, std::string decision_id, Callback<bool> done) = 0;

  // Approves or denies a pending approval. NOT_FOUND; FAILED_PRECONDITION
  // when it is not pending (the message says what it is).
  virtual void Decide(std::string id, bool approve, std::string approver, std::string note,
                      Callback<v1::Approval> done) = 0;

  // NOT_FOUND when unknown (or forgotten).
  virtual void Get(std::string id, Callback<v1::Approval> done) = 0;

  // Newest first (by creation), at most filter.limit.
  virtual void List(ApprovalFilter filter, Callback<std::vector<v1::Approval>> done) = 0;

  // "in_process" or "redis".
  virtual absl::string_view kind() const = 0;
};

// "apr_" and 32 random hex digits.
std::string NewApprovalId();

// True for a string of that form.
bool IsApprovalId(absl::string_view id);

// "pending", "approved", ... (the enum's name, in lower case, without its prefix).
absl::string_view ApprovalStateName(v1::ApprovalState state);
// "created", "approved", ...
absl::string_view ApprovalEventName(v1::ApprovalEventKind kind);

// The reason a call gets when its approval cannot be used (DENY).
std::string DescribeRedeemFailure(const RedeemResult& result, absl::string_view id);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APPROVALS_APPROVAL_STORE_H_
