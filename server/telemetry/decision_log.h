// The decision log: one JSON object per line for every decision, written to
// stdout, stderr or a file (--decision-log).
//
// Fields: decision_id, time (RFC 3339, UTC, milliseconds), tool, server,
// grant, session, request_id, decision (allow | deny | rate_limited |
// require_approval), reason, rule, revision, latency_us, and args_sha256
// (hex SHA-256 of the arguments' canonical JSON: keys sorted, no spaces).
// The arguments themselves (`args`) only for tools named by
// --decision-log-args (exact names or globs).
//
// Writing never blocks a check: Log() puts the entry on a bounded queue that
// a writer thread drains (serializing and writing outside the lock). When
// the queue is full the entry is dropped and counted (dropped()). Close()
// (or the destructor) writes what is queued, flushes, and logs the totals.
#ifndef TOOLGATE_SERVER_TELEMETRY_DECISION_LOG_H_
#define TOOLGATE_SERVER_TELEMETRY_DECISION_LOG_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
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

namespace toolgate {

struct DecisionLogEntry {
  std::string decision_id;
  absl::Time time;
  std::string tool, server, grant, session, request_id;
  std::string decision;  // "allow", "deny", "rate_limited", "require_approval".
  std::string reason, rule, revision;
  int64_t latency_us = 0;
  google::protobuf::Struct args;
};

struct DecisionLogOptions {
  // "stdout", "stderr", or a file path (appended to; created when missing).
  std::string destination;
  // Tools (exact names or globs) whose arguments are logged in full.
  std::vector<std::string> args_tools;
  size_t queue_capacity = 10'000;
};

// The JSON line of an entry (without the newline). `with_args` adds `args`.
// args_sha256 is Sha256Hex (server/base/digest.h) of CanonicalJson
// (server/base/json.h) of the arguments.
std::string DecisionLogLine(const DecisionLogEntry& entry, bool with_args);

class DecisionLog {
 public:
  // Writes one line (with its newline). Returns false when writing failed.
  using Sink = std::function<bool(absl::string_view line)>;

  // Opens the destination (errors: a file that cannot be opened).
  static absl::StatusOr<std::unique_ptr<DecisionLog>> Open(DecisionLogOptions options);
  // With a custom sink (tests). `flush` runs after each batch; may be empty.
  DecisionLog(DecisionLogOptions options, Sink sink, std::function<void()> flush = {});
  ~DecisionLog();
  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;

  // Queues the entry; never blocks on I/O. False when dropped (queue full or
  // closed).
  bool Log(DecisionLogEntry entry);

  // True when `tool`'s arguments are logged in full.
  bool LogsArgsOf(absl::string_view tool) const;

  // Writes everything queued, flushes and stops the writer. Idempotent.
  void Close();

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  const std::string& destination() const { return options_.destination; }

 private:
  void Run();

  const DecisionLogOptions options_;
  Sink sink_;
  std::function<void()> flush_;
  std::FILE* file_ = nullptr;  // Owned when opened from a path.

  absl::Mutex mu_;
  std::deque<DecisionLogEntry> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ = false;  // Close() has run (caller's thread only).

  std::atomic<uint64_t> dropped_{0}, written_{0}, write_errors_{0};
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_TELEMETRY_DECISION_LOG_H_
