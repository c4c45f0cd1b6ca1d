// Minimal structured logging to stderr: one line per event,
// "2026-11-25T19:40:00.123Z INFO message".
#ifndef TOOLGATE_SERVER_BASE_LOG_H_
#define TOOLGATE_SERVER_BASE_LOG_H_

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace toolgate {

enum class LogLevel { kInfo, kWarning, kError };

void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void LogInfo(const Args&... args) {
  LogLine(LogLevel::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void LogWarning(const Args&... args) {
  LogLine(LogLevel::kWarning, absl::StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  LogLine(LogLevel::kError, absl::StrCat(args...));
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_LOG_H_
