// Policy tests, reporting: the result of each case of a cases file, and the
// lines `toolgate test` prints for them.
#ifndef TOOLGATE_SERVER_POLICYTEST_REPORT_H_
#define TOOLGATE_SERVER_POLICYTEST_REPORT_H_

#include <string>
#include <vector>

namespace toolgate {

struct PolicyTestCaseResult {
  std::string name;
  std::string location;  // "file:line:col" of the case entry.
  bool passed = false;
  // On failure: what was expected and what the policy answered, e.g.
  // `expected deny, got allow (rule default)`.
  std::string message;
  int calls = 0;  // Calls made (fewer than `repeat` when one failed).
};

struct PolicyTestReport {
  std::string cases_file;
  std::string revision;                     // The policy revision the cases ran against.
  std::vector<PolicyTestCaseResult> cases;  // Only cases; `advance` steps are not listed.

  int passed() const;
  int failed() const;
  bool ok() const { return failed() == 0; }
};

// "PASS name" or "FAIL name: message [file:line:col]".
std::string FormatCaseResult(const PolicyTestCaseResult& result);

// "N passed, N failed"
std::string FormatSummary(int passed, int failed);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICYTEST_REPORT_H_
