#include "server/policy/parser.h"

#include <initializer_list>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "server/base/duration.h"
#include "server/base/glob.h"
#include "server/base/utf8.h"
#include "server/base/yaml_util.h"

namespace toolgate {
namespace {

// The value of an enum whose name (as `name` gives it) is `text`.
template <typename E>
std::optional<E> ByName(absl::string_view text, std::initializer_list<E> values,
                        absl::string_view (*name)(E)) {
  for (E e : values) {
    if (name(e) == text) return e;
  }
  return std::nullopt;
}

constexpr int64_t kMaxLimit = 1'000'000'000;

std::optional<std::string> GetString(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a string, got ", YamlKindName(n)));
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<int64_t> GetPositiveInt(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  int64_t v = 0;
  if (!n.IsScalar() || IsQuotedScalar(n) || !absl::SimpleAtoi(n.Scalar(), &v)) {
    d.Error(n, absl::StrCat(what, " must be a positive integer, got ",
                            n.IsScalar() ? QuoteText(n.Scalar()) : YamlKindName(n)));
    return std::nullopt;
  }
  if (v <= 0) {
    d.Error(n, absl::StrCat(what, " must be a positive integer, got ", v));
    return std::nullopt;
  }
  if (v > kMaxLimit) {
    d.Error(n, absl::StrCat(what, " must be at most ", kMaxLimit, ", got ", v));
    return std::nullopt;
  }
  return v;
}

std::optional<Action> ParseAction(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  auto s = GetString(n, what, d);
  if (!s) return std::nullopt;
  if (*s == "allow") return Action::kAllow;
  if (*s == "deny") return Action::kDeny;
  if (*s == "require_approval") return Action::kRequireApproval;
  d.Error(n, absl::StrCat(what, " must be allow, deny or require_approval, got ", QuoteText(*s)));
  return std::nullopt;
}

std::optional<int64_t> ParseWindow(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a duration, got ", YamlKindName(n)));
    return std::nullopt;
  }
  const absl::StatusOr<int64_t> ms = ParseWindowScalar(n.Scalar(), !IsQuotedScalar(n));
  if (!ms.ok()) {
    d.Error(n, absl::StrCat(what, ": ", ms.status().message()));
    return std::nullopt;
  }
  return *ms;
}

// `approval_ttl`: a duration from kMinApprovalTtlMs to kMaxApprovalTtlMs.
std::optional<int64_t> ParseApprovalTtl(const YAML::Node& n, absl::string_view what,
                                        Diagnostics& d) {
  std::optional<int64_t> ms = ParseWindow(n, what, d);
  if (!ms) return std::nullopt;
  if (*ms < kMinApprovalTtlMs || *ms > kMaxApprovalTtlMs) {
    d.Error(n, absl::StrCat(what, " must be from 1s to 7d, got ", n.Scalar()));
    return std::nullopt;
  }
  return ms;
}

// Tool, server, grant and class names follow the rules of the names in a
// request (no control characters), and are at most kMaxNameBytesCeiling
// bytes: a longer name could never match a request under any
// --max-name-bytes. Records an error at `at` and returns false otherwise.
bool CheckPolicyName(absl::string_view name, absl::string_view what, const YAML::Node& at,
                     Diagnostics& d) {
  const Utf8Problem p = FindUtf8Problem(name, /*forbid_control=*/true);
  if (!p.ok()) {
    d.Error(at, absl::StrCat(what, " ", QuoteText(name), ": ", DescribeUtf8Problem(p)));
    return false;
  }
  if (name.size() > kMaxNameBytesCeiling) {
    d.Error(at,
            absl::StrCat(what, " is ", name.size(), " bytes, longer than ", kMaxNameBytesCeiling,
                         " (the most --max-name-bytes allows): it could never match a call"));
    return false;
  }
  return true;
}

bool ValidCounterName(absl::string_view s) {
  if (s.empty() || s.size() > 200) return false;
  for (char c : s) {
    if (c <= ' ' || c >= 127 || c == '{' || c == '}' || c == '|') return false;
  }
  return true;
}

// `cost_from`: a JSON Pointer (RFC 6901) into the arguments, bounded in
// length and depth, split into unescaped tokens. False (with an error) when
// it is not one.
bool ParseCostFrom(const YAML::Node& v, const std::string& what, LimitSpec& spec, Diagnostics& d) {
  auto s = GetString(v, what, d);
  if (!s) return false;
  if (s->empty() || (*s)[0] != '/') {
    d.Error(v, absl::StrCat(what,
                            " must be a JSON Pointer into the arguments starting with \"/\" "
                            "(e.g. /amount), got ",
                            QuoteText(*s)));
    return false;
  }
  if (s->size() > kMaxCostFromBytes) {
    d.Error(v, absl::StrCat(what, " is ", s->size(), " bytes, longer than ", kMaxCostFromBytes));
    return false;
  }
  if (const Utf8Problem p = FindUtf8Problem(*s, /*forbid_control=*/true); !p.ok()) {
    d.Error(v, absl::StrCat(what, " ", QuoteText(*s), ": ", DescribeUtf8Problem(p)));
    return false;
  }
  std::vector<std::string> tokens;
  std::string token;
  for (size_t i = 1; i <= s->size(); ++i) {
    if (i == s->size() || (*s)[i] == '/') {
      tokens.push_back(std::move(token));
      token.clear();
      continue;
    }
    const char c = (*s)[i];
    if (c != '~') {
      token.push_back(c);
      continue;
    }
    const char next = i + 1 < s->size() ? (*s)[i + 1] : '\0';
    if (next != '0' && next != '1') {
      d.Error(v, absl::StrCat(what, " ", QuoteText(*s), ": \"~\" at byte ", i,
                              " must be followed by 0 or 1 (\"~0\" is \"~\", \"~1\" is \"/\")"));
      return false;
    }
    token.push_back(next == '0' ? '~' : '/');
    ++i;
  }
  if (tokens.size() > kMaxCostFromTokens) {
    d.Error(v, absl::StrCat(what, " has ", tokens.size(), " reference tokens, more than ",
                            kMaxCostFromTokens, " (arguments nest at most that deep)"));
    return false;
  }
  spec.cost_from = *std::move(s);
  spec.cost_path = std::move(tokens);
  return true;
}

// Parses one element of a `limits` list at `where` ("tools.t.limits[0]",
// "limits[1]"), which is also the limit's rule_id.
void ParseLimit(const YAML::Node& node, const std::string& where,
                const std::string& default_counter, std::vector<LimitSpec>& out,
                std::vector<YAML::Mark>& marks, Diagnostics& d) {
  LimitSpec spec;
  spec.rule_id = where;
  bool has_counter = false, saw_window = false, saw_max = false;
  std::optional<YAML::Node> burst_node, cost_node, cost_from_node;
  const size_t errors_before = d.errors().size();
  const bool is_map = ForEachKey(
      node, where,
      {"counter", "window", "max", "scope", "algorithm", "burst", "cost", "cost_from", "settle"}, d,
      [&](const std::string& key, const YAML::Node&, const YAML::Node& v) {
        if (key == "counter") {
          if (auto s = GetString(v, where + ".counter", d)) {
            if (!ValidCounterName(*s)) {
              d.Error(v,
                      absl::StrCat(where, ".counter ", QuoteText(*s),
                                   " must be 1-200 printable ASCII characters without spaces, braces or '|'"));
            } else {
              spec.counter = *s;
              has_counter = true;
            }
          }
        } else if (key == "window") {
          saw_window = true;
          if (auto w = ParseWindow(v, where + ".window", d)) spec.window_ms = *w;
        } else if (key == "max") {
          saw_max = true;
          if (auto m = GetPositiveInt(v, where + ".max", d)) spec.max = *m;
        } else if (key == "scope") {
          if (auto s = GetString(v, where + ".scope", d)) {
            if (auto scope = ByName(*s, {Scope::kGrant, Scope::kSession, Scope::kGlobal},
                                    ScopeName)) {
              spec.scope = *scope;
            } else {
              d.Error(v, absl::StrCat(where, ".scope must be grant, session or global, got ",
                                      QuoteText(*s)));
            }
          }
        } else if (key == "algorithm") {
          if (auto s = GetString(v, where + ".algorithm", d)) {
            if (auto alg = ByName(*s,
                                  {Algorithm::kSlidingWindow, Algorithm::kFixedWindow,
                                   Algorithm::kTokenBucket},
                                  AlgorithmName)) {
              spec.algorithm = *alg;
            } else {
              d.Error(v, absl::StrCat(where,
                                      ".algorithm must be sliding_window, fixed_window or "
                                      "token_bucket, got ",
                                      QuoteText(*s)));
            }
          }
        } else if (key == "burst") {
          burst_node = v;
        } else if (key == "cost") {
          cost_node = v;
        } else if (key == "cost_from") {
          cost_from_node = v;
        } else if (key == "settle") {
          if (auto s = GetString(v, where + ".settle", d)) {
            if (*s == "required") {
              spec.settle = true;
            } else if (*s != "none") {
              d.Error(v,
                      absl::StrCat(where, ".settle must be required or none, got ", QuoteText(*s)));
            }
          }
        }
      });
  if (!is_map) return;
  if (!saw_window) d.Error(node, where + ": window is required");
  if (!saw_max) d.Error(node, where + ": max is required");
  if (!has_counter) spec.counter = default_counter;
  spec.burst = spec.max;
  if (burst_node) {
    if (spec.algorithm != Algorithm::kTokenBucket) {
      d.Error(*burst_node, absl::StrCat(where, ".burst applies only to algorithm token_bucket"));
    } else if (auto b = GetPositiveInt(*burst_node, where + ".burst", d)) {
      spec.burst = *b;
    }
  }
  if (cost_node && cost_from_node) {
    d.Error(*cost_from_node,
            absl::StrCat(where,
                         ": set cost or cost_from, not both (cost_from reads each call's "
                         "cost from its arguments)"));
  } else if (cost_node) {
    if (auto c = GetPositiveInt(*cost_node, where + ".cost", d)) {
      // Past the capacity no call could ever be admitted.
      if (spec.Capacity() > 0 && *c > spec.Capacity()) {
        d.Error(*cost_node,
                absl::StrCat(where, ".cost ", *c, " is more than the limit's ",
                             spec.algorithm == Algorithm::kTokenBucket ? "burst" : "max", " (",
                             spec.Capacity(), "): no call could ever be admitted"));
      } else {
        spec.cost = *c;
      }
    }
  } else if (cost_from_node) {
    ParseCostFrom(*cost_from_node, where + ".cost_from", spec, d);
  }
  if (d.errors().size() != errors_before) return;
  out.push_back(std::move(spec));
  marks.push_back(node.Mark());
}

// A `limits` list at `where` ("tools.t.limits", "limits",
// "grants.g.limits") of `owner` (named in errors: "tools.t", "limits"). Unnamed counters are
// "<counter_base>#<i>" when `counter_base` is set, else the limit's own rule_id ("limits[0]"),
// which no entry's default counter ("<name>#<i>") can equal.
void ParseLimitList(const YAML::Node& ln, const std::string& where, absl::string_view owner,
                    const std::string& counter_base, std::vector<LimitSpec>& out,
                    std::vector<YAML::Mark>& marks, Diagnostics& d) {
  for (size_t i = 0; i < ln.size(); ++i) {
    const std::string at = absl::StrCat(where, "[", i, "]");
    ParseLimit(ln[i], at, counter_base.empty() ? at : absl::StrCat(counter_base, "#", i), out,
               marks, d);
  }
  absl::flat_hash_map<std::string, size_t> counters;
  for (size_t i = 0; i < out.size(); ++i) {
    auto [it, inserted] = counters.emplace(out[i].counter, i);
    if (!inserted) {
      d.Error(marks[i],
              absl::StrCat(owner, " names counter ", QuoteText(out[i].counter), " more than once"));
    }
  }
}

// A `limits` list over every call of a scope (top level, section).
void ParseScopeLimits(const YAML::Node& ln, const std::string& where, ParsedLimits& out,
                      Diagnostics& d) {
  if (!ln.IsSequence()) {
    d.Error(ln, absl::StrCat(where, " must be a list, got ", YamlKindName(ln)));
    return;
  }
  out.present = true;
  out.mark = ln.Mark();
  ParseLimitList(ln, where, where, "", out.limits, out.limit_marks, d);
}

std::optional<Category> ParseCategory(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  auto s = GetString(n, what, d);
  if (!s) return std::nullopt;
  for (Category c : {Category::kRead, Category::kWrite, Category::kExecute, Category::kNetwork,
                     Category::kAdmin, Category::kOther}) {
    if (*s == CategoryName(c)) return c;
  }
  d.Error(n, absl::StrCat(what, " must be read, write, execute, network, admin or other, got ",
                          QuoteText(*s)));
  return std::nullopt;
}

std::optional<Risk> ParseRisk(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  auto s = GetString(n, what, d);
  if (!s) return std::nullopt;
  for (Risk r : {Risk::kLow, Risk::kMedium, Risk::kHigh, Risk::kCritical}) {
    if (*s == RiskName(r)) return r;
  }
  d.Error(n, absl::StrCat(what, " must be low, medium, high or critical, got ", QuoteText(*s)));
  return std::nullopt;
}

// Parses one tool entry. `prefix` is the entry's path ("tools.",
// "servers.github.tools.") and names its default counters.
void ParseTool(const YAML::Node& key, const YAML::Node& node, int order, const std::string& prefix,
               std::vector<ParsedTool>& out, Diagnostics& d) {
  ParsedTool tool;
  tool.rule.name = key.Scalar();
  tool.rule.rule_id = absl::StrCat(prefix, tool.rule.name);
  tool.rule.order = order;
  tool.mark = key.Mark();
  const std::string& where = tool.rule.rule_id;
  if (tool.rule.name.empty()) {
    d.Error(key, "a tool name must not be empty");
    return;
  }
  if (!CheckPolicyName(tool.rule.name, "a tool name", key, d)) return;
  const size_t errors_before = d.errors().size();
  // `tool_name: {}` and `tool_name:` (null) both mean "allowed, no limits".
  if (!node.IsNull()) {
    std::optional<YAML::Node> limits_node;
    ForEachKey(node, where,
               {"action", "reason", "limits", "args", "category", "risk", "description",
                "approval_ttl"},
               d, [&](const std::string& k, const YAML::Node&, const YAML::Node& v) {
                 if (k == "approval_ttl") {
                   if (auto t = ParseApprovalTtl(v, where + ".approval_ttl", d)) {
                     tool.rule.approval_ttl_ms = *t;
                   }
                 } else if (k == "action") {
                   if (auto a = ParseAction(v, where + ".action", d)) {
                     tool.rule.action = *a;
                     tool.rule.has_action = true;
                   }
                 } else if (k == "category") {
                   if (auto c = ParseCategory(v, where + ".category", d)) tool.rule.category = *c;
                 } else if (k == "risk") {
                   if (auto r = ParseRisk(v, where + ".risk", d)) tool.rule.risk = *r;
                 } else if (k == "description") {
                   GetString(v, where + ".description", d);
                 } else if (k == "reason") {
                   if (auto s = GetString(v, where + ".reason", d)) tool.rule.reason = *s;
                 } else if (k == "limits") {
                   limits_node = v;
                 } else if (k == "args") {
                   std::unique_ptr<const ArgsSchema> schema =
                       ArgsSchema::Compile(v, where + ".args", d);
                   tool.rule.args = std::move(schema);
                 }
               });
    if (limits_node) {
      const YAML::Node& ln = *limits_node;
      if (!ln.IsSequence()) {
        d.Error(ln, absl::StrCat(where, ".limits must be a list, got ", YamlKindName(ln)));
      } else {
        tool.rule.has_limits = true;
        // General entries' unnamed counters are "<tool>#<i>"; sections'
        // carry the section's path so that they never collide.
        const std::string counter_base =
            prefix == "tools." ? tool.rule.name : tool.rule.rule_id;
        ParseLimitList(ln, where + ".limits", where, counter_base, tool.rule.limits,
                       tool.limit_marks, d);
        if (tool.rule.action != Action::kAllow && ln.size() > 0) {
          d.Error(ln, absl::StrCat(where, ".limits apply only to allowed tools, but the action is ",
                                   ActionName(tool.rule.action)));
        }
      }
    }
  }
  if (d.errors().size() == errors_before) out.push_back(std::move(tool));
}

void ParseTools(const YAML::Node& v, const std::string& prefix, int& order,
                std::vector<ParsedTool>& out, Diagnostics& d) {
  if (v.IsNull()) return;
  const std::string where = prefix.substr(0, prefix.size() - 1);
  ForEachKey(v, where, {}, d, [&](const std::string&, const YAML::Node& tk, const YAML::Node& tv) {
    ParseTool(tk, tv, order++, prefix, out, d);
  });
}

// `grants.<name>.peers`: a non-empty list (at most kMaxPeerPatterns) of
// distinct, non-empty globs of valid UTF-8 without control characters, each
// at most kMaxPeerPatternBytes.
void ParsePeers(const YAML::Node& value, const std::string& where, ParsedSection& section,
                Diagnostics& d) {
  const std::string what = where + ".peers";
  if (!value.IsSequence()) {
    d.Error(value,
            absl::StrCat(what, " must be a list of peer patterns, got ", YamlKindName(value)));
    return;
  }
  if (value.size() == 0) {
    d.Error(value, absl::StrCat(what,
                                " must name at least one peer pattern (leave peers out to let "
                                "any caller assert the grant)"));
    return;
  }
  if (value.size() > kMaxPeerPatterns) {
    d.Error(value,
            absl::StrCat(what, " lists ", value.size(), " patterns, more than ", kMaxPeerPatterns));
    return;
  }
  const size_t errors_before = d.errors().size();
  std::vector<std::string> patterns;
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string at = absl::StrCat(what, "[", i, "]");
    auto s = GetString(value[i], at, d);
    if (!s) continue;
    if (s->empty()) {
      d.Error(value[i], absl::StrCat(at, " must not be empty"));
      continue;
    }
    if (const Utf8Problem p = FindUtf8Problem(*s, /*forbid_control=*/true); !p.ok()) {
      d.Error(value[i], absl::StrCat(at, " ", QuoteText(*s), ": ", DescribeUtf8Problem(p)));
      continue;
    }
    if (s->size() > kMaxPeerPatternBytes) {
      d.Error(value[i],
              absl::StrCat(at, " is ", s->size(), " bytes, longer than ", kMaxPeerPatternBytes));
      continue;
    }
    if (!seen.insert(*s).second) {
      d.Error(value[i], absl::StrCat(at, " ", QuoteText(*s), " is listed more than once"));
      continue;
    }
    patterns.push_back(*std::move(s));
  }
  if (d.errors().size() == errors_before) section.peers = std::move(patterns);
}

void ParseSections(const YAML::Node& v, const std::string& kind, int& order, PolicyDocument& doc,
                   Diagnostics& d) {
  if (v.IsNull()) return;
  ForEachKey(v, kind, {}, d, [&](const std::string& name, const YAML::Node& k, const YAML::Node& body) {
    ParsedSection section;
    section.kind = kind;
    section.name = name;
    section.mark = k.Mark();
    const std::string where = absl::StrCat(kind, ".", name);
    if (name.empty()) {
      d.Error(k, absl::StrCat("a name in ", kind, " must not be empty"));
      return;
    }
    if (!CheckPolicyName(name, absl::StrCat("a name in ", kind), k, d)) return;
    std::initializer_list<absl::string_view> keys_servers = {"default", "tools", "limits"};
    std::initializer_list<absl::string_view> keys_grants = {"default", "tools", "bypass_classes",
                                                            "peers", "limits"};
    if (body.IsNull()) {
      doc.sections.push_back(std::move(section));
      return;
    }
    ForEachKey(body, where, kind == "grants" ? keys_grants : keys_servers, d,
               [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
                 if (key == "default") {
                   if (auto a = ParseAction(value, where + ".default", d)) {
                     section.default_action = *a;
                     section.default_mark = value.Mark();
                   }
                 } else if (key == "tools") {
                   ParseTools(value, where + ".tools.", order, section.tools, d);
                 } else if (key == "bypass_classes") {
                   if (!value.IsSequence()) {
                     d.Error(value, where + ".bypass_classes must be a list of class names");
                     return;
                   }
                   for (size_t i = 0; i < value.size(); ++i) {
                     if (auto s = GetString(value[i], where + ".bypass_classes[]", d)) {
                       if (!CheckPolicyName(*s, where + ".bypass_classes[] class name", value[i],
                                            d)) {
                         continue;
                       }
                       section.bypass_classes.push_back(*s);
                       section.bypass_marks.push_back(value[i].Mark());
                     }
                   }
                 } else if (key == "peers") {
                   ParsePeers(value, where, section, d);
                 } else if (key == "limits") {
                   ParseScopeLimits(value, where + ".limits", section.limits, d);
                 }
               });
    doc.sections.push_back(std::move(section));
  });
}

void ParseClasses(const YAML::Node& v, PolicyDocument& doc, Diagnostics& d) {
  if (v.IsNull()) return;
  ForEachKey(v, "classes", {}, d, [&](const std::string& name, const YAML::Node& k, const YAML::Node& body) {
    ParsedClass c;
    c.rule.name = name;
    c.rule.rule_id = absl::StrCat("classes.", name);
    c.mark = k.Mark();
    const std::string& where = c.rule.rule_id;
    if (!CheckPolicyName(name, "a class name", k, d)) return;
    bool has_action = false;
    const size_t errors_before = d.errors().size();
    ForEachKey(body, where,
               {"category", "min_risk", "action", "reason", "description", "approval_ttl"}, d,
               [&](const std::string& key, const YAML::Node&, const YAML::Node& value) {
                 if (key == "approval_ttl") {
                   if (auto t = ParseApprovalTtl(value, where + ".approval_ttl", d)) {
                     c.rule.approval_ttl_ms = *t;
                   }
                 } else if (key == "category") {
                   if (value.IsSequence()) {
                     for (size_t i = 0; i < value.size(); ++i) {
                       if (auto cat = ParseCategory(value[i], where + ".category[]", d)) {
                         c.rule.categories.push_back(*cat);
                       }
                     }
                   } else if (auto cat = ParseCategory(value, where + ".category", d)) {
                     c.rule.categories.push_back(*cat);
                   }
                 } else if (key == "min_risk") {
                   if (auto r = ParseRisk(value, where + ".min_risk", d)) c.rule.min_risk = *r;
                 } else if (key == "action") {
                   if (auto a = ParseAction(value, where + ".action", d)) {
                     if (*a == Action::kAllow) {
                       d.Error(value, absl::StrCat(where,
                                                   ".action must be deny or require_approval: "
                                                   "class rules only tighten decisions"));
                     }
                     c.rule.action = *a;
                     has_action = true;
                   }
                 } else if (key == "reason") {
                   if (auto s = GetString(value, where + ".reason", d)) c.rule.reason = *s;
                 } else if (key == "description") {
                   GetString(value, where + ".description", d);
                 }
               });
    if (d.errors().size() != errors_before) return;
    if (!has_action) {
      d.Error(k, absl::StrCat(where, ": action is required (deny or require_approval)"));
      return;
    }
    if (c.rule.categories.empty() && c.rule.min_risk == Risk::kNone) {
      d.Error(k, absl::StrCat(where, ": set category, min_risk or both (a class rule needs a class)"));
      return;
    }
    if (c.rule.reason.empty()) {
      c.rule.reason = absl::StrCat("tools of this class need ",
                                   c.rule.action == Action::kDeny ? "to be denied" : "approval",
                                   " (policy entry ", where, ")");
    }
    doc.classes.push_back(std::move(c));
  });
}

void ParseRoot(const YAML::Node& root, PolicyDocument& doc, Diagnostics& d) {
  bool has_version = false;
  int order = 0;
  const bool is_map =
      ForEachKey(root, "the policy",
                 {"version", "revision", "default", "tools", "servers", "grants", "classes",
                  "limits"},
                 d, [&](const std::string& key, const YAML::Node& k, const YAML::Node& v) {
                   if (key == "version") {
                     has_version = true;
                     if (!v.IsScalar() || v.Scalar() != "1") {
                       d.Error(v, absl::StrCat("version must be \"1\", got ",
                                               v.IsScalar() ? QuoteText(v.Scalar()) : YamlKindName(v)));
                     }
                   } else if (key == "revision") {
                     if (auto s = GetString(v, "revision", d)) {
                       if (s->empty() || s->size() > 128) {
                         d.Error(v, "revision must be 1-128 characters");
                       } else if (const Utf8Problem p = FindUtf8Problem(*s, true); !p.ok()) {
                         d.Error(v, absl::StrCat("revision ", QuoteText(*s), ": ",
                                                 DescribeUtf8Problem(p)));
                       } else {
                         doc.revision = *s;
                         doc.revision_mark = v.Mark();
                       }
                     }
                   } else if (key == "default") {
                     if (auto a = ParseAction(v, "default", d)) {
                       doc.default_action = *a;
                       doc.default_mark = v.Mark();
                     }
                   } else if (key == "tools") {
                     ParseTools(v, "tools.", order, doc.tools, d);
                   } else if (key == "servers" || key == "grants") {
                     ParseSections(v, key, order, doc, d);
                   } else if (key == "classes") {
                     ParseClasses(v, doc, d);
                   } else if (key == "limits") {
                     ParseScopeLimits(v, "limits", doc.limits, d);
                   }
                 });
  if (is_map && !has_version) d.Error(root, "version is required (version: \"1\")");
}

}  // namespace

std::optional<PolicyDocument> ParsePolicyDocument(absl::string_view text, Diagnostics& diags) {
  PolicyDocument doc;
  doc.file = diags.file();
  const size_t errors_before = diags.errors().size();
  ParseSingleDocument(text, "the policy is empty", "a policy file must hold exactly one document",
                      diags, [&](const YAML::Node& root) { ParseRoot(root, doc, diags); });
  if (diags.errors().size() != errors_before) return std::nullopt;
  return doc;
}

}  // namespace toolgate
