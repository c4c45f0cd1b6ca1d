// The policy loader on untrusted text: a revision of one to three documents
// (YAML or JSON; yaml-cpp reads both), separated in the input by NUL bytes,
// compiled by LoadPolicyFromSources as a file, a directory or a Redis
// revision would be. A policy that loads then decides a few calls, so that
// its compiled globs, sections, classes and schemas are exercised too.
//
// Whatever the input, loading must end with a policy or an error status, and
// never crash, leak, hang or exhaust memory.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/base/files.h"
#include "server/engine/engine.h"
#include "server/policy/loader.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {
namespace {

constexpr size_t kMaxSources = 3;

std::vector<v1::CheckRequest> Requests() {
  std::vector<v1::CheckRequest> out;
  const char* tools[] = {"read_file", "delete_file", "run_command", "delete_\xc3\xa9", "x"};
  for (const char* tool : tools) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant("default");
    req.set_server("files");
    google::protobuf::Struct& args = *req.mutable_args();
    (*args.mutable_fields())["path"].set_string_value("/tmp/a");
    (*args.mutable_fields())["command"].set_string_value("ls -l");
    (*args.mutable_fields())["timeout"].set_number_value(30);
    out.push_back(std::move(req));
  }
  return out;
}

}  // namespace
}  // namespace toolgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace toolgate;
  // The loader reads at most kMaxInputFileBytes per file (ReadPolicySources).
  if (size > kMaxInputFileBytes) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<PolicySource> sources;
  size_t start = 0;
  while (sources.size() < kMaxSources) {
    size_t end = input.find('\0', start);
    if (end == absl::string_view::npos || sources.size() + 1 == kMaxSources) end = input.size();
    const char* ext = sources.size() % 2 == 0 ? "yaml" : "json";
    sources.push_back({absl::StrCat("policy", sources.size(), ".", ext),
                       std::string(input.substr(start, end - start))});
    if (end == input.size()) break;
    start = end + 1;
  }
  absl::StatusOr<std::shared_ptr<const Policy>> policy = LoadPolicyFromSources(sources);
  if (!policy.ok()) {
    // An error always says what is wrong.
    if (policy.status().message().empty()) __builtin_trap();
    return 0;
  }
  static const std::vector<v1::CheckRequest>* const requests =
      new std::vector<v1::CheckRequest>(Requests());
  const Engine engine;
  // Each call without a caller identity and with one (grants' `peers`).
  for (const v1::CheckRequest& req : *requests) {
    for (absl::string_view peer : {"", "spiffe://example.org/ns/ci/sa/ci-bot"}) {
      v1::CheckResponse resp;
      engine.Evaluate(**policy, req, peer, &resp);
    }
  }
  return 0;
}
