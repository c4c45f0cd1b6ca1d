// The compiled, immutable form of a policy revision.
//
// A Policy is built once by the loader (see loader.h) and then shared
// read-only by every request that uses it: lookups never allocate or lock.
#ifndef TOOLGATE_SERVER_POLICY_POLICY_H_
#define TOOLGATE_SERVER_POLICY_POLICY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "server/schema/schema.h"

namespace toolgate {

enum class Action { kAllow, kDeny, kRequireApproval };
enum class Scope { kGrant, kSession, kGlobal };
enum class Algorithm { kSlidingWindow, kFixedWindow, kTokenBucket };

absl::string_view ActionName(Action a);        // "allow" | "deny" | "require_approval"
absl::string_view ScopeName(Scope s);          // "grant" | "session" | "global"
absl::string_view AlgorithmName(Algorithm a);  // "sliding_window" | ...

// One rate limit of a tool entry.
struct LimitSpec {
  std::string counter;  // Counter name; tools naming the same counter share it.
  Algorithm algorithm = Algorithm::kSlidingWindow;
  Scope scope = Scope::kGrant;
  int64_t window_ms = 0;  // > 0
  int64_t max = 0;        // > 0: calls per window (token bucket: refill per window)
  int64_t burst = 0;      // Token bucket capacity (== max unless set); others: == max.

  bool SameDefinition(const LimitSpec& o) const {
    return counter == o.counter && algorithm == o.algorithm && scope == o.scope &&
           window_ms == o.window_ms && max == o.max && burst == o.burst;
  }
  // "10 per 1m (sliding_window, scope grant)"
  std::string Describe() const;
};

// A policy entry: an exact tool name or a glob, or the default.
struct ToolRule {
  std::string name;     // As written in the policy ("run_command", "github_*").
  std::string rule_id;  // "tools.<name>", or "default".
  Action action = Action::kAllow;
  std::string reason;  // As written; may be empty.
  std::vector<LimitSpec> limits;
  std::shared_ptr<const ArgsSchema> args;  // Null when the entry has no schema.
  int order = 0;                           // Position in the policy (tie-breaker between globs).
};

class Policy {
 public:
  // `globs` may be in any order; they are sorted by specificity here.
  Policy(std::string revision, std::vector<std::string> sources, ToolRule default_rule,
         std::vector<ToolRule> exact, std::vector<ToolRule> globs);

  // The entry deciding `tool`: the exact entry, else the most specific
  // matching glob (longer pattern first, then more literal characters, then
  // earlier in the policy), else the default.
  const ToolRule& Find(absl::string_view tool) const;

  const std::string& revision() const { return revision_; }
  // The files this revision was loaded from.
  const std::vector<std::string>& sources() const { return sources_; }
  const ToolRule& default_rule() const { return default_; }
  size_t exact_count() const { return exact_.size(); }
  size_t glob_count() const { return globs_.size(); }

 private:
  std::string revision_;
  std::vector<std::string> sources_;
  ToolRule default_;
  absl::flat_hash_map<std::string, ToolRule> exact_;
  std::vector<ToolRule> globs_;  // Most specific first.
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_POLICY_H_
