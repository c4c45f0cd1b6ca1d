#include "server/policy/policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/base/duration.h"
#include "server/base/glob.h"

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

std::string LimitSpec::Describe() const {
  std::string out =
      absl::StrCat(max, " per ", FormatMillis(window_ms), " (", AlgorithmName(algorithm));
  if (algorithm == Algorithm::kTokenBucket && burst != max)
    absl::StrAppend(&out, ", burst ", burst);
  absl::StrAppend(&out, ", scope ", ScopeName(scope), ")");
  return out;
}

absl::string_view CategoryName(Category c) {
  switch (c) {
    case Category::kRead:
      return "read";
    case Category::kWrite:
      return "write";
    case Category::kExecute:
      return "execute";
    case Category::kNetwork:
      return "network";
    case Category::kAdmin:
      return "admin";
    case Category::kOther:
      return "other";
    case Category::kNone:
      break;
  }
  return "";
}

absl::string_view RiskName(Risk r) {
  switch (r) {
    case Risk::kLow:
      return "low";
    case Risk::kMedium:
      return "medium";
    case Risk::kHigh:
      return "high";
    case Risk::kCritical:
      return "critical";
    case Risk::kNone:
      break;
  }
  return "";
}

bool ClassRule::Matches(Category c, Risk r) const {
  if (!categories.empty() &&
      std::find(categories.begin(), categories.end(), c) == categories.end()) {
    return false;
  }
  if (min_risk != Risk::kNone && (r == Risk::kNone || static_cast<int>(r) < static_cast<int>(min_risk))) {
    return false;
  }
  return true;
}

namespace {

size_t LiteralChars(absl::string_view pattern) {
  return static_cast<size_t>(std::count_if(pattern.begin(), pattern.end(),
                                           [](char c) { return c != '*' && c != '?'; }));
}

int Strictness(Action a) {
  switch (a) {
    case Action::kAllow:
      return 0;
    case Action::kRequireApproval:
      return 1;
    case Action::kDeny:
      return 2;
  }
  return 2;
}

const std::vector<LimitSpec>& NoLimits() {
  static const std::vector<LimitSpec>* const empty = new std::vector<LimitSpec>();
  return *empty;
}

}  // namespace

RuleSet::RuleSet(std::vector<ToolRule> exact, std::vector<ToolRule> globs)
    : globs_(std::move(globs)) {
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
  for (uint32_t i = 0; i < globs_.size(); ++i) {
    const absl::string_view name = globs_[i].name;
    const absl::string_view prefix = name.substr(0, name.find_first_of("*?"));
    std::vector<uint32_t>& bucket = glob_buckets_[prefix];
    if (bucket.empty()) glob_prefix_lengths_.push_back(prefix.size());
    bucket.push_back(i);
  }
  std::sort(glob_prefix_lengths_.begin(), glob_prefix_lengths_.end());
  glob_prefix_lengths_.erase(
      std::unique(glob_prefix_lengths_.begin(), glob_prefix_lengths_.end()),
      glob_prefix_lengths_.end());
}

const ToolRule* RuleSet::Find(absl::string_view tool) const {
  if (auto it = exact_.find(tool); it != exact_.end()) return &it->second;
  // The matching glob that comes first in globs_, among the buckets whose
  // prefix starts the tool's name.
  size_t best = globs_.size();
  for (size_t len : glob_prefix_lengths_) {
    if (len > tool.size()) break;
    auto bucket = glob_buckets_.find(tool.substr(0, len));
    if (bucket == glob_buckets_.end()) continue;
    for (uint32_t i : bucket->second) {
      if (i >= best) break;
      if (GlobMatch(absl::string_view(globs_[i].name).substr(len), tool.substr(len))) {
        best = i;
        break;
      }
    }
  }
  return best < globs_.size() ? &globs_[best] : nullptr;
}

Policy::Policy(std::string revision, std::vector<std::string> sources, ToolRule default_rule,
               RuleSet tools, absl::flat_hash_map<std::string, Section> servers,
               absl::flat_hash_map<std::string, Section> grants, std::vector<ClassRule> classes,
               std::vector<LimitSpec> limits)
    : revision_(std::move(revision)),
      sources_(std::move(sources)),
      default_(std::move(default_rule)),
      tools_(std::move(tools)),
      servers_(std::move(servers)),
      grants_(std::move(grants)),
      classes_(std::move(classes)),
      limits_(std::move(limits)) {}

const std::string* PeerRule::Match(absl::string_view peer) const {
  if (peer.empty()) return nullptr;
  for (const std::string& pattern : patterns) {
    if (GlobMatch(pattern, peer)) return &pattern;
  }
  return nullptr;
}

const PeerRule* Policy::GrantPeers(absl::string_view grant) const {
  if (grants_.empty() || grant.empty()) return nullptr;
  auto it = grants_.find(grant);
  if (it == grants_.end() || !it->second.peers) return nullptr;
  return &*it->second.peers;
}

const ToolRule& Policy::Find(absl::string_view tool) const {
  const ToolRule* rule = tools_.Find(tool);
  return rule != nullptr ? *rule : default_;
}

Resolution Policy::Resolve(absl::string_view tool, absl::string_view server,
                           absl::string_view grant, std::vector<std::string>* trace) const {
  const Section* grant_section = nullptr;
  const Section* server_section = nullptr;
  if (!grants_.empty() && !grant.empty()) {
    if (auto it = grants_.find(grant); it != grants_.end()) grant_section = &it->second;
  }
  if (!servers_.empty() && !server.empty()) {
    if (auto it = servers_.find(server); it != servers_.end()) server_section = &it->second;
  }

  // The matching entries, most specific first.
  const ToolRule* chain[3];
  int n = 0;
  auto consider = [&](const RuleSet& set, absl::string_view kind, absl::string_view name) {
    const ToolRule* r = set.Find(tool);
    if (r != nullptr) chain[n++] = r;
    if (trace != nullptr) {
      const std::string where = name.empty() ? std::string(kind) : absl::StrCat(kind, ".", name);
      trace->push_back(r != nullptr ? absl::StrCat("lookup ", where, ": matched ", r->rule_id)
                                    : absl::StrCat("lookup ", where, ": no entry matches"));
    }
  };
  if (grant_section != nullptr) consider(grant_section->tools, "grants", grant);
  if (server_section != nullptr) consider(server_section->tools, "servers", server);
  consider(tools_, "tools", "");

  Resolution out;
  out.limits = &NoLimits();
  out.grant_limits = grant_section != nullptr ? &grant_section->limits : &NoLimits();
  out.server_limits = server_section != nullptr ? &server_section->limits : &NoLimits();
  out.policy_limits = &limits_;
  int64_t entry_ttl = 0;
  if (n == 0) {
    const ToolRule* def = &default_;
    if (grant_section != nullptr && grant_section->default_rule) {
      def = &*grant_section->default_rule;
    } else if (server_section != nullptr && server_section->default_rule) {
      def = &*server_section->default_rule;
    }
    out.entry = def;
    out.rule_id = def->rule_id;
    out.action = def->action;
    out.reason = def->reason;
    out.is_default = true;
    entry_ttl = def->approval_ttl_ms;
    if (trace != nullptr) {
      trace->push_back(absl::StrCat("no entry matches: ", def->rule_id, " decides (",
                                    ActionName(def->action), ")"));
    }
  } else {
    out.entry = chain[0];
    out.rule_id = chain[0]->rule_id;
    bool have_action = false, have_limits = false;
    for (int i = 0; i < n; ++i) {
      const ToolRule* r = chain[i];
      if (!have_action && r->has_action) {
        out.action = r->action;
        out.reason = r->reason;
        have_action = true;
        if (trace != nullptr && i > 0) {
          trace->push_back(absl::StrCat("action ", ActionName(r->action), " inherited from ", r->rule_id));
        }
      }
      if (!have_limits && r->has_limits) {
        out.limits = &r->limits;
        have_limits = true;
        if (trace != nullptr && i > 0) {
          trace->push_back(absl::StrCat("limits inherited from ", r->rule_id));
        }
      }
      if (out.args == nullptr && r->args != nullptr) {
        out.args = r->args.get();
        out.args_rule_id = r->rule_id;
      }
      if (out.category == Category::kNone) out.category = r->category;
      if (out.risk == Risk::kNone) out.risk = r->risk;
      if (entry_ttl == 0) entry_ttl = r->approval_ttl_ms;
    }
    if (!have_action) {
      out.action = Action::kAllow;
      out.reason = chain[0]->reason;
    }
    if (trace != nullptr) {
      trace->push_back(absl::StrCat(out.rule_id, " decides: ", ActionName(out.action)));
      if (out.category != Category::kNone || out.risk != Risk::kNone) {
        trace->push_back(absl::StrCat("tool class: category ",
                                      out.category == Category::kNone ? "(none)" : CategoryName(out.category),
                                      ", risk ", out.risk == Risk::kNone ? "(none)" : RiskName(out.risk)));
      }
    }
  }

  if (entry_ttl > 0) out.approval_ttl_ms = entry_ttl;
  // Guardrails: class rules only tighten.
  for (const ClassRule& c : classes_) {
    if (!c.Matches(out.category, out.risk)) continue;
    if (grant_section != nullptr &&
        std::find(grant_section->bypass_classes.begin(), grant_section->bypass_classes.end(),
                  c.name) != grant_section->bypass_classes.end()) {
      if (trace != nullptr) {
        trace->push_back(absl::StrCat(c.rule_id, " applies but grants.", grant, " bypasses it"));
      }
      continue;
    }
    if (Strictness(c.action) > Strictness(out.action)) {
      out.action = c.action;
      out.reason = c.reason;
      out.rule_id = c.rule_id;
      out.guardrail = &c;
      if (c.approval_ttl_ms > 0) out.approval_ttl_ms = c.approval_ttl_ms;
      if (trace != nullptr) {
        trace->push_back(absl::StrCat(c.rule_id, " tightens the decision to ", ActionName(c.action)));
      }
    } else if (trace != nullptr) {
      trace->push_back(absl::StrCat(c.rule_id, " applies (", ActionName(c.action),
                                    "), no stricter than the decision"));
    }
  }
  return out;
}

}  // namespace toolgate
