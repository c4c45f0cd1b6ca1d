// toolgate: command-line client for toolgated.
//
//   toolgate check --target HOST:PORT --tool T --grant G [--args JSON] ...
//   toolgate lint POLICY...
//   toolgate test POLICY CASES.yaml...
//   toolgate approvals list|show|approve|deny|watch ...
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/cli/approvals.h"
#include "client/cli/connection.h"
#include "google/protobuf/util/json_util.h"
#include "server/base/clock.h"
#include "server/base/ed25519.h"
#include "server/base/flags.h"
#include "server/counters/memory_store.h"
#include "server/decider/explain.h"
#include "server/policy/loader.h"
#include "server/policytest/policy_test_runner.h"
#include "server/provider/redis_policy_store.h"
#include "toolgate/client.h"

namespace {

using namespace toolgate::cli;  // NOLINT: the exit codes and ConnectionFlags

constexpr char kMainUsage[] =
    "toolgate: command-line client for the toolgate policy decision service.\n"
    "\n"
    "Usage:\n"
    "  toolgate check --target HOST:PORT --tool TOOL --grant GRANT [--args JSON] [flags]\n"
    "      Ask a toolgated for a decision and print it (--explain: and how it was made;\n"
    "      --policy FILE instead of --target: decide offline).\n"
    "  toolgate settle --target HOST:PORT --reservation-id ID --outcome succeeded|failed\n"
    "                  [--cost N]\n"
    "      Report how a call admitted with a reservation went (failed: give its units\n"
    "      back; succeeded: keep them, --cost correcting them down).\n"
    "  toolgate lint POLICY...\n"
    "      Validate policy files or directories offline, with the server's messages.\n"
    "  toolgate test POLICY CASES.yaml [CASES.yaml...]\n"
    "      Run table-driven test cases (call -> expected decision) against a policy, offline.\n"
    "  toolgate policy push|activate|rollback|list --redis URL ...\n"
    "      Store policy revisions in Redis and move the fleet's active revision.\n"
    "  toolgate status --target HOST:PORT\n"
    "      Show a server's policy revisions, reload state, counter store and counts\n"
    "      (asks the admin listener, by default localhost:50052).\n"
    "  toolgate health --target HOST:PORT\n"
    "      Ask a listener's health check (exit 0 SERVING), e.g. for probes over TLS.\n"
    "  toolgate approvals list|show|approve|deny|watch\n"
    "      List, inspect, approve or deny the approvals of calls that need a human, or\n"
    "      follow them as they happen (asks the admin listener, by default localhost:50052).\n"
    "\n"
    "check, settle, status, health and approvals take --tls-ca, --tls-cert, --tls-key and\n"
    "--tls-server-name for a server that serves TLS or mTLS, and --admin-token-file for\n"
    "its admin listener.\n"
    "\n"
    "Run 'toolgate COMMAND --help' for a command's flags.\n"
    "\n"
    "Exit codes of check: 0 ALLOW, 3 DENY, 4 RATE_LIMITED, 5 REQUIRE_APPROVAL,\n"
    "6 the call could not be decided (server unreachable, invalid request), 2 bad usage.\n"
    "Exit codes of settle: 0 settled (or settled before: already_settled), 1 unknown or\n"
    "expired reservation, 6 the server could not be asked or refused the request, 2 bad usage.\n"
    "Exit codes of lint: 0 every policy is valid, 1 errors found, 2 bad usage.\n"
    "Exit codes of test: 0 every case passed, 1 a case failed or a file is invalid, 2 bad usage.\n"
    "Exit codes of approvals: 0 done, 1 the approval is unknown or no longer pending,\n"
    "6 the server could not be asked, 2 bad usage.";

std::string FormatDuration(const google::protobuf::Duration& d) {
  const int64_t ms = d.seconds() * 1000 + d.nanos() / 1'000'000;
  return absl::StrCat(ms / 1000, ".", absl::StrFormat("%03d", ms % 1000), "s");
}

int RunCheck(const std::vector<std::string>& args) {
  std::string target = "localhost:50051", admin_target = "localhost:50052", tool, grant,
              args_json, server, session, version, request_id, output = "text", policy_path,
              peer, approval_id;
  ConnectionFlags connection;
  bool dry_run = false, explain = false;
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
  flags.String("approval-id", &approval_id,
               "Redeem this approval (the approval_id a REQUIRE_APPROVAL answer gave the "
               "identical call, approved since).");
  flags.Bool("dry-run", &dry_run, "Decide without consuming any counter.");
  flags.Duration("timeout", &timeout_ms, "Deadline of the call.");
  flags.String("output", &output, "text or json.");
  flags.Bool("explain", &explain,
             "Show how the decision is made: entries consulted, class rules, schema checks, "
             "limits. Asks the server's AdminService/Explain (a dry run) on --admin-target.");
  flags.String("peer", &peer,
               "With --explain or --policy: the mTLS caller identity to decide the call for "
               "(grants.<name>.peers).");
  flags.String("admin-target", &admin_target,
               "toolgated admin address (--admin-listen), for --explain (env "
               "TOOLGATE_ADMIN_TARGET).");
  connection.Register(flags, /*admin=*/true);
  flags.String("policy", &policy_path,
               "Decide offline against this policy file or directory instead of a server "
               "(fresh in-process counters; with --explain, shows the steps).");
  if (const char* t = std::getenv("TOOLGATE_TARGET"); t != nullptr && *t) target = t;
  if (const char* t = std::getenv("TOOLGATE_ADMIN_TARGET"); t != nullptr && *t) admin_target = t;
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
  if (!peer.empty() && !explain && policy_path.empty()) {
    std::cerr << "toolgate check: --peer goes with --explain or --policy (a live check's caller "
                 "is named by its client certificate)\n";
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
  req.set_approval_id(approval_id);
  if (!args_json.empty()) {
    auto parsed = toolgate::ParseArgsJson(args_json);
    if (!parsed.ok()) {
      std::cerr << "toolgate check: --args: " << parsed.status().message() << "\n";
      return kExitUsage;
    }
    *req.mutable_args() = *std::move(parsed);
  }
  absl::StatusOr<toolgate::v1::CheckResponse> resp;
  std::vector<std::string> steps;
  if (!policy_path.empty()) {
    // Offline: the server's own engine and an in-process store.
    auto policy = toolgate::LoadPolicyFromPath(policy_path);
    if (!policy.ok()) {
      std::cerr << policy.status().message() << "\n";
      return kExitFailure;
    }
    toolgate::MemoryCounterStore store(toolgate::SystemClock::Get());
    const toolgate::Decider decider(&store, toolgate::Engine(), toolgate::ArgsLimits());
    absl::StatusOr<toolgate::v1::ExplainResponse> explained;
    toolgate::ExplainCheck(decider, *policy, req,
                           [&](absl::StatusOr<toolgate::v1::ExplainResponse> r) {
                             explained = std::move(r);
                           },
                           peer);
    if (explained.ok()) {
      resp = explained->decision();
      steps.assign(explained->steps().begin(), explained->steps().end());
    } else {
      resp = explained.status();
    }
  } else if (explain) {
    std::unique_ptr<toolgate::Client> client = connection.Connect("check", admin_target);
    if (client == nullptr) return kExitUsage;
    auto explained = client->Explain(req, absl::Milliseconds(timeout_ms), peer);
    if (explained.ok()) {
      resp = explained->decision();
      steps.assign(explained->steps().begin(), explained->steps().end());
    } else {
      resp = explained.status();
    }
  } else {
    std::unique_ptr<toolgate::Client> client = connection.Connect("check", target);
    if (client == nullptr) return kExitUsage;
    resp = client->Check(req, absl::Milliseconds(timeout_ms));
  }
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
    if (!resp->approval_id().empty()) std::cout << "approval_id: " << resp->approval_id() << "\n";
    if (!resp->reservation_id().empty()) {
      std::cout << "reservation_id: " << resp->reservation_id() << "\n";
    }
    if (!resp->decision_id().empty()) std::cout << "decision_id: " << resp->decision_id() << "\n";
    if (explain) {
      std::cout << "steps:\n";
      for (const std::string& s : steps) std::cout << "  - " << s << "\n";
    }
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

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "never";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

int RunSettle(const std::vector<std::string>& args) {
  std::string target = "localhost:50051", reservation_id, outcome, output = "text", cost;
  int64_t timeout_ms = 2000;
  ConnectionFlags connection;
  toolgate::FlagSet flags(
      "Usage: toolgate settle --target HOST:PORT --reservation-id ID --outcome succeeded|failed "
      "[--cost N]\n"
      "\n"
      "Reports how a call admitted with a reservation (the reservation_id of its check) went:\n"
      "failed gives its reserved units back; succeeded keeps them, and --cost corrects the\n"
      "units of limits whose cost came from the arguments down to N. Settling twice changes\n"
      "nothing (already_settled). Any server of the fleet can settle.",
      "");
  flags.String("target", &target, "toolgated address (env TOOLGATE_TARGET).");
  flags.String("reservation-id", &reservation_id, "CheckResponse.reservation_id (rsv_...).");
  flags.String("outcome", &outcome, "succeeded or failed.");
  flags.String("cost", &cost,
               "With --outcome succeeded: what the call really cost, a non-negative integer (at "
               "most what was reserved).");
  flags.String("output", &output, "text or json.");
  flags.Duration("timeout", &timeout_ms, "Deadline of the call.");
  connection.Register(flags, /*admin=*/false);
  if (const char* t = std::getenv("TOOLGATE_TARGET"); t != nullptr && *t) target = t;
  auto positional = flags.Parse(args);
  if (!positional.ok() || !positional->empty()) {
    std::cerr << "toolgate settle: "
              << (positional.ok() ? "unexpected arguments" : positional.status().message()) << "\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  toolgate::v1::SettleRequest req;
  req.set_reservation_id(reservation_id);
  if (outcome == "succeeded") {
    req.set_outcome(toolgate::v1::SETTLE_OUTCOME_SUCCEEDED);
  } else if (outcome == "failed") {
    req.set_outcome(toolgate::v1::SETTLE_OUTCOME_FAILED);
  } else {
    std::cerr << "toolgate settle: --outcome must be succeeded or failed\n";
    return kExitUsage;
  }
  if (reservation_id.empty()) {
    std::cerr << "toolgate settle: --reservation-id is required\n";
    return kExitUsage;
  }
  if (output != "text" && output != "json") {
    std::cerr << "toolgate settle: --output must be text or json\n";
    return kExitUsage;
  }
  if (!cost.empty()) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(cost, &n) || n < 0) {
      std::cerr << "toolgate settle: --cost must be a non-negative integer, got \"" << cost
                << "\"\n";
      return kExitUsage;
    }
    req.set_cost(n);
  }
  std::unique_ptr<toolgate::Client> client = connection.Connect("settle", target);
  if (client == nullptr) return kExitUsage;
  absl::StatusOr<toolgate::v1::SettleResponse> resp =
      client->Settle(req, absl::Milliseconds(timeout_ms));
  if (!resp.ok()) {
    std::cerr << "toolgate settle: " << absl::StatusCodeToString(resp.status().code()) << ": "
              << resp.status().message() << "\n";
    return resp.status().code() == absl::StatusCode::kNotFound ? kExitFailure : kExitRpcError;
  }
  if (output == "json") {
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(*resp, &json, opts);
    std::cout << json << "\n";
    return kExitAllow;
  }
  std::cout << "reservation_id:  " << resp->reservation_id() << "\n";
  std::cout << "outcome:         "
            << (resp->outcome() == toolgate::v1::SETTLE_OUTCOME_FAILED ? "failed" : "succeeded")
            << "\n";
  if (resp->has_cost()) std::cout << "cost:            " << resp->cost() << "\n";
  std::cout << "already_settled: " << (resp->already_settled() ? "true" : "false") << "\n";
  std::cout << "decision_id:     " << resp->decision_id() << "\n";
  return kExitAllow;
}

int RunHealth(const std::vector<std::string>& args) {
  std::string target = "localhost:50051";
  int64_t timeout_ms = 2000;
  ConnectionFlags connection;
  toolgate::FlagSet flags(
      "Usage: toolgate health --target HOST:PORT [TLS flags]\n"
      "\n"
      "Asks a toolgated listener's standard health check (grpc.health.v1), e.g. for a\n"
      "Kubernetes exec probe on a TLS listener, which native gRPC probes cannot reach.\n"
      "Exit codes: 0 SERVING, 1 NOT_SERVING (e.g. shutting down), 6 not reached, 2 usage.",
      "");
  flags.String("target", &target, "toolgated address (env TOOLGATE_TARGET).");
  flags.Duration("timeout", &timeout_ms, "Deadline of the call.");
  connection.Register(flags, /*admin=*/false);
  if (const char* t = std::getenv("TOOLGATE_TARGET"); t != nullptr && *t) target = t;
  auto positional = flags.Parse(args);
  if (!positional.ok() || (positional.ok() && !positional->empty())) {
    std::cerr << "toolgate health: "
              << (positional.ok() ? "unexpected arguments" : positional.status().message())
              << "\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  std::unique_ptr<toolgate::Client> client = connection.Connect("health", target);
  if (client == nullptr) return kExitUsage;
  absl::StatusOr<bool> serving = client->Serving(absl::Milliseconds(timeout_ms));
  if (!serving.ok()) {
    std::cerr << "toolgate health: " << absl::StatusCodeToString(serving.status().code()) << ": "
              << serving.status().message() << "\n";
    return kExitRpcError;
  }
  std::cout << (*serving ? "SERVING" : "NOT_SERVING") << "\n";
  return *serving ? kExitAllow : kExitFailure;
}

int RunStatus(const std::vector<std::string>& args) {
  std::string target = "localhost:50052", output = "text";
  int64_t timeout_ms = 2000;
  ConnectionFlags connection;
  toolgate::FlagSet flags(
      "Usage: toolgate status --target HOST:PORT [--output text|json]\n"
      "\n"
      "Shows a toolgated's policy revisions, last reload, counter store and decision counts.",
      "");
  flags.String("target", &target,
               "toolgated admin address, its --admin-listen (env TOOLGATE_ADMIN_TARGET).");
  flags.Duration("timeout", &timeout_ms, "Deadline of the call.");
  flags.String("output", &output, "text or json.");
  connection.Register(flags, /*admin=*/true);
  if (const char* t = std::getenv("TOOLGATE_ADMIN_TARGET"); t != nullptr && *t) target = t;
  auto positional = flags.Parse(args);
  if (!positional.ok()) {
    std::cerr << "toolgate status: " << positional.status().message() << "\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  if (!positional->empty() || (output != "text" && output != "json")) {
    std::cerr << "toolgate status: unexpected arguments (see --help)\n";
    return kExitUsage;
  }
  std::unique_ptr<toolgate::Client> client = connection.Connect("status", target);
  if (client == nullptr) return kExitUsage;
  auto status = client->GetStatus(absl::Milliseconds(timeout_ms));
  if (!status.ok()) {
    std::cerr << "toolgate status: " << absl::StatusCodeToString(status.status().code()) << ": "
              << status.status().message() << "\n";
    return kExitRpcError;
  }
  if (output == "json") {
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    opts.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(*status, &json, opts);
    std::cout << json << "\n";
    return kExitAllow;
  }
  std::cout << "version:          " << status->version() << "\n"
            << "started:          " << FormatTime(status->started_at()) << "\n"
            << "active revision:  " << status->active_revision() << "\n";
  for (const auto& r : status->loaded()) {
    std::cout << "loaded:           " << r.revision() << " (" << r.exact_entries() << " exact, "
              << r.glob_entries() << " globs, loaded " << FormatTime(r.loaded_at()) << ")\n";
  }
  std::cout << "last reload:      " << FormatTime(status->last_reload_at())
            << (status->last_reload_error().empty() ? "" : " FAILED") << "\n";
  if (!status->last_reload_error().empty()) {
    std::cout << "reload error:     " << status->last_reload_error() << "\n";
  }
  const auto& cs = status->counter_store();
  std::cout << "counter store:    " << cs.kind();
  if (!cs.address().empty()) std::cout << " " << cs.address();
  std::cout << (cs.connected() ? " (connected)" : " (NOT connected)") << "\n";
  if (cs.kind() == "redis") {
    std::cout << "  checks " << cs.checks() << ", commands " << cs.commands() << ", round trips "
              << cs.round_trips() << ", cache hits " << cs.cache_hits() << ", timeouts "
              << cs.timeouts() << ", failures " << cs.failures() << ", connects " << cs.connects()
              << ", script reloads " << cs.script_reloads() << "\n";
    if (cs.redirects() + cs.refunds() + cs.refund_failures() + cs.topology_changes() > 0) {
      std::cout << "  redirects " << cs.redirects() << ", refunds " << cs.refunds()
                << ", refund failures " << cs.refund_failures() << ", topology changes "
                << cs.topology_changes() << "\n";
    }
    if (!cs.last_error().empty()) std::cout << "  last error: " << cs.last_error() << "\n";
  } else {
    std::cout << "  live counters " << cs.keys() << "\n";
  }
  const auto& d = status->decisions();
  std::cout << "decisions:        allow " << d.allow() << ", deny " << d.deny()
            << ", rate_limited " << d.rate_limited() << ", require_approval "
            << d.require_approval() << ", errors " << d.errors() << "\n";
  if (!status->shadow_revision().empty()) {
    std::cout << "shadow revision:  " << status->shadow_revision() << " (differed on "
              << status->shadow_differed() << " of " << status->shadow_compared()
              << " calls)\n";
  }
  return kExitAllow;
}

// Reads a policy file or directory as the loader does (the same files, each
// at most 16 MiB), keeping the raw sources (to store them in Redis
// unchanged), each named by its file name.
absl::StatusOr<std::vector<toolgate::PolicySource>> ReadSources(const std::string& path) {
  auto sources = toolgate::ReadPolicySources(path);
  if (!sources.ok()) return sources.status();
  for (toolgate::PolicySource& source : *sources) {
    source.name = std::filesystem::path(source.name).filename().string();
  }
  return sources;
}

int RunPolicy(const std::vector<std::string>& args) {
  constexpr char kUsage[] =
      "Usage: toolgate policy COMMAND --redis URL [ARGS]\n"
      "\n"
      "Fleet-wide rollout: servers started with --policy redis://... follow the active\n"
      "revision stored in Redis.\n"
      "\n"
      "  push PATH [--activate] [--signing-key KEY.pem]\n"
      "                          validate a policy file or directory and store it with its\n"
      "                          content digest, signed with the Ed25519 private key (PEM)\n"
      "                          when given (servers with --policy-verify-key require it);\n"
      "                          a revision name already pushed with other content is refused\n"
      "  activate REVISION       make a stored revision active everywhere\n"
      "  rollback                re-activate the previously active revision\n"
      "  list                    stored revisions, newest first (* = active), signed or not\n"
      "\n"
      "Exit codes: 0 done, 1 failed (invalid policy, unknown revision, Redis error), 2 usage.";
  if (args.empty()) {
    std::cerr << kUsage << "\n";
    return kExitUsage;
  }
  const std::string command = args[0];
  std::string redis_url;
  bool activate = false;
  toolgate::FlagSet flags(kUsage, "");
  flags.String("redis", &redis_url, "Redis URL, redis://[:password@]host:port[/db] (env TOOLGATE_REDIS).");
  std::string password_file, username_file;
  flags.String("redis-password-file", &password_file,
               "File holding the Redis password (one trailing newline ignored), instead of a "
               "password in the URL (env TOOLGATE_REDIS_PASSWORD_FILE).");
  flags.String("redis-username-file", &username_file,
               "File holding the Redis ACL user name, with --redis-password-file "
               "(env TOOLGATE_REDIS_USERNAME_FILE).");
  flags.Bool("activate", &activate, "With push: also make the revision active.");
  std::string signing_key_file;
  flags.String("signing-key", &signing_key_file,
               "With push: sign the revision with this Ed25519 private key (PEM, openssl genpkey "
               "-algorithm ed25519).");
  if (const char* t = std::getenv("TOOLGATE_REDIS"); t != nullptr && *t) redis_url = t;
  if (const char* t = std::getenv("TOOLGATE_REDIS_PASSWORD_FILE"); t != nullptr && *t) {
    password_file = t;
  }
  if (const char* t = std::getenv("TOOLGATE_REDIS_USERNAME_FILE"); t != nullptr && *t) {
    username_file = t;
  }
  auto positional = flags.Parse(std::vector<std::string>(args.begin() + 1, args.end()));
  if (!positional.ok()) {
    std::cerr << "toolgate policy: " << positional.status().message() << "\n";
    return kExitUsage;
  }
  if (flags.help_requested() || command == "--help" || command == "help") {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  const size_t want = (command == "push" || command == "activate") ? 1 : 0;
  if ((command != "push" && command != "activate" && command != "rollback" && command != "list") ||
      positional->size() != want) {
    std::cerr << "toolgate policy: bad arguments\n\n" << kUsage << "\n";
    return kExitUsage;
  }
  if (redis_url.empty()) {
    std::cerr << "toolgate policy: --redis is required\n";
    return kExitUsage;
  }
  auto credentials = toolgate::ReadRedisCredentials(username_file, password_file);
  if (!credentials.ok()) {
    std::cerr << "toolgate policy: " << credentials.status().message() << "\n";
    return kExitUsage;
  }
  auto url = toolgate::ParseRedisUrl(redis_url, *credentials);
  if (!url.ok()) {
    std::cerr << "toolgate policy: " << url.status().message() << "\n";
    return kExitUsage;
  }
  std::optional<toolgate::Ed25519PrivateKey> signing_key;
  if (!signing_key_file.empty()) {
    if (command != "push") {
      std::cerr << "toolgate policy: --signing-key applies to push only\n";
      return kExitUsage;
    }
    auto key = toolgate::Ed25519PrivateKey::FromPemFile(signing_key_file);
    if (!key.ok()) {
      std::cerr << "toolgate policy: --signing-key: " << key.status().message() << "\n";
      return kExitFailure;
    }
    signing_key = *std::move(key);
  }
  auto store = toolgate::RedisPolicyStore::Connect(*url);
  if (!store.ok()) {
    std::cerr << "toolgate policy: " << store.status().message() << "\n";
    return kExitFailure;
  }
  auto fail = [](const absl::Status& s) {
    std::cerr << "toolgate policy: " << s.message() << "\n";
    return kExitFailure;
  };
  if (command == "push") {
    auto sources = ReadSources((*positional)[0]);
    if (!sources.ok()) return fail(sources.status());
    auto revision = (*store)->Push(*sources, signing_key ? &*signing_key : nullptr);
    if (!revision.ok()) {
      std::cerr << revision.status().message() << "\n";
      return kExitFailure;
    }
    std::cout << "pushed " << *revision
              << (signing_key ? absl::StrCat(" (signed by key ",
                                             signing_key->public_key().Fingerprint(), ")")
                              : std::string(" (unsigned)"))
              << "\n";
    if (activate) {
      if (auto s = (*store)->Activate(*revision); !s.ok()) return fail(s);
      std::cout << "active " << *revision << "\n";
    }
    return kExitAllow;
  }
  if (command == "activate") {
    if (auto s = (*store)->Activate((*positional)[0]); !s.ok()) return fail(s);
    std::cout << "active " << (*positional)[0] << "\n";
    return kExitAllow;
  }
  if (command == "rollback") {
    auto revision = (*store)->Rollback();
    if (!revision.ok()) return fail(revision.status());
    std::cout << "active " << *revision << "\n";
    return kExitAllow;
  }
  auto list = (*store)->List();
  if (!list.ok()) return fail(list.status());
  for (const auto& r : *list) {
    std::cout << (r.active ? "* " : "  ") << r.revision << "  pushed "
              << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(r.pushed_at_ms),
                                  absl::UTCTimeZone())
              << (!r.signed_by.empty() ? absl::StrCat("  signed by key ", r.signed_by)
                  : r.has_digest       ? std::string("  unsigned")
                                       : std::string("  unsigned, no digest (older toolgate)"))
              << "\n";
  }
  return kExitAllow;
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

// Runs cases files against a policy offline, with the server's engine and an
// in-process counter store on a test clock (see policy_test_runner.h).
int RunTest(const std::vector<std::string>& args) {
  toolgate::FlagSet flags(
      "Usage: toolgate test POLICY CASES.yaml [CASES.yaml...]\n"
      "\n"
      "Runs table-driven cases (a call and the decision it must get) against POLICY (a file\n"
      "or a directory), offline. Cases in a file run in order against one in-process counter\n"
      "store and a test clock (`advance: 61s` steps move it). Prints PASS or FAIL per case and\n"
      "a summary line \"N passed, N failed\".\n"
      "Exit codes: 0 every case passed, 1 a case failed or a policy or cases file is invalid,\n"
      "2 usage.",
      "");
  auto positional = flags.Parse(args);
  if (!positional.ok()) {
    std::cerr << "toolgate test: " << positional.status().message() << "\n";
    return kExitUsage;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitAllow;
  }
  if (positional->size() < 2) {
    std::cerr << "toolgate test: name a policy (file or directory) and at least one cases file\n"
              << "Usage: toolgate test POLICY CASES.yaml [CASES.yaml...]\n";
    return kExitUsage;
  }
  auto policy = toolgate::LoadPolicyFromPath(positional->front());
  if (!policy.ok()) {
    std::cerr << policy.status().message() << "\n";
    return kExitFailure;
  }
  int passed = 0, failed = 0, broken = 0;
  for (size_t i = 1; i < positional->size(); ++i) {
    const std::string& path = (*positional)[i];
    auto report = toolgate::RunPolicyTests(**policy, path);
    if (!report.ok()) {
      std::cerr << report.status().message() << "\n";
      ++broken;
      continue;
    }
    std::cout << "== " << path << " (policy revision " << report->revision << ")\n";
    for (const toolgate::PolicyTestCaseResult& c : report->cases) {
      std::cout << toolgate::FormatCaseResult(c) << "\n";
    }
    passed += report->passed();
    failed += report->failed();
  }
  std::cout << toolgate::FormatSummary(passed, failed) << "\n";
  if (broken > 0) {
    std::cerr << "toolgate test: " << broken << " of " << positional->size() - 1
              << " cases files could not be run\n";
  }
  return failed > 0 || broken > 0 ? kExitFailure : kExitAllow;
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
  if (command == "settle") return RunSettle(args);
  if (command == "lint") return RunLint(args);
  if (command == "test") return RunTest(args);
  if (command == "status") return RunStatus(args);
  if (command == "health") return RunHealth(args);
  if (command == "policy") return RunPolicy(args);
  if (command == "approvals") return RunApprovals(args);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainUsage << "\n";
    return kExitAllow;
  }
  std::cerr << "toolgate: unknown command \"" << command << "\"\n\n" << kMainUsage << "\n";
  return kExitUsage;
}
