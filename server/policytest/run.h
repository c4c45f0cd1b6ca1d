// Policy tests, running: the steps of a parsed cases file against a
// policy, each call decided as toolgated decides it, and each answer
// compared with what its case expects.
#ifndef TOOLGATE_SERVER_POLICYTEST_RUN_H_
#define TOOLGATE_SERVER_POLICYTEST_RUN_H_

#include <string>

#include "server/policy/policy.h"
#include "server/policytest/cases.h"
#include "server/policytest/report.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {
namespace policytest {

// Runs the steps of `file` in order against one fresh in-process counter
// store on a test clock (ManualClock, starting at the file's start_time):
// `advance` steps move the clock; each case makes its call `repeat` times,
// stopping at the first answer that does not match. `file_name` names the
// cases file in the report.
PolicyTestReport RunCases(const Policy& policy, const std::string& file_name,
                          const CasesFile& file);

// Empty when `resp` matches `expect`; otherwise every difference ("expected
// deny, got allow; ...") followed by what the policy answered.
std::string CompareResponse(const Expect& expect, const v1::CheckResponse& resp);

}  // namespace policytest
}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICYTEST_RUN_H_
