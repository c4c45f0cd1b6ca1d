// Loads a policy revision from a file, a directory of files, or text, and
// compiles it into an immutable Policy.
//
// A directory is one revision made of every *.yaml, *.yml and *.json file in
// it (hidden entries, such as a Kubernetes ConfigMap's "..data", are skipped;
// their symlinked files are read through the visible names). Its files may not
// define the same tool twice, and at most one may set `default`.
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
// INVALID_ARGUMENT (NOT_FOUND for a missing path) and its message lists every
// error, one per line, as "file:line:col: message".
absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicyFromPath(const std::string& path);

// True for the names of files a policy directory is made of: *.yaml, *.yml
// and *.json, not hidden (not starting with '.').
bool IsPolicyFileName(const std::string& name);

// Compiles one revision from in-memory sources (one or more documents).
absl::StatusOr<std::shared_ptr<const Policy>> LoadPolicyFromSources(
    const std::vector<PolicySource>& sources);

// "sha256:" + the first 12 hex digits of SHA-256 over the sources: the file's
// bytes for one source; for several, each file name (without directory),
// NUL, content, NUL, in order.
std::string ContentRevision(const std::vector<PolicySource>& sources);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_LOADER_H_
