// The compiled, immutable form of a policy revision.
//
// A Policy is built once by the loader (see loader.h) and then shared
// read-only by every request that uses it: lookups never allocate or lock.
#ifndef TOOLGATE_SERVER_POLICY_POLICY_H_
#define TOOLGATE_SERVER_POLICY_POLICY_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "server/counters/algorithm.h"
#include "server/schema/schema.h"

namespace toolgate {

enum class Action { kAllow, kDeny, kRequireApproval };

// How long an approval stays usable (`approval_ttl` on entries and class
// rules): 15 minutes unless set, between 1 second and 7 days.
inline constexpr int64_t kDefaultApprovalTtlMs = 15LL * 60 * 1000;
inline constexpr int64_t kMinApprovalTtlMs = 1000;
inline constexpr int64_t kMaxApprovalTtlMs = 7LL * 24 * 3600 * 1000;
enum class Scope { kGrant, kSession, kGlobal };

absl::string_view ActionName(Action a);        // "allow" | "deny" | "require_approval"
absl::string_view ScopeName(Scope s);          // "grant" | "session" | "global"

// One rate limit of a tool entry.
struct LimitSpec {
  std::string counter;  // Counter name; tools naming the same counter share it.
  Algorithm algorithm = Algorithm::kSlidingWindow;
  Scope scope = Scope::kGrant;
  int64_t window_ms = 0;  // > 0
  int64_t max = 0;        // > 0: calls per window (token bucket: refill per window)
  int64_t burst = 0;      // Token bucket capacity (== max unless set); others: == max.
  // What one call costs: `cost` units, or, when `cost_from` is set (a JSON
  // Pointer into the arguments, e.g. "/amount"), the integer found there
  // (0..capacity, else the call is denied with a violation at that path).
  int64_t cost = 1;
  std::string cost_from;
  // `cost_from` split into its reference tokens, unescaped ("~1" -> "/",
  // "~0" -> "~"), so that a call's lookup decodes nothing.
  std::vector<std::string> cost_path;
  // `settle: required`: an admitted call's units are a reservation, given
  // back if the gateway reports the call FAILED (Settle), committed when it
  // reports SUCCEEDED or when the settlement timeout passes.
  bool settle = false;
  // Where the limit is written, for `rule` when it refuses:
  // "tools.<name>.limits[0]", "limits[1]", "grants.<g>.limits[0]", ...
  std::string rule_id;

  // The counter's definition (tools sharing a counter must agree on it; each
  // may charge its own cost and settle its own way).
  bool SameDefinition(const LimitSpec& o) const {
    return counter == o.counter && algorithm == o.algorithm && scope == o.scope &&
           window_ms == o.window_ms && max == o.max && burst == o.burst;
  }
  // "10 per 1m (sliding_window, scope grant)"
  std::string Describe() const;
  // The most one call may cost: `burst` for a token bucket, else `max`.
  int64_t Capacity() const { return algorithm == Algorithm::kTokenBucket ? burst : max; }
};

// Bounds on `cost_from` (a JSON Pointer, RFC 6901): its length in bytes and
// its reference tokens (no deeper than arguments may nest: --max-args-depth
// is at most 256).
inline constexpr size_t kMaxCostFromBytes = 1024;
inline constexpr size_t kMaxCostFromTokens = 256;

// Kinds of tools, for class rules.
enum class Category { kNone, kRead, kWrite, kExecute, kNetwork, kAdmin, kOther };
// Risk levels, ordered.
enum class Risk { kNone = -1, kLow = 0, kMedium = 1, kHigh = 2, kCritical = 3 };
absl::string_view CategoryName(Category c);  // "read", ...; "" for kNone
absl::string_view RiskName(Risk r);          // "low", ...; "" for kNone

// A policy entry: an exact tool name or a glob, or a default. Entries in
// `servers` and `grants` sections override only the fields they set; the
// rest is inherited from the entry one level down (see Policy::Resolve).
struct ToolRule {
  std::string name;     // As written in the policy ("run_command", "github_*").
  std::string rule_id;  // "tools.<name>", "servers.<s>.tools.<name>", "default", ...
  Action action = Action::kAllow;
  bool has_action = false;
  std::string reason;  // As written; may be empty. Goes with the action.
  std::vector<LimitSpec> limits;
  bool has_limits = false;
  std::shared_ptr<const ArgsSchema> args;  // Null when the entry has no schema.
  Category category = Category::kNone;
  Risk risk = Risk::kNone;
  int64_t approval_ttl_ms = 0;  // 0: not set (inherited, else the default).
  int order = 0;  // Position in the policy (tie-breaker between globs).
};

// A guardrail over a class of tools: every tool of one of `categories` (any
// category when empty) and at least `min_risk` (any risk when kNone) gets
// at least this action. Class rules only ever tighten a decision.
struct ClassRule {
  std::string name;
  std::string rule_id;  // "classes.<name>"
  std::vector<Category> categories;
  Risk min_risk = Risk::kNone;
  Action action = Action::kRequireApproval;
  std::string reason;
  int64_t approval_ttl_ms = 0;  // 0: the entry's (or the default).
  bool Matches(Category c, Risk r) const;
};

// Exact entries and globs of one level (the general `tools`, or a section).
class RuleSet {
 public:
  RuleSet() = default;
  // `globs` may be in any order; they are sorted by specificity here.
  RuleSet(std::vector<ToolRule> exact, std::vector<ToolRule> globs);

  // The exact entry, else the most specific matching glob (longer pattern
  // first, then more literal characters, then earlier in the policy), else
  // null.
  const ToolRule* Find(absl::string_view tool) const;
  size_t exact_count() const { return exact_.size(); }
  size_t glob_count() const { return globs_.size(); }

 private:
  absl::flat_hash_map<std::string, ToolRule> exact_;
  std::vector<ToolRule> globs_;  // Most specific first.
  // Globs by literal prefix (the characters before the first wildcard): a
  // tool can only match a glob whose prefix starts it, so a lookup probes
  // one bucket per distinct prefix length instead of trying every glob.
  // Buckets hold indexes into globs_, ascending (most specific first).
  absl::flat_hash_map<std::string, std::vector<uint32_t>> glob_buckets_;
  std::vector<size_t> glob_prefix_lengths_;  // Ascending, distinct.
};

// Bounds on a grant's `peers` list (see PeerRule).
inline constexpr size_t kMaxPeerPatterns = 256;       // Patterns in one list.
inline constexpr size_t kMaxPeerPatternBytes = 2048;  // One pattern (a SPIFFE ID's own bound).

// `grants.<name>.peers`: the callers (mTLS peer identities: the client
// certificate's URI SAN, else DNS SAN, else subject CN) that may assert the
// grant, as globs (server/base/glob.h). A call without a peer identity
// matches no pattern, not even "*".
struct PeerRule {
  std::string rule_id;                // "grants.<name>.peers"
  std::vector<std::string> patterns;  // At least one; each non-empty.

  // The first pattern `peer` matches, or null (always null for an empty peer).
  const std::string* Match(absl::string_view peer) const;
};

// A `servers.<name>` or `grants.<name>` section.
struct Section {
  RuleSet tools;
  // `limits` of the section: they apply to every call in its scope that
  // reaches the limits step, besides the entry's own.
  std::vector<LimitSpec> limits;
  std::optional<ToolRule> default_rule;  // When the section sets `default`.
  std::vector<std::string> bypass_classes;  // grants only: class rules lifted.
  std::optional<PeerRule> peers;            // grants only: who may assert the grant.
};

// How a call resolves against a policy, before arguments and counters.
struct Resolution {
  const ToolRule* entry = nullptr;  // The most specific matching entry, or the default used.
  absl::string_view rule_id;        // What decided (an entry, a default or a class rule).
  Action action = Action::kDeny;
  absl::string_view reason;
  const std::vector<LimitSpec>* limits = nullptr;  // Never null. The entry's.
  // Limits over every call of the scope (often empty; null counts as empty): the
  // grant's section's, the server's section's, the policy's top level.
  const std::vector<LimitSpec>* grant_limits = nullptr;
  const std::vector<LimitSpec>* server_limits = nullptr;
  const std::vector<LimitSpec>* policy_limits = nullptr;
  // Whether any limit applies (entry or scope).
  bool HasLimits() const {
    for (const std::vector<LimitSpec>* l : {limits, grant_limits, server_limits, policy_limits}) {
      if (l != nullptr && !l->empty()) return true;
    }
    return false;
  }
  const ArgsSchema* args = nullptr;
  absl::string_view args_rule_id;  // The entry whose schema applies.
  Category category = Category::kNone;
  Risk risk = Risk::kNone;
  const ClassRule* guardrail = nullptr;  // The class rule that tightened the action.
  // For kRequireApproval: how long the approval stays usable (the class
  // rule's that required it, else the entries', else the default).
  int64_t approval_ttl_ms = kDefaultApprovalTtlMs;
  bool is_default = false;               // No entry matched: a default decided.
};

class Policy {
 public:
  Policy(std::string revision, std::vector<std::string> sources, ToolRule default_rule,
         RuleSet tools, absl::flat_hash_map<std::string, Section> servers = {},
         absl::flat_hash_map<std::string, Section> grants = {}, std::vector<ClassRule> classes = {},
         std::vector<LimitSpec> limits = {});

  // The general entry for `tool` (ignoring sections and classes), else the
  // default.
  const ToolRule& Find(absl::string_view tool) const;

  // Resolves a call. Entries are looked up most specific first: the grant's
  // section, the server's section, the general `tools`; the first that
  // matches decides, and fields it does not set are inherited from the
  // next level's match. When nothing matches, the first `default` among
  // grant section, server section and the policy decides. Then class rules
  // for the tool's category and risk may tighten the action (allow <
  // require_approval < deny), unless the grant's section bypasses them.
  // `trace`, when given, receives one line per step (for explain).
  Resolution Resolve(absl::string_view tool, absl::string_view server, absl::string_view grant,
                     std::vector<std::string>* trace = nullptr) const;

  // The peer rule of `grant`'s section; null when the grant has no section
  // or its section sets no `peers` (any caller may assert it).
  const PeerRule* GrantPeers(absl::string_view grant) const;

  const std::string& revision() const { return revision_; }
  // The files this revision was loaded from.
  const std::vector<std::string>& sources() const { return sources_; }
  const ToolRule& default_rule() const { return default_; }
  // The top-level `limits`: over every call that reaches the limits step.
  const std::vector<LimitSpec>& limits() const { return limits_; }
  size_t exact_count() const { return tools_.exact_count(); }
  size_t glob_count() const { return tools_.glob_count(); }
  size_t server_count() const { return servers_.size(); }
  size_t grant_count() const { return grants_.size(); }
  size_t class_count() const { return classes_.size(); }

 private:
  std::string revision_;
  std::vector<std::string> sources_;
  ToolRule default_;
  RuleSet tools_;
  absl::flat_hash_map<std::string, Section> servers_;
  absl::flat_hash_map<std::string, Section> grants_;
  std::vector<ClassRule> classes_;
  std::vector<LimitSpec> limits_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_POLICY_H_
