#include "server/base/duration.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace toolgate {
namespace {

absl::StatusOr<int64_t> CheckRange(int64_t millis, absl::string_view text) {
  if (millis <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("window \"", text, "\" must be positive"));
  }
  if (millis > kMaxWindowMillis) {
    return absl::InvalidArgumentError(
        absl::StrCat("window \"", text, "\" is longer than the maximum of 31 days"));
  }
  return millis;
}

}  // namespace

absl::StatusOr<int64_t> ParseWindowText(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "second") return 1000;
  if (lower == "minute") return 60 * 1000;
  if (lower == "hour") return 3600 * 1000;
  if (lower == "day") return 24 * 3600 * 1000;

  size_t digits = 0;
  while (digits < lower.size() && absl::ascii_isdigit(lower[digits])) ++digits;
  const absl::string_view number(lower.data(), digits);
  const absl::string_view unit = absl::string_view(lower).substr(digits);
  int64_t scale = 0;
  if (unit.empty()) {
    scale = 1000;  // A bare number of seconds written as a string: "60".
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit == "h") {
    scale = 3600 * 1000;
  } else if (unit == "d") {
    scale = 24 * 3600 * 1000;
  }
  int64_t count = 0;
  if (number.empty() || scale == 0 || number.size() > 12 || !absl::SimpleAtoi(number, &count)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown window \"", text,
        "\": use second, minute, hour, day, a number of seconds, or a count with a unit "
        "(\"500ms\", \"30s\", \"5m\", \"1h\", \"1d\")"));
  }
  // Clamp before multiplying: count * scale could overflow 64 bits.
  if (count > kMaxWindowMillis / scale) return CheckRange(kMaxWindowMillis + 1, text);
  return CheckRange(count * scale, text);
}

absl::StatusOr<int64_t> WindowFromSeconds(double seconds) {
  const std::string text = absl::StrCat(seconds);
  if (!std::isfinite(seconds) || seconds > static_cast<double>(kMaxWindowMillis) / 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("window \"", text, "\" is longer than the maximum of 31 days"));
  }
  const double millis = seconds * 1000;
  if (std::abs(millis - std::round(millis)) > 1e-6) {
    return absl::InvalidArgumentError(
        absl::StrCat("window \"", text, "\" must be a whole number of milliseconds"));
  }
  return CheckRange(static_cast<int64_t>(std::llround(millis)), text);
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
