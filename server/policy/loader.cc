#include "server/policy/loader.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/base/diagnostics.h"
#include "server/base/digest.h"
#include "server/base/files.h"
#include "server/base/glob.h"
#include "server/base/yaml_util.h"
#include "server/policy/parser.h"

namespace toolgate {

namespace fs = std::filesystem;

std::string ContentRevision(const std::vector<PolicySource>& sources) {
  std::vector<std::string> names;
  std::vector<absl::string_view> parts;
  if (sources.size() == 1) {
    parts.push_back(sources[0].content);
  } else {
    for (const PolicySource& s : sources) names.push_back(fs::path(s.name).filename().string());
    const absl::string_view nul("\0", 1);
    for (size_t i = 0; i < sources.size(); ++i) {
      parts.insert(parts.end(), {names[i], nul, sources[i].content, nul});
    }
  }
  return absl::StrCat("sha256:", Sha256Hex(parts).substr(0, 12));
}

absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicyFromSources(
    const std::vector<PolicySource>& sources) {
  if (sources.empty()) return absl::InvalidArgumentError("no policy documents to load");
  Diagnostics all("");
  std::vector<PolicyDocument> docs;
  for (const PolicySource& src : sources) {
    Diagnostics d(src.name);
    if (auto doc = ParsePolicyDocument(src.content, d)) docs.push_back(std::move(*doc));
    all.Append(d);
  }
  if (!all.ok()) return all.ToStatus();

  // Checks that span the whole revision.
  std::optional<std::string> revision;
  std::string revision_at;
  ToolRule default_rule;
  default_rule.name = "default";
  default_rule.rule_id = "default";
  default_rule.action = Action::kDeny;
  default_rule.has_action = true;
  std::string default_at;
  absl::flat_hash_map<std::string, std::pair<LimitSpec, std::string>> counters;  // counter -> def
  absl::flat_hash_map<std::string, std::string> class_at;     // class -> where
  absl::flat_hash_map<std::string, std::string> section_at;   // "servers.x" -> where
  std::vector<ClassRule> classes;
  int order = 0;

  // Adds `tools` (one level) to `exact`/`globs`, checking duplicates and
  // counter definitions.
  auto add_tools = [&](std::vector<ParsedTool>& tools, const std::string& file,
                       absl::flat_hash_map<std::string, std::string>& tool_at,
                       std::vector<ToolRule>& exact, std::vector<ToolRule>& globs, Diagnostics& d) {
    for (ParsedTool& t : tools) {
      const std::string here = MarkLocation(file, t.mark);
      auto [it, inserted] = tool_at.emplace(t.rule.name, here);
      if (!inserted) {
        d.Error(t.mark, absl::StrCat(absl::StartsWith(t.rule.rule_id, "tools.")
                                         ? absl::StrCat("tool \"", t.rule.name, "\"")
                                         : t.rule.rule_id,
                                     " is already defined at ", it->second));
        continue;
      }
      for (size_t i = 0; i < t.rule.limits.size(); ++i) {
        const LimitSpec& spec = t.rule.limits[i];
        const std::string limit_at = MarkLocation(file, t.limit_marks[i]);
        auto [cit, cinserted] = counters.emplace(spec.counter, std::make_pair(spec, limit_at));
        if (!cinserted && !cit->second.first.SameDefinition(spec)) {
          d.Error(t.limit_marks[i],
                  absl::StrCat("counter \"", spec.counter, "\" is defined here as ", spec.Describe(),
                               " but at ", cit->second.second, " as ", cit->second.first.Describe(),
                               "; tools sharing a counter must define it the same way"));
        }
      }
      t.rule.order = order++;
      (IsGlob(t.rule.name) ? globs : exact).push_back(std::move(t.rule));
    }
  };
  // Checks that the counters of a scope's `limits` agree with every other
  // place defining them (as add_tools does for entries).
  auto check_counters = [&](const ParsedLimits& pl, const std::string& file, Diagnostics& d) {
    for (size_t i = 0; i < pl.limits.size(); ++i) {
      const LimitSpec& spec = pl.limits[i];
      const std::string limit_at = MarkLocation(file, pl.limit_marks[i]);
      auto [cit, cinserted] = counters.emplace(spec.counter, std::make_pair(spec, limit_at));
      if (!cinserted && !cit->second.first.SameDefinition(spec)) {
        d.Error(pl.limit_marks[i],
                absl::StrCat("counter \"", spec.counter, "\" is defined here as ", spec.Describe(),
                             " but at ", cit->second.second, " as ", cit->second.first.Describe(),
                             "; places sharing a counter must define it the same way"));
      }
    }
  };
  // The top-level `limits` come from one file: a list split over files
  // would have no single order for its rule ids ("limits[0]").
  std::vector<LimitSpec> policy_limits;
  std::string policy_limits_at;

  absl::flat_hash_map<std::string, std::string> general_at;
  std::vector<ToolRule> exact, globs;
  struct PendingSection {
    std::vector<ToolRule> exact, globs;
    Section section;
    std::vector<std::pair<std::string, std::pair<std::string, YAML::Mark>>> bypass;  // name, file, mark
  };
  absl::flat_hash_map<std::string, PendingSection> servers, grants;
  for (PolicyDocument& doc : docs) {
    Diagnostics d(doc.file);
    if (doc.revision) {
      if (revision && *revision != *doc.revision) {
        d.Error(doc.revision_mark, absl::StrCat("revision \"", *doc.revision, "\" differs from \"",
                                                *revision, "\" set at ", revision_at));
      } else if (!revision) {
        revision = doc.revision;
        revision_at = MarkLocation(doc.file, doc.revision_mark);
      }
    }
    if (doc.default_action) {
      if (!default_at.empty()) {
        d.Error(doc.default_mark, absl::StrCat("default is already set at ", default_at));
      } else {
        default_rule.action = *doc.default_action;
        default_at = MarkLocation(doc.file, doc.default_mark);
      }
    }
    add_tools(doc.tools, doc.file, general_at, exact, globs, d);
    if (doc.limits.present) {
      const std::string here = MarkLocation(doc.file, doc.limits.mark);
      if (!policy_limits_at.empty()) {
        d.Error(doc.limits.mark,
                absl::StrCat("limits (top level) are already set at ", policy_limits_at,
                             "; set them in one file of the policy"));
      } else {
        policy_limits_at = here;
        check_counters(doc.limits, doc.file, d);
        policy_limits = std::move(doc.limits.limits);
      }
    }
    for (ParsedSection& ps : doc.sections) {
      const std::string id = absl::StrCat(ps.kind, ".", ps.name);
      auto [it, inserted] = section_at.emplace(id, MarkLocation(doc.file, ps.mark));
      if (!inserted) {
        d.Error(ps.mark, absl::StrCat(id, " is already defined at ", it->second));
        continue;
      }
      PendingSection& pending = (ps.kind == "servers" ? servers : grants)[ps.name];
      absl::flat_hash_map<std::string, std::string> section_tool_at;
      add_tools(ps.tools, doc.file, section_tool_at, pending.exact, pending.globs, d);
      if (ps.default_action) {
        ToolRule def;
        def.name = "default";
        def.rule_id = absl::StrCat(id, ".default");
        def.action = *ps.default_action;
        def.has_action = true;
        pending.section.default_rule = std::move(def);
      }
      check_counters(ps.limits, doc.file, d);
      pending.section.limits = std::move(ps.limits.limits);
      if (ps.peers) {
        pending.section.peers = PeerRule{absl::StrCat(id, ".peers"), std::move(*ps.peers)};
      }
      for (size_t i = 0; i < ps.bypass_classes.size(); ++i) {
        pending.bypass.push_back({ps.bypass_classes[i], {doc.file, ps.bypass_marks[i]}});
      }
    }
    for (ParsedClass& pc : doc.classes) {
      auto [it, inserted] = class_at.emplace(pc.rule.name, MarkLocation(doc.file, pc.mark));
      if (!inserted) {
        d.Error(pc.mark, absl::StrCat(pc.rule.rule_id, " is already defined at ", it->second));
        continue;
      }
      classes.push_back(std::move(pc.rule));
    }
    all.Append(d);
  }
  // Every bypassed class must exist (a typo would silently keep the guardrail).
  auto finish = [&](absl::flat_hash_map<std::string, PendingSection>& pending) {
    absl::flat_hash_map<std::string, Section> out;
    for (auto& [name, p] : pending) {
      for (const auto& [cls, loc] : p.bypass) {
        if (!class_at.contains(cls)) {
          Diagnostics d(loc.first);
          d.Error(loc.second, absl::StrCat("bypass_classes names \"", cls,
                                           "\", which is not a class of this policy"));
          all.Append(d);
        }
        p.section.bypass_classes.push_back(cls);
      }
      p.section.tools = RuleSet(std::move(p.exact), std::move(p.globs));
      out.emplace(name, std::move(p.section));
    }
    return out;
  };
  absl::flat_hash_map<std::string, Section> server_sections = finish(servers);
  absl::flat_hash_map<std::string, Section> grant_sections = finish(grants);
  if (!all.ok()) return all.ToStatus();

  std::vector<std::string> names;
  names.reserve(sources.size());
  for (const PolicySource& s : sources) names.push_back(s.name);
  return std::make_shared<const Policy>(
      revision ? *revision : ContentRevision(sources), std::move(names), std::move(default_rule),
      RuleSet(std::move(exact), std::move(globs)), std::move(server_sections),
      std::move(grant_sections), std::move(classes), std::move(policy_limits));
}

absl::StatusOr<std::vector<PolicySource>> ReadPolicySources(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  std::vector<PolicySource> sources;
  if (!fs::is_directory(st)) {
    absl::StatusOr<std::string> content = ReadRegularFile(path);
    if (!content.ok()) return content.status();
    sources.push_back({path, std::move(*content)});
    return sources;
  }
  absl::StatusOr<std::vector<fs::path>> files = ListPolicyFiles(path);
  if (!files.ok()) return files.status();
  if (files->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": directory holds no *.yaml, *.yml or *.json policy file"));
  }
  for (const fs::path& f : *files) {
    absl::StatusOr<std::string> content = ReadRegularFile(f.string());
    if (!content.ok()) return content.status();
    sources.push_back({f.string(), std::move(*content)});
  }
  return sources;
}

absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicyFromPath(const std::string& path) {
  absl::StatusOr<std::vector<PolicySource>> sources = ReadPolicySources(path);
  if (!sources.ok()) return sources.status();
  return LoadPolicyFromSources(*sources);
}

}  // namespace toolgate
