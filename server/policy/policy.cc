#include "server/policy/policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/policy/duration.h"
#include "server/policy/glob.h"

namespace toolgate {

absl::string_view ActionName(Action a) {
  switch (a) {
    case Action::kAllow:
      return "allow";
    case Action::kDeny:
      return "deny";
    case Action::kRequireApproval:
      return "require_approval";
  }
  return "unknown";
}

absl::string_view ScopeName(Scope s) {
  switch (s) {
    case Scope::kGrant:
      return "grant";
    case Scope::kSession:
      return "session";
    case Scope::kGlobal:
      return "global";
  }
  return "unknown";
}

absl::string_view AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kSlidingWindow:
      return "sliding_window";
    case Algorithm::kFixedWindow:
      return "fixed_window";
    case Algorithm::kTokenBucket:
      return "token_bucket";
  }
  return "unknown";
}

std::string LimitSpec::Describe() const {
  std::string out =
      absl::StrCat(max, " per ", FormatMillis(window_ms), " (", AlgorithmName(algorithm));
  if (algorithm == Algorithm::kTokenBucket && burst != max)
    absl::StrAppend(&out, ", burst ", burst);
  absl::StrAppend(&out, ", scope ", ScopeName(scope), ")");
  return out;
}

namespace {
size_t LiteralChars(absl::string_view pattern) {
  return static_cast<size_t>(
      std::count_if(pattern.begin(), pattern.end(), [](char c) { return c != '*' && c != '?'; }));
}
}  // namespace

Policy::Policy(std::string revision, std::vector<std::string> sources, ToolRule default_rule,
               std::vector<ToolRule> exact, std::vector<ToolRule> globs)
    : revision_(std::move(revision)),
      sources_(std::move(sources)),
      default_(std::move(default_rule)),
      globs_(std::move(globs)) {
  exact_.reserve(exact.size());
  for (ToolRule& rule : exact) {
    std::string name = rule.name;
    exact_.emplace(std::move(name), std::move(rule));
  }
  std::stable_sort(globs_.begin(), globs_.end(), [](const ToolRule& a, const ToolRule& b) {
    if (a.name.size() != b.name.size()) return a.name.size() > b.name.size();
    const size_t la = LiteralChars(a.name), lb = LiteralChars(b.name);
    if (la != lb) return la > lb;
    return a.order < b.order;
  });
}

const ToolRule& Policy::Find(absl::string_view tool) const {
  if (auto it = exact_.find(tool); it != exact_.end()) return it->second;
  for (const ToolRule& rule : globs_) {
    if (GlobMatch(rule.name, tool)) return rule;
  }
  return default_;
}

}  // namespace toolgate
