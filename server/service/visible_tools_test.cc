// Tests of DecisionService.ListVisibleTools over an in-process gRPC channel,
// with the in-process counter store behind Check: the answers agree with
// dry-run checks, and requests that cannot be answered get the errors Check
// gives (names, bounds, revisions, draining, callers).
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/policy/loader.h"
#include "server/service/decision_service.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-1"
default: deny
tools:
  delete_repository:
    action: deny
    reason: "Agents may not delete repositories"
  list_files: {}
  run_command:
    category: execute
    risk: high
    args:
      type: object
      required: [command]
      properties:
        command: {type: string, maxLength: 5}
  search_web:
    limits: [{counter: web, window: 1h, max: 1, scope: session}]
  "github_*": {action: require_approval, reason: "GitHub writes need a human"}
classes:
  risky:
    min_risk: high
    action: require_approval
servers:
  github:
    default: allow
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
    default: allow
  intern:
    tools:
      list_files: {action: deny}
)";

// A length-delimited field of a request on the wire (values under 128 bytes).
std::string Field(int number, const std::string& value) {
  return std::string{static_cast<char>(number << 3 | 2), static_cast<char>(value.size())} + value;
}

std::shared_ptr<const Policy> MustLoad(const std::string& text) {
  auto p = LoadPolicyFromSources({{"p.yaml", text}});
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

v1::ListVisibleToolsRequest Request(const std::string& grant, const std::vector<std::string>& tools,
                                    const std::string& server = "") {
  v1::ListVisibleToolsRequest req;
  req.set_grant(grant);
  req.set_server(server);
  for (const std::string& t : tools) req.add_tools(t);
  return req;
}

class VisibleToolsServiceTest : public ::testing::Test {
 protected:
  void Start(ArgsLimits limits = ArgsLimits(), const CallerCheck* callers = nullptr) {
    decider_ = std::make_unique<Decider>(&store_, Engine(), limits);
    service_ = std::make_unique<DecisionServiceImpl>(&registry_, decider_.get(),
                                                     std::vector<DecisionObserver*>{}, callers);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    stub_ = v1::DecisionService::NewStub(channel_);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status List(const v1::ListVisibleToolsRequest& req, v1::ListVisibleToolsResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return stub_->ListVisibleTools(&ctx, req, resp);
  }
  grpc::Status Check(const v1::CheckRequest& req, v1::CheckResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return stub_->Check(&ctx, req, resp);
  }
  // Sends `bytes` as the request, as no generated client would.
  grpc::Status ListRaw(const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, "/toolgate.v1.DecisionService/ListVisibleTools", grpc::StubOptions(),
                   &request, &response, [&done](grpc::Status s) { done.set_value(s); });
    return done.get_future().get();
  }
  void ExpectInvalid(const v1::ListVisibleToolsRequest& req, const std::string& message) {
    v1::ListVisibleToolsResponse resp;
    const grpc::Status s = List(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << message;
    EXPECT_THAT(s.error_message(), HasSubstr(message));
  }

  PolicyRegistry registry_;
  MemoryCounterStore store_{SystemClock::Get()};
  std::unique_ptr<Decider> decider_;
  std::unique_ptr<DecisionServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DecisionService::Stub> stub_;
};

TEST_F(VisibleToolsServiceTest, NoPolicyYetIsUnavailable) {
  Start();
  v1::ListVisibleToolsResponse resp;
  EXPECT_EQ(List(Request("agent-1", {"list_files"}), &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(VisibleToolsServiceTest, EveryToolInOrderAsADryRunCheckDecidesIt) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  const std::vector<std::string> tools = {
      "list_files",          "delete_repository", "run_command", "search_web",
      "github_create_issue", "weather",           "list_files",  "ünïcode"};
  for (const std::string grant : {"agent-1", "ci-bot", "intern"}) {
    for (const std::string server : {"", "github"}) {
      v1::ListVisibleToolsResponse resp;
      ASSERT_TRUE(List(Request(grant, tools, server), &resp).ok());
      EXPECT_EQ(resp.policy_version(), "rev-1");
      ASSERT_EQ(resp.tools_size(), static_cast<int>(tools.size()));
      for (size_t i = 0; i < tools.size(); ++i) {
        const v1::ToolVisibility& v = resp.tools(static_cast<int>(i));
        EXPECT_EQ(v.tool(), tools[i]);
        v1::CheckRequest req;
        req.set_tool(tools[i]);
        req.set_grant(grant);
        req.set_server(server);
        req.set_dry_run(true);
        if (tools[i] == "run_command") {
          (*req.mutable_args()->mutable_fields())["command"].set_string_value("ls");
        }
        v1::CheckResponse want;
        ASSERT_TRUE(Check(req, &want).ok());
        const std::string where = tools[i] + " by " + grant + " on " + server;
        EXPECT_EQ(v.decision(), want.decision()) << where;
        EXPECT_EQ(v.rule(), want.rule()) << where;
        EXPECT_EQ(v.reason(), want.reason()) << where;
      }
    }
  }
  // The three answers, as a gateway filtering tools/list sees them.
  v1::ListVisibleToolsResponse resp;
  ASSERT_TRUE(List(Request("agent-1", tools), &resp).ok());
  EXPECT_EQ(resp.tools(0).decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.tools(0).reason(), "");
  EXPECT_EQ(resp.tools(1).decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.tools(1).reason(), "Agents may not delete repositories");
  EXPECT_EQ(resp.tools(2).decision(), v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(resp.tools(2).rule(), "classes.risky");
  EXPECT_EQ(resp.tools(3).decision(), v1::DECISION_ALLOW) << "limits do not hide a tool";
  EXPECT_EQ(resp.tools(5).rule(), "default");
  // No counter moved: the session's one search is still there.
  v1::CheckRequest search;
  search.set_tool("search_web");
  search.set_grant("agent-1");
  v1::CheckResponse first;
  ASSERT_TRUE(Check(search, &first).ok());
  EXPECT_EQ(first.decision(), v1::DECISION_ALLOW);
}

TEST_F(VisibleToolsServiceTest, NoToolsIsAnEmptyAnswer) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  v1::ListVisibleToolsResponse resp;
  ASSERT_TRUE(List(Request("agent-1", {}), &resp).ok());
  EXPECT_EQ(resp.tools_size(), 0);
  EXPECT_EQ(resp.policy_version(), "rev-1");
}

TEST_F(VisibleToolsServiceTest, PinnedRevisionMustBeLoaded) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  v1::ListVisibleToolsRequest req = Request("agent-1", {"list_files"});
  req.set_policy_version("rev-0");
  v1::ListVisibleToolsResponse resp;
  EXPECT_EQ(List(req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  req.set_policy_version("rev-1");
  ASSERT_TRUE(List(req, &resp).ok());
  EXPECT_EQ(resp.policy_version(), "rev-1");
}

TEST_F(VisibleToolsServiceTest, NamesAreCheckedAsCheckChecksThem) {
  registry_.Activate(MustLoad(kPolicy));
  ArgsLimits limits;
  limits.max_name_bytes = 16;
  Start(limits);
  ExpectInvalid(Request("", {"list_files"}), "grant is required");
  ExpectInvalid(Request("agent-1", {"list_files", ""}), "tool is required (tools[1] is empty)");
  ExpectInvalid(Request("agent-1", {"list_files", "a\nb"}),
                "tool: control character U+000A at byte 1 (tools[1])");
  ExpectInvalid(Request("agent-1", {"list_files", "list_files", std::string(17, 't')}),
                "tool: 17 bytes, longer than --max-name-bytes (16) (tools[2])");
  ExpectInvalid(Request("agent\x7f", {}), "grant: control character U+007F at byte 5");
  ExpectInvalid(Request("agent-1", {}, std::string(17, 's')), "server: 17 bytes");
  v1::ListVisibleToolsRequest session = Request("agent-1", {});
  session.set_session("s\t1");
  ExpectInvalid(session, "session: control character U+0009 at byte 1");
  v1::ListVisibleToolsRequest version = Request("agent-1", {});
  version.set_policy_version("\x1b[2J");
  ExpectInvalid(version, "policy_version: control character U+001B at byte 0");
  // Exactly the longest name is fine.
  v1::ListVisibleToolsResponse resp;
  EXPECT_TRUE(List(Request("agent-1", {std::string(16, 't')}), &resp).ok());
}

TEST_F(VisibleToolsServiceTest, NamesThatAreNotUtf8AreInvalidArgumentsNamingTheField) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  // Built by hand: generated code would refuse to send these strings.
  // Field 1 (grant) "a", field 4 (tools) "ok", "b\xE9x".
  grpc::Status s = ListRaw(Field(1, "a") + Field(4, "ok") + Field(4, "b\xE9x"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "tool: not valid UTF-8 at byte 1 (tools[1])");
  s = ListRaw(Field(1, "a\xC3"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "grant: not valid UTF-8 at byte 1");
}

TEST_F(VisibleToolsServiceTest, MalformedBytesAreInvalidAndUnknownFieldsAreSkipped) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  const std::vector<std::string> malformed = {
      Field(1, "ab").substr(0, 3),  // A length past the end.
      std::string{'\x22'},          // No length.
      std::string{'\x00', '\x01'},  // Tag 0.
      Field(0, ""),                 // Field 0.
      std::string{'\x0f'},          // Wire type 7.
      std::string(7, '\xff'),       // A tag that is no varint.
  };
  for (const std::string& bytes : malformed) {
    const grpc::Status s = ListRaw(bytes);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("malformed"));
  }
  // A field of a later version (99, varint), and grant sent twice (the last
  // wins, as protobuf reads it): answered.
  const std::string bytes = Field(1, "x") + std::string{'\x98', '\x06', '\x07'} +
                            Field(1, "agent-1") + Field(4, "list_files");
  EXPECT_TRUE(ListRaw(bytes).ok());
  v1::ListVisibleToolsRequest as_parsed;
  ASSERT_TRUE(as_parsed.ParseFromString(bytes));
  EXPECT_EQ(as_parsed.grant(), "agent-1");
}

TEST_F(VisibleToolsServiceTest, AtMostTenThousandTools) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  std::vector<std::string> tools(kMaxVisibleTools, "list_files");
  tools[kMaxVisibleTools - 1] = "weather";
  v1::ListVisibleToolsResponse resp;
  ASSERT_TRUE(List(Request("agent-1", tools), &resp).ok());
  ASSERT_EQ(resp.tools_size(), kMaxVisibleTools);
  EXPECT_EQ(resp.tools(kMaxVisibleTools - 1).decision(), v1::DECISION_DENY);
  tools.push_back("list_files");
  ExpectInvalid(Request("agent-1", tools), "more than 10000 tools; send at most 10000 per call");
}

TEST_F(VisibleToolsServiceTest, ACallerWithoutACertificateCannotAssertAGrantWithPeers) {
  registry_.Activate(MustLoad(kPolicy));
  const CallerCheck callers(/*identities=*/nullptr, /*allow_peers=*/{});
  Start(ArgsLimits(), &callers);
  v1::ListVisibleToolsResponse resp;
  ASSERT_TRUE(List(Request("ci-bot", {"list_files", "weather"}), &resp).ok());
  for (const v1::ToolVisibility& v : resp.tools()) {
    EXPECT_EQ(v.decision(), v1::DECISION_DENY) << v.tool();
    EXPECT_EQ(v.rule(), "grants.ci-bot.peers");
    EXPECT_THAT(v.reason(), HasSubstr("caller presented no client certificate"));
  }
}

TEST_F(VisibleToolsServiceTest, ACallerThatAllowPeerRefusesIsRefused) {
  registry_.Activate(MustLoad(kPolicy));
  // --allow-peer set: an anonymous caller matches nothing.
  const CallerCheck callers(/*identities=*/nullptr, {"spiffe://example.org/*"});
  Start(ArgsLimits(), &callers);
  v1::ListVisibleToolsResponse resp;
  EXPECT_EQ(List(Request("agent-1", {"list_files"}), &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(VisibleToolsServiceTest, DrainingAnswersUnavailable) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  v1::ListVisibleToolsResponse resp;
  ASSERT_TRUE(List(Request("agent-1", {"list_files"}), &resp).ok());
  service_->StartDraining();
  const grpc::Status s = List(Request("agent-1", {"list_files"}), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(service_->in_flight(), 0);
}

}  // namespace
}  // namespace toolgate
