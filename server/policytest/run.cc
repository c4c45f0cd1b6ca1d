#include "server/policytest/run.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/duration.pb.h"
#include "server/base/clock.h"
#include "server/base/duration.h"
#include "server/base/yaml_util.h"
#include "server/counters/memory_store.h"
#include "server/decider/decider.h"
#include "server/engine/engine.h"

namespace toolgate {
namespace policytest {
namespace {

namespace pb = ::google::protobuf;

int64_t Millis(const pb::Duration& d) { return d.seconds() * 1000 + d.nanos() / 1'000'000; }

std::string PathList(const std::vector<std::string>& paths) {
  return absl::StrCat("[",
                      absl::StrJoin(paths, ", ",
                                    [](std::string* out, const std::string& p) {
                                      out->append(p.empty() ? "\"\"" : p);
                                    }),
                      "]");
}

// What the policy answered, for failure messages.
std::string DescribeResponse(const v1::CheckResponse& resp, bool with_decision) {
  std::vector<std::string> parts;
  if (with_decision) parts.push_back(absl::StrCat("decision ", DecisionLabel(resp.decision())));
  parts.push_back(absl::StrCat("rule ", resp.rule()));
  if (!resp.reason().empty()) parts.push_back(absl::StrCat("reason ", QuoteText(resp.reason())));
  if (resp.violations_size() > 0) {
    std::vector<std::string> vs;
    for (const auto& v : resp.violations()) {
      vs.push_back(absl::StrCat(v.path().empty() ? "\"\"" : v.path(), ": ", v.message()));
    }
    parts.push_back(absl::StrCat("violations [", absl::StrJoin(vs, "; "), "]"));
  }
  if (resp.limits_size() > 0) {
    std::vector<std::string> ls;
    for (const auto& l : resp.limits()) {
      ls.push_back(
          absl::StrCat(l.counter(), " (", l.scope(), ") ", l.remaining(), "/", l.max(), " left"));
    }
    parts.push_back(absl::StrCat("limits [", absl::StrJoin(ls, ", "), "]"));
  }
  if (resp.has_retry_after()) {
    parts.push_back(absl::StrCat("retry_after ", FormatMillis(Millis(resp.retry_after()))));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string CompareResponse(const Expect& e, const v1::CheckResponse& resp) {
  std::vector<std::string> diffs;
  const bool decision_differs = resp.decision() != e.decision;
  if (decision_differs) {
    diffs.push_back(absl::StrCat("expected ", DecisionLabel(e.decision), ", got ",
                                 DecisionLabel(resp.decision())));
  }
  if (e.rule && *e.rule != resp.rule()) {
    diffs.push_back(absl::StrCat("expected rule ", *e.rule, ", got ", resp.rule()));
  }
  if (e.reason && *e.reason != resp.reason()) {
    diffs.push_back(
        absl::StrCat("expected reason ", QuoteText(*e.reason), ", got ", QuoteText(resp.reason())));
  }
  if (e.reason_contains && !absl::StrContains(resp.reason(), *e.reason_contains)) {
    diffs.push_back(absl::StrCat("expected a reason containing ", QuoteText(*e.reason_contains),
                                 ", got ", QuoteText(resp.reason())));
  }
  if (e.violations) {
    std::vector<std::string> want = *e.violations, got;
    for (const auto& v : resp.violations()) got.push_back(v.path());
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    std::vector<std::string> got_set = got;
    got_set.erase(std::unique(got_set.begin(), got_set.end()), got_set.end());
    if (want != got_set) {
      diffs.push_back(
          absl::StrCat("expected violations ", PathList(want), ", got ", PathList(got)));
    }
  }
  if (e.remaining) {
    if (resp.limits_size() == 0) {
      diffs.push_back(absl::StrCat("expected remaining ", *e.remaining, ", got no limit status"));
    } else if (resp.limits(0).remaining() != *e.remaining) {
      diffs.push_back(absl::StrCat("expected remaining ", *e.remaining, ", got ",
                                   resp.limits(0).remaining(), " (counter ",
                                   resp.limits(0).counter(), ")"));
    }
  }
  for (const LimitExpect& le : e.limits) {
    const v1::LimitStatus* found = nullptr;
    for (const auto& l : resp.limits()) {
      if (l.counter() == le.counter) {
        found = &l;
        break;
      }
    }
    if (found == nullptr) {
      diffs.push_back(
          absl::StrCat("expected a status of counter ", QuoteText(le.counter), ", got none"));
      continue;
    }
    if (le.remaining && found->remaining() != *le.remaining) {
      diffs.push_back(absl::StrCat("expected counter ", le.counter, " remaining ", *le.remaining,
                                   ", got ", found->remaining()));
    }
    if (le.max && found->max() != *le.max) {
      diffs.push_back(
          absl::StrCat("expected counter ", le.counter, " max ", *le.max, ", got ", found->max()));
    }
    if (le.scope && found->scope() != *le.scope) {
      diffs.push_back(absl::StrCat("expected counter ", le.counter, " scope ", *le.scope, ", got ",
                                   found->scope()));
    }
  }
  if (e.retry_after_min_ms || e.retry_after_max_ms) {
    if (!resp.has_retry_after()) {
      diffs.push_back("expected a retry_after, got none");
    } else {
      const int64_t got = Millis(resp.retry_after());
      if (e.retry_after_min_ms && got < *e.retry_after_min_ms) {
        diffs.push_back(absl::StrCat("expected retry_after at least ",
                                     FormatMillis(*e.retry_after_min_ms), ", got ",
                                     FormatMillis(got)));
      }
      if (e.retry_after_max_ms && got > *e.retry_after_max_ms) {
        diffs.push_back(absl::StrCat("expected retry_after at most ",
                                     FormatMillis(*e.retry_after_max_ms), ", got ",
                                     FormatMillis(got)));
      }
    }
  }
  if (diffs.empty()) return "";
  return absl::StrCat(absl::StrJoin(diffs, "; "), " (",
                      DescribeResponse(resp, /*with_decision=*/!decision_differs), ")");
}

PolicyTestReport RunCases(const Policy& policy, const std::string& file_name,
                          const CasesFile& file) {
  PolicyTestReport report;
  report.cases_file = file_name;
  report.revision = policy.revision();
  ManualClock clock;  // Starts at a fixed time unless the file sets start_time.
  if (file.start_ms) clock.Set(*file.start_ms);
  MemoryCounterStore store(&clock);
  const Decider decider(&store, Engine(), ArgsLimits());
  // The policy outlives the run: the task borrows it.
  const std::shared_ptr<const Policy> borrowed(std::shared_ptr<const Policy>(), &policy);
  for (const Step& step : file.steps) {
    if (step.is_advance) {
      clock.Advance(step.advance_ms);
      continue;
    }
    PolicyTestCaseResult& result = report.cases.emplace_back();
    result.name = step.name;
    result.location = step.location;
    result.passed = true;
    if (absl::Status s = decider.Validate(step.request); !s.ok()) {
      result.passed = false;
      result.message = absl::StrCat("toolgated would refuse this call: ", s.message());
      continue;
    }
    for (int64_t i = 0; i < step.repeat; ++i) {
      v1::CheckResponse resp;
      DecisionTask task;
      task.policy = borrowed;
      task.request = &step.request;
      task.peer = step.peer;
      task.response = &resp;
      task.dry_run = step.request.dry_run();
      // The in-process store answers at once: decided when Decide returns.
      decider.Decide(task, [] {});
      ++result.calls;
      std::string diff = CompareResponse(step.expect, resp);
      if (!diff.empty()) {
        result.passed = false;
        result.message =
            step.repeat > 1 ? absl::StrCat("call ", i + 1, " of ", step.repeat, ": ", diff) : diff;
        break;
      }
    }
  }
  return report;
}

}  // namespace policytest
}  // namespace toolgate
