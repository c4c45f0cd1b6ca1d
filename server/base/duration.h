// Parsing and printing of durations: rate-limit windows, flag values, and
// the clock steps of policy tests share one grammar (ParseDuration); each
// caller gives its own bound and words its own messages.
#ifndef TOOLGATE_SERVER_BASE_DURATION_H_
#define TOOLGATE_SERVER_BASE_DURATION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace toolgate {

// Why a duration was refused.
enum class DurationError {
  kNone,
  kUnknownForm,       // Not written in any form of the grammar.
  kNegative,          // A duration with a minus sign, or a negative number.
  kTooLong,           // Longer than the caller's bound.
  kFractionalMillis,  // A number of seconds with a fraction of a millisecond.
};

struct ParsedDuration {
  int64_t millis = 0;  // When error is kNone: 0 <= millis <= the bound.
  DurationError error = DurationError::kNone;
  bool ok() const { return error == DurationError::kNone; }
};

// Parses a duration written as text, at most `max_millis` long:
//   - a name: second, minute, hour, day;
//   - one or more counts with a unit, ms, s, m, h or d: "500ms", "30s",
//     "5m", "1h", "1d", "1h30m" (the counts add up);
//   - a bare count of seconds: "60".
// Letters in any case; counts are whole numbers of at most 12 digits; no
// spaces. A leading '-' before one of these forms is kNegative. Zero is
// accepted: callers that need a positive duration check it.
ParsedDuration ParseDuration(absl::string_view text, int64_t max_millis);

// A duration given as a number of seconds (60, 0.5): whole milliseconds,
// 0 <= seconds * 1000 <= max_millis. NaN is kUnknownForm.
ParsedDuration DurationFromSeconds(double seconds, int64_t max_millis);

// A duration as written in a YAML or JSON document: a plain (unquoted)
// decimal number is a number of seconds (DurationFromSeconds, so 0.5 and 1e3
// work), anything else is text (ParseDuration).
ParsedDuration ParseDurationScalar(absl::string_view scalar, bool plain, int64_t max_millis);

// Longest window a limit may have (31 days): keeps every counter's arithmetic
// well inside 64 bits.
inline constexpr int64_t kMaxWindowMillis = int64_t{31} * 24 * 3600 * 1000;

// Windows: durations that are positive and at most kMaxWindowMillis, with
// messages that name the window: `unknown window "X": use ...`,
// `window "X" must be positive`, `window "X" is longer than the maximum of 31
// days`, `window "X" must be a whole number of milliseconds`.
// ParseWindowText parses text (ParseDuration; a signed text is not a window
// form), WindowFromSeconds a number of seconds, and ParseWindowScalar a
// document's scalar (ParseDurationScalar).
absl::StatusOr<int64_t> ParseWindowText(absl::string_view text);
absl::StatusOr<int64_t> WindowFromSeconds(double seconds);
absl::StatusOr<int64_t> ParseWindowScalar(absl::string_view scalar, bool plain);

// Compact human form: "1m", "1m30s", "1h30m", "250ms", "1.500s".
std::string FormatMillis(int64_t millis);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_DURATION_H_
