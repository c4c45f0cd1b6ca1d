#include "server/base/duration.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "server/base/yaml_util.h"

namespace toolgate {
namespace {

constexpr int64_t kSecondMillis = 1000;
constexpr int64_t kMinuteMillis = 60 * kSecondMillis;
constexpr int64_t kHourMillis = 60 * kMinuteMillis;
constexpr int64_t kDayMillis = 24 * kHourMillis;
// Longer counts are not a form at all. Up to 12 digits fit in 64 bits; their
// product with a unit may not, so sums are clamped at the bound.
constexpr size_t kMaxCountDigits = 12;

ParsedDuration Error(DurationError error) { return ParsedDuration{0, error}; }

struct Unit {
  absl::string_view name;
  int64_t millis;
};
// A whole unit by name, and the units after a count ("ms" before "m").
constexpr Unit kNames[] = {{"second", kSecondMillis},
                           {"minute", kMinuteMillis},
                           {"hour", kHourMillis},
                           {"day", kDayMillis}};
constexpr Unit kSuffixes[] = {
    {"ms", 1}, {"s", kSecondMillis}, {"m", kMinuteMillis}, {"h", kHourMillis}, {"d", kDayMillis}};

// Consumes a unit at the front of `rest`; returns its milliseconds, or 0.
int64_t ConsumeUnit(absl::string_view* rest) {
  for (const Unit& unit : kSuffixes) {
    if (absl::ConsumePrefix(rest, unit.name)) return unit.millis;
  }
  return 0;
}

// The forms after the sign: a name, counts with units, or a bare count.
ParsedDuration ParseUnsigned(absl::string_view text, int64_t max_millis) {
  for (const Unit& unit : kNames) {
    if (text != unit.name) continue;
    if (unit.millis > max_millis) return Error(DurationError::kTooLong);
    return ParsedDuration{unit.millis, DurationError::kNone};
  }
  if (text.empty()) return Error(DurationError::kUnknownForm);
  int64_t millis = 0;
  bool too_long = false;
  absl::string_view rest = text;
  while (!rest.empty()) {
    size_t digits = 0;
    while (digits < rest.size() && absl::ascii_isdigit(static_cast<unsigned char>(rest[digits]))) {
      ++digits;
    }
    int64_t count = 0;
    if (digits == 0 || digits > kMaxCountDigits ||
        !absl::SimpleAtoi(rest.substr(0, digits), &count)) {
      return Error(DurationError::kUnknownForm);
    }
    rest.remove_prefix(digits);
    // A bare count (the whole text) is seconds.
    const int64_t scale =
        rest.empty() && digits == text.size() ? kSecondMillis : ConsumeUnit(&rest);
    if (scale == 0) return Error(DurationError::kUnknownForm);
    // Clamped before multiplying: count * scale could overflow 64 bits.
    if (too_long || count > (max_millis - millis) / scale) {
      too_long = true;
    } else {
      millis += count * scale;
    }
  }
  if (too_long) return Error(DurationError::kTooLong);
  return ParsedDuration{millis, DurationError::kNone};
}

// A parsed window as a status; `text` is how it was written.
absl::StatusOr<int64_t> WindowStatus(const ParsedDuration& d, absl::string_view text) {
  if (d.ok() && d.millis > 0) return d.millis;
  switch (d.error) {
    case DurationError::kNone:  // Zero.
    case DurationError::kNegative:
      return absl::InvalidArgumentError(absl::StrCat("window \"", text, "\" must be positive"));
    case DurationError::kTooLong:
      return absl::InvalidArgumentError(
          absl::StrCat("window \"", text, "\" is longer than the maximum of 31 days"));
    case DurationError::kFractionalMillis:
      return absl::InvalidArgumentError(
          absl::StrCat("window \"", text, "\" must be a whole number of milliseconds"));
    case DurationError::kUnknownForm:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown window \"", text,
                   "\": use second, minute, hour, day, a number of seconds, or a count with a unit "
                   "(\"500ms\", \"30s\", \"5m\", \"1h\", \"1d\"; or several: \"1h30m\")"));
}

}  // namespace

ParsedDuration ParseDuration(absl::string_view text, int64_t max_millis) {
  const std::string lower = absl::AsciiStrToLower(text);
  absl::string_view rest = lower;
  const bool negative = absl::ConsumePrefix(&rest, "-");
  const ParsedDuration d = ParseUnsigned(rest, max_millis);
  if (negative && d.error != DurationError::kUnknownForm) return Error(DurationError::kNegative);
  return d;
}

ParsedDuration DurationFromSeconds(double seconds, int64_t max_millis) {
  if (std::isnan(seconds)) return Error(DurationError::kUnknownForm);
  if (seconds < 0) return Error(DurationError::kNegative);
  if (seconds > static_cast<double>(max_millis) / 1000) return Error(DurationError::kTooLong);
  const double millis = seconds * 1000;
  if (std::abs(millis - std::round(millis)) > 1e-6) {
    return Error(DurationError::kFractionalMillis);
  }
  return ParsedDuration{static_cast<int64_t>(std::llround(millis)), DurationError::kNone};
}

ParsedDuration ParseDurationScalar(absl::string_view scalar, bool plain, int64_t max_millis) {
  if (plain && LooksNumeric(scalar)) {
    double seconds = 0;
    if (!absl::SimpleAtod(scalar, &seconds)) return Error(DurationError::kUnknownForm);
    return DurationFromSeconds(seconds, max_millis);
  }
  return ParseDuration(scalar, max_millis);
}

absl::StatusOr<int64_t> ParseWindowText(absl::string_view text) {
  ParsedDuration d = ParseDuration(text, kMaxWindowMillis);
  // Windows are written unsigned: "-5s" is not one of their forms.
  if (d.error == DurationError::kNegative) d.error = DurationError::kUnknownForm;
  return WindowStatus(d, text);
}

absl::StatusOr<int64_t> WindowFromSeconds(double seconds) {
  return WindowStatus(DurationFromSeconds(seconds, kMaxWindowMillis), absl::StrCat(seconds));
}

absl::StatusOr<int64_t> ParseWindowScalar(absl::string_view scalar, bool plain) {
  if (plain && LooksNumeric(scalar)) {
    return WindowStatus(ParseDurationScalar(scalar, plain, kMaxWindowMillis), scalar);
  }
  return ParseWindowText(scalar);
}

std::string FormatMillis(int64_t millis) {
  if (millis <= 0) return "0s";
  if (millis % 1000 != 0) {
    if (millis < 1000) return absl::StrCat(millis, "ms");
    return absl::StrCat(millis / 1000, ".", absl::StrFormat("%03d", millis % 1000), "s");
  }
  int64_t s = millis / 1000;
  std::string out;
  const int64_t d = s / 86400;
  s %= 86400;
  const int64_t h = s / 3600;
  s %= 3600;
  const int64_t m = s / 60;
  s %= 60;
  if (d) absl::StrAppend(&out, d, "d");
  if (h) absl::StrAppend(&out, h, "h");
  if (m) absl::StrAppend(&out, m, "m");
  if (s) absl::StrAppend(&out, s, "s");
  return out;
}

}  // namespace toolgate
