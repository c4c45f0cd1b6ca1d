#include "server/policytest/policy_test_runner.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "server/base/clock.h"
#include "server/engine/engine.h"
#include "server/base/diagnostics.h"
#include "server/base/duration.h"
#include "server/base/yaml_util.h"
#include "server/counters/memory_store.h"
#include "toolgate/v1/decision.pb.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;
namespace fs = std::filesystem;

constexpr size_t kMaxCasesFileBytes = 16 << 20;
constexpr int64_t kMaxRepeat = 1'000'000;
constexpr int64_t kMaxDurationMillis = int64_t{366} * 24 * 3600 * 1000;
constexpr int kMaxArgsDepth = 100;

// ---------------------------------------------------------------------------
// The parsed cases file.

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

// The fields of a call; unset ones come from `defaults`.
struct CallFields {
  std::optional<std::string> tool, grant, server, session;
  std::optional<pb::Struct> args;
  std::optional<bool> dry_run;
};

struct Step {
  bool is_advance = false;
  int64_t advance_ms = 0;
  std::string name;
  std::string location;
  v1::CheckRequest request;
  int64_t repeat = 1;
  Expect expect;
};

struct CasesFile {
  std::optional<int64_t> start_ms;
  std::vector<Step> steps;
};

// ---------------------------------------------------------------------------
// YAML helpers (the same conventions as the policy parser).

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

std::optional<std::string> GetString(const YAML::Node& n, const std::string& what,
                                     Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a string, got ", YamlKindName(n)));
    return std::nullopt;
  }
  return n.Scalar();
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
  if (n.IsScalar() && !IsQuotedScalar(n)) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  d.Error(n, absl::StrCat(what, " must be true or false, got ",
                          n.IsScalar() ? QuoteText(n.Scalar()) : YamlKindName(n)));
  return std::nullopt;
}

// Durations: "500ms", "61s", "1h30m", "1d", second/minute/hour/day, or a
// plain number of seconds. Non-negative, at most 366 days.
std::optional<int64_t> GetDuration(const YAML::Node& n, const std::string& what, Diagnostics& d) {
  if (!n.IsScalar()) {
    d.Error(n, absl::StrCat(what, " must be a duration such as \"61s\", got ", YamlKindName(n)));
    return std::nullopt;
  }
  const std::string text = absl::AsciiStrToLower(absl::StripAsciiWhitespace(n.Scalar()));
  const std::string bad = absl::StrCat(
      what, ": invalid duration ", QuoteText(n.Scalar()),
      " (use \"500ms\", \"61s\", \"5m\", \"1h30m\", \"1d\", or a number of seconds)");
  absl::Duration dur;
  if (!IsQuotedScalar(n) && LooksNumeric(text)) {
    double seconds = 0;
    if (!absl::SimpleAtod(text, &seconds) || !std::isfinite(seconds)) {
      d.Error(n, bad);
      return std::nullopt;
    }
    if (seconds > static_cast<double>(kMaxDurationMillis) / 1000) {
      d.Error(n, absl::StrCat(what, ": ", QuoteText(n.Scalar()), " is longer than 366 days"));
      return std::nullopt;
    }
    dur = absl::Milliseconds(std::llround(seconds * 1000));
    if (std::abs(seconds * 1000 - std::round(seconds * 1000)) > 1e-6) {
      d.Error(n, absl::StrCat(what, ": ", QuoteText(n.Scalar()),
                              " must be a whole number of milliseconds"));
      return std::nullopt;
    }
  } else if (text == "second") {
    dur = absl::Seconds(1);
  } else if (text == "minute") {
    dur = absl::Minutes(1);
  } else if (text == "hour") {
    dur = absl::Hours(1);
  } else if (text == "day") {
    dur = absl::Hours(24);
  } else if (absl::EndsWith(text, "d") && text.size() > 1 && text.size() <= 4 &&
             std::all_of(text.begin(), text.end() - 1,
                         [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    int64_t days = 0;
    if (!absl::SimpleAtoi(absl::string_view(text).substr(0, text.size() - 1), &days)) {
      d.Error(n, bad);
      return std::nullopt;
    }
    dur = absl::Hours(24 * days);
  } else if (!absl::ParseDuration(text, &dur) || dur == absl::InfiniteDuration() ||
             dur == -absl::InfiniteDuration()) {
    d.Error(n, bad);
    return std::nullopt;
  }
  if (dur < absl::ZeroDuration()) {
    d.Error(n, absl::StrCat(what, " must not be negative, got ", QuoteText(n.Scalar())));
    return std::nullopt;
  }
  if (dur > absl::Milliseconds(kMaxDurationMillis)) {
    d.Error(n, absl::StrCat(what, ": ", QuoteText(n.Scalar()), " is longer than 366 days"));
    return std::nullopt;
  }
  const int64_t ms = absl::ToInt64Milliseconds(dur);
  if (absl::Milliseconds(ms) != dur) {
    d.Error(n,
            absl::StrCat(what, ": ", QuoteText(n.Scalar()), " must be a whole number of milliseconds"));
    return std::nullopt;
  }
  return ms;
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

// YAML -> JSON value, with the types argument schemas use.
bool ToValue(const YAML::Node& n, const std::string& where, int depth, Diagnostics& d,
             pb::Value* out) {
  if (depth > kMaxArgsDepth) {
    d.Error(n, absl::StrCat(where, " is nested more than ", kMaxArgsDepth, " levels deep"));
    return false;
  }
  switch (n.Type()) {
    case YAML::NodeType::Null:
      out->set_null_value(pb::NULL_VALUE);
      return true;
    case YAML::NodeType::Sequence: {
      pb::ListValue* list = out->mutable_list_value();
      bool ok = true;
      for (size_t i = 0; i < n.size(); ++i) {
        ok = ToValue(n[i], absl::StrCat(where, "[", i, "]"), depth + 1, d, list->add_values()) &&
             ok;
      }
      return ok;
    }
    case YAML::NodeType::Map: {
      pb::Struct* obj = out->mutable_struct_value();
      bool ok = true;
      for (auto it = n.begin(); it != n.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (!key.IsScalar()) {
          d.Error(key, absl::StrCat("keys of ", where, " must be strings"));
          ok = false;
          continue;
        }
        const std::string& name = key.Scalar();
        if (obj->fields().count(name) != 0) {
          d.Error(key, absl::StrCat("duplicate key ", QuoteText(name), " in ", where));
          ok = false;
          continue;
        }
        ok = ToValue(value, absl::StrCat(where, ".", name), depth + 1, d,
                     &(*obj->mutable_fields())[name]) &&
             ok;
      }
      return ok;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (IsQuotedScalar(n)) {
        out->set_string_value(s);
      } else if (s == "null" || s == "Null" || s == "NULL" || s == "~" || s.empty()) {
        out->set_null_value(pb::NULL_VALUE);
      } else if (s == "true" || s == "True" || s == "TRUE") {
        out->set_bool_value(true);
      } else if (s == "false" || s == "False" || s == "FALSE") {
        out->set_bool_value(false);
      } else {
        double v = 0;
        if (LooksNumeric(s) && absl::SimpleAtod(s, &v) && std::isfinite(v)) {
          out->set_number_value(v);
        } else {
          out->set_string_value(s);
        }
      }
      return true;
    }
    default:
      d.Error(n, absl::StrCat(where, " has no value"));
      return false;
  }
}

// ---------------------------------------------------------------------------
// Parsing.

void ParseCallFields(const YAML::Node& node, const std::string& where, bool allow_tool,
                     CallFields& call, Diagnostics& d) {
  std::initializer_list<absl::string_view> with_tool = {"tool",    "grant", "server", "session",
                                                        "args",    "dry_run"};
  std::initializer_list<absl::string_view> without_tool = {"grant", "server", "session", "args",
                                                           "dry_run"};
  ForEachKeyValue(node, where, allow_tool ? with_tool : without_tool, d,
             [&](const std::string& key, const YAML::Node& v) {
               const std::string at = absl::StrCat(where, ".", key);
               if (key == "tool") {
                 if (auto s = GetString(v, at, d)) {
                   if (s->empty()) {
                     d.Error(v, absl::StrCat(at, " must not be empty"));
                   } else {
                     call.tool = *s;
                   }
                 }
               } else if (key == "grant") {
                 if (auto s = GetString(v, at, d)) {
                   if (s->empty()) {
                     d.Error(v, absl::StrCat(at, " must not be empty"));
                   } else {
                     call.grant = *s;
                   }
                 }
               } else if (key == "server") {
                 if (auto s = GetOptionalString(v, at, d)) call.server = *s;
               } else if (key == "session") {
                 if (auto s = GetOptionalString(v, at, d)) call.session = *s;
               } else if (key == "dry_run") {
                 if (auto b = GetBool(v, at, d)) call.dry_run = *b;
               } else if (key == "args") {
                 if (v.IsNull()) {
                   call.args = pb::Struct();
                 } else if (!v.IsMap()) {
                   d.Error(v, absl::StrCat(at, " must be a map (the arguments object), got ",
                                           YamlKindName(v)));
                 } else {
                   pb::Value value;
                   if (ToValue(v, at, 1, d, &value)) call.args = value.struct_value();
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
                          d.Error(v, absl::StrCat(at, " must be grant, session or global, got ",
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
                d.Error(v[i], absl::StrCat(at, "[", i, "] must be a JSON Pointer (\"/command\", "
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
    d.Error(node, absl::StrCat(where, ": decision is required (allow, deny, rate_limited or "
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
  const bool is_map = ForEachKeyValue(node, where, {"name", "call", "repeat", "expect", "advance"}, d,
                                 [&](const std::string& key, const YAML::Node& v) {
                                   if (key == "name") {
                                     if (auto s = GetString(v, where + ".name", d)) step.name = *s;
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
      d.Error(node, absl::StrCat(where, ": an `advance` step is an entry of its own, without "
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
  if (!call_node) d.Error(node, absl::StrCat(where, ": call is required (or `advance` for a step)"));
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
  const bool is_map = ForEachKeyValue(root, "the cases file", {"start_time", "defaults", "cases"}, d,
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
                                       d.Error(v, absl::StrCat(
                                                      "start_time must be an RFC 3339 time such "
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

std::optional<CasesFile> ParseCasesFile(absl::string_view text, Diagnostics& d) {
  CasesFile file;
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(text));
    if (docs.empty() || docs[0].IsNull()) {
      d.Error("the cases file is empty");
    } else if (docs.size() > 1) {
      d.Error(docs[1], "a cases file must hold exactly one document");
    } else {
      ParseRoot(docs[0], file, d);
    }
  } catch (const YAML::ParserException& e) {
    d.Error(e.mark, absl::StrCat("syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    d.Error(e.mark, absl::StrCat("invalid document: ", e.msg));
  }
  if (!d.ok()) return std::nullopt;
  return file;
}

// ---------------------------------------------------------------------------
// Running and comparing.

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
      ls.push_back(absl::StrCat(l.counter(), " (", l.scope(), ") ", l.remaining(), "/", l.max(),
                                " left"));
    }
    parts.push_back(absl::StrCat("limits [", absl::StrJoin(ls, ", "), "]"));
  }
  if (resp.has_retry_after()) {
    parts.push_back(absl::StrCat("retry_after ", FormatMillis(Millis(resp.retry_after()))));
  }
  return absl::StrJoin(parts, ", ");
}

// Empty when `resp` matches `e`; otherwise what differs, and what the policy
// answered.
std::string Compare(const Expect& e, const v1::CheckResponse& resp) {
  std::vector<std::string> diffs;
  const bool decision_differs = resp.decision() != e.decision;
  if (decision_differs) {
    diffs.push_back(
        absl::StrCat("expected ", DecisionLabel(e.decision), ", got ", DecisionLabel(resp.decision())));
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
      diffs.push_back(absl::StrCat("expected counter ", le.counter, " scope ", *le.scope,
                                   ", got ", found->scope()));
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

PolicyTestReport Run(const Policy& policy, const std::string& file_name, const CasesFile& file) {
  PolicyTestReport report;
  report.cases_file = file_name;
  report.revision = policy.revision();
  ManualClock clock;  // Starts at a fixed time unless the file sets start_time.
  if (file.start_ms) clock.Set(*file.start_ms);
  MemoryCounterStore store(&clock);
  const Engine engine;
  for (const Step& step : file.steps) {
    if (step.is_advance) {
      clock.Advance(step.advance_ms);
      continue;
    }
    PolicyTestCaseResult& result = report.cases.emplace_back();
    result.name = step.name;
    result.location = step.location;
    result.passed = true;
    for (int64_t i = 0; i < step.repeat; ++i) {
      v1::CheckResponse resp;
      const Evaluation eval = engine.Evaluate(policy, step.request, &resp);
      if (!eval.final) {
        const AcquireResult acquired = store.AcquireNow(eval.checks, step.request.dry_run());
        engine.Complete(eval, acquired, &resp);
      }
      ++result.calls;
      std::string diff = Compare(step.expect, resp);
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

}  // namespace

int PolicyTestReport::passed() const {
  return static_cast<int>(
      std::count_if(cases.begin(), cases.end(), [](const auto& c) { return c.passed; }));
}

int PolicyTestReport::failed() const { return static_cast<int>(cases.size()) - passed(); }

absl::StatusOr<PolicyTestReport> RunPolicyTestsFromText(const Policy& policy,
                                                        const std::string& file_name,
                                                        absl::string_view text) {
  Diagnostics diags(file_name);
  std::optional<CasesFile> file = ParseCasesFile(text, diags);
  if (!file) return diags.ToStatus();
  return Run(policy, file_name, *file);
}

absl::StatusOr<PolicyTestReport> RunPolicyTests(const Policy& policy,
                                                const std::string& cases_path) {
  std::error_code ec;
  const fs::path path(cases_path);
  const fs::file_status st = fs::status(path, ec);
  if (fs::is_directory(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat(cases_path, ": is a directory, not a cases file"));
  }
  if (!fs::is_regular_file(st)) {
    return absl::NotFoundError(absl::StrCat(cases_path, ": cannot read cases file: ",
                                            ec ? ec.message() : "not a regular file"));
  }
  const auto size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(cases_path, ": ", ec.message()));
  if (size > kMaxCasesFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(cases_path, ": file is larger than 16 MiB"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(cases_path, ": cannot open file"));
  std::ostringstream buf;
  buf << in.rdbuf();
  return RunPolicyTestsFromText(policy, cases_path, buf.str());
}

std::string FormatCaseResult(const PolicyTestCaseResult& result) {
  if (result.passed) return absl::StrCat("PASS ", result.name);
  return absl::StrCat("FAIL ", result.name, ": ", result.message, " [", result.location, "]");
}

std::string FormatSummary(int passed, int failed) {
  return absl::StrCat(passed, " passed, ", failed, " failed");
}

}  // namespace toolgate
