// Envoy's external authorization (ext_authz v3) against a real toolgated:
// the test speaks envoy.service.auth.v3.Authorization/Check over gRPC as an
// Envoy in front of an MCP server would (the request attributes Envoy sends
// with with_request_body and pack_as_bytes), and reads the answers as Envoy
// applies them.
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "envoy/service/auth/v3/external_auth.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/base/json_parse.h"
#include "tests/integration/process.h"
#include "tests/integration/scrape.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

namespace auth = envoy::service::auth::v3;
namespace pb = google::protobuf;
using ::testing::HasSubstr;

// What Envoy sends for one HTTP request to the MCP server.
struct HttpCall {
  std::string method = "POST";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers = {{"x-toolgate-grant", "agent-1"}};
  std::string principal;     // attributes.source.principal
  std::string route_server;  // context_extensions["server"]
};

HttpCall Post(std::string body) {
  HttpCall c;
  c.body = std::move(body);
  return c;
}

HttpCall Method(std::string method) {
  HttpCall c;
  c.method = std::move(method);
  return c;
}

auth::CheckRequest ToEnvoy(const HttpCall& c) {
  auth::CheckRequest r;
  auto* attributes = r.mutable_attributes();
  auto* http = attributes->mutable_request()->mutable_http();
  http->set_id("req-envoy-1");
  http->set_method(c.method);
  http->set_path("/mcp");
  http->set_host("mcp.internal:8080");
  http->set_scheme("http");
  http->set_protocol("HTTP/1.1");
  (*http->mutable_headers())[":authority"] = "mcp.internal:8080";
  (*http->mutable_headers())[":method"] = c.method;
  (*http->mutable_headers())["content-type"] = "application/json";
  if (!c.body.empty()) {
    (*http->mutable_headers())["content-length"] = std::to_string(c.body.size());
    http->set_size(static_cast<int64_t>(c.body.size()));
    http->set_raw_body(c.body);
  }
  for (const auto& [k, v] : c.headers) (*http->mutable_headers())[k] = v;
  if (!c.principal.empty()) attributes->mutable_source()->set_principal(c.principal);
  if (!c.route_server.empty())
    (*attributes->mutable_context_extensions())["server"] = c.route_server;
  return r;
}

std::string ToolCall(absl::string_view id, absl::string_view tool, absl::string_view args = "{}") {
  return absl::StrCat("{\"jsonrpc\":\"2.0\",\"id\":", id,
                      ",\"method\":\"tools/call\",\"params\":{\"name\":\"", tool,
                      "\",\"arguments\":", args, "}}");
}

class Envoy {
 public:
  explicit Envoy(const std::string& address)
      : stub_(auth::Authorization::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  grpc::Status Check(const HttpCall& call, auth::CheckResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->Check(&context, ToEnvoy(call), response);
  }

  auth::CheckResponse MustCheck(const HttpCall& call) {
    auth::CheckResponse response;
    const grpc::Status s = Check(call, &response);
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
    return response;
  }

 private:
  std::unique_ptr<auth::Authorization::Stub> stub_;
};

bool Allowed(const auth::CheckResponse& r) { return r.status().code() == 0 && r.has_ok_response(); }

std::string Header(const auth::CheckResponse& r, absl::string_view key) {
  const auto& headers =
      r.has_ok_response() ? r.ok_response().headers() : r.denied_response().headers();
  for (const auto& h : headers) {
    if (h.header().key() == key) return h.header().value();
  }
  return "";
}

pb::Value Body(const auth::CheckResponse& r) {
  auto v = toolgate::ParseJsonValue(r.denied_response().body(), 64, "test");
  EXPECT_TRUE(v.ok()) << v.status() << ": " << r.denied_response().body();
  return v.ok() ? *v : pb::Value();
}

// The "toolgate/decision" metadata of a tool error.
pb::Struct DecisionMeta(const pb::Value& answer) {
  return answer.struct_value()
      .fields()
      .at("result")
      .struct_value()
      .fields()
      .at("_meta")
      .struct_value()
      .fields()
      .at("toolgate/decision")
      .struct_value();
}

std::string ToolErrorText(const pb::Value& answer) {
  return answer.struct_value()
      .fields()
      .at("result")
      .struct_value()
      .fields()
      .at("content")
      .list_value()
      .values(0)
      .struct_value()
      .fields()
      .at("text")
      .string_value();
}

struct Server {
  std::unique_ptr<ServerProcess> process;
  std::string decision_log;
};

Server StartServer(const TempDir& dir, const std::string& policy,
                   std::vector<std::string> extra = {}) {
  Server s;
  s.decision_log = dir.path() + "/decisions.log";
  std::vector<std::string> args = {"--listen",     "127.0.0.1:0",      "--policy",
                                   policy,         "--watch=false",    "--decision-log",
                                   s.decision_log, "--metrics-listen", "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto started = ServerProcess::Start(args);
  EXPECT_TRUE(started.ok()) << started.status();
  if (started.ok()) s.process = *std::move(started);
  return s;
}

// The decision log's entries, once it holds at least `n` (the log is
// written by a thread of its own).
std::vector<pb::Struct> LogEntries(const std::string& path, size_t n) {
  std::vector<pb::Struct> out;
  PollUntil(
      [&] {
        out.clear();
        for (absl::string_view line :
             absl::StrSplit(ReadFileOrEmpty(path), '\n', absl::SkipEmpty())) {
          auto s = toolgate::ParseJsonObject(line, 64);
          if (s.ok()) out.push_back(*std::move(s));
        }
        return out.size() >= n;
      },
      absl::Seconds(20));
  return out;
}

// An object nested `depth` deep: {"a":{"a":...1}}.
std::string Nested(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

const std::string kSeed = SourcePath("examples/seed-policy.json");
const std::string kExample = SourcePath("examples/policy.yaml");

TEST(ExtAuthzTest, SeedPolicyAllowsThenRateLimitsCallEleven) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  for (int i = 1; i <= 10; ++i) {
    const auth::CheckResponse r = envoy.MustCheck(
        Post(ToolCall(absl::StrCat(i), "wait_for_background_task", "{\"task_id\":\"t\"}")));
    ASSERT_TRUE(Allowed(r)) << i << ": " << r.DebugString();
    EXPECT_EQ(Header(r, "x-toolgate-decision-id").size(), 32u);
    EXPECT_THAT(Header(r, "x-toolgate-revision"), HasSubstr("sha256:"));
  }
  const auth::CheckResponse r =
      envoy.MustCheck(Post(ToolCall("11", "wait_for_background_task", "{\"task_id\":\"t\"}")));
  ASSERT_FALSE(Allowed(r));
  EXPECT_NE(r.status().code(), 0);
  // A tool error the MCP client shows to the model: HTTP 200, JSON-RPC.
  EXPECT_EQ(r.denied_response().status().code(), 200);
  EXPECT_EQ(Header(r, "content-type"), "application/json");
  int retry_after = 0;
  ASSERT_TRUE(absl::SimpleAtoi(Header(r, "retry-after"), &retry_after)) << r.DebugString();
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 60);
  const pb::Value body = Body(r);
  EXPECT_EQ(body.struct_value().fields().at("id").number_value(), 11);
  EXPECT_EQ(body.struct_value().fields().at("jsonrpc").string_value(), "2.0");
  EXPECT_TRUE(
      body.struct_value().fields().at("result").struct_value().fields().at("isError").bool_value());
  const pb::Struct meta = DecisionMeta(body);
  EXPECT_EQ(meta.fields().at("decision").string_value(), "rate_limited");
  EXPECT_EQ(meta.fields().at("rule").string_value(), "tools.wait_for_background_task");
  EXPECT_EQ(meta.fields().at("decision_id").string_value().size(), 32u);
  EXPECT_GT(meta.fields().at("retry_after_ms").number_value(), 0);
  EXPECT_LE(meta.fields().at("retry_after_ms").number_value(), retry_after * 1000);

  // The decision log and the metrics say how these calls arrived.
  const std::vector<pb::Struct> log = LogEntries(server.decision_log, 11);
  ASSERT_EQ(log.size(), 11u);
  for (const pb::Struct& e : log) {
    EXPECT_EQ(e.fields().at("api").string_value(), "ext_authz");
    EXPECT_EQ(e.fields().at("grant").string_value(), "agent-1");
    EXPECT_EQ(e.fields().at("server").string_value(), "mcp.internal:8080");  // :authority.
  }
  EXPECT_EQ(log[10].fields().at("request_id").string_value(), "11");
  EXPECT_EQ(log[10].fields().at("decision_id").string_value(),
            meta.fields().at("decision_id").string_value());
  const std::string metrics = HttpGet(MetricsAddress(*server.process), "/metrics");
  EXPECT_EQ(Sample(metrics,
                   "toolgate_checks_total{decision=\"allow\",rule=\"tools."
                   "wait_for_background_task\",api=\"ext_authz\"}"),
            10)
      << metrics;
  EXPECT_EQ(Sample(metrics,
                   "toolgate_checks_total{decision=\"rate_limited\",rule=\"tools."
                   "wait_for_background_task\",api=\"ext_authz\"}"),
            1)
      << metrics;
}

TEST(ExtAuthzTest, UnlistedToolGetsTheReasonAndTheRequestId) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  const auth::CheckResponse r =
      envoy.MustCheck(Post(ToolCall("\"call-abc\"", "delete_everything")));
  ASSERT_FALSE(Allowed(r));
  EXPECT_EQ(r.denied_response().status().code(), 200);
  EXPECT_TRUE(Header(r, "retry-after").empty());
  const pb::Value body = Body(r);
  EXPECT_EQ(body.struct_value().fields().at("id").string_value(), "call-abc");
  EXPECT_THAT(ToolErrorText(body), HasSubstr("not allowed"));
  EXPECT_THAT(ToolErrorText(body), HasSubstr("delete_everything"));
  EXPECT_EQ(DecisionMeta(body).fields().at("decision").string_value(), "deny");
  EXPECT_EQ(DecisionMeta(body).fields().at("rule").string_value(), "default");
}

TEST(ExtAuthzTest, InvalidArgumentsListTheViolations) {
  TempDir dir;
  Server server = StartServer(dir, kExample);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  const auth::CheckResponse r =
      envoy.MustCheck(Post(ToolCall("4", "run_command", "{\"command\":\"rm -rf /\",\"extra\":1}")));
  ASSERT_FALSE(Allowed(r));
  const pb::Value body = Body(r);
  const pb::Struct meta = DecisionMeta(body);
  EXPECT_EQ(meta.fields().at("decision").string_value(), "deny");
  const auto& violations = meta.fields().at("violations").list_value().values();
  ASSERT_EQ(violations.size(), 2) << r.denied_response().body();
  std::vector<std::string> paths;
  for (const pb::Value& v : violations) {
    paths.push_back(v.struct_value().fields().at("path").string_value());
    EXPECT_FALSE(v.struct_value().fields().at("message").string_value().empty());
  }
  EXPECT_THAT(paths, ::testing::UnorderedElementsAre("/command", "/extra"));
  // The model reads them too.
  EXPECT_THAT(ToolErrorText(body), HasSubstr("/command"));
  EXPECT_THAT(ToolErrorText(body), HasSubstr("/extra"));
  // Allowed with valid arguments.
  EXPECT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("5", "run_command", "{\"command\":\"ls\"}")))));
}

TEST(ExtAuthzTest, OtherMessagesPassWithoutAGrant) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  for (
      const char* body :
      {R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}})",
       R"({"jsonrpc":"2.0","method":"notifications/initialized"})",
       R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})"}) {
    const auth::CheckResponse r = envoy.MustCheck([&] {
      HttpCall c = Post(body);
      c.headers.clear();  // No grant.
      return c;
    }());
    ASSERT_TRUE(Allowed(r)) << body << ": " << r.DebugString();
    // Nothing decided: a client cannot pass its own decision headers off.
    EXPECT_THAT(r.ok_response().headers_to_remove(),
                ::testing::UnorderedElementsAre("x-toolgate-decision-id", "x-toolgate-revision"));
  }
  // The server's event stream (GET) and the end of a session (DELETE).
  EXPECT_TRUE(Allowed(envoy.MustCheck(Method("GET"))));
  EXPECT_TRUE(Allowed(envoy.MustCheck(Method("DELETE"))));
}

TEST(ExtAuthzTest, BatchWithOneRefusedCallIsRefusedAsAWhole) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  const std::string batch = absl::StrCat("[", ToolCall("1", "wait_for_background_task"), ",",
                                         ToolCall("2", "not_in_policy"), ",",
                                         R"({"jsonrpc":"2.0","id":3,"method":"tools/list"}])");
  const auth::CheckResponse r = envoy.MustCheck(Post(batch));
  ASSERT_FALSE(Allowed(r));
  const pb::Value body = Body(r);
  ASSERT_EQ(body.list_value().values_size(), 3) << r.denied_response().body();
  EXPECT_THAT(ToolErrorText(body.list_value().values(0)), HasSubstr("not sent"));
  EXPECT_EQ(DecisionMeta(body.list_value().values(1)).fields().at("decision").string_value(),
            "deny");
  EXPECT_TRUE(body.list_value().values(2).struct_value().fields().count("error"));
  // A batch of allowed calls passes, with a decision id for each.
  const auth::CheckResponse ok =
      envoy.MustCheck(Post(absl::StrCat("[", ToolCall("4", "wait_for_background_task"), ",",
                                        ToolCall("5", "wait_for_background_task"), "]")));
  ASSERT_TRUE(Allowed(ok)) << ok.DebugString();
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(Header(ok, "x-toolgate-decision-id"), ',')).size(),
      2u);
}

TEST(ExtAuthzTest, MissingOrTruncatedBodyIsRefused) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  // Envoy not configured to send the body: a POST with a content-length
  // and nothing in the check.
  HttpCall no_body = Post("");
  no_body.headers.push_back({"content-length", "120"});
  auth::CheckResponse r = envoy.MustCheck(no_body);
  ASSERT_FALSE(Allowed(r));
  EXPECT_EQ(r.denied_response().status().code(), 400);
  EXPECT_THAT(r.denied_response().body(), HasSubstr("with_request_body"));
  // Over Envoy's max_request_bytes with allow_partial_message.
  HttpCall partial = Post(ToolCall("1", "wait_for_background_task"));
  partial.headers.push_back({"x-envoy-auth-partial-body", "true"});
  r = envoy.MustCheck(partial);
  ASSERT_FALSE(Allowed(r));
  EXPECT_EQ(r.denied_response().status().code(), 413);
  EXPECT_THAT(r.denied_response().body(), HasSubstr("truncated"));
  // Nothing was decided, nothing consumed: ten calls still pass.
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("1", "wait_for_background_task")))));
  }
}

TEST(ExtAuthzTest, GrantFromHeaderOrPrincipalAndServerFromTheRoute) {
  TempDir dir;
  Server header = StartServer(dir, kSeed, {"--ext-authz-grant-header", "X-Agent-Grant"});
  ASSERT_NE(header.process, nullptr);
  Envoy by_header(header.process->address());
  HttpCall call = Post(ToolCall("1", "wait_for_background_task"));
  call.headers = {{"x-agent-grant", "agent-7"}, {"mcp-session-id", "sess-9"}};
  call.route_server = "github-mcp";
  EXPECT_TRUE(Allowed(by_header.MustCheck(call)));
  // The default header is not read when another is configured.
  auth::CheckResponse missing =
      by_header.MustCheck(Post(ToolCall("2", "wait_for_background_task")));
  ASSERT_FALSE(Allowed(missing));
  EXPECT_EQ(missing.denied_response().status().code(), 400);
  EXPECT_THAT(missing.denied_response().body(), HasSubstr("grant: missing"));
  std::vector<pb::Struct> log = LogEntries(header.decision_log, 1);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].fields().at("grant").string_value(), "agent-7");
  EXPECT_EQ(log[0].fields().at("server").string_value(), "github-mcp");
  EXPECT_EQ(log[0].fields().at("session").string_value(), "sess-9");

  TempDir dir2;
  Server principal = StartServer(dir2, kSeed, {"--ext-authz-grant-from", "principal"});
  ASSERT_NE(principal.process, nullptr);
  Envoy by_principal(principal.process->address());
  HttpCall p = Post(ToolCall("1", "wait_for_background_task"));
  p.principal = "spiffe://cluster.local/ns/agents/sa/agent-3";
  EXPECT_TRUE(Allowed(by_principal.MustCheck(p)));
  // Without a principal (no mTLS downstream), the header is not a fallback.
  auth::CheckResponse none =
      by_principal.MustCheck(Post(ToolCall("2", "wait_for_background_task")));
  ASSERT_FALSE(Allowed(none));
  EXPECT_THAT(none.denied_response().body(), HasSubstr("principal"));
  log = LogEntries(principal.decision_log, 1);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].fields().at("grant").string_value(),
            "spiffe://cluster.local/ns/agents/sa/agent-3");
  // The server from the x-toolgate-server header without a route's.
  HttpCall h = Post(ToolCall("3", "wait_for_background_task"));
  h.headers = {{"x-toolgate-server", "from-header"}};
  h.principal = "spiffe://x";
  EXPECT_TRUE(Allowed(by_principal.MustCheck(h)));
  log = LogEntries(principal.decision_log, 2);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].fields().at("server").string_value(), "from-header");
}

TEST(ExtAuthzTest, LimitsAreSharedWithNativeCheck) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  auto client = toolgate::Client::Connect(server.process->address());
  ASSERT_NE(client, nullptr);
  toolgate::v1::CheckRequest native;
  native.set_tool("wait_for_background_task");
  native.set_grant("agent-1");
  std::set<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = client->Check(native);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << i;
    const auth::CheckResponse e = envoy.MustCheck(Post(ToolCall("1", "wait_for_background_task")));
    EXPECT_TRUE(Allowed(e)) << i;
    // Decision ids from one generator: the server's prefix, never repeated.
    EXPECT_EQ(r->decision_id().substr(0, 16), Header(e, "x-toolgate-decision-id").substr(0, 16));
    ids.insert(r->decision_id());
    ids.insert(Header(e, "x-toolgate-decision-id"));
  }
  EXPECT_EQ(ids.size(), 10u);
  // One counter: the 11th call is refused whichever way it arrives.
  auto r = client->Check(native);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED);
  const auth::CheckResponse e = envoy.MustCheck(Post(ToolCall("12", "wait_for_background_task")));
  EXPECT_FALSE(Allowed(e));
  EXPECT_FALSE(Header(e, "retry-after").empty());
  // Another grant has its own counter.
  HttpCall other = Post(ToolCall("1", "wait_for_background_task"));
  other.headers = {{"x-toolgate-grant", "agent-2"}};
  EXPECT_TRUE(Allowed(envoy.MustCheck(other)));
}

TEST(ExtAuthzTest, CallsThroughEnvoyGetNoReservation) {
  // Envoy cannot report how the upstream call went: a `settle: required`
  // limit's units commit at once.
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", R"(version: "1"
default: deny
tools:
  search:
    limits:
      - {counter: searches, window: 1h, max: 1, settle: required}
)");
  Server server = StartServer(dir, policy);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  EXPECT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("1", "search")))));
  const std::vector<pb::Struct> logged = LogEntries(server.decision_log, 1);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_FALSE(logged[0].fields().contains("reservation_id"));
  EXPECT_EQ(Sample(HttpGet(MetricsAddress(*server.process), "/metrics"),
                   "toolgate_reservations_open"),
            0);
  // The unit is committed: a native check finds the limit full.
  auto client = toolgate::Client::Connect(server.process->address());
  toolgate::v1::CheckRequest native;
  native.set_tool("search");
  native.set_grant("agent-1");
  auto r = client->Check(native);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_RATE_LIMITED);
}

TEST(ExtAuthzTest, DenyAsHttpAnswers403And429) {
  TempDir dir;
  Server server = StartServer(dir, kSeed, {"--ext-authz-deny-as", "http"});
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  auth::CheckResponse r = envoy.MustCheck(Post(ToolCall("1", "not_in_policy")));
  EXPECT_EQ(r.denied_response().status().code(), 403);
  pb::Value body = Body(r);
  EXPECT_EQ(body.struct_value().fields().at("id").number_value(), 1);
  const pb::Struct& error = body.struct_value().fields().at("error").struct_value();
  EXPECT_EQ(error.fields().at("code").number_value(), -32001);
  EXPECT_THAT(error.fields().at("message").string_value(), HasSubstr("not allowed"));
  EXPECT_EQ(error.fields()
                .at("data")
                .struct_value()
                .fields()
                .at("toolgate/decision")
                .struct_value()
                .fields()
                .at("decision")
                .string_value(),
            "deny");
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("2", "wait_for_background_task")))));
  }
  r = envoy.MustCheck(Post(ToolCall("3", "wait_for_background_task")));
  EXPECT_EQ(r.denied_response().status().code(), 429);
  EXPECT_FALSE(Header(r, "retry-after").empty());
}

TEST(ExtAuthzTest, OtherMethodsDenied) {
  TempDir dir;
  Server server = StartServer(dir, kSeed, {"--ext-authz-other-methods", "deny"});
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  auth::CheckResponse r =
      envoy.MustCheck(Post(R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})"));
  EXPECT_EQ(r.denied_response().status().code(), 403);
  EXPECT_THAT(r.denied_response().body(), HasSubstr("tools/list"));
  EXPECT_EQ(envoy.MustCheck(Method("GET")).denied_response().status().code(), 403);
  EXPECT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("2", "wait_for_background_task")))));
}

TEST(ExtAuthzTest, UndecidableRequestsGet400AndConsumeNothing) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  struct Case {
    std::string body;
    int code;
    const char* says;
  } cases[] = {
      {"{\"jsonrpc\":\"2.0\",\"id\":1,", -32600, "invalid JSON"},
      {"{\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":42}}", -32602, "params.name"},
      {"{\"id\":\"" + std::string(5000, 'i') +
           "\",\"method\":\"tools/call\",\"params\":{\"name\":"
           "\"wait_for_background_task\"}}",
       -32602, "request_id"},
      // Arguments one level deeper than --max-args-depth (32): read, then
      // refused by the same check as Check's args.
      {ToolCall("1", "wait_for_background_task", Nested(33)), -32602, "args"},
      {ToolCall("1", "wait_for_background_task", "{\"a\":\"\xc3\x28\"}"), -32600, "UTF-8"},
      {ToolCall("1", "wait\\u0000for"), -32602, "tool"},
      {std::string(100, '[') + std::string(100, ']'), -32600, "nested deeper"},
      {std::string(200 * 1024, ' '), -32600, "over the limit"},
  };
  for (const Case& c : cases) {
    const auth::CheckResponse r = envoy.MustCheck(Post(c.body));
    ASSERT_FALSE(Allowed(r)) << c.body.substr(0, 60);
    EXPECT_EQ(r.denied_response().status().code(), c.body.size() > 100000 ? 413 : 400)
        << c.body.substr(0, 60);
    const pb::Value body = Body(r);
    EXPECT_EQ(
        body.struct_value().fields().at("error").struct_value().fields().at("code").number_value(),
        c.code)
        << c.body.substr(0, 60) << ": " << r.denied_response().body();
    EXPECT_THAT(r.denied_response().body(), HasSubstr(c.says)) << c.body.substr(0, 60);
  }
  // A batch with one undecidable call: nothing of it decided or consumed.
  const auth::CheckResponse batch =
      envoy.MustCheck(Post(absl::StrCat("[", ToolCall("1", "wait_for_background_task"),
                                        ",{\"id\":2,\"method\":\"tools/call\",\"params\":{}}]")));
  EXPECT_EQ(batch.denied_response().status().code(), 400);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("1", "wait_for_background_task"))))) << i;
  }
  // Counted as errors, not decisions.
  const std::string metrics = HttpGet(MetricsAddress(*server.process), "/metrics");
  EXPECT_GE(Sample(metrics, "toolgate_check_errors_total{code=\"INVALID_ARGUMENT\"}"), 9)
      << metrics;
}

TEST(ExtAuthzTest, MessagesThatDoNotParseGetInvalidArgument) {
  TempDir dir;
  Server server = StartServer(dir, kSeed);
  ASSERT_NE(server.process, nullptr);
  auto channel = grpc::CreateChannel(server.process->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  // A header value that is not UTF-8 (field 1 attributes > 4 request > 2
  // http > 3 headers {"x": "\xff"}), and bytes that are no message at all.
  const std::string bad_header("\x0a\x0d\x22\x0b\x12\x09\x1a\x07\x0a\x01x\x12\x02\xff\xfe", 15);
  for (const std::string& bytes : {bad_header, std::string("\xff\xff\xff", 3)}) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    stub.UnaryCall(&context, "/envoy.service.auth.v3.Authorization/Check", grpc::StubOptions(),
                   &request, &response, [&](grpc::Status s) {
                     std::lock_guard<std::mutex> lock(mu);
                     status = s;
                     done = true;
                     cv.notify_one();
                   });
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done; }));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("could not be parsed"));
  }
  // Still serving.
  Envoy envoy(server.process->address());
  EXPECT_TRUE(Allowed(envoy.MustCheck(Post(ToolCall("1", "wait_for_background_task")))));
}

TEST(ExtAuthzTest, NoExtAuthzTurnsItOff) {
  TempDir dir;
  Server server = StartServer(dir, kSeed, {"--no-ext-authz"});
  ASSERT_NE(server.process, nullptr);
  Envoy envoy(server.process->address());
  auth::CheckResponse r;
  const grpc::Status s = envoy.Check(Post(ToolCall("1", "wait_for_background_task")), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
}

TEST(ExtAuthzTest, BadFlagValuesAreRefused) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--ext-authz-deny-as", "teapot"},
        std::vector<std::string>{"--ext-authz-grant-from", "cookie"},
        std::vector<std::string>{"--ext-authz-other-methods", "maybe"},
        std::vector<std::string>{"--ext-authz-grant-header", "bad header"}}) {
    std::vector<std::string> argv = {ToolgatedBin(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 2) << flags[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(flags[0])) << r.err;
  }
}

}  // namespace
}  // namespace toolgate_test
