#include "server/policytest/cases.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "server/base/duration.h"
#include "server/base/yaml_json.h"
#include "server/base/yaml_util.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {
namespace policytest {
namespace {

namespace pb = ::google::protobuf;

// The fields of a call; unset ones come from `defaults`.
struct CallFields {
  std::optional<std::string> tool, grant, server, session, peer;
  std::optional<pb::Struct> args;
  std::optional<bool> dry_run;
};

// ForEachKey for callbacks that take (name, value).
template <typename Fn>
bool ForEachKeyValue(const YAML::Node& node, absl::string_view where,
                     std::initializer_list<absl::string_view> allowed, Diagnostics& diags,
                     Fn&& fn) {
  return ForEachKey(node, where, allowed, diags,
                    [&](const std::string& name, const YAML::Node&, const YAML::Node& value) {
                      fn(name, value);
                    });
}

std::optional<std::string> GetString(const YAML::Node& n, const std::string& what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a string, got ", YamlKindName(n)));
    return std::nullopt;
  }
  return n.Scalar();
}

// A string that must not be empty (tool and grant names).
std::optional<std::string> GetNonEmptyString(const YAML::Node& n, const std::string& what,
                                             Diagnostics& d) {
  std::optional<std::string> s = GetString(n, what, d);
  if (s && s->empty()) {
    d.Error(n, absl::StrCat(what, " must not be empty"));
    return std::nullopt;
  }
  return s;
}

// A string that may also be written as nothing (null): "".
std::optional<std::string> GetOptionalString(const YAML::Node& n, const std::string& what,
                                             Diagnostics& d) {
  if (n.IsNull()) return std::string();
  return GetString(n, what, d);
}

std::optional<int64_t> GetInt(const YAML::Node& n, const std::string& what, int64_t min,
                              int64_t max, Diagnostics& d) {
  int64_t v = 0;
  if (!n.IsScalar() || IsQuotedScalar(n) || !absl::SimpleAtoi(n.Scalar(), &v)) {
    d.Error(n, absl::StrCat(what, " must be an integer, got ",
                            n.IsScalar() ? QuoteText(n.Scalar()) : YamlKindName(n)));
    return std::nullopt;
  }
  if (v < min || v > max) {
    d.Error(n, absl::StrCat(what, " must be between ", min, " and ", max, ", got ", v));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> GetBool(const YAML::Node& n, const std::string& what, Diagnostics& d) {
  if (n.IsScalar()) {
    const JsonScalar s = ReadJsonScalar(n);  // Plain true/false, as in `args`.
    if (s.kind == JsonScalar::kBool) return s.boolean;
  }
  d.Error(n, absl::StrCat(what, " must be true or false, got ",
                          n.IsScalar() ? QuoteText(n.Scalar()) : YamlKindName(n)));
  return std::nullopt;
}

// Durations: server/base/duration.h's grammar ("500ms", "61s", "1h30m",
// "1d", second/minute/hour/day) or a plain number of seconds; non-negative,
// at most 366 days.
std::optional<int64_t> GetDuration(const YAML::Node& n, const std::string& what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a duration such as \"61s\", got ", YamlKindName(n)));
    return std::nullopt;
  }
  const ParsedDuration parsed =
      ParseDurationScalar(n.Scalar(), /*plain=*/!IsQuotedScalar(n), kMaxStepMillis);
  const std::string text = QuoteText(n.Scalar());
  switch (parsed.error) {
    case DurationError::kNone:
      return parsed.millis;
    case DurationError::kNegative:
      d.Error(n, absl::StrCat(what, " must not be negative, got ", text));
      break;
    case DurationError::kTooLong:
      d.Error(n, absl::StrCat(what, ": ", text, " is longer than 366 days"));
      break;
    case DurationError::kFractionalMillis:
      d.Error(n, absl::StrCat(what, ": ", text, " must be a whole number of milliseconds"));
      break;
    case DurationError::kUnknownForm:
      d.Error(n, absl::StrCat(what, ": invalid duration ", text,
                              " (use \"500ms\", \"61s\", \"5m\", \"1h30m\", \"1d\", or a "
                              "number of seconds)"));
      break;
  }
  return std::nullopt;
}

std::optional<v1::Decision> GetDecision(const YAML::Node& n, const std::string& what,
                                        Diagnostics& d) {
  auto s = GetString(n, what, d);
  if (!s) return std::nullopt;
  const std::string lower = absl::AsciiStrToLower(*s);
  if (lower == "allow") return v1::DECISION_ALLOW;
  if (lower == "deny") return v1::DECISION_DENY;
  if (lower == "rate_limited") return v1::DECISION_RATE_LIMITED;
  if (lower == "require_approval") return v1::DECISION_REQUIRE_APPROVAL;
  d.Error(n, absl::StrCat(what, " must be allow, deny, rate_limited or require_approval, got ",
                          QuoteText(*s)));
  return std::nullopt;
}

void ParseCallFields(const YAML::Node& node, const std::string& where, bool allow_tool,
                     CallFields& call, Diagnostics& d) {
  std::initializer_list<absl::string_view> with_tool = {"tool", "grant",   "server", "session",
                                                        "args", "dry_run", "peer"};
  std::initializer_list<absl::string_view> without_tool = {"grant", "server",  "session",
                                                           "args",  "dry_run", "peer"};
  ForEachKeyValue(node, where, allow_tool ? with_tool : without_tool, d,
                  [&](const std::string& key, const YAML::Node& v) {
                    const std::string at = absl::StrCat(where, ".", key);
                    if (key == "tool") {
                      call.tool = GetNonEmptyString(v, at, d);
                    } else if (key == "grant") {
                      call.grant = GetNonEmptyString(v, at, d);
                    } else if (key == "server") {
                      if (auto s = GetOptionalString(v, at, d)) call.server = *s;
                    } else if (key == "session") {
                      if (auto s = GetOptionalString(v, at, d)) call.session = *s;
                    } else if (key == "peer") {
                      // The caller's certificate identity, as toolgated takes it
                      // from an mTLS connection; "" or nothing: no certificate.
                      if (auto s = GetOptionalString(v, at, d)) call.peer = *s;
                    } else if (key == "dry_run") {
                      if (auto b = GetBool(v, at, d)) call.dry_run = *b;
                    } else if (key == "args") {
                      if (v.IsNull()) {
                        call.args = pb::Struct();
                      } else if (!v.IsMap()) {
                        d.Error(v, absl::StrCat(at, " must be a map (the arguments object), got ",
                                                YamlKindName(v)));
                      } else {
                        pb::Value value;  // The object is level 1; below it, the rest.
                        if (YamlToJson(v, at, kMaxArgsDepth - 1, d, &value)) {
                          call.args = value.struct_value();
                        }
                      }
                    }
                  });
}

void ParseLimitExpect(const YAML::Node& node, const std::string& where,
                      std::vector<LimitExpect>& out, Diagnostics& d) {
  LimitExpect le;
  bool has_counter = false;
  const size_t errors_before = d.errors().size();
  if (!ForEachKeyValue(node, where, {"counter", "remaining", "max", "scope"}, d,
                       [&](const std::string& key, const YAML::Node& v) {
                         const std::string at = absl::StrCat(where, ".", key);
                         if (key == "counter") {
                           if (auto s = GetString(v, at, d)) {
                             le.counter = *s;
                             has_counter = true;
                           }
                         } else if (key == "remaining") {
                           le.remaining = GetInt(v, at, 0, int64_t{1} << 53, d);
                         } else if (key == "max") {
                           le.max = GetInt(v, at, 1, int64_t{1} << 53, d);
                         } else if (key == "scope") {
                           if (auto s = GetString(v, at, d)) {
                             if (*s != "grant" && *s != "session" && *s != "global") {
                               d.Error(v,
                                       absl::StrCat(at, " must be grant, session or global, got ",
                                                    QuoteText(*s)));
                             } else {
                               le.scope = *s;
                             }
                           }
                         }
                       })) {
    return;
  }
  if (!has_counter && d.errors().size() == errors_before) {
    d.Error(node, absl::StrCat(where, ": counter is required"));
  }
  if (d.errors().size() == errors_before) out.push_back(std::move(le));
}

void ParseExpect(const YAML::Node& node, const std::string& where, Expect& e, Diagnostics& d) {
  bool has_decision = false;
  const bool is_map = ForEachKeyValue(
      node, where,
      {"decision", "rule", "reason", "reason_contains", "violations", "remaining", "limits",
       "retry_after_min", "retry_after_max"},
      d, [&](const std::string& key, const YAML::Node& v) {
        const std::string at = absl::StrCat(where, ".", key);
        if (key == "decision") {
          has_decision = true;
          if (auto dec = GetDecision(v, at, d)) e.decision = *dec;
        } else if (key == "rule") {
          e.rule = GetString(v, at, d);
        } else if (key == "reason") {
          e.reason = GetOptionalString(v, at, d);
        } else if (key == "reason_contains") {
          e.reason_contains = GetString(v, at, d);
        } else if (key == "violations") {
          if (!v.IsSequence()) {
            d.Error(v, absl::StrCat(at, " must be a list of JSON Pointer paths, got ",
                                    YamlKindName(v)));
            return;
          }
          std::vector<std::string> paths;
          for (size_t i = 0; i < v.size(); ++i) {
            if (auto s = GetOptionalString(v[i], absl::StrCat(at, "[", i, "]"), d)) {
              if (!s->empty() && (*s)[0] != '/') {
                d.Error(v[i], absl::StrCat(at, "[", i,
                                           "] must be a JSON Pointer (\"/command\", "
                                           "or \"\" for the whole object), got ",
                                           QuoteText(*s)));
              }
              paths.push_back(*s);
            }
          }
          e.violations = std::move(paths);
        } else if (key == "remaining") {
          e.remaining = GetInt(v, at, 0, int64_t{1} << 53, d);
        } else if (key == "limits") {
          if (!v.IsSequence()) {
            d.Error(v, absl::StrCat(at, " must be a list, got ", YamlKindName(v)));
            return;
          }
          for (size_t i = 0; i < v.size(); ++i) {
            ParseLimitExpect(v[i], absl::StrCat(at, "[", i, "]"), e.limits, d);
          }
        } else if (key == "retry_after_min") {
          e.retry_after_min_ms = GetDuration(v, at, d);
        } else if (key == "retry_after_max") {
          e.retry_after_max_ms = GetDuration(v, at, d);
        }
      });
  if (is_map && !has_decision) {
    d.Error(node, absl::StrCat(where,
                               ": decision is required (allow, deny, rate_limited or "
                               "require_approval)"));
  }
}

void ParseStep(const YAML::Node& node, size_t index, const CallFields& defaults, CasesFile& file,
               Diagnostics& d) {
  const std::string where = absl::StrCat("cases[", index, "]");
  Step step;
  step.name = absl::StrCat("case ", index + 1);
  step.location = MarkLocation(d.file(), node.Mark());
  std::optional<YAML::Node> call_node, expect_node, advance_node, repeat_node;
  const size_t errors_before = d.errors().size();
  const bool is_map = ForEachKeyValue(node, where, {"name", "call", "repeat", "expect", "advance"},
                                      d, [&](const std::string& key, const YAML::Node& v) {
                                        if (key == "name") {
                                          if (auto s = GetString(v, where + ".name", d))
                                            step.name = *s;
                                        } else if (key == "call") {
                                          call_node = v;
                                        } else if (key == "expect") {
                                          expect_node = v;
                                        } else if (key == "advance") {
                                          advance_node = v;
                                        } else if (key == "repeat") {
                                          repeat_node = v;
                                        }
                                      });
  if (!is_map) return;
  if (advance_node) {
    if (call_node || expect_node || repeat_node) {
      d.Error(node, absl::StrCat(where,
                                 ": an `advance` step is an entry of its own, without "
                                 "call, expect or repeat"));
      return;
    }
    step.is_advance = true;
    if (auto ms = GetDuration(*advance_node, where + ".advance", d)) {
      if (*ms == 0) {
        d.Error(*advance_node, absl::StrCat(where, ".advance must be positive"));
      }
      step.advance_ms = *ms;
    }
    if (d.errors().size() == errors_before) file.steps.push_back(std::move(step));
    return;
  }
  if (!call_node)
    d.Error(node, absl::StrCat(where, ": call is required (or `advance` for a step)"));
  if (!expect_node) d.Error(node, absl::StrCat(where, ": expect is required"));
  if (repeat_node) {
    if (auto r = GetInt(*repeat_node, where + ".repeat", 1, kMaxRepeat, d)) step.repeat = *r;
  }
  if (call_node) {
    CallFields call;
    ParseCallFields(*call_node, where + ".call", /*allow_tool=*/true, call, d);
    if (call_node->IsMap()) {
      if (!call.tool && d.errors().size() == errors_before) {
        d.Error(*call_node, absl::StrCat(where, ".call: tool is required"));
      }
      const std::optional<std::string>& grant = call.grant ? call.grant : defaults.grant;
      if (!grant && d.errors().size() == errors_before) {
        d.Error(*call_node,
                absl::StrCat(where, ".call: grant is required (in the call or in defaults)"));
      }
      v1::CheckRequest& req = step.request;
      if (call.tool) req.set_tool(*call.tool);
      if (grant) req.set_grant(*grant);
      req.set_server(call.server ? *call.server : defaults.server.value_or(""));
      req.set_session(call.session ? *call.session : defaults.session.value_or(""));
      req.set_dry_run(call.dry_run ? *call.dry_run : defaults.dry_run.value_or(false));
      step.peer = call.peer ? *call.peer : defaults.peer.value_or("");
      if (call.args) {
        *req.mutable_args() = *call.args;
      } else if (defaults.args) {
        *req.mutable_args() = *defaults.args;
      }
    }
  }
  if (expect_node) ParseExpect(*expect_node, where + ".expect", step.expect, d);
  if (d.errors().size() == errors_before) file.steps.push_back(std::move(step));
}

void ParseRoot(const YAML::Node& root, CasesFile& file, Diagnostics& d) {
  std::optional<YAML::Node> cases_node, defaults_node;
  const bool is_map =
      ForEachKeyValue(root, "the cases file", {"start_time", "defaults", "cases"}, d,
                      [&](const std::string& key, const YAML::Node& v) {
                        if (key == "cases") {
                          cases_node = v;
                        } else if (key == "defaults") {
                          defaults_node = v;
                        } else if (key == "start_time") {
                          auto s = GetString(v, "start_time", d);
                          if (!s) return;
                          absl::Time t;
                          std::string err;
                          if (!absl::ParseTime(absl::RFC3339_full, *s, &t, &err)) {
                            d.Error(v, absl::StrCat("start_time must be an RFC 3339 time such "
                                                    "as \"2026-11-25T09:00:00Z\", got ",
                                                    QuoteText(*s)));
                            return;
                          }
                          file.start_ms = absl::ToUnixMillis(t);
                        }
                      });
  if (!is_map) return;
  CallFields defaults;
  if (defaults_node) ParseCallFields(*defaults_node, "defaults", /*allow_tool=*/false, defaults, d);
  if (!cases_node) {
    d.Error(root, "cases is required (a list of cases)");
    return;
  }
  if (!cases_node->IsSequence()) {
    d.Error(*cases_node, absl::StrCat("cases must be a list, got ", YamlKindName(*cases_node)));
    return;
  }
  if (cases_node->size() == 0) {
    d.Error(*cases_node, "cases must list at least one case");
    return;
  }
  for (size_t i = 0; i < cases_node->size(); ++i) {
    ParseStep((*cases_node)[i], i, defaults, file, d);
  }
  const bool has_case = std::any_of(file.steps.begin(), file.steps.end(),
                                    [](const Step& s) { return !s.is_advance; });
  if (d.ok() && !has_case) d.Error(*cases_node, "cases has only `advance` steps and no case");
}

}  // namespace

std::optional<CasesFile> ParseCasesFile(absl::string_view text, Diagnostics& d) {
  CasesFile file;
  ParseSingleDocument(text, "the cases file is empty",
                      "a cases file must hold exactly one document", d,
                      [&](const YAML::Node& root) { ParseRoot(root, file, d); });
  if (!d.ok()) return std::nullopt;
  return file;
}

}  // namespace policytest
}  // namespace toolgate
