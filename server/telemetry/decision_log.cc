#include "server/telemetry/decision_log.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/base/glob.h"

namespace toolgate {

namespace {

// JSON is written here directly: protobuf's JSON printer (through a type
// resolver) costs tens of microseconds a line, which would make the writer
// thread, not the destination, the log's limit.

// Appends `s` as a JSON string: quotes, backslashes and control characters
// escaped; invalid UTF-8 replaced by U+FFFD, so the line is always valid.
void AppendJsonString(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': out->append("\\\""); break;
        case '\\': out->append("\\\\"); break;
        case '\n': out->append("\\n"); break;
        case '\r': out->append("\\r"); break;
        case '\t': out->append("\\t"); break;
        default:
          if (c < 0x20) {
            out->append("\\u00");
            out->push_back(kHex[c >> 4]);
            out->push_back(kHex[c & 15]);
          } else {
            out->push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence: copied when well formed.
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    // No overlong forms, surrogates or code points past U+10FFFF.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
               (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))) {
      ok = false;
    }
    if (ok) {
      out->append(s.data() + i, len);
      i += len;
    } else {
      out->append("\xEF\xBF\xBD");  // U+FFFD
      ++i;
    }
  }
  out->push_back('"');
}

void AppendJsonNumber(double v, std::string* out) {
  if (std::isnan(v)) {
    out->append("\"NaN\"");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  } else if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    absl::StrAppend(out, static_cast<int64_t>(v));
  } else {
    // Shortest of 15 or 17 significant digits that reads back exactly.
    std::string text = absl::StrFormat("%.15g", v);
    double back = 0;
    if (!absl::SimpleAtod(text, &back) || back != v) text = absl::StrFormat("%.17g", v);
    out->append(text);
  }
}

void AppendJsonValue(const google::protobuf::Value& v, std::string* out);

void AppendJsonStruct(const google::protobuf::Struct& s, std::string* out) {
  std::vector<const google::protobuf::MapPair<std::string, google::protobuf::Value>*> fields;
  fields.reserve(s.fields_size());
  for (const auto& field : s.fields()) fields.push_back(&field);
  std::sort(fields.begin(), fields.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  out->push_back('{');
  bool first = true;
  for (const auto* field : fields) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(field->first, out);
    out->push_back(':');
    AppendJsonValue(field->second, out);
  }
  out->push_back('}');
}

void AppendJsonValue(const google::protobuf::Value& v, std::string* out) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNumberValue:
      AppendJsonNumber(v.number_value(), out);
      break;
    case google::protobuf::Value::kStringValue:
      AppendJsonString(v.string_value(), out);
      break;
    case google::protobuf::Value::kBoolValue:
      out->append(v.bool_value() ? "true" : "false");
      break;
    case google::protobuf::Value::kStructValue:
      AppendJsonStruct(v.struct_value(), out);
      break;
    case google::protobuf::Value::kListValue: {
      out->push_back('[');
      bool first = true;
      for (const google::protobuf::Value& item : v.list_value().values()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonValue(item, out);
      }
      out->push_back(']');
      break;
    }
    default:  // null, or no kind set.
      out->append("null");
  }
}

// `"key":"value",`
void AppendField(const char* key, absl::string_view value, std::string* out) {
  out->push_back('"');
  out->append(key);
  out->append("\":");
  AppendJsonString(value, out);
  out->push_back(',');
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string CanonicalJson(const google::protobuf::Struct& s) {
  std::string out;
  AppendJsonStruct(s, &out);
  return out;
}

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
