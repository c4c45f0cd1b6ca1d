#include "server/telemetry/decision_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/base/digest.h"
#include "server/base/glob.h"
#include "server/base/json.h"
#include "server/base/log.h"

namespace toolgate {

namespace {

// `"key":"value",`
void AppendField(const char* key, absl::string_view value, std::string* out) {
  out->push_back('"');
  out->append(key);
  out->append("\":");
  AppendJsonString(value, out);
  out->push_back(',');
}

}  // namespace

std::string DecisionLogLine(const DecisionLogEntry& e, bool with_args,
                            const DecisionLogHashing& hashing) {
  const std::string args = CanonicalJson(e.args);
  const bool keyed = !hashing.key.empty();
  auto hash = [&](absl::string_view data) {
    return keyed ? HmacSha256Hex(hashing.key, data) : Sha256Hex(data);
  };
  std::string out;
  if (absl::StartsWith(e.event, "reservation_")) {
    out.push_back('{');
    AppendField("event", e.event, &out);
    AppendField("decision_id", e.decision_id, &out);
    AppendField("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", e.time, absl::UTCTimeZone()),
                &out);
    AppendField("reservation_id", e.reservation_id, &out);
    AppendField("outcome", e.outcome, &out);
    if (e.cost >= 0) absl::StrAppend(&out, "\"cost\":", e.cost, ",");
    out.back() = '}';
    return out;
  }
  out.reserve(320 + (with_args ? args.size() : 0));
  out.push_back('{');
  if (!e.event.empty()) AppendField("event", e.event, &out);
  AppendField("decision_id", e.decision_id, &out);
  AppendField("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", e.time, absl::UTCTimeZone()),
              &out);
  if (e.event.empty()) AppendField("api", CheckApiLabel(e.api), &out);
  AppendField("tool", e.tool, &out);
  AppendField("server", e.server, &out);
  std::string grant_hash;
  if (hashing.hash_grant) {
    grant_hash = hash(e.grant);
    AppendField(keyed ? "grant_hmac_sha256" : "grant_sha256", grant_hash, &out);
  } else {
    AppendField("grant", e.grant, &out);
  }
  AppendField("session", e.session, &out);
  AppendField("request_id", e.request_id, &out);
  if (!e.peer.empty()) AppendField("peer", e.peer, &out);
  AppendField("decision", e.decision, &out);
  AppendField("reason", e.reason, &out);
  // A grant section's rule id holds the grant's name: the hash replaces it.
  if (const std::string prefix = absl::StrCat("grants.", e.grant, ".");
      hashing.hash_grant && absl::StartsWith(e.rule, prefix)) {
    AppendField("rule", absl::StrCat("grants.", grant_hash, ".", e.rule.substr(prefix.size())),
                &out);
  } else {
    AppendField("rule", e.rule, &out);
  }
  AppendField("revision", e.revision, &out);
  if (!e.approval_id.empty()) AppendField("approval_id", e.approval_id, &out);
  if (!e.approver.empty()) AppendField("approver", e.approver, &out);
  if (!e.reservation_id.empty()) AppendField("reservation_id", e.reservation_id, &out);
  absl::StrAppend(&out, "\"latency_us\":", e.latency_us, ",");
  AppendField(keyed ? "args_hmac_sha256" : "args_sha256", hash(args), &out);
  if (with_args) {
    absl::StrAppend(&out, "\"args\":", args, ",");
  }
  out.back() = '}';
  return out;
}

size_t DecisionLogEntryBytes(const DecisionLogEntry& e) {
  return sizeof(DecisionLogEntry) + e.decision_id.size() + e.tool.size() + e.server.size() +
         e.grant.size() + e.session.size() + e.request_id.size() + e.peer.size() + e.reason.size() +
         e.rule.size() + e.revision.size() + e.event.size() + e.approval_id.size() +
         e.approver.size() + 2 * e.args.ByteSizeLong();
}

absl::StatusOr<std::unique_ptr<DecisionLog>> DecisionLog::Open(DecisionLogOptions options) {
  int fd = -1;
  bool owned = false;
  if (options.destination == "stdout") {
    fd = STDOUT_FILENO;
  } else if (options.destination == "stderr") {
    fd = STDERR_FILENO;
  } else {
    fd = ::open(options.destination.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat("cannot open decision log \"",
                                                     options.destination,
                                                     "\": ", std::strerror(errno)));
    }
    owned = true;
  }
  auto log = std::make_unique<DecisionLog>(
      std::move(options), [fd](absl::string_view lines) { return WriteFully(fd, lines); });
  if (owned) log->fd_ = fd;
  return log;
}

DecisionLog::DecisionLog(DecisionLogOptions options, Sink sink)
    : options_(std::move(options)), sink_(std::move(sink)) {
  thread_ = std::thread([this] { Run(); });
}

DecisionLog::~DecisionLog() { Close(); }

bool DecisionLog::LogsArgsOf(absl::string_view tool) const {
  for (const std::string& pattern : options_.args_tools) {
    if (GlobMatch(pattern, tool)) return true;
  }
  return false;
}

bool DecisionLog::Log(DecisionLogEntry entry) {
  const size_t bytes = DecisionLogEntryBytes(entry);
  {
    absl::MutexLock lock(&mu_);
    if (!closing_ && queue_.size() < options_.queue_capacity &&
        queued_bytes_ + bytes <= options_.queue_bytes) {
      queue_.push_back(std::move(entry));
      queued_bytes_ += bytes;
      return true;
    }
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void DecisionLog::Run() {
  std::deque<DecisionLogEntry> batch;
  while (true) {
    bool closing = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](DecisionLog* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return self->closing_ || !self->queue_.empty();
          },
          this));
      batch.swap(queue_);
      queued_bytes_ = 0;
      closing = closing_;
    }
    std::string out;
    for (const DecisionLogEntry& e : batch) {
      absl::StrAppend(&out, DecisionLogLine(e, LogsArgsOf(e.tool), options_.hashing), "\n");
    }
    if (!batch.empty()) {
      if (sink_(out)) {
        written_.fetch_add(batch.size(), std::memory_order_relaxed);
      } else {
        const int error = errno;
        const uint64_t failed =
            write_errors_.fetch_add(batch.size(), std::memory_order_relaxed) + batch.size();
        const absl::Time now = absl::Now();
        if (now - last_error_report_ >= absl::Seconds(10)) {
          last_error_report_ = now;
          LogWarning("decision log ", options_.destination,
                     ": write failed: ", std::strerror(error), " (", failed,
                     " entries lost so far; reported at most every 10 s)");
        }
      }
    }
    batch.clear();
    if (closing) {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return;
    }
  }
}

void DecisionLog::Close() {
  if (closed_) return;
  closed_ = true;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  LogInfo("decision log ", options_.destination, ": ", written(), " entries written, ", dropped(),
          " dropped (queue full)",
          write_errors_.load() > 0 ? absl::StrCat(", ", write_errors_.load(), " failed to write")
                                   : std::string());
}

}  // namespace toolgate
