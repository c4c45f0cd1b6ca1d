// Parsing and printing of rate-limit windows.
#ifndef TOOLGATE_SERVER_BASE_DURATION_H_
#define TOOLGATE_SERVER_BASE_DURATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace toolgate {

// Longest window a limit may have (31 days): keeps every counter's arithmetic
// well inside 64 bits.
inline constexpr int64_t kMaxWindowMillis = int64_t{31} * 24 * 3600 * 1000;

// Parses a window written as a name ("second", "minute", "hour", "day") or a
// number with a unit ("500ms", "30s", "5m", "1h", "1d"). The result is in
// milliseconds, positive and at most kMaxWindowMillis.
absl::StatusOr<int64_t> ParseWindowText(absl::string_view text);

// Converts a window written as a plain number of seconds (60, 0.5).
absl::StatusOr<int64_t> WindowFromSeconds(double seconds);

// Compact human form: "1m", "1m30s", "1h30m", "250ms", "1.500s".
std::string FormatMillis(int64_t millis);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_DURATION_H_
