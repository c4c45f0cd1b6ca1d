#include "server/policytest/report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace toolgate {

int PolicyTestReport::passed() const {
  return static_cast<int>(
      std::count_if(cases.begin(), cases.end(), [](const auto& c) { return c.passed; }));
}

int PolicyTestReport::failed() const { return static_cast<int>(cases.size()) - passed(); }

std::string FormatCaseResult(const PolicyTestCaseResult& result) {
  if (result.passed) return absl::StrCat("PASS ", result.name);
  return absl::StrCat("FAIL ", result.name, ": ", result.message, " [", result.location, "]");
}

std::string FormatSummary(int passed, int failed) {
  return absl::StrCat(passed, " passed, ", failed, " failed");
}

}  // namespace toolgate
