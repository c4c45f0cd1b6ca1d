// Policy tests: table-driven cases run offline against a compiled policy.
//
// A cases file (YAML or JSON, read with yaml-cpp like policies) lists tool
// calls and the decisions the policy must make for them:
//
//   start_time: "2026-11-25T09:00:00Z"   # optional: the test clock's start (RFC 3339)
//   defaults:                            # optional: call fields used when a case omits them
//     grant: agent-1
//   cases:
//     - name: "ten calls a minute per grant"
//       call:
//         tool: wait_for_background_task  # required
//         grant: agent-1                  # required (here or in defaults)
//         server: ""                      # optional
//         session: ""                     # optional
//         args: {command: "ls"}           # optional: the arguments object
//         dry_run: false                  # optional
//         peer: "spiffe://example.org/ci"  # optional: the caller's mTLS identity
//       repeat: 10                        # optional: make the call N times, each must match
//       expect:
//         decision: allow          # allow | deny | rate_limited | require_approval (required)
//         rule: tools.wait_for_background_task   # optional: exact
//         reason: "..."            # optional: exact
//         reason_contains: "..."   # optional: substring
//         violations: ["/command", "/timeout"]   # optional: exact set of violation paths
//         remaining: 9             # optional: `remaining` of the first limit status
//         limits:                  # optional: status of named counters
//           - {counter: web_requests, remaining: 99, max: 100, scope: session}
//         retry_after_min: 1s      # optional: retry_after must be present and >= this
//         retry_after_max: 60s     # optional: retry_after must be present and <= this
//     - advance: 61s               # a step: moves the test clock (no sleeping)
//
// Semantics:
// - Cases run in order against one in-process counter store (the server's
//   own MemoryCounterStore) driven by a ManualClock, so limits carry over from
//   case to case, and `advance` steps move time. Each cases file starts with
//   a fresh store and clock.
// - A call is decided exactly as toolgated decides it, by the same Decider
//   (server/decider/decider.h): the engine, then (when limits apply) the
//   store, then the engine again. A call toolgated would refuse with
//   INVALID_ARGUMENT (arguments over the default size or depth limits) fails
//   its case with that message.
// - `args` is read with JSON types, as argument schemas are: quoted scalars
//   are strings; plain true/false booleans, plain null/~ (or nothing) null,
//   plain decimal numbers numbers, anything else a string; maps and lists
//   recursively.
// - Durations (`advance`, `retry_after_*`) are "500ms", "61s", "5m", "1h30m",
//   "1d", second/minute/hour/day, or a plain number of seconds
//   (server/base/duration.h); at most 366 days.
// - With `repeat`, the case stops at the first call that does not match; the
//   report names it ("call 11 of 12: ...").
// - `name` is optional (default "case N", N counting from 1).
//
// A cases file is validated completely before anything runs: unknown keys,
// wrong types, bad decision names and missing fields are errors, all
// reported at once as "file:line:col: message", like policy errors.
//
// The parts: cases.h (the file -> validated cases), run.h (cases -> results,
// each call decided by the server's engine), report.h (results -> the lines
// `toolgate test` prints).
#ifndef TOOLGATE_SERVER_POLICYTEST_POLICY_TEST_RUNNER_H_
#define TOOLGATE_SERVER_POLICYTEST_POLICY_TEST_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/policy/policy.h"
#include "server/policytest/report.h"

namespace toolgate {

// Runs the cases file at `cases_path` (a regular file of at most 16 MiB)
// against `policy`. A non-OK status means the file could not be run:
// NOT_FOUND when it cannot be read, INVALID_ARGUMENT when it is not a regular
// file, is too large, or is invalid (every error, one per line, as
// "file:line:col: message"). Failing cases are not an error: see the report.
absl::StatusOr<PolicyTestReport> RunPolicyTests(const Policy& policy,
                                                const std::string& cases_path);

// Same, for cases given as text; `file_name` locates messages.
absl::StatusOr<PolicyTestReport> RunPolicyTestsFromText(const Policy& policy,
                                                        const std::string& file_name,
                                                        absl::string_view text);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICYTEST_POLICY_TEST_RUNNER_H_
