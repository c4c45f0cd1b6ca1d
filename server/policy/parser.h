// Parses one policy document (YAML or JSON: yaml-cpp reads both) into its
// parts, checking everything that can be checked within one document.
//
// Unknown keys and bad values are errors; every error is collected with the
// file, line and column it refers to. Checks that span documents (duplicate
// tools across files, counters defined differently by two tools) belong to the
// loader.
#ifndef TOOLGATE_SERVER_POLICY_PARSER_H_
#define TOOLGATE_SERVER_POLICY_PARSER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/base/diagnostics.h"
#include "server/policy/policy.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {

struct ParsedTool {
  ToolRule rule;
  YAML::Mark mark;                      // Where the entry's name is.
  std::vector<YAML::Mark> limit_marks;  // One per rule.limits element.
};

// A `limits` list over every call of a scope (the policy's top level, a
// section).
struct ParsedLimits {
  bool present = false;  // The document sets `limits`.
  YAML::Mark mark;       // Where the list is.
  std::vector<LimitSpec> limits;
  std::vector<YAML::Mark> limit_marks;  // One per element of limits.
};

// A `servers.<name>` or `grants.<name>` section.
struct ParsedSection {
  std::string kind;  // "servers" or "grants"
  std::string name;
  YAML::Mark mark;
  std::optional<Action> default_action;
  YAML::Mark default_mark;
  std::vector<ParsedTool> tools;
  std::vector<std::string> bypass_classes;  // grants only
  std::vector<YAML::Mark> bypass_marks;
  std::optional<std::vector<std::string>> peers;  // grants only; set: non-empty
  ParsedLimits limits;
};

struct ParsedClass {
  ClassRule rule;
  YAML::Mark mark;
};

struct PolicyDocument {
  std::string file;
  std::optional<std::string> revision;
  YAML::Mark revision_mark;
  std::optional<Action> default_action;
  YAML::Mark default_mark;
  std::vector<ParsedTool> tools;
  std::vector<ParsedSection> sections;
  std::vector<ParsedClass> classes;
  ParsedLimits limits;  // The top-level `limits`.
};

// Parses `text`; errors go to `diags` (whose file name locates them). Returns
// a document only when there was no error.
std::optional<PolicyDocument> ParsePolicyDocument(absl::string_view text, Diagnostics& diags);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_PARSER_H_
