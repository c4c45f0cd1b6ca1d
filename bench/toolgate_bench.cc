// toolgate_bench: a closed-loop load generator for DecisionService/Check.
//
// Keeps --concurrency calls in flight against --target (each completion
// starts the next call) for --warmup, then measures for --duration. Uses
// gRPC's callback client API over one or a few channels; the requests are
// built and serialized once, before the run, and reused.
//
// The scenario: a tool (--tool, or one per line of --tools-file), a grant
// (--grant, where "{i}" is replaced by 0..--grants-1), and arguments as JSON
// (--args). Request k uses tool k mod (number of tools) and grant
// k mod --grants.
//
// --api ext_authz sends the same calls as Envoy's external authorization
// would ask about them (envoy.service.auth.v3.Authorization/Check: a POST
// whose body is the MCP JSON-RPC tools/call, the grant in x-toolgate-grant),
// so that both ways into the same server can be compared in one run.
//
// With --list-visible, every call is instead one ListVisibleTools naming all
// the tools (the grant as above): what it costs to classify them against
// what one Check costs, in the same run. Such a call counts as the decision
// of its first tool, and an answer without one entry per tool is an error.
//
// Reports calls/s, p50/p90/p99/p99.9 latency, errors by code and the count
// of each decision, as text on stdout and as JSON (--json FILE). With
// --expect DECISION, exits 1 unless every call (warm-up included) got that
// decision; any gRPC error also exits 1.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/base/files.h"
#include "server/base/flags.h"
#include "server/base/json.h"
#include "server/base/runtime.h"
#include "toolgate/client.h"
#include "envoy/service/auth/v3/external_auth.pb.h"
#include "toolgate/v1/decision.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kCheckMethod[] = "/toolgate.v1.DecisionService/Check";
constexpr char kListMethod[] = "/toolgate.v1.DecisionService/ListVisibleTools";
constexpr char kExtAuthzMethod[] = "/envoy.service.auth.v3.Authorization/Check";

constexpr char kUsage[] =
    "toolgate_bench: closed-loop load generator for toolgate.v1.DecisionService/Check.\n"
    "\n"
    "Keeps --concurrency calls in flight for --warmup, then measures for --duration,\n"
    "and reports calls/s, latency percentiles, errors and the count of each decision.\n"
    "\n"
    "Usage: toolgate_bench --target HOST:PORT (--tool T | --tools-file F) [flags]\n"
    "\n"
    "Exit codes: 0 done; 1 gRPC errors, or decisions other than --expect;\n"
    "2 bad usage or the target could not be reached.";

// Decisions by proto enum value (0 = UNSPECIFIED: what the no-op server answers).
constexpr int kDecisions = 5;
const char* const kDecisionNames[kDecisions] = {"UNSPECIFIED", "ALLOW", "DENY", "RATE_LIMITED",
                                                "REQUIRE_APPROVAL"};
constexpr int kCodes = 17;  // gRPC status codes 0..16.

// A lock-free log-linear latency histogram, in nanoseconds: exact below 128,
// then 64 sub-buckets per power of two (at most 1/64 = 1.6% wide).
class Histogram {
 public:
  void Record(uint64_t ns) {
    buckets_[Index(ns)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
    uint64_t max = max_.load(std::memory_order_relaxed);
    while (ns > max && !max_.compare_exchange_weak(max, ns, std::memory_order_relaxed)) {
    }
  }
  uint64_t count() const { return count_.load(); }
  double MeanMicros() const {
    const uint64_t n = count();
    return n == 0 ? 0 : static_cast<double>(sum_.load()) / n / 1000.0;
  }
  double MaxMicros() const { return max_.load() / 1000.0; }
  // The value at quantile q (0..1), as the middle of its bucket, in µs.
  double QuantileMicros(double q) const {
    const uint64_t n = count();
    if (n == 0) return 0;
    const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * n)));
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= rank) return Middle(i) / 1000.0;
    }
    return MaxMicros();
  }

 private:
  static constexpr size_t kBuckets = 128 + 57 * 64;
  static size_t Index(uint64_t v) {
    if (v < 128) return static_cast<size_t>(v);
    const int width = 64 - __builtin_clzll(v);  // v has `width` significant bits (>= 8).
    const int shift = width - 7;                // Keep the top 7 bits: [64, 128).
    const size_t i = 128 + static_cast<size_t>(shift - 1) * 64 + ((v >> shift) - 64);
    return std::min(i, kBuckets - 1);
  }
  static double Middle(size_t i) {
    if (i < 128) return static_cast<double>(i);
    const size_t shift = (i - 128) / 64 + 1;
    const uint64_t top = (i - 128) % 64 + 64;
    return static_cast<double>(top << shift) + static_cast<double>(uint64_t{1} << shift) / 2;
  }

  std::atomic<uint64_t> buckets_[kBuckets] = {};
  std::atomic<uint64_t> count_{0}, sum_{0}, max_{0};
};

std::string CodeName(int code) {
  static const char* const kNames[kCodes] = {
      "OK",        "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",  "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",       "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  return kNames[code];
}

std::string JsonString(absl::string_view s) {
  std::string out;
  toolgate::AppendJsonString(s, &out);
  return out;
}

struct Options {
  std::string target;
  std::string label;
  std::string tool;
  std::string tools_file;
  std::string grant = "agent-{i}";
  int64_t grants = 1;
  std::string args_json;
  std::string session;
  std::string server;
  bool dry_run = false;
  bool list_visible = false;
  int64_t concurrency = 1;
  int64_t channels = 1;
  int64_t warmup_ms = 1000;
  int64_t duration_ms = 5000;
  int64_t timeout_ms = 2000;
  std::string json_path;
  std::string expect;
  std::string api = "toolgate";  // Or "ext_authz".
  int list_size = 0;  // --list-visible: tools per call.
};

// The decision an ext_authz answer carries: OK is ALLOW; a refusal names
// its decision in the body's "toolgate/decision" metadata. -1: neither (an
// undecidable request, answered 400).
int ExtAuthzDecision(const envoy::service::auth::v3::CheckResponse& r) {
  if (r.status().code() == 0) return toolgate::v1::DECISION_ALLOW;
  const std::string& body = r.denied_response().body();
  constexpr absl::string_view kKey = "\"toolgate/decision\":{\"decision\":\"";
  const size_t at = absl::string_view(body).find(kKey);
  if (at == std::string::npos) return -1;
  const absl::string_view rest = absl::string_view(body).substr(at + kKey.size());
  if (absl::StartsWith(rest, "deny\"")) return toolgate::v1::DECISION_DENY;
  if (absl::StartsWith(rest, "rate_limited\"")) return toolgate::v1::DECISION_RATE_LIMITED;
  if (absl::StartsWith(rest, "require_approval\"")) return toolgate::v1::DECISION_REQUIRE_APPROVAL;
  return -1;
}

class Runner {
 public:
  Runner(const Options& options, std::vector<grpc::ByteBuffer> requests)
      : options_(options), requests_(std::move(requests)) {}

  // Connects every channel; false (with a message) when one does not connect.
  bool Connect(std::string* error) {
    for (int64_t i = 0; i < options_.channels; ++i) {
      grpc::ChannelArguments args;
      // A distinct argument per channel, and no shared subchannel pool: each
      // channel gets its own connection.
      args.SetInt("toolgate_bench.channel", static_cast<int>(i));
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      auto channel =
          grpc::CreateCustomChannel(options_.target, grpc::InsecureChannelCredentials(), args);
      if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
        *error = absl::StrCat("cannot connect to ", options_.target);
        return false;
      }
      stubs_.push_back(std::make_unique<grpc::GenericStub>(channel));
    }
    return true;
  }

  void Run() {
    const Clock::time_point start = Clock::now();
    measure_start_ = start + std::chrono::milliseconds(options_.warmup_ms);
    measure_end_ = measure_start_ + std::chrono::milliseconds(options_.duration_ms);
    active_.store(static_cast<int>(options_.concurrency));
    for (int64_t slot = 0; slot < options_.concurrency; ++slot) StartCall(static_cast<int>(slot));
    std::this_thread::sleep_until(measure_end_);
    // Completions after measure_end_ start no new call; wait for the last ones.
    absl::MutexLock lock(&mu_);
    const absl::Duration drain = absl::Milliseconds(options_.timeout_ms) + absl::Seconds(5);
    mu_.AwaitWithTimeout(
        absl::Condition(+[](std::atomic<int>* active) { return active->load() == 0; }, &active_),
        drain);
  }

  int Report() const;

 private:
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer response;
    Clock::time_point started;
  };

  void StartCall(int slot) {
    auto* call = new Call();
    const uint64_t k = next_.fetch_add(1, std::memory_order_relaxed);
    call->context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::milliseconds(options_.timeout_ms));
    call->started = Clock::now();
    stubs_[slot % stubs_.size()]->UnaryCall(
        &call->context,
        options_.api == "ext_authz" ? kExtAuthzMethod
        : options_.list_visible     ? kListMethod
                                    : kCheckMethod,
        grpc::StubOptions(), &requests_[k % requests_.size()],
        &call->response, [this, call, slot](grpc::Status status) { OnDone(call, slot, status); });
  }

  // The answer's decision (in --list-visible mode, its first tool's), or -1
  // when it cannot be read.
  int DecisionOf(grpc::ByteBuffer* answer) const {
    if (options_.api == "ext_authz") {
      envoy::service::auth::v3::CheckResponse response;
      if (!grpc::SerializationTraits<envoy::service::auth::v3::CheckResponse>::Deserialize(
               answer, &response)
               .ok()) {
        return -1;
      }
      return ExtAuthzDecision(response);
    }
    if (!options_.list_visible) {
      toolgate::v1::CheckResponse response;
      if (!grpc::SerializationTraits<toolgate::v1::CheckResponse>::Deserialize(answer, &response)
               .ok()) {
        return -1;
      }
      return std::clamp(static_cast<int>(response.decision()), 0, kDecisions - 1);
    }
    toolgate::v1::ListVisibleToolsResponse response;
    if (!grpc::SerializationTraits<toolgate::v1::ListVisibleToolsResponse>::Deserialize(answer,
                                                                                       &response)
             .ok() ||
        response.tools_size() != options_.list_size) {
      return -1;
    }
    return response.tools().empty()
               ? 0
               : std::clamp(static_cast<int>(response.tools(0).decision()), 0, kDecisions - 1);
  }

  void OnDone(Call* call, int slot, const grpc::Status& status) {
    const Clock::time_point now = Clock::now();
    const bool measured = now >= measure_start_ && now < measure_end_;
    const int decision = status.ok() ? DecisionOf(&call->response) : -1;
    const int code = status.ok() ? (decision < 0 ? static_cast<int>(grpc::StatusCode::INTERNAL) : 0)
                                 : std::clamp(static_cast<int>(status.error_code()), 0, kCodes - 1);
    if (code != 0) {
      all_errors_[code].fetch_add(1, std::memory_order_relaxed);
      if (all_errors_total_.fetch_add(1) == 0) {
        absl::MutexLock lock(&mu_);
        first_error_ = status.ok() ? "response could not be parsed, or no decision in it"
                                   : absl::StrCat(CodeName(code), ": ", status.error_message());
      }
    } else {
      all_decisions_[decision].fetch_add(1, std::memory_order_relaxed);
    }
    if (measured) {
      if (code != 0) {
        errors_[code].fetch_add(1, std::memory_order_relaxed);
      } else {
        decisions_[decision].fetch_add(1, std::memory_order_relaxed);
      }
      histogram_.Record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - call->started).count()));
    }
    delete call;
    if (now < measure_end_) {
      StartCall(slot);
      return;
    }
    if (active_.fetch_sub(1) == 1) {
      absl::MutexLock lock(&mu_);  // Wakes Run().
    }
  }

  const Options& options_;
  const std::vector<grpc::ByteBuffer> requests_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  Clock::time_point measure_start_, measure_end_;
  std::atomic<uint64_t> next_{0};
  std::atomic<int> active_{0};
  Histogram histogram_;
  // Measured window only.
  std::atomic<uint64_t> decisions_[kDecisions] = {}, errors_[kCodes] = {};
  // Every completed call, warm-up and drain included.
  std::atomic<uint64_t> all_decisions_[kDecisions] = {}, all_errors_[kCodes] = {};
  std::atomic<uint64_t> all_errors_total_{0};
  mutable absl::Mutex mu_;
  std::string first_error_;
};

int Runner::Report() const {
  const double seconds = options_.duration_ms / 1000.0;
  uint64_t calls = 0, errors = 0, all_calls = 0, all_errors = 0;
  for (int d = 0; d < kDecisions; ++d) {
    calls += decisions_[d].load();
    all_calls += all_decisions_[d].load();
  }
  for (int c = 1; c < kCodes; ++c) {
    errors += errors_[c].load();
    all_errors += all_errors_[c].load();
  }
  calls += errors;
  all_calls += all_errors;
  const double rate = calls / seconds;
  const double p50 = histogram_.QuantileMicros(0.50), p90 = histogram_.QuantileMicros(0.90),
               p99 = histogram_.QuantileMicros(0.99), p999 = histogram_.QuantileMicros(0.999);

  // Expectation: every completed call, warm-up included.
  std::string mismatch;
  if (!options_.expect.empty()) {
    for (int d = 0; d < kDecisions; ++d) {
      if (kDecisionNames[d] == options_.expect || all_decisions_[d].load() == 0) continue;
      absl::StrAppend(&mismatch, mismatch.empty() ? "" : ", ", all_decisions_[d].load(), " ",
                      kDecisionNames[d]);
    }
  }

  std::vector<std::string> decision_text, decision_json, error_text, error_json;
  for (int d = 0; d < kDecisions; ++d) {
    const uint64_t n = decisions_[d].load();
    decision_json.push_back(absl::StrCat("\"", kDecisionNames[d], "\": ", n));
    if (n > 0) decision_text.push_back(absl::StrCat(kDecisionNames[d], " ", n));
  }
  for (int c = 1; c < kCodes; ++c) {
    const uint64_t n = errors_[c].load();
    if (n == 0) continue;
    error_json.push_back(absl::StrCat("\"", CodeName(c), "\": ", n));
    error_text.push_back(absl::StrCat(CodeName(c), " ", n));
  }

  std::cout << absl::StrFormat(
      "toolgate_bench %s: target %s, concurrency %d, %d channel(s), warm-up %.3f s, "
      "measured %.3f s\n"
      "  calls        %d (%.1f calls/s)\n"
      "  latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n"
      "  errors       %d%s%s\n"
      "  decisions    %s\n",
      options_.label.empty() ? "run" : options_.label, options_.target, options_.concurrency,
      options_.channels, options_.warmup_ms / 1000.0, seconds, calls, rate, p50, p90, p99, p999,
      histogram_.MaxMicros(), histogram_.MeanMicros(), errors, error_text.empty() ? "" : ": ",
      absl::StrJoin(error_text, ", "),
      decision_text.empty() ? "none" : absl::StrJoin(decision_text, ", "));
  if (all_errors > 0) {
    absl::MutexLock lock(&mu_);
    std::cout << "  ERROR: " << all_errors << " call(s) failed (first: " << first_error_ << ")\n";
  }
  if (!mismatch.empty()) {
    std::cout << "  WARNING: expected every decision to be " << options_.expect << ", got "
              << mismatch << "\n";
  }

  if (!options_.json_path.empty()) {
    std::ofstream out(options_.json_path);
    out << absl::StrFormat(
        "{\n"
        "  \"label\": %s,\n"
        "  \"target\": %s,\n"
        "  \"concurrency\": %d,\n"
        "  \"channels\": %d,\n"
        "  \"warmup_s\": %.3f,\n"
        "  \"duration_s\": %.3f,\n"
        "  \"calls\": %d,\n"
        "  \"calls_per_second\": %.1f,\n"
        "  \"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p99_9\": %.1f, "
        "\"max\": %.1f, \"mean\": %.1f},\n"
        "  \"errors\": %d,\n"
        "  \"errors_by_code\": {%s},\n"
        "  \"decisions\": {%s},\n"
        "  \"all_calls\": %d,\n"
        "  \"all_errors\": %d,\n"
        "  \"expect\": %s,\n"
        "  \"expectation_met\": %s\n"
        "}\n",
        JsonString(options_.label), JsonString(options_.target), options_.concurrency,
        options_.channels, options_.warmup_ms / 1000.0, seconds, calls, rate, p50, p90, p99, p999,
        histogram_.MaxMicros(), histogram_.MeanMicros(), errors, absl::StrJoin(error_json, ", "),
        absl::StrJoin(decision_json, ", "), all_calls, all_errors, JsonString(options_.expect),
        mismatch.empty() && all_errors == 0 ? "true" : "false");
    if (!out) {
      std::cerr << "toolgate_bench: cannot write " << options_.json_path << "\n";
      return 2;
    }
  }
  return all_errors > 0 || !mismatch.empty() ? 1 : 0;
}

// Reads one tool name per line (blank lines and lines starting with '#'
// skipped) from a regular file of at most 16 MiB.
bool ReadTools(const std::string& path, std::vector<std::string>* tools) {
  const absl::StatusOr<std::string> text = toolgate::ReadRegularFile(path);
  if (!text.ok()) return false;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (t.empty() || t[0] == '#') continue;
    tools->emplace_back(t);
  }
  return true;
}

// What Envoy (with_request_body, pack_as_bytes) sends to ask about `req`
// as an MCP tools/call over Streamable HTTP.
envoy::service::auth::v3::CheckRequest ExtAuthzRequest(const toolgate::v1::CheckRequest& req,
                                                       size_t k) {
  std::string body = absl::StrCat("{\"jsonrpc\":\"2.0\",\"id\":", k,
                                  ",\"method\":\"tools/call\",\"params\":{\"name\":");
  toolgate::AppendJsonString(req.tool(), &body);
  body += ",\"arguments\":";
  toolgate::AppendJsonStruct(req.args(), &body);
  body += "}}";
  envoy::service::auth::v3::CheckRequest r;
  auto* http = r.mutable_attributes()->mutable_request()->mutable_http();
  http->set_id(absl::StrCat("bench-", k));
  http->set_method("POST");
  http->set_path("/mcp");
  http->set_host(req.server().empty() ? "mcp.bench:8080" : req.server());
  http->set_scheme("http");
  http->set_protocol("HTTP/1.1");
  auto& headers = *http->mutable_headers();
  headers[":authority"] = http->host();
  headers[":method"] = "POST";
  headers[":path"] = "/mcp";
  headers["accept"] = "application/json, text/event-stream";
  headers["content-type"] = "application/json";
  headers["content-length"] = absl::StrCat(body.size());
  headers["user-agent"] = "toolgate_bench";
  headers["x-request-id"] = http->id();
  headers["x-toolgate-grant"] = req.grant();
  if (!req.session().empty()) headers["mcp-session-id"] = req.session();
  http->set_size(static_cast<int64_t>(body.size()));
  http->set_raw_body(std::move(body));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  toolgate::ConfigureServingRuntime();
  Options o;
  toolgate::FlagSet flags(kUsage, "");
  flags.String("target", &o.target, "toolgated (or noop_server) address, HOST:PORT.");
  flags.String("label", &o.label, "A name for this run, echoed in the report.");
  flags.String("tool", &o.tool, "The tool every request names.");
  flags.String("tools-file", &o.tools_file,
               "A file of tool names, one per line; request k names tool k mod their number.");
  flags.String("grant", &o.grant, "The grant; \"{i}\" is replaced by 0..--grants-1.");
  flags.Int("grants", &o.grants, 1, 100'000'000, "How many grants the requests spread over.");
  flags.String("args", &o.args_json, "Arguments of every request, a JSON object.");
  flags.String("session", &o.session, "CheckRequest.session of every request.");
  flags.String("server", &o.server, "CheckRequest.server of every request.");
  flags.Bool("dry-run", &o.dry_run, "Send dry-run requests (no counter consumed).");
  flags.Bool("list-visible", &o.list_visible,
             "Call ListVisibleTools with every tool at once instead of Check.");
  flags.Int("concurrency", &o.concurrency, 1, 100'000, "Calls kept in flight.");
  flags.Int("channels", &o.channels, 1, 64, "gRPC channels (connections) the calls spread over.");
  flags.Duration("warmup", &o.warmup_ms, "Load before measuring.");
  flags.Duration("duration", &o.duration_ms, "How long to measure.");
  flags.Duration("timeout", &o.timeout_ms, "Deadline of each call.");
  flags.String("json", &o.json_path, "Also write the report as JSON to this file.");
  flags.String("api", &o.api,
               "toolgate (toolgate.v1.DecisionService/Check) or ext_authz (the same calls as "
               "Envoy's envoy.service.auth.v3.Authorization/Check for an MCP tools/call).");
  flags.String("expect", &o.expect,
               "Every call must get this decision (ALLOW, DENY, RATE_LIMITED, "
               "REQUIRE_APPROVAL, or UNSPECIFIED for the no-op server); exit 1 otherwise.");
  absl::StatusOr<std::vector<std::string>> positional =
      flags.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!positional.ok()) {
    std::cerr << "toolgate_bench: " << positional.status().message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  auto usage_error = [](const std::string& message) {
    std::cerr << "toolgate_bench: " << message << " (see --help)\n";
    return 2;
  };
  if (!positional->empty()) return usage_error("unexpected argument \"" + positional->front() + "\"");
  if (o.target.empty()) return usage_error("--target is required");
  if (o.tool.empty() == o.tools_file.empty()) return usage_error("give one of --tool and --tools-file");
  if (o.api != "toolgate" && o.api != "ext_authz") {
    return usage_error("--api: must be toolgate or ext_authz, got \"" + o.api + "\"");
  }
  if (o.api == "ext_authz" && o.list_visible) {
    return usage_error("--list-visible is a toolgate call: not with --api ext_authz");
  }
  if (!o.expect.empty()) {
    o.expect = absl::AsciiStrToUpper(o.expect);
    if (absl::StartsWith(o.expect, "DECISION_")) o.expect = o.expect.substr(9);
    if (std::find(std::begin(kDecisionNames), std::end(kDecisionNames), o.expect) ==
        std::end(kDecisionNames)) {
      return usage_error("--expect: unknown decision \"" + o.expect + "\"");
    }
  }

  std::vector<std::string> tools;
  if (!o.tools_file.empty()) {
    if (!ReadTools(o.tools_file, &tools)) return usage_error("cannot read " + o.tools_file);
    if (tools.empty()) return usage_error(o.tools_file + " names no tool");
  } else {
    tools.push_back(o.tool);
  }
  google::protobuf::Struct args;
  if (!o.args_json.empty()) {
    absl::StatusOr<google::protobuf::Struct> parsed = toolgate::ParseArgsJson(o.args_json);
    if (!parsed.ok()) return usage_error(absl::StrCat("--args: ", parsed.status().message()));
    args = *std::move(parsed);
  }

  // Every distinct request, serialized once.
  const bool spread_grants = absl::StrContains(o.grant, "{i}");
  const size_t grants = spread_grants ? static_cast<size_t>(o.grants) : 1;
  const size_t n = o.list_visible ? grants : std::max(tools.size(), grants);
  std::vector<grpc::ByteBuffer> requests;
  requests.reserve(n);
  toolgate::v1::CheckRequest req;
  *req.mutable_args() = args;
  req.set_session(o.session);
  req.set_server(o.server);
  req.set_dry_run(o.dry_run);
  toolgate::v1::ListVisibleToolsRequest list;
  list.set_session(o.session);
  list.set_server(o.server);
  for (const std::string& t : tools) list.add_tools(t);
  o.list_size = list.tools_size();
  for (size_t k = 0; k < n; ++k) {
    const std::string grant =
        spread_grants ? absl::StrReplaceAll(o.grant, {{"{i}", absl::StrCat(k % grants)}}) : o.grant;
    req.set_tool(tools[k % tools.size()]);
    req.set_grant(grant);
    list.set_grant(grant);
    grpc::ByteBuffer buffer;
    bool own = false;
    if (o.api == "ext_authz") {
      if (!grpc::SerializationTraits<envoy::service::auth::v3::CheckRequest>::Serialize(
               ExtAuthzRequest(req, k), &buffer, &own)
               .ok()) {
        std::cerr << "toolgate_bench: cannot serialize a request\n";
        return 2;
      }
      requests.push_back(std::move(buffer));
      continue;
    }
    const grpc::Status serialized =
        o.list_visible
            ? grpc::SerializationTraits<toolgate::v1::ListVisibleToolsRequest>::Serialize(
                  list, &buffer, &own)
            : grpc::SerializationTraits<toolgate::v1::CheckRequest>::Serialize(req, &buffer, &own);
    if (!serialized.ok()) {
      std::cerr << "toolgate_bench: cannot serialize a request\n";
      return 2;
    }
    requests.push_back(std::move(buffer));
  }

  Runner runner(o, std::move(requests));
  std::string error;
  if (!runner.Connect(&error)) {
    std::cerr << "toolgate_bench: " << error << "\n";
    return 2;
  }
  runner.Run();
  return runner.Report();
}
