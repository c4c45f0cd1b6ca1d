// Tests of duration and window parsing and formatting.
#include "server/base/duration.h"

#include <cmath>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

constexpr int64_t kSecond = 1000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

int64_t MustParse(const std::string& text) {
  auto v = ParseWindowText(text);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status();
  return v.ok() ? *v : -1;
}

std::string ParseError(const std::string& text) {
  auto v = ParseWindowText(text);
  EXPECT_FALSE(v.ok()) << text << " parsed as " << (v.ok() ? *v : 0);
  if (v.ok()) return "";
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(v.status().message());
}

TEST(ParseWindowText, Names) {
  EXPECT_EQ(MustParse("second"), kSecond);
  EXPECT_EQ(MustParse("minute"), kMinute);
  EXPECT_EQ(MustParse("hour"), kHour);
  EXPECT_EQ(MustParse("day"), kDay);
  EXPECT_EQ(MustParse("Minute"), kMinute);
}

TEST(ParseWindowText, CountWithUnit) {
  EXPECT_EQ(MustParse("500ms"), 500);
  EXPECT_EQ(MustParse("1ms"), 1);
  EXPECT_EQ(MustParse("30s"), 30 * kSecond);
  EXPECT_EQ(MustParse("5m"), 5 * kMinute);
  EXPECT_EQ(MustParse("90m"), 90 * kMinute);
  EXPECT_EQ(MustParse("1h"), kHour);
  EXPECT_EQ(MustParse("1d"), kDay);
  EXPECT_EQ(MustParse("7d"), 7 * kDay);
  EXPECT_EQ(MustParse("60"), kMinute);  // a bare number is seconds
}

TEST(ParseWindowText, Bounds) {
  EXPECT_EQ(kMaxWindowMillis, 31 * kDay);
  EXPECT_EQ(MustParse("31d"), kMaxWindowMillis);
  EXPECT_EQ(MustParse("744h"), kMaxWindowMillis);
  EXPECT_EQ(MustParse("2678400000ms"), kMaxWindowMillis);
  EXPECT_TRUE(HasSubstr(ParseError("32d"), "longer than the maximum of 31 days"));
  EXPECT_TRUE(HasSubstr(ParseError("745h"), "longer than the maximum of 31 days"));
  EXPECT_TRUE(HasSubstr(ParseError("2678400001ms"), "longer than the maximum of 31 days"));
  EXPECT_TRUE(HasSubstr(ParseError("0s"), "window \"0s\" must be positive"));
  EXPECT_TRUE(HasSubstr(ParseError("0"), "must be positive"));
  EXPECT_TRUE(HasSubstr(ParseError("0ms"), "must be positive"));
  // Huge counts must not overflow into a "valid" window.
  EXPECT_FALSE(ParseWindowText("999999999999d").ok());
  EXPECT_FALSE(ParseWindowText("9999999999999999999999s").ok());
  // 213503982335 days in milliseconds is 2^64 + 34448384: a count times its
  // unit that wraps around 64 bits must not come out as a short window.
  EXPECT_TRUE(HasSubstr(ParseError("213503982335d"), "longer than the maximum of 31 days"));
  EXPECT_TRUE(HasSubstr(ParseError("999999999999h"), "longer than the maximum of 31 days"));
}

TEST(ParseWindowText, UnknownForms) {
  for (const char* text : {"fortnight", "", "ms", "s", "-5s", "-1", "1.5s", "10x", "5 m", " 5m",
                           "5min", "1w", "1y", "m5", "second2", "1e3"}) {
    SCOPED_TRACE(text);
    const std::string msg = ParseError(text);
    EXPECT_TRUE(HasSubstr(msg, std::string("unknown window \"") + text + "\""));
  }
  EXPECT_TRUE(HasSubstr(ParseError("fortnight"), "\"500ms\", \"30s\", \"5m\", \"1h\", \"1d\""));
}

TEST(WindowFromSeconds, WholeAndFractionalSeconds) {
  EXPECT_EQ(WindowFromSeconds(60).value_or(-1), kMinute);
  EXPECT_EQ(WindowFromSeconds(1).value_or(-1), kSecond);
  EXPECT_EQ(WindowFromSeconds(0.5).value_or(-1), 500);
  EXPECT_EQ(WindowFromSeconds(1.5).value_or(-1), 1500);
  EXPECT_EQ(WindowFromSeconds(0.1).value_or(-1), 100);  // not exact in binary
  EXPECT_EQ(WindowFromSeconds(0.001).value_or(-1), 1);
  EXPECT_EQ(WindowFromSeconds(86400).value_or(-1), kDay);
  EXPECT_EQ(WindowFromSeconds(31 * 86400).value_or(-1), kMaxWindowMillis);
}

TEST(WindowFromSeconds, Errors) {
  auto msg = [](double s) {
    auto v = WindowFromSeconds(s);
    EXPECT_FALSE(v.ok()) << s << " gave " << (v.ok() ? *v : 0);
    return v.ok() ? std::string() : std::string(v.status().message());
  };
  EXPECT_TRUE(HasSubstr(msg(0), "must be positive"));
  EXPECT_TRUE(HasSubstr(msg(-1), "must be positive"));
  EXPECT_TRUE(HasSubstr(msg(-0.5), "must be positive"));
  EXPECT_TRUE(HasSubstr(msg(0.0005), "whole number of milliseconds"));
  EXPECT_TRUE(HasSubstr(msg(1.0001), "whole number of milliseconds"));
  EXPECT_TRUE(HasSubstr(msg(31 * 86400 + 1), "longer than the maximum of 31 days"));
  EXPECT_TRUE(HasSubstr(msg(31 * 86400 + 0.001), "longer than the maximum of 31 days"));
  EXPECT_TRUE(HasSubstr(msg(1e300), "longer than the maximum of 31 days"));
  EXPECT_FALSE(WindowFromSeconds(std::numeric_limits<double>::infinity()).ok());
  EXPECT_FALSE(WindowFromSeconds(-std::numeric_limits<double>::infinity()).ok());
  EXPECT_FALSE(WindowFromSeconds(std::nan("")).ok());
  EXPECT_FALSE(WindowFromSeconds(-1e300).ok());
}

ParsedDuration Parse(const std::string& text, int64_t max = kDay) {
  return ParseDuration(text, max);
}

TEST(ParseDuration, Forms) {
  EXPECT_EQ(Parse("second").millis, kSecond);
  EXPECT_EQ(Parse("DAY").millis, kDay);
  EXPECT_EQ(Parse("500ms").millis, 500);
  EXPECT_EQ(Parse("61s").millis, 61 * kSecond);
  EXPECT_EQ(Parse("5M").millis, 5 * kMinute);
  EXPECT_EQ(Parse("1h30m").millis, kHour + 30 * kMinute);
  EXPECT_EQ(Parse("1m1s1ms").millis, kMinute + kSecond + 1);
  EXPECT_EQ(Parse("30m1h").millis, kHour + 30 * kMinute);
  EXPECT_EQ(Parse("60").millis, kMinute);
  EXPECT_TRUE(Parse("0s").ok());
  EXPECT_EQ(Parse("0").millis, 0);
}

TEST(ParseDuration, Errors) {
  for (const char* text : {"", "-", "soon", "1.5s", "1h30", "5 m", " 5m", "5min", "1e3", "h1", "1w",
                           "second1", "9999999999999s", "--1s", "-soon"}) {
    EXPECT_EQ(Parse(text).error, DurationError::kUnknownForm) << text;
  }
  EXPECT_EQ(Parse("-5s").error, DurationError::kNegative);
  EXPECT_EQ(Parse("-1").error, DurationError::kNegative);
  EXPECT_EQ(Parse("-day").error, DurationError::kNegative);
}

TEST(ParseDuration, TheBoundIsTheCallers) {
  EXPECT_EQ(Parse("1d", kDay).millis, kDay);
  EXPECT_EQ(Parse("1d1ms", kDay).error, DurationError::kTooLong);
  EXPECT_EQ(Parse("day", kHour).error, DurationError::kTooLong);
  EXPECT_EQ(Parse("366d", 366 * kDay).millis, 366 * kDay);
  EXPECT_EQ(Parse("367d", 366 * kDay).error, DurationError::kTooLong);
  // Sums that would overflow 64 bits are too long, not short.
  EXPECT_EQ(Parse("999999999999d999999999999d", 366 * kDay).error, DurationError::kTooLong);
  EXPECT_EQ(Parse("213503982335d", 366 * kDay).error, DurationError::kTooLong);
  // Syntax is checked to the end even past the bound.
  EXPECT_EQ(Parse("999999999999dx", kDay).error, DurationError::kUnknownForm);
}

TEST(DurationFromSeconds, RangeAndMilliseconds) {
  EXPECT_EQ(DurationFromSeconds(29.999, kDay).millis, 29'999);
  EXPECT_EQ(DurationFromSeconds(0, kDay).millis, 0);
  EXPECT_EQ(DurationFromSeconds(86400, kDay).millis, kDay);
  EXPECT_EQ(DurationFromSeconds(86400.001, kDay).error, DurationError::kTooLong);
  EXPECT_EQ(DurationFromSeconds(std::numeric_limits<double>::infinity(), kDay).error,
            DurationError::kTooLong);
  EXPECT_EQ(DurationFromSeconds(-0.5, kDay).error, DurationError::kNegative);
  EXPECT_EQ(DurationFromSeconds(0.0005, kDay).error, DurationError::kFractionalMillis);
  EXPECT_EQ(DurationFromSeconds(std::nan(""), kDay).error, DurationError::kUnknownForm);
}

TEST(ParseDurationScalar, PlainNumbersAreSeconds) {
  EXPECT_EQ(ParseDurationScalar("0.5", /*plain=*/true, kDay).millis, 500);
  EXPECT_EQ(ParseDurationScalar("1e3", /*plain=*/true, kDay).millis, 1000 * kSecond);
  EXPECT_EQ(ParseDurationScalar("-5", /*plain=*/true, kDay).error, DurationError::kNegative);
  EXPECT_EQ(ParseDurationScalar("61s", /*plain=*/true, kDay).millis, 61 * kSecond);
  // Quoted, a number is text: a bare count of seconds, and no fractions.
  EXPECT_EQ(ParseDurationScalar("60", /*plain=*/false, kDay).millis, kMinute);
  EXPECT_EQ(ParseDurationScalar("0.5", /*plain=*/false, kDay).error, DurationError::kUnknownForm);
}

TEST(ParseWindowText, SeveralCountsAddUp) {
  EXPECT_EQ(MustParse("1h30m"), kHour + 30 * kMinute);
  EXPECT_EQ(MustParse("30d24h"), kMaxWindowMillis);
  EXPECT_TRUE(HasSubstr(ParseError("30d24h1ms"), "longer than the maximum of 31 days"));
}

TEST(ParseWindowScalar, NumbersAndText) {
  EXPECT_EQ(ParseWindowScalar("0.5", /*plain=*/true).value_or(-1), 500);
  EXPECT_EQ(ParseWindowScalar("5m", /*plain=*/true).value_or(-1), 5 * kMinute);
  EXPECT_EQ(ParseWindowScalar("60", /*plain=*/false).value_or(-1), kMinute);
  auto msg = [](const std::string& scalar, bool plain) {
    auto v = ParseWindowScalar(scalar, plain);
    EXPECT_FALSE(v.ok()) << scalar;
    return v.ok() ? std::string() : std::string(v.status().message());
  };
  EXPECT_EQ(msg("0", true), "window \"0\" must be positive");
  EXPECT_EQ(msg("-5", true), "window \"-5\" must be positive");
  EXPECT_EQ(msg("1e7", true), "window \"1e7\" is longer than the maximum of 31 days");
  EXPECT_EQ(msg("0.0001", true), "window \"0.0001\" must be a whole number of milliseconds");
  EXPECT_TRUE(HasSubstr(msg("0.5", false), "unknown window \"0.5\""));
  EXPECT_TRUE(HasSubstr(msg("-5s", true), "unknown window \"-5s\""));
}

TEST(FormatMillis, CompactForms) {
  EXPECT_EQ(FormatMillis(250), "250ms");
  EXPECT_EQ(FormatMillis(1), "1ms");
  EXPECT_EQ(FormatMillis(999), "999ms");
  EXPECT_EQ(FormatMillis(1000), "1s");
  EXPECT_EQ(FormatMillis(1500), "1.500s");
  EXPECT_EQ(FormatMillis(61'001), "61.001s");
  EXPECT_EQ(FormatMillis(30'000), "30s");
  EXPECT_EQ(FormatMillis(kMinute), "1m");
  EXPECT_EQ(FormatMillis(90'000), "1m30s");
  EXPECT_EQ(FormatMillis(kHour), "1h");
  EXPECT_EQ(FormatMillis(kHour + 30 * kMinute), "1h30m");
  EXPECT_EQ(FormatMillis(kDay), "1d");
  EXPECT_EQ(FormatMillis(kDay + kHour + kMinute + kSecond), "1d1h1m1s");
  EXPECT_EQ(FormatMillis(kDay + 5 * kSecond), "1d5s");
  EXPECT_EQ(FormatMillis(kMaxWindowMillis), "31d");
  EXPECT_EQ(FormatMillis(0), "0s");
  EXPECT_EQ(FormatMillis(-5), "0s");
}

TEST(FormatMillis, SingleUnitFormsParseBack) {
  for (int64_t ms : {int64_t{1}, int64_t{250}, kSecond, 45 * kSecond, kMinute, 7 * kMinute, kHour,
                     5 * kHour, kDay, 3 * kDay, kMaxWindowMillis}) {
    SCOPED_TRACE(ms);
    EXPECT_EQ(MustParse(FormatMillis(ms)), ms);
  }
}

}  // namespace
}  // namespace toolgate
