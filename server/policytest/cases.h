// Policy tests, cases: a cases file (see policy_test_runner.h for its
// format) parsed and validated completely before anything runs, every
// problem reported at once as "file:line:col: message".
#ifndef TOOLGATE_SERVER_POLICYTEST_CASES_H_
#define TOOLGATE_SERVER_POLICYTEST_CASES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/base/diagnostics.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {
namespace policytest {

// Bounds on what a cases file may ask for.
inline constexpr int64_t kMaxRepeat = 1'000'000;  // `repeat`
// `advance`, `retry_after_min`, `retry_after_max`: at most 366 days.
inline constexpr int64_t kMaxStepMillis = int64_t{366} * 24 * 3600 * 1000;
// Nesting of `args`, the arguments object being level 1 (as the server's
// --max-args-depth counts).
inline constexpr int kMaxArgsDepth = 100;

struct LimitExpect {
  std::string counter;
  std::optional<int64_t> remaining;
  std::optional<int64_t> max;
  std::optional<std::string> scope;
};

struct Expect {
  v1::Decision decision = v1::DECISION_UNSPECIFIED;
  std::optional<std::string> rule;
  std::optional<std::string> reason;
  std::optional<std::string> reason_contains;
  std::optional<std::vector<std::string>> violations;
  std::optional<int64_t> remaining;
  std::vector<LimitExpect> limits;
  std::optional<int64_t> retry_after_min_ms;
  std::optional<int64_t> retry_after_max_ms;
};

struct Step {
  bool is_advance = false;
  int64_t advance_ms = 0;
  std::string name;
  std::string location;
  v1::CheckRequest request;
  std::string peer;  // The caller's certificate identity; empty: none.
  int64_t repeat = 1;
  Expect expect;
};

struct CasesFile {
  std::optional<int64_t> start_ms;
  std::vector<Step> steps;
};

// Parses a cases file's text (YAML or JSON). Every problem is recorded in
// `diags` (whose file names the cases file); returns nullopt when there is
// one. The text is bounded by the caller (kMaxInputFileBytes for files).
std::optional<CasesFile> ParseCasesFile(absl::string_view text, Diagnostics& diags);

}  // namespace policytest
}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICYTEST_CASES_H_
