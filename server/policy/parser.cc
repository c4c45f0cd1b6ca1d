#include "server/policy/parser.h"

#include <initializer_list>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "server/policy/duration.h"
#include "server/policy/glob.h"

namespace toolgate {
namespace {

constexpr int64_t kMaxLimit = 1'000'000'000;

const char* KindName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "undefined";
  }
}

// yaml-cpp gives quoted scalars the non-specific tag "!".
bool IsQuoted(const YAML::Node& n) { return n.Tag() == "!"; }

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// Visits the pairs of a map node, rejecting keys not in `allowed` and
// duplicate keys. Returns false when `node` is not a map.
template <typename Fn>
bool ForEachKey(const YAML::Node& node, absl::string_view where,
                std::initializer_list<absl::string_view> allowed, Diagnostics& diags, Fn&& fn) {
  if (!node.IsMap()) {
    diags.Error(node, absl::StrCat(where, " must be a map, got ", KindName(node)));
    return false;
  }
  absl::flat_hash_set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: yaml-cpp's `it->` yields a temporary.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      diags.Error(key, absl::StrCat("keys of ", where, " must be strings"));
      continue;
    }
    const std::string& name = key.Scalar();
    if (!seen.insert(name).second) {
      diags.Error(key, absl::StrCat("duplicate key ", Quote(name), " in ", where));
      continue;
    }
    bool known = allowed.size() == 0;
    for (absl::string_view a : allowed) known = known || a == name;
    if (!known) {
      diags.Error(key, absl::StrCat("unknown key ", Quote(name), " in ", where,
                                    " (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
      continue;
    }
    fn(name, key, value);
  }
  return true;
}

std::optional<std::string> GetString(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a string, got ", KindName(n)));
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<int64_t> GetPositiveInt(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  int64_t v = 0;
  if (!n.IsScalar() || IsQuoted(n) || !absl::SimpleAtoi(n.Scalar(), &v)) {
    d.Error(n, absl::StrCat(what, " must be a positive integer, got ",
                            n.IsScalar() ? Quote(n.Scalar()) : KindName(n)));
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
  d.Error(n, absl::StrCat(what, " must be allow, deny or require_approval, got ", Quote(*s)));
  return std::nullopt;
}

std::optional<int64_t> ParseWindow(const YAML::Node& n, absl::string_view what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a duration, got ", KindName(n)));
    return std::nullopt;
  }
  absl::StatusOr<int64_t> ms;
  double seconds = 0;
  if (!IsQuoted(n) && absl::SimpleAtod(n.Scalar(), &seconds) &&
      n.Scalar().find_first_not_of("0123456789.+-eE") == std::string::npos) {
    ms = WindowFromSeconds(seconds);
  } else {
    ms = ParseWindowText(n.Scalar());
  }
  if (!ms.ok()) {
    d.Error(n, absl::StrCat(what, ": ", ms.status().message()));
    return std::nullopt;
  }
  return *ms;
}

bool ValidCounterName(absl::string_view s) {
  if (s.empty() || s.size() > 200) return false;
  for (char c : s) {
    if (c <= ' ' || c >= 127 || c == '{' || c == '}' || c == '|') return false;
  }
  return true;
}

void ParseLimit(const YAML::Node& node, const std::string& where,
                const std::string& default_counter, ParsedTool& tool, Diagnostics& d) {
  LimitSpec spec;
  bool has_counter = false, saw_window = false, saw_max = false;
  std::optional<YAML::Node> burst_node;
  const size_t errors_before = d.errors().size();
  const bool is_map = ForEachKey(
      node, where, {"counter", "window", "max", "scope", "algorithm", "burst"}, d,
      [&](const std::string& key, const YAML::Node&, const YAML::Node& v) {
        if (key == "counter") {
          if (auto s = GetString(v, where + ".counter", d)) {
            if (!ValidCounterName(*s)) {
              d.Error(v,
                      absl::StrCat(where, ".counter ", Quote(*s),
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
            if (*s == "grant") {
              spec.scope = Scope::kGrant;
            } else if (*s == "session") {
              spec.scope = Scope::kSession;
            } else if (*s == "global") {
              spec.scope = Scope::kGlobal;
            } else {
              d.Error(v, absl::StrCat(where, ".scope must be grant, session or global, got ",
                                      Quote(*s)));
            }
          }
        } else if (key == "algorithm") {
          if (auto s = GetString(v, where + ".algorithm", d)) {
            if (*s == "sliding_window") {
              spec.algorithm = Algorithm::kSlidingWindow;
            } else if (*s == "fixed_window") {
              spec.algorithm = Algorithm::kFixedWindow;
            } else if (*s == "token_bucket") {
              spec.algorithm = Algorithm::kTokenBucket;
            } else {
              d.Error(v, absl::StrCat(where,
                                      ".algorithm must be sliding_window, fixed_window or "
                                      "token_bucket, got ",
                                      Quote(*s)));
            }
          }
        } else if (key == "burst") {
          burst_node = v;
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
  if (d.errors().size() != errors_before) return;
  tool.rule.limits.push_back(std::move(spec));
  tool.limit_marks.push_back(node.Mark());
}

void ParseTool(const YAML::Node& key, const YAML::Node& node, int order, PolicyDocument& doc,
               Diagnostics& d) {
  ParsedTool tool;
  tool.rule.name = key.Scalar();
  tool.rule.rule_id = absl::StrCat("tools.", tool.rule.name);
  tool.rule.order = order;
  tool.mark = key.Mark();
  const std::string& where = tool.rule.rule_id;
  if (tool.rule.name.empty()) {
    d.Error(key, "a tool name must not be empty");
    return;
  }
  const size_t errors_before = d.errors().size();
  // `tool_name: {}` and `tool_name:` (null) both mean "allowed, no limits".
  if (!node.IsNull()) {
    std::optional<YAML::Node> limits_node;
    ForEachKey(node, where, {"action", "reason", "limits", "args"}, d,
               [&](const std::string& k, const YAML::Node&, const YAML::Node& v) {
                 if (k == "action") {
                   if (auto a = ParseAction(v, where + ".action", d)) tool.rule.action = *a;
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
        d.Error(ln, absl::StrCat(where, ".limits must be a list, got ", KindName(ln)));
      } else {
        for (size_t i = 0; i < ln.size(); ++i) {
          ParseLimit(ln[i], absl::StrCat(where, ".limits[", i, "]"),
                     absl::StrCat(tool.rule.name, "#", i), tool, d);
        }
        if (tool.rule.action != Action::kAllow && ln.size() > 0) {
          d.Error(ln, absl::StrCat(where, ".limits apply only to allowed tools, but the action is ",
                                   ActionName(tool.rule.action)));
        }
        absl::flat_hash_map<std::string, size_t> counters;
        for (size_t i = 0; i < tool.rule.limits.size(); ++i) {
          auto [it, inserted] = counters.emplace(tool.rule.limits[i].counter, i);
          if (!inserted) {
            d.Error(tool.limit_marks[i],
                    absl::StrCat(where, " names counter ", Quote(tool.rule.limits[i].counter),
                                 " more than once"));
          }
        }
      }
    }
  }
  if (d.errors().size() == errors_before) doc.tools.push_back(std::move(tool));
}

void ParseRoot(const YAML::Node& root, PolicyDocument& doc, Diagnostics& d) {
  bool has_version = false;
  int order = 0;
  const bool is_map =
      ForEachKey(root, "the policy", {"version", "revision", "default", "tools"}, d,
                 [&](const std::string& key, const YAML::Node& k, const YAML::Node& v) {
                   if (key == "version") {
                     has_version = true;
                     if (!v.IsScalar() || v.Scalar() != "1") {
                       d.Error(v, absl::StrCat("version must be \"1\", got ",
                                               v.IsScalar() ? Quote(v.Scalar()) : KindName(v)));
                     }
                   } else if (key == "revision") {
                     if (auto s = GetString(v, "revision", d)) {
                       if (s->empty() || s->size() > 128) {
                         d.Error(v, "revision must be 1-128 characters");
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
                     if (v.IsNull()) return;
                     ForEachKey(v, "tools", {}, d,
                                [&](const std::string&, const YAML::Node& tk,
                                    const YAML::Node& tv) { ParseTool(tk, tv, order++, doc, d); });
                   }
                 });
  if (is_map && !has_version) d.Error(root, "version is required (version: \"1\")");
}

}  // namespace

std::optional<PolicyDocument> ParsePolicyDocument(absl::string_view text, Diagnostics& diags) {
  PolicyDocument doc;
  doc.file = diags.file();
  const size_t errors_before = diags.errors().size();
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(text));
    if (docs.empty() || docs[0].IsNull()) {
      diags.Error("the policy is empty");
    } else if (docs.size() > 1) {
      diags.Error(docs[1], "a policy file must hold exactly one document");
    } else {
      ParseRoot(docs[0], doc, diags);
    }
  } catch (const YAML::ParserException& e) {
    diags.Error(e.mark, absl::StrCat("syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    diags.Error(e.mark, absl::StrCat("invalid document: ", e.msg));
  }
  if (diags.errors().size() != errors_before) return std::nullopt;
  return doc;
}

}  // namespace toolgate
