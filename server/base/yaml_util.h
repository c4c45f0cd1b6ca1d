// Helpers shared by everything that reads YAML documents with located,
// collected errors (policies, argument schemas, policy test cases).
#ifndef TOOLGATE_SERVER_BASE_YAML_UTIL_H_
#define TOOLGATE_SERVER_BASE_YAML_UTIL_H_

#include <initializer_list>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "server/base/diagnostics.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {

// "a map", "a list", "null", "a scalar".
const char* YamlKindName(const YAML::Node& n);

// True for quoted (or !!str-tagged) scalars: yaml-cpp gives quoted scalars
// the non-specific tag "!".
bool IsQuotedScalar(const YAML::Node& n);

// `s` in double quotes, with quotes, backslashes, control characters and
// bytes that are not UTF-8 escaped (EscapeForLog).
std::string QuoteText(absl::string_view s);

// Decimal numbers as YAML 1.2 (core schema) and JSON write them:
// [-+]? ( \.[0-9]+ | [0-9]+ (\.[0-9]*)? ) ([eE][-+]?[0-9]+)?
bool LooksNumeric(absl::string_view s);

// "file:line:col" (1-based), or "file" for a null mark.
std::string MarkLocation(const std::string& file, const YAML::Mark& m);

// Bounds on one YAML document as its readers see it, with every alias
// expanded (an alias repeats the whole node it names, so a few hundred bytes
// of nested aliases can stand for billions of nodes). Checked by walking the
// parsed document before anything reads it; the walk itself stops at the
// bound, so it takes bounded time and no memory beyond the parsed text's.
struct YamlLimits {
  // Nodes (maps, lists, scalars, map keys included), counted once per time
  // they are reached. bench/gen_large_policy.sh's policy scaled to 100,000
  // tools (1,000 with argument schemas) is about 280,000.
  size_t max_nodes = 2'000'000;
  // Bytes of scalar text, counted the same way: twice the largest input file
  // (kMaxInputFileBytes), so only aliases can reach it.
  size_t max_scalar_bytes = size_t{32} << 20;
};

// Loads `text` as exactly one YAML (or JSON) document and calls fn(root).
// Records in `diags` instead: `empty` when there is no document (or only a
// null one), `extra` located at a second document, "syntax error: ..." at
// invalid YAML, "invalid document: ..." for any other yaml-cpp exception
// (also one thrown by `fn`), "not valid UTF-8" at each of the first few
// bytes of `text` that are not UTF-8 and at each scalar that escapes make
// invalid (e.g. "\ud800"), and a located error at the node where the
// document grew past `limits`. fn is not called after any of these. The
// text is bounded by the caller (files by kMaxInputFileBytes); yaml-cpp
// bounds nesting.
void ParseSingleDocument(absl::string_view text, absl::string_view empty, absl::string_view extra,
                         Diagnostics& diags, absl::FunctionRef<void(const YAML::Node&)> fn,
                         const YamlLimits& limits = YamlLimits());

// The walk ParseSingleDocument makes before calling fn: records an error and
// returns false when `root` (aliases expanded) exceeds `limits` or holds a
// scalar that is not valid UTF-8.
bool CheckYamlDocument(const YAML::Node& root, const YamlLimits& limits, Diagnostics& diags);

// Visits the pairs of a map node as fn(name, key_node, value_node),
// rejecting keys not in `allowed` (any key when `allowed` is empty) and
// duplicate keys, each with a located error. Returns false when `node` is
// not a map.
template <typename Fn>
bool ForEachKey(const YAML::Node& node, absl::string_view where,
                std::initializer_list<absl::string_view> allowed, Diagnostics& diags, Fn&& fn) {
  if (!node.IsMap()) {
    diags.Error(node, absl::StrCat(where, " must be a map, got ", YamlKindName(node)));
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
    const std::string name = key.Scalar();
    if (!seen.insert(name).second) {
      diags.Error(key, absl::StrCat("duplicate key ", QuoteText(name), " in ", where));
      continue;
    }
    bool known = allowed.size() == 0;
    for (absl::string_view a : allowed) known = known || a == name;
    if (!known) {
      diags.Error(key, absl::StrCat("unknown key ", QuoteText(name), " in ", where,
                                    " (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
      continue;
    }
    fn(name, key, value);
  }
  return true;
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_YAML_UTIL_H_
