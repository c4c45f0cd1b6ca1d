// Loads a policy revision from a file, a directory of files, or text, and
// compiles it into an immutable Policy.
//
// A directory is one revision made of every *.yaml, *.yml and *.json file in
// it (IsPolicyFileName, server/base/files.h: hidden entries, such as a
// Kubernetes ConfigMap's "..data", are skipped; their symlinked files are
// read through the visible names). Its files may not
// define the same tool or section twice, and at most one may set `default`
// or the top-level `limits` (an error names both places).
#ifndef TOOLGATE_SERVER_POLICY_LOADER_H_
#define TOOLGATE_SERVER_POLICY_LOADER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/policy/policy.h"

namespace toolgate {

struct PolicySource {
  std::string name;     // File name used in messages.
  std::string content;  // Raw bytes.
};

// Loads `path` (a file or a directory). On failure the status is
// INVALID_ARGUMENT (NOT_FOUND for a missing path, or a file or directory that
// cannot be read) and its message lists every error, one per line, as
// "file:line:col: message".
absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicyFromPath(const std::string& path);

// The sources LoadPolicyFromPath compiles, read but not parsed: the file at
// `path`, or the policy files of directory `path` in order (ListPolicyFiles,
// server/base/files.h), each named by its path. Each file is at most
// kMaxInputFileBytes (16 MiB); a directory must hold at least one. Errors as
// LoadPolicyFromPath's.
absl::StatusOr<std::vector<PolicySource>> ReadPolicySources(const std::string& path);

// Compiles one revision from in-memory sources (one or more documents).
absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicyFromSources(
    const std::vector<PolicySource>& sources);

// "sha256:" + the first 12 hex digits of SHA-256 over the sources: the file's
// bytes for one source; for several, each file name (without directory),
// NUL, content, NUL, in order.
std::string ContentRevision(const std::vector<PolicySource>& sources);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_LOADER_H_
