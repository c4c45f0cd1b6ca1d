#include "server/policytest/policy_test_runner.h"

#include <optional>

#include "server/base/diagnostics.h"
#include "server/base/files.h"
#include "server/policytest/cases.h"
#include "server/policytest/run.h"

namespace toolgate {

absl::StatusOr<PolicyTestReport> RunPolicyTestsFromText(const Policy& policy,
                                                        const std::string& file_name,
                                                        absl::string_view text) {
  Diagnostics diags(file_name);
  std::optional<policytest::CasesFile> file = policytest::ParseCasesFile(text, diags);
  if (!file) return diags.ToStatus();
  return policytest::RunCases(policy, file_name, *file);
}

absl::StatusOr<PolicyTestReport> RunPolicyTests(const Policy& policy,
                                                const std::string& cases_path) {
  absl::StatusOr<std::string> text = ReadRegularFile(cases_path, kMaxInputFileBytes);
  if (!text.ok()) return text.status();
  return RunPolicyTestsFromText(policy, cases_path, *text);
}

}  // namespace toolgate
