#include "client/cli/approvals.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cli/approval_format.h"
#include "client/cli/connection.h"
#include "google/protobuf/util/json_util.h"
#include "server/base/flags.h"
#include "toolgate/client.h"

namespace toolgate::cli {
namespace {

// The contract's bounds (approval.proto), checked here too so that a bad
// value is a usage error before anything is sent.
constexpr size_t kMaxApproverBytes = 256;
constexpr size_t kMaxNoteBytes = 1024;
constexpr int64_t kMaxListLimit = 1000;
// An id is "apr_" and 32 hex digits; anything much longer is not one.
constexpr size_t kMaxIdBytes = 128;

constexpr char kUsage[] =
    "Usage: toolgate approvals COMMAND [flags]\n"
    "\n"
    "Approvals are pending decisions on exact tool calls (a policy entry with\n"
    "action: require_approval). Commands ask the ApprovalService of a toolgated's\n"
    "admin listener (--target, by default localhost:50052).\n"
    "\n"
    "  list [--state pending|approved|denied|expired|used] [--grant G] [--tool T] [--limit N]\n"
    "                      approvals, newest first, as a table (id, state, grant, tool,\n"
    "                      server, session, age, expiry)\n"
    "  show ID             every field of one approval, the arguments as indented JSON\n"
    "  approve ID [--approver NAME] [--note TEXT]\n"
    "  deny ID [--approver NAME] [--note TEXT]\n"
    "                      decide a pending approval (approver: $USER unless given;\n"
    "                      a denial's note is shown to the agent)\n"
    "  watch [--include-pending] [--grant G] [--tool T]\n"
    "                      one line per approval event (created, approved, denied, used,\n"
    "                      expired) until interrupted (Ctrl-C)\n"
    "\n"
    "Every command takes --target, --output text|json, the TLS flags and\n"
    "--admin-token-file (list, show, approve and deny: --timeout too);\n"
    "'toolgate approvals COMMAND --help' lists them.\n"
    "\n"
    "Exit codes: 0 done (watch: interrupted), 1 the approval is unknown or no longer\n"
    "pending, 2 bad usage, 6 the server could not be asked (unreachable, refused the\n"
    "call, ended the watch).";

// The flags every approvals command takes.
struct CommonFlags {
  std::string target = "localhost:50052";
  std::string output = "text";
  int64_t timeout_ms = 2000;
  ConnectionFlags connection;

  void Register(toolgate::FlagSet& flags, bool unary) {
    flags.String("target", &target,
                 "toolgated admin address, its --admin-listen (env TOOLGATE_ADMIN_TARGET).");
    if (unary) flags.Duration("timeout", &timeout_ms, "Deadline of the call.");
    flags.String("output", &output, "text or json.");
    connection.Register(flags, /*admin=*/true);
    if (const char* t = std::getenv("TOOLGATE_ADMIN_TARGET"); t != nullptr && *t) target = t;
  }
};

std::string ToJson(const google::protobuf::Message& m, bool pretty) {
  std::string json;
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.add_whitespace = pretty;
  (void)google::protobuf::util::MessageToJsonString(m, &json, opts);
  // add_whitespace ends with a newline; one-line output does not.
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

// Prints a failed call's status; the exit code for it.
int CallFailed(const std::string& command, const absl::Status& status) {
  std::cerr << "toolgate approvals " << command << ": " << absl::StatusCodeToString(status.code())
            << ": " << status.message() << "\n";
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return kExitFailure;
    default:
      return kExitRpcError;
  }
}

// An id as given on the command line, or an error message.
absl::StatusOr<std::string> CheckId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("the approval id is empty");
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", id.substr(0, 16), "...\" is not an approval id (over ", kMaxIdBytes, " bytes)"));
  }
  for (char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", Printable(id), "\" is not an approval id (ids are \"apr_\" and hex digits)"));
    }
  }
  return id;
}

// Parses the flags of one command. On nullopt, `exit` holds the exit code
// (usage error, or 0 after --help).
std::optional<std::vector<std::string>> ParseFlags(const std::string& command,
                                                   toolgate::FlagSet& flags,
                                                   const std::vector<std::string>& args,
                                                   const CommonFlags& common, int* exit) {
  auto positional = flags.Parse(args);
  if (!positional.ok()) {
    std::cerr << "toolgate approvals " << command << ": " << positional.status().message() << "\n";
    *exit = kExitUsage;
    return std::nullopt;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    *exit = kExitAllow;
    return std::nullopt;
  }
  if (common.output != "text" && common.output != "json") {
    std::cerr << "toolgate approvals " << command << ": --output must be text or json\n";
    *exit = kExitUsage;
    return std::nullopt;
  }
  return *std::move(positional);
}

int RunList(const std::vector<std::string>& args) {
  CommonFlags common;
  std::string state, grant, tool;
  int64_t limit = 0;
  toolgate::FlagSet flags(
      "Usage: toolgate approvals list [--state STATE] [--grant G] [--tool T] [--limit N]\n"
      "\n"
      "Lists approvals, newest first: id, state, grant, tool, server, session, age and\n"
      "expiry (for pending and approved ones).",
      "");
  common.Register(flags, /*unary=*/true);
  flags.String("state", &state,
               "Only approvals in this state: pending, approved, denied, "
               "expired or used.");
  flags.String("grant", &grant, "Only approvals of this grant.");
  flags.String("tool", &tool, "Only approvals of this tool.");
  flags.Int("limit", &limit, 0, kMaxListLimit,
            "At most this many (1 to 1000; 0: the server's default, 100).");
  int exit = kExitAllow;
  auto positional = ParseFlags("list", flags, args, common, &exit);
  if (!positional) return exit;
  if (!positional->empty()) {
    std::cerr << "toolgate approvals list: unexpected argument \"" << positional->front() << "\"\n";
    return kExitUsage;
  }
  v1::ListApprovalsRequest req;
  if (!state.empty()) {
    std::optional<v1::ApprovalState> s = ParseApprovalState(state);
    if (!s) {
      std::cerr << "toolgate approvals list: --state must be pending, approved, denied, expired "
                   "or used, not \""
                << Printable(state) << "\"\n";
      return kExitUsage;
    }
    req.set_state(*s);
  }
  req.set_grant(grant);
  req.set_tool(tool);
  req.set_limit(static_cast<int32_t>(limit));
  std::unique_ptr<toolgate::Client> client =
      common.connection.Connect("approvals list", common.target);
  if (client == nullptr) return kExitUsage;
  auto resp = client->ListApprovals(req, absl::Milliseconds(common.timeout_ms));
  if (!resp.ok()) return CallFailed("list", resp.status());
  if (common.output == "json") {
    std::cout << ToJson(*resp, /*pretty=*/false) << "\n";
    return kExitAllow;
  }
  if (resp->approvals().empty()) {
    std::cout << "no approvals\n";
    return kExitAllow;
  }
  std::cout << FormatApprovalTable({resp->approvals().begin(), resp->approvals().end()},
                                   absl::Now());
  return kExitAllow;
}

// The single ID argument of show, approve and deny.
std::optional<std::string> OneId(const std::string& command,
                                 const std::vector<std::string>& positional) {
  if (positional.size() != 1) {
    std::cerr << "toolgate approvals " << command << ": name one approval id ("
              << (positional.empty() ? "none" : absl::StrCat(positional.size()))
              << " given; see 'toolgate approvals list')\n";
    return std::nullopt;
  }
  absl::StatusOr<std::string> id = CheckId(positional[0]);
  if (!id.ok()) {
    std::cerr << "toolgate approvals " << command << ": " << id.status().message() << "\n";
    return std::nullopt;
  }
  return *id;
}

int RunShow(const std::vector<std::string>& args) {
  CommonFlags common;
  toolgate::FlagSet flags(
      "Usage: toolgate approvals show ID\n"
      "\n"
      "Shows every field of one approval: the call it is bound to, its state and expiry,\n"
      "who decided and why, the call that used it, and the arguments as indented JSON.",
      "");
  common.Register(flags, /*unary=*/true);
  int exit = kExitAllow;
  auto positional = ParseFlags("show", flags, args, common, &exit);
  if (!positional) return exit;
  std::optional<std::string> id = OneId("show", *positional);
  if (!id) return kExitUsage;
  std::unique_ptr<toolgate::Client> client =
      common.connection.Connect("approvals show", common.target);
  if (client == nullptr) return kExitUsage;
  auto approval = client->GetApproval(*id, absl::Milliseconds(common.timeout_ms));
  if (!approval.ok()) return CallFailed("show", approval.status());
  if (common.output == "json") {
    std::cout << ToJson(*approval, /*pretty=*/true) << "\n";
  } else {
    std::cout << FormatApprovalDetails(*approval, absl::Now());
  }
  return kExitAllow;
}

int RunDecide(const std::string& command, const std::vector<std::string>& args) {
  const bool approve = command == "approve";
  CommonFlags common;
  std::string approver, note;
  toolgate::FlagSet flags(
      absl::StrCat("Usage: toolgate approvals ", command,
                   " ID [--approver NAME] [--note TEXT]\n"
                   "\n",
                   approve ? "Approves a pending approval: the identical call, repeated with its "
                             "id,\nis then admitted once, until the approval expires."
                           : "Denies a pending approval: a call that tries to use it is denied, "
                             "with\nthe approver's name and note in the reason."),
      "");
  common.Register(flags, /*unary=*/true);
  flags.String("approver", &approver,
               absl::StrCat("Who decides, recorded with the decision (default: $USER; at most ",
                            kMaxApproverBytes, " bytes)."));
  flags.String(
      "note", &note,
      absl::StrCat("Why, recorded with the decision", approve ? "" : " and shown to the agent",
                   " (at most ", kMaxNoteBytes, " bytes)."));
  int exit = kExitAllow;
  auto positional = ParseFlags(command, flags, args, common, &exit);
  if (!positional) return exit;
  std::optional<std::string> id = OneId(command, *positional);
  if (!id) return kExitUsage;
  if (approver.empty()) {
    if (const char* user = std::getenv("USER"); user != nullptr) approver = user;
  }
  if (approver.empty()) {
    std::cerr << "toolgate approvals " << command
              << ": say who decides: --approver NAME (USER is not set)\n";
    return kExitUsage;
  }
  if (approver.size() > kMaxApproverBytes) {
    std::cerr << "toolgate approvals " << command << ": --approver is " << approver.size()
              << " bytes, over the limit of " << kMaxApproverBytes << "\n";
    return kExitUsage;
  }
  if (note.size() > kMaxNoteBytes) {
    std::cerr << "toolgate approvals " << command << ": --note is " << note.size()
              << " bytes, over the limit of " << kMaxNoteBytes << "\n";
    return kExitUsage;
  }
  v1::DecideApprovalRequest req;
  req.set_id(*id);
  req.set_approve(approve);
  req.set_approver(approver);
  req.set_note(note);
  std::unique_ptr<toolgate::Client> client =
      common.connection.Connect(absl::StrCat("approvals ", command), common.target);
  if (client == nullptr) return kExitUsage;
  auto decided = client->DecideApproval(req, absl::Milliseconds(common.timeout_ms));
  if (!decided.ok()) return CallFailed(command, decided.status());
  if (common.output == "json") {
    std::cout << ToJson(*decided, /*pretty=*/true) << "\n";
    return kExitAllow;
  }
  std::cout << (approve ? "approved " : "denied ") << Printable(decided->id()) << " ("
            << Printable(decided->tool()) << " for grant " << Printable(decided->grant()) << ") by "
            << Printable(decided->decided_by()) << "\n";
  if (approve && decided->has_expires_at()) {
    std::cout << "the identical call with this id is admitted once, until "
              << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                  absl::FromUnixSeconds(decided->expires_at().seconds()),
                                  absl::UTCTimeZone())
              << "\n";
  }
  return kExitAllow;
}

int RunWatch(const std::vector<std::string>& args) {
  CommonFlags common;
  bool include_pending = false;
  std::string grant, tool;
  toolgate::FlagSet flags(
      "Usage: toolgate approvals watch [--include-pending] [--grant G] [--tool T]\n"
      "\n"
      "Prints one line per approval event (created, approved, denied, used, expired;\n"
      "pending: already pending when the watch started) until interrupted (Ctrl-C,\n"
      "SIGTERM; exit 0). The line: the event's time, its kind, the approval id, then\n"
      "key=value fields (grant, tool, server, session; rule, expires and args when\n"
      "created; by and note when decided). --output json: one JSON event a line.",
      "");
  common.Register(flags, /*unary=*/false);
  flags.Bool("include-pending", &include_pending,
             "First print every approval pending now (kind \"pending\").");
  flags.String("grant", &grant, "Only events of approvals of this grant.");
  flags.String("tool", &tool, "Only events of approvals of this tool.");
  int exit = kExitAllow;
  auto positional = ParseFlags("watch", flags, args, common, &exit);
  if (!positional) return exit;
  if (!positional->empty()) {
    std::cerr << "toolgate approvals watch: unexpected argument \"" << positional->front()
              << "\"\n";
    return kExitUsage;
  }
  // SIGINT and SIGTERM are taken by a thread of ours (sigwait), which
  // cancels the stream: blocked here, before gRPC starts its threads, so
  // that every thread inherits the mask and none is interrupted.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::unique_ptr<toolgate::Client> client =
      common.connection.Connect("approvals watch", common.target);
  if (client == nullptr) return kExitUsage;
  v1::WatchApprovalsRequest req;
  req.set_include_pending(include_pending);
  req.set_grant(grant);
  req.set_tool(tool);
  std::unique_ptr<toolgate::Client::ApprovalWatch> watch = client->WatchApprovals(req);

  std::atomic<bool> interrupted{false}, done{false};
  std::thread stopper([&] {
    const timespec tick{0, 200'000'000};
    while (!done.load()) {
      if (sigtimedwait(&stop_signals, nullptr, &tick) > 0) {
        interrupted = true;
        watch->Cancel();
        return;
      }
    }
  });
  absl::Status ended;
  while (true) {
    absl::StatusOr<v1::ApprovalEvent> event = watch->Next();
    if (!event.ok()) {
      ended = event.status();
      break;
    }
    // Flushed line by line: the output is often a pipe (grep, a notifier).
    std::cout << (common.output == "json" ? ToJson(*event, /*pretty=*/false)
                                          : FormatApprovalEvent(*event))
              << std::endl;
  }
  done = true;
  stopper.join();
  if (interrupted) return kExitAllow;
  return CallFailed("watch", ended);
}

}  // namespace

int RunApprovals(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << kUsage << "\n";
    return kExitUsage;
  }
  const std::string& command = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "list") return RunList(rest);
  if (command == "show") return RunShow(rest);
  if (command == "approve" || command == "deny") return RunDecide(command, rest);
  if (command == "watch") return RunWatch(rest);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage << "\n";
    return kExitAllow;
  }
  std::cerr << "toolgate approvals: unknown command \"" << Printable(command) << "\"\n\n"
            << kUsage << "\n";
  return kExitUsage;
}

}  // namespace toolgate::cli
