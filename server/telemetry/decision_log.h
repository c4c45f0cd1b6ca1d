// The decision log: one JSON object per line for every decision, written to
// stdout, stderr or a file (--decision-log).
//
// Fields: decision_id, time (RFC 3339, UTC, milliseconds), api (how the call
// arrived: "toolgate" or "ext_authz", check_api.h; not on approval events),
// tool, server, grant, session, request_id, peer (the caller's certificate
// identity; only when there is one), decision (allow | deny | rate_limited |
// require_approval), reason, rule, revision, latency_us, and args_sha256
// (hex SHA-256 of the arguments' canonical JSON: keys sorted, no spaces);
// approval_id when the call created or redeemed an approval.
//
// reservation_id when the call took a reservation (settle: required).
//
// Reservation events are short lines: `event` ("reservation_settled" when
// a Settle settled one, "reservation_expired" when one was never settled
// and committed at its timeout), decision_id (the decision that reserved),
// time, reservation_id, outcome ("succeeded", "failed"; "expired") and cost
// (when a settlement named one).
//
// Approval events (created, approved, denied, used, expired) are lines too,
// with `event` ("approval_created", ...) first, the approval's id, binding
// and state (as `decision`), `approver` for a decision by a human, and
// decision_id: the call that created it (created) or used it (used).
// The arguments themselves (`args`) only for tools named by
// --decision-log-args (exact names or globs).
//
// Hashing (DecisionLogHashing), for logs read by people who must not learn
// grant names or confirm guesses of arguments:
//   - hash_grant (--decision-log-hash-grant): `grant` is replaced by
//     `grant_sha256` (hex SHA-256 of the grant), and a rule id of a grant
//     section ("grants.<grant>.tools.x") names the grant by that hash. A
//     plain hash only hides names from casual readers: anyone can hash a
//     guessed name and compare.
//   - key (--decision-log-hash-key-file): every hash is HMAC-SHA256 keyed
//     with it, and its field says so: `args_hmac_sha256` replaces
//     `args_sha256`, `grant_hmac_sha256` replaces `grant_sha256`. Without
//     the key, the log cannot be used to confirm a guess. (A distinct name,
//     because a consumer that recomputes SHA-256 of known arguments to find
//     their calls must not silently find nothing.) Whoever holds the key
//     computes HMAC-SHA256(key, grant) or HMAC-SHA256(key, canonical args)
//     to find a grant's or an argument's entries.
//
// Writing never blocks a check: Log() puts the entry on a queue that a
// writer thread drains (serializing and writing outside the lock). The queue
// is bounded twice: by entries (queue_capacity) and by bytes (queue_bytes,
// an entry counted as its names plus twice the serialized size of its
// arguments, roughly what it holds in memory). An entry that does not fit is
// dropped and counted (dropped()), never waited for.
//
// Lines are written with write(2) on the descriptor, unbuffered, so a
// failure is seen when it happens (a full disk, a reader that went away):
// the entries of a failed write are counted (write_errors()) and the failure
// is logged, at most once per 10 s with the count so far. Close() (or the
// destructor) writes what is queued and logs the totals.
#ifndef TOOLGATE_SERVER_TELEMETRY_DECISION_LOG_H_
#define TOOLGATE_SERVER_TELEMETRY_DECISION_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "server/telemetry/check_api.h"

namespace toolgate {

struct DecisionLogEntry {
  // Empty for a decision; for an approval event "approval_created",
  // "approval_approved", "approval_denied", "approval_used" or
  // "approval_expired" (`decision` then holds the approval's state).
  std::string event;
  std::string decision_id;
  absl::Time time;
  // How a decision arrived (left out of approval events).
  CheckApi api = CheckApi::kToolgate;
  std::string tool, server, grant, session, request_id;
  std::string peer;      // Empty without mTLS: the field is left out.
  std::string decision;  // "allow", "deny", "rate_limited", "require_approval".
  std::string reason, rule, revision;
  int64_t latency_us = 0;
  google::protobuf::Struct args;
  // The approval a decision created or redeemed, or an event is about
  // (left out when empty), and for a decided approval who decided it.
  std::string approval_id;
  std::string approver;
  // A decision's reservation, or the one a reservation event is about
  // (left out when empty); for a reservation event its outcome and cost
  // (cost < 0: none given).
  std::string reservation_id;
  std::string outcome;
  int64_t cost = -1;
};

struct DecisionLogHashing {
  bool hash_grant = false;
  std::string key;  // Empty: plain SHA-256.
};

struct DecisionLogOptions {
  // "stdout", "stderr", or a file path (appended to; created when missing).
  std::string destination;
  // Tools (exact names or globs) whose arguments are logged in full.
  std::vector<std::string> args_tools;
  size_t queue_capacity = 10'000;
  size_t queue_bytes = 64 << 20;
  DecisionLogHashing hashing;
};

// What an entry is charged against DecisionLogOptions::queue_bytes.
size_t DecisionLogEntryBytes(const DecisionLogEntry& entry);

// The JSON line of an entry (without the newline). `with_args` adds `args`.
// args_sha256 is Sha256Hex (server/base/digest.h) of CanonicalJson
// (server/base/json.h) of the arguments; `hashing` as above.
std::string DecisionLogLine(const DecisionLogEntry& entry, bool with_args,
                            const DecisionLogHashing& hashing = {});

class DecisionLog {
 public:
  // Writes lines (each with its newline). Returns false when writing failed,
  // with errno saying why.
  using Sink = std::function<bool(absl::string_view lines)>;

  // Opens the destination (errors: a file that cannot be opened).
  static absl::StatusOr<std::unique_ptr<DecisionLog>> Open(DecisionLogOptions options);
  // With a custom sink (tests).
  DecisionLog(DecisionLogOptions options, Sink sink);
  ~DecisionLog();
  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;

  // Queues the entry; never blocks on I/O. False when dropped (queue full by
  // entries or bytes, or closed).
  bool Log(DecisionLogEntry entry);

  // True when `tool`'s arguments are logged in full.
  bool LogsArgsOf(absl::string_view tool) const;

  // Writes everything queued and stops the writer. Idempotent.
  void Close();

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  // Entries lost because their write failed.
  uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }
  const std::string& destination() const { return options_.destination; }

 private:
  void Run();

  const DecisionLogOptions options_;
  Sink sink_;
  int fd_ = -1;  // Owned when opened from a path.

  absl::Mutex mu_;
  std::deque<DecisionLogEntry> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ = false;  // Close() has run (caller's thread only).

  std::atomic<uint64_t> dropped_{0}, written_{0}, write_errors_{0};
  absl::Time last_error_report_ = absl::InfinitePast();  // Writer thread only.
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_TELEMETRY_DECISION_LOG_H_
