#include "server/telemetry/decision_log.h"

#include <cerrno>
#include <cstring>
#include <utility>

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

std::string DecisionLogLine(const DecisionLogEntry& e, bool with_args) {
  const std::string args = CanonicalJson(e.args);
  std::string out;
  out.reserve(320 + (with_args ? args.size() : 0));
  out.push_back('{');
  AppendField("decision_id", e.decision_id, &out);
  AppendField("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", e.time, absl::UTCTimeZone()),
              &out);
  AppendField("tool", e.tool, &out);
  AppendField("server", e.server, &out);
  AppendField("grant", e.grant, &out);
  AppendField("session", e.session, &out);
  AppendField("request_id", e.request_id, &out);
  AppendField("decision", e.decision, &out);
  AppendField("reason", e.reason, &out);
  AppendField("rule", e.rule, &out);
  AppendField("revision", e.revision, &out);
  absl::StrAppend(&out, "\"latency_us\":", e.latency_us, ",");
  AppendField("args_sha256", Sha256Hex(args), &out);
  if (with_args) {
    absl::StrAppend(&out, "\"args\":", args, ",");
  }
  out.back() = '}';
  return out;
}

absl::StatusOr<std::unique_ptr<DecisionLog>> DecisionLog::Open(DecisionLogOptions options) {
  std::FILE* file = nullptr;
  bool owned = false;
  if (options.destination == "stdout") {
    file = stdout;
  } else if (options.destination == "stderr") {
    file = stderr;
  } else {
    file = std::fopen(options.destination.c_str(), "ae");
    if (file == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cannot open decision log \"",
                                                     options.destination,
                                                     "\": ", std::strerror(errno)));
    }
    owned = true;
  }
  Sink sink = [file](absl::string_view line) {
    return std::fwrite(line.data(), 1, line.size(), file) == line.size();
  };
  auto log = std::make_unique<DecisionLog>(std::move(options), std::move(sink),
                                           [file] { std::fflush(file); });
  if (owned) log->file_ = file;
  return log;
}

DecisionLog::DecisionLog(DecisionLogOptions options, Sink sink, std::function<void()> flush)
    : options_(std::move(options)), sink_(std::move(sink)), flush_(std::move(flush)) {
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
  {
    absl::MutexLock lock(&mu_);
    if (!closing_ && queue_.size() < options_.queue_capacity) {
      queue_.push_back(std::move(entry));
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
      closing = closing_;
    }
    std::string out;
    for (const DecisionLogEntry& e : batch) {
      absl::StrAppend(&out, DecisionLogLine(e, LogsArgsOf(e.tool)), "\n");
    }
    if (!batch.empty()) {
      if (sink_(out)) {
        written_.fetch_add(batch.size(), std::memory_order_relaxed);
      } else {
        write_errors_.fetch_add(batch.size(), std::memory_order_relaxed);
      }
      if (flush_) flush_();
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
  if (flush_) flush_();
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
  LogInfo("decision log ", options_.destination, ": ", written(), " entries written, ", dropped(),
          " dropped (queue full)",
          write_errors_.load() > 0 ? absl::StrCat(", ", write_errors_.load(), " failed to write")
                                   : std::string());
}

}  // namespace toolgate
