// Minimal structured logging to stderr: one line per event,
// "2026-11-25T19:40:00.123Z INFO message".
//
// A line is written with one write(2) to descriptor 2, never through a
// buffer. When stderr is gone (a closed pipe, a full disk) the line is lost,
// the process carries on (SIGPIPE is ignored, see runtime.h), and the loss is
// counted: LogWriteErrors(), exported as toolgate_log_write_errors_total.
#ifndef TOOLGATE_SERVER_BASE_LOG_H_
#define TOOLGATE_SERVER_BASE_LOG_H_

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace toolgate {

enum class LogLevel { kInfo, kWarning, kError };

void LogLine(LogLevel level, absl::string_view message);

// Lines that could not be written (whole or in part) since the start.
uint64_t LogWriteErrors();

// Writes all of `data` to `fd`, retrying short writes and EINTR. False (with
// errno set) when the descriptor refuses; what was written stays written.
bool WriteFully(int fd, absl::string_view data);

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
