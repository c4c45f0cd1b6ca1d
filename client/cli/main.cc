// toolgate: command-line client for toolgated.
//
//   toolgate check --target HOST:PORT --tool T --grant G [--args JSON] ...
//   toolgate lint POLICY...
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "server/common/flags.h"
#include "server/policy/loader.h"
#include "toolgate/client.h"

namespace {

// Exit codes. ALLOW is 0 so that `toolgate check ... && run-the-tool` works.
enum ExitCode {
  kExitAllow = 0,
  kExitFailure = 1,  // lint found errors
  kExitUsage = 2,    // bad flags or arguments
  kExitDeny = 3,
  kExitRateLimited = 4,
  kExitRequireApproval = 5,
  kExitRpcError = 6,  // the call could not be decided (or not reached)
};

constexpr char kMainUsage[] =
    "toolgate: command-line client for the toolgate policy decision service.\n"
    "\n"
    "Usage:\n"
    "  toolgate check --target HOST:PORT --tool TOOL --grant GRANT [--args JSON] [flags]\n"
    "      Ask a toolgated for a decision and print it.\n"
    "  toolgate lint POLICY...\n"
    "      Validate policy files or directories offline, with the server's messages.\n"
    "\n"
    "Run 'toolgate COMMAND --help' for a command's flags.\n"
    "\n"
    "Exit codes of check: 0 ALLOW, 3 DENY, 4 RATE_LIMITED, 5 REQUIRE_APPROVAL,\n"
    "6 the call could not be decided (server unreachable, invalid request), 2 bad usage.\n"
    "Exit codes of lint: 0 every policy is valid, 1 errors found, 2 bad usage.";

std::string FormatDuration(const google::protobuf::Duration& d) {
  const int64_t ms = d.seconds() * 1000 + d.nanos() / 1'000'000;
  return absl::StrCat(ms / 1000, ".", absl::StrFormat("%03d", ms % 1000), "s");
}

int RunCheck(const std::vector<std::string>& args) {
  std::string target = "localhost:50051", tool, grant, args_json, server, session, version,
              request_id, output = "text";
  bool dry_run = false;
  int64_t timeout_ms = 2000;
  toolgate::FlagSet flags(
      "Usage: toolgate check --target HOST:PORT --tool TOOL --grant GRANT [--args JSON] [flags]\n"
      "\n"
      "Asks toolgated for a decision on one tool call and prints it.\n"
      "Exit codes: 0 ALLOW, 3 DENY, 4 RATE_LIMITED, 5 REQUIRE_APPROVAL, 6 not decided, 2 usage.",
      "");
  flags.String("target", &target, "toolgated address (env TOOLGATE_TARGET).");
  flags.String("tool", &tool, "Tool name (required).");
  flags.String("grant", &grant, "Grant the call is made under (required).");
  flags.String("args", &args_json, "Arguments as a JSON object, e.g. '{\"command\": \"ls\"}'.");
  flags.String("server", &server, "MCP server the call is addressed to.");
  flags.String("session", &session, "Agent session.");
  flags.String("policy-version", &version, "Pin a loaded policy revision.");
  flags.String("request-id", &request_id, "Correlation id.");
  flags.Bool("dry-run", &dry_run, "Decide without consuming any counter.");
  flags.Duration("timeout", &timeout_ms, "Deadline of the call.");
  flags.String("output", &output, "text or json.");
  if (const char* t = std::getenv("TOOLGATE_TARGET"); t != nullptr && *t) target = t;
  auto positional = flags.Parse(args);
  if (!positional.ok()) {
    std::cerr << "toolgate check: " << positional.status().message() << "\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  if (!positional->empty()) {
    std::cerr << "toolgate check: unexpected argument \"" << positional->front() << "\"\n";
    return kExitUsage;
  }
  if (output != "text" && output != "json") {
    std::cerr << "toolgate check: --output must be text or json\n";
    return kExitUsage;
  }
  toolgate::v1::CheckRequest req;
  req.set_tool(tool);
  req.set_grant(grant);
  req.set_server(server);
  req.set_session(session);
  req.set_policy_version(version);
  req.set_request_id(request_id);
  req.set_dry_run(dry_run);
  if (!args_json.empty()) {
    auto parsed = toolgate::ParseArgsJson(args_json);
    if (!parsed.ok()) {
      std::cerr << "toolgate check: --args: " << parsed.status().message() << "\n";
      return kExitUsage;
    }
    *req.mutable_args() = *std::move(parsed);
  }
  auto client = toolgate::Client::Connect(target);
  auto resp = client->Check(req, absl::Milliseconds(timeout_ms));
  if (!resp.ok()) {
    std::cerr << "toolgate check: " << absl::StatusCodeToString(resp.status().code()) << ": "
              << resp.status().message() << "\n";
    return kExitRpcError;
  }
  if (output == "json") {
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(*resp, &json, opts);
    std::cout << json << "\n";
  } else {
    std::cout << "decision:    " << toolgate::DecisionName(resp->decision()) << "\n";
    if (!resp->reason().empty()) std::cout << "reason:      " << resp->reason() << "\n";
    std::cout << "rule:        " << resp->rule() << "\n";
    std::cout << "revision:    " << resp->policy_version() << "\n";
    if (resp->has_retry_after()) {
      std::cout << "retry_after: " << FormatDuration(resp->retry_after()) << "\n";
    }
    for (const auto& l : resp->limits()) {
      std::cout << "limit:       " << l.counter() << " (" << l.scope() << "): " << l.remaining()
                << "/" << l.max() << " left, full again in " << FormatDuration(l.reset_after())
                << "\n";
    }
    for (const auto& v : resp->violations()) {
      std::cout << "violation:   " << (v.path().empty() ? "(arguments)" : v.path()) << ": "
                << v.message() << "\n";
    }
    std::cout << "decision_id: " << resp->decision_id() << "\n";
  }
  switch (resp->decision()) {
    case toolgate::v1::DECISION_ALLOW:
      return kExitAllow;
    case toolgate::v1::DECISION_DENY:
      return kExitDeny;
    case toolgate::v1::DECISION_RATE_LIMITED:
      return kExitRateLimited;
    case toolgate::v1::DECISION_REQUIRE_APPROVAL:
      return kExitRequireApproval;
    default:
      return kExitRpcError;
  }
}

int RunLint(const std::vector<std::string>& args) {
  toolgate::FlagSet flags(
      "Usage: toolgate lint POLICY...\n"
      "\n"
      "Validates policy files or directories offline, with the same messages as toolgated.\n"
      "Exit codes: 0 every policy is valid, 1 errors found, 2 usage.",
      "");
  auto paths = flags.Parse(args);
  if (!paths.ok()) {
    std::cerr << "toolgate lint: " << paths.status().message() << "\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  if (paths->empty()) {
    std::cerr << "toolgate lint: name at least one policy file or directory\n";
    return kExitUsage;
  }
  int rc = kExitAllow;
  for (const std::string& path : *paths) {
    auto policy = toolgate::LoadPolicyFromPath(path);
    if (!policy.ok()) {
      std::cerr << policy.status().message() << "\n";
      rc = kExitFailure;
      continue;
    }
    std::cout << path << ": OK, revision " << (*policy)->revision() << ", "
              << (*policy)->exact_count() << " exact entries, " << (*policy)->glob_count()
              << " globs, default " << toolgate::ActionName((*policy)->default_rule().action)
              << "\n";
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kMainUsage << "\n";
    return kExitUsage;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "check") return RunCheck(args);
  if (command == "lint") return RunLint(args);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainUsage << "\n";
    return kExitAllow;
  }
  std::cerr << "toolgate: unknown command \"" << command << "\"\n\n" << kMainUsage << "\n";
  return kExitUsage;
}
