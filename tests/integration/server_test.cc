// Integration tests of toolgated: real server processes on free loopback
// ports, called through the toolgate client library over gRPC.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "grpcpp/support/stub_options.h"
#include "gtest/gtest.h"
#include "server/base/digest.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

constexpr absl::Duration kRpcTimeout = absl::Seconds(5);
constexpr absl::Duration kProcessTimeout = absl::Seconds(10);
// How long to wait for something slow before giving up (a guard against hangs).
constexpr absl::Duration kWait = absl::Seconds(30);

// ---- helpers -----------------------------------------------------------------

std::string Sha256Revision(const std::string& bytes) {
  return "sha256:" + toolgate::Sha256Hex(bytes).substr(0, 12);
}

std::string SeedPolicyPath() { return SourcePath("examples/seed-policy.json"); }

std::unique_ptr<ServerProcess> MustStart(const std::vector<std::string>& args,
                                         const EnvVars& env = {}) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> p = ServerProcess::Start(args, env);
  if (!p.ok()) {
    ADD_FAILURE() << "toolgated did not start: " << p.status();
    return nullptr;
  }
  return *std::move(p);
}

std::unique_ptr<ServerProcess> MustStartWithPolicy(const std::string& policy_path,
                                                   std::vector<std::string> extra = {},
                                                   const EnvVars& env = {}) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy_path};
  args.insert(args.end(), extra.begin(), extra.end());
  return MustStart(args, env);
}

CheckRequest Req(const std::string& tool, const std::string& grant) {
  CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  return r;
}

CheckRequest ReqArgs(const std::string& tool, const std::string& grant, const std::string& json) {
  CheckRequest r = Req(tool, grant);
  absl::StatusOr<google::protobuf::Struct> args = toolgate::ParseArgsJson(json);
  EXPECT_TRUE(args.ok()) << json << ": " << args.status();
  if (args.ok()) *r.mutable_args() = *args;
  return r;
}

// A decision, or an empty response (decision UNSPECIFIED) after recording a
// failure: every expectation on it then fails too.
CheckResponse MustCheck(toolgate::Client& client, const CheckRequest& req) {
  absl::StatusOr<CheckResponse> r = client.Check(req, kRpcTimeout);
  EXPECT_TRUE(r.ok()) << "Check(" << req.ShortDebugString() << "): " << r.status();
  return r.ok() ? *r : CheckResponse();
}

// `{"a": {"a": ... {}}}` nested `depth` levels (the outer object is 1).
google::protobuf::Struct NestedArgs(int depth) {
  google::protobuf::Struct root;
  google::protobuf::Struct* cur = &root;
  for (int i = 1; i < depth; ++i) cur = (*cur->mutable_fields())["a"].mutable_struct_value();
  return root;
}

google::protobuf::Struct BlobArgs(size_t bytes) {
  google::protobuf::Struct s;
  (*s.mutable_fields())["blob"].set_string_value(std::string(bytes, 'x'));
  return s;
}

int64_t Millis(const google::protobuf::Duration& d) {
  return d.seconds() * 1000 + d.nanos() / 1'000'000;
}

std::string DecisionName(const CheckResponse& r) {
  return std::string(toolgate::DecisionName(r.decision()));
}

// Polls `client` with `req` until the response names `revision` (true) or
// the deadline passes (false).
bool WaitForRevision(toolgate::Client& client, const CheckRequest& req,
                     const std::string& revision, absl::Duration timeout = kProcessTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<CheckResponse> r = client.Check(req, kRpcTimeout);
    if (r.ok() && r->policy_version() == revision) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

// ---- the seed policy ----------------------------------------------------------

class SeedPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_revision_ = Sha256Revision(ReadFileOrEmpty(SeedPolicyPath()));
    ASSERT_THAT(seed_revision_, ::testing::MatchesRegex("sha256:[0-9a-f]{12}"));
    server_ = MustStartWithPolicy(SeedPolicyPath());
    ASSERT_NE(server_, nullptr);
    client_ = toolgate::Client::Connect(server_->address());
  }

  // Checks what every decision must carry, and records its id.
  CheckResponse Decide(const CheckRequest& req) {
    CheckResponse r = MustCheck(*client_, req);
    EXPECT_EQ(r.policy_version(), seed_revision_) << r.ShortDebugString();
    EXPECT_THAT(r.decision_id(), ::testing::MatchesRegex("[0-9a-f]{32}")) << r.ShortDebugString();
    EXPECT_TRUE(decision_ids_.insert(r.decision_id()).second)
        << "decision_id " << r.decision_id() << " was given twice";
    return r;
  }

  std::string seed_revision_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<toolgate::Client> client_;
  std::set<std::string> decision_ids_;
};

TEST_F(SeedPolicyTest, TenCallsPerGrantAreAllowedThenRateLimited) {
  for (int i = 1; i <= 10; ++i) {
    CheckResponse r = Decide(Req("wait_for_background_task", "grant-a"));
    ASSERT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW) << "call " << i << ": " << r.ShortDebugString();
    EXPECT_EQ(r.rule(), "tools.wait_for_background_task");
    ASSERT_EQ(r.limits_size(), 1);
    EXPECT_EQ(r.limits(0).counter(), "wait_for_background_task_rate");
    EXPECT_EQ(r.limits(0).max(), 10);
    EXPECT_EQ(r.limits(0).remaining(), 10 - i) << "call " << i;
    EXPECT_FALSE(r.has_retry_after()) << r.ShortDebugString();
  }
  for (int i = 11; i <= 13; ++i) {
    CheckResponse r = Decide(Req("wait_for_background_task", "grant-a"));
    ASSERT_EQ(r.decision(), toolgate::v1::DECISION_RATE_LIMITED) << "call " << i << ": "
                                                                 << r.ShortDebugString();
    EXPECT_EQ(r.rule(), "tools.wait_for_background_task");
    ASSERT_TRUE(r.has_retry_after());
    EXPECT_GT(Millis(r.retry_after()), 0);
    EXPECT_LE(Millis(r.retry_after()), 60'000);
    ASSERT_EQ(r.limits_size(), 1);
    const toolgate::v1::LimitStatus& l = r.limits(0);
    EXPECT_EQ(l.counter(), "wait_for_background_task_rate");
    EXPECT_EQ(l.scope(), "grant");
    EXPECT_EQ(l.max(), 10);
    EXPECT_EQ(l.remaining(), 0);
    EXPECT_GT(Millis(l.reset_after()), 0);
    EXPECT_LE(Millis(l.reset_after()), 60'000);
    EXPECT_THAT(r.reason(), HasSubstr("wait_for_background_task_rate"));
  }
  // Another grant has its own counter.
  CheckResponse other = Decide(Req("wait_for_background_task", "grant-b"));
  EXPECT_EQ(other.decision(), toolgate::v1::DECISION_ALLOW) << other.ShortDebugString();
  ASSERT_EQ(other.limits_size(), 1);
  EXPECT_EQ(other.limits(0).remaining(), 9);
}

TEST_F(SeedPolicyTest, UnlistedToolsAreDeniedWithTheirName) {
  for (const std::string tool : {"delete_repository", "run_command", "wait_for_background_tasks"}) {
    CheckResponse r = Decide(Req(tool, "grant-a"));
    EXPECT_EQ(r.decision(), toolgate::v1::DECISION_DENY) << r.ShortDebugString();
    EXPECT_THAT(r.reason(), HasSubstr(tool));
    EXPECT_EQ(r.rule(), "default");
    EXPECT_EQ(r.limits_size(), 0);
  }
  // Denials consumed nothing of the listed tool's counter.
  CheckResponse r = Decide(Req("wait_for_background_task", "grant-a"));
  EXPECT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW);
}

TEST_F(SeedPolicyTest, DryRunsConsumeNothing) {
  for (int i = 0; i < 5; ++i) {
    CheckRequest req = Req("wait_for_background_task", "grant-dry");
    req.set_dry_run(true);
    CheckResponse r = Decide(req);
    EXPECT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW) << r.ShortDebugString();
  }
  for (int i = 1; i <= 10; ++i) {
    CheckResponse r = Decide(Req("wait_for_background_task", "grant-dry"));
    ASSERT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW) << "call " << i << " after 5 dry runs";
  }
  // When full, a dry run says so, and still consumes nothing.
  CheckRequest dry = Req("wait_for_background_task", "grant-dry");
  dry.set_dry_run(true);
  CheckResponse r = Decide(dry);
  EXPECT_EQ(r.decision(), toolgate::v1::DECISION_RATE_LIMITED) << r.ShortDebugString();
  EXPECT_TRUE(r.has_retry_after());
  EXPECT_EQ(Decide(Req("wait_for_background_task", "grant-dry")).decision(),
            toolgate::v1::DECISION_RATE_LIMITED);
  // A fresh grant is untouched by all of it.
  EXPECT_EQ(Decide(Req("wait_for_background_task", "grant-fresh")).decision(),
            toolgate::v1::DECISION_ALLOW);
}

TEST_F(SeedPolicyTest, EveryDecisionNamesTheRevisionWithAUniqueId) {
  // Decide() checks revision, non-empty and unique ids; mix every outcome.
  for (int i = 0; i < 12; ++i) Decide(Req("wait_for_background_task", "grant-ids"));
  for (int i = 0; i < 5; ++i) Decide(Req("other_tool", "grant-ids"));
  CheckRequest dry = Req("wait_for_background_task", "grant-ids-2");
  dry.set_dry_run(true);
  for (int i = 0; i < 5; ++i) Decide(dry);
  EXPECT_EQ(decision_ids_.size(), 22u);
}

TEST_F(SeedPolicyTest, PinnedPolicyVersion) {
  CheckRequest unknown = Req("wait_for_background_task", "grant-a");
  unknown.set_policy_version("no-such-revision");
  absl::StatusOr<CheckResponse> r = client_->Check(unknown, kRpcTimeout);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no-such-revision"));

  CheckRequest active = Req("wait_for_background_task", "grant-a");
  active.set_policy_version(seed_revision_);
  CheckResponse ok = Decide(active);
  EXPECT_EQ(ok.decision(), toolgate::v1::DECISION_ALLOW);
}

TEST_F(SeedPolicyTest, RequestsThatCannotBeDecidedGetInvalidArgument) {
  {
    absl::StatusOr<CheckResponse> r = client_->Check(Req("", "grant-a"), kRpcTimeout);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("tool"));
  }
  {
    absl::StatusOr<CheckResponse> r =
        client_->Check(Req("wait_for_background_task", ""), kRpcTimeout);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("grant"));
  }
  {
    CheckRequest req = Req("wait_for_background_task", "grant-a");
    *req.mutable_args() = BlobArgs(70 * 1024);
    absl::StatusOr<CheckResponse> r = client_->Check(req, kRpcTimeout);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("65536"));
  }
  for (int depth : {33, 40, 200}) {
    CheckRequest req = Req("wait_for_background_task", "grant-a");
    *req.mutable_args() = NestedArgs(depth);
    absl::StatusOr<CheckResponse> r = client_->Check(req, kRpcTimeout);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << "depth " << depth << ": " << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("32")) << "depth " << depth;
  }
  // None of that consumed anything, and the server still answers: just
  // under the limits is fine.
  {
    CheckRequest req = Req("wait_for_background_task", "grant-a");
    *req.mutable_args() = BlobArgs(60 * 1024);
    CheckResponse r = Decide(req);
    EXPECT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW);
    ASSERT_EQ(r.limits_size(), 1);
    EXPECT_EQ(r.limits(0).remaining(), 9);
  }
  {
    CheckRequest req = Req("wait_for_background_task", "grant-a");
    *req.mutable_args() = NestedArgs(32);
    CheckResponse r = Decide(req);
    EXPECT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW) << r.ShortDebugString();
  }
  EXPECT_TRUE(server_->Running());
}

// The standard health service, called without generated code: the request
// is an empty HealthCheckRequest (service ""), the response holds field 1
// (status) as a varint: SERVING = 1, NOT_SERVING = 2. Returns the status, or
// -1 when the call failed.
int HealthStatus(const std::string& address) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice empty_slice(std::string(""));
  grpc::ByteBuffer request(&empty_slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -1;
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : -1;
}

TEST_F(SeedPolicyTest, HealthServiceSaysServing) {
  EXPECT_EQ(HealthStatus(server_->address()), 1) << "HealthCheckResponse should be {status: SERVING}";
}

// ---- a policy written by the test --------------------------------------------

constexpr char kTestPolicy[] = R"yaml(version: "1"
revision: "it-policy-1"
default: deny
tools:
  delete_repository:
    action: deny
    reason: "Agents may not delete repositories"
  "github_*":
    action: require_approval
    reason: "GitHub writes need a human"
  "github_get_*":
    reason: "reading GitHub is fine"
  github_get_secret:
    action: deny
    reason: "secrets stay secret"
  "svc_admin_*":
    action: deny
    reason: "admin endpoints are off limits"
  "svc_*": {}
  svc_admin_status: {}
  per_session:
    limits:
      - {counter: per_session, window: 1h, max: 2, scope: session}
  fleet_wide:
    limits:
      - {counter: fleet, window: 1h, max: 3, scope: global}
  search_web:
    limits:
      - {counter: web_requests, window: 1h, max: 3}
  fetch_url:
    limits:
      - {counter: web_requests, window: 1h, max: 3}
  two_limits:
    limits:
      - {counter: roomy, window: 1h, max: 2}
      - {counter: tight, window: 1h, max: 1}
  roomy_only:
    limits:
      - {counter: roomy, window: 1h, max: 2}
  bucket:
    limits:
      - {counter: bucket, window: 31d, max: 1, burst: 3, algorithm: token_bucket}
  fixed:
    limits:
      - {counter: fixed, window: 31d, max: 4, algorithm: fixed_window}
  run_command:
    args:
      type: object
      required: [command]
      additionalProperties: false
      properties:
        command: {type: string, maxLength: 200, pattern: "^[a-z ]+$"}
        timeout: {type: integer, minimum: 1, maximum: 600}
    limits:
      - {counter: commands, window: 1h, max: 1}
)yaml";

class TestPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_path_ = dir_.WriteFile("policy.yaml", kTestPolicy);
    server_ = MustStartWithPolicy(policy_path_);
    ASSERT_NE(server_, nullptr);
    client_ = toolgate::Client::Connect(server_->address());
  }

  CheckResponse Decide(const CheckRequest& req) {
    CheckResponse r = MustCheck(*client_, req);
    EXPECT_EQ(r.policy_version(), "it-policy-1") << r.ShortDebugString();
    EXPECT_FALSE(r.decision_id().empty());
    return r;
  }
  CheckResponse Decide(const std::string& tool, const std::string& grant = "grant-a",
                       const std::string& session = "") {
    CheckRequest req = Req(tool, grant);
    req.set_session(session);
    return Decide(req);
  }

  TempDir dir_;
  std::string policy_path_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<toolgate::Client> client_;
};

TEST_F(TestPolicyTest, DenyAnswersWithThePolicyReasonAndRule) {
  CheckResponse r = Decide("delete_repository");
  EXPECT_EQ(r.decision(), toolgate::v1::DECISION_DENY);
  EXPECT_EQ(r.reason(), "Agents may not delete repositories");
  EXPECT_EQ(r.rule(), "tools.delete_repository");
  EXPECT_EQ(r.limits_size(), 0);
  EXPECT_FALSE(r.has_retry_after());
}

TEST_F(TestPolicyTest, RequireApprovalAnswersWithItsReason) {
  CheckResponse r = Decide("github_create_issue");
  EXPECT_EQ(r.decision(), toolgate::v1::DECISION_REQUIRE_APPROVAL);
  EXPECT_EQ(r.reason(), "GitHub writes need a human");
  EXPECT_EQ(r.rule(), "tools.github_*");
}

TEST_F(TestPolicyTest, ExactBeatsGlobAndLongerGlobBeatsShorter) {
  struct Case {
    std::string tool, decision, rule;
  };
  const std::vector<Case> cases = {
      // Shorter glob listed first, longer second.
      {"github_create_issue", "REQUIRE_APPROVAL", "tools.github_*"},
      {"github_get_issue", "ALLOW", "tools.github_get_*"},
      // Exact listed after both globs.
      {"github_get_secret", "DENY", "tools.github_get_secret"},
      // Longer glob listed first, shorter second.
      {"svc_admin_reboot", "DENY", "tools.svc_admin_*"},
      {"svc_list", "ALLOW", "tools.svc_*"},
      {"svc_admin_status", "ALLOW", "tools.svc_admin_status"},
      // Unlisted: the default.
      {"slack_post_message", "DENY", "default"},
      {"github", "DENY", "default"},
  };
  for (const Case& c : cases) {
    CheckResponse r = Decide(c.tool);
    EXPECT_EQ(DecisionName(r), c.decision) << c.tool << ": " << r.ShortDebugString();
    EXPECT_EQ(r.rule(), c.rule) << c.tool;
  }
  EXPECT_EQ(Decide("github_get_issue").reason(), "reading GitHub is fine");
  EXPECT_EQ(Decide("github_get_secret").reason(), "secrets stay secret");
  EXPECT_THAT(Decide("slack_post_message").reason(), HasSubstr("slack_post_message"));
}

TEST_F(TestPolicyTest, SessionScopedLimitCountsPerSession) {
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(DecisionName(Decide("per_session", "grant-a", "session-1")), "ALLOW");
  }
  CheckResponse full = Decide("per_session", "grant-a", "session-1");
  EXPECT_EQ(DecisionName(full), "RATE_LIMITED");
  ASSERT_EQ(full.limits_size(), 1);
  EXPECT_EQ(full.limits(0).scope(), "session");
  EXPECT_EQ(full.limits(0).counter(), "per_session");
  // Another session of the same grant has its own allowance.
  EXPECT_EQ(DecisionName(Decide("per_session", "grant-a", "session-2")), "ALLOW");
  EXPECT_EQ(DecisionName(Decide("per_session", "grant-a", "session-2")), "ALLOW");
  EXPECT_EQ(DecisionName(Decide("per_session", "grant-a", "session-2")), "RATE_LIMITED");
}

TEST_F(TestPolicyTest, GlobalLimitIsSharedAcrossGrants) {
  EXPECT_EQ(DecisionName(Decide("fleet_wide", "grant-1")), "ALLOW");
  EXPECT_EQ(DecisionName(Decide("fleet_wide", "grant-2")), "ALLOW");
  EXPECT_EQ(DecisionName(Decide("fleet_wide", "grant-3", "some-session")), "ALLOW");
  CheckResponse r = Decide("fleet_wide", "grant-4");
  EXPECT_EQ(DecisionName(r), "RATE_LIMITED") << r.ShortDebugString();
  ASSERT_EQ(r.limits_size(), 1);
  EXPECT_EQ(r.limits(0).scope(), "global");
  EXPECT_EQ(r.limits(0).max(), 3);
  EXPECT_EQ(r.limits(0).remaining(), 0);
  EXPECT_EQ(DecisionName(Decide("fleet_wide", "grant-1")), "RATE_LIMITED");
}

TEST_F(TestPolicyTest, ToolsNamingOneCounterShareIt) {
  EXPECT_EQ(DecisionName(Decide("search_web")), "ALLOW");
  EXPECT_EQ(DecisionName(Decide("fetch_url")), "ALLOW");
  CheckResponse third = Decide("search_web");
  EXPECT_EQ(DecisionName(third), "ALLOW");
  ASSERT_EQ(third.limits_size(), 1);
  EXPECT_EQ(third.limits(0).counter(), "web_requests");
  EXPECT_EQ(third.limits(0).remaining(), 0);
  EXPECT_EQ(DecisionName(Decide("fetch_url")), "RATE_LIMITED");
  EXPECT_EQ(DecisionName(Decide("search_web")), "RATE_LIMITED");
  // Still per grant (the default scope).
  EXPECT_EQ(DecisionName(Decide("fetch_url", "grant-b")), "ALLOW");
}

TEST_F(TestPolicyTest, RefusedCallConsumesNothingFromItsOtherLimits) {
  // two_limits: roomy (max 2) and tight (max 1).
  CheckResponse first = Decide("two_limits");
  EXPECT_EQ(DecisionName(first), "ALLOW");
  ASSERT_EQ(first.limits_size(), 2);
  EXPECT_EQ(first.limits(0).counter(), "roomy");
  EXPECT_EQ(first.limits(0).remaining(), 1);
  EXPECT_EQ(first.limits(1).counter(), "tight");
  EXPECT_EQ(first.limits(1).remaining(), 0);
  for (int i = 0; i < 3; ++i) {
    CheckResponse r = Decide("two_limits");
    EXPECT_EQ(DecisionName(r), "RATE_LIMITED") << r.ShortDebugString();
    ASSERT_EQ(r.limits_size(), 2);
    EXPECT_EQ(r.limits(0).remaining(), 1) << "the refused call took from \"roomy\"";
    EXPECT_EQ(r.limits(1).remaining(), 0);
  }
  // roomy still has exactly one unit left.
  EXPECT_EQ(DecisionName(Decide("roomy_only")), "ALLOW");
  EXPECT_EQ(DecisionName(Decide("roomy_only")), "RATE_LIMITED");
}

TEST_F(TestPolicyTest, TokenBucketRefusesAfterBurst) {
  for (int i = 1; i <= 3; ++i) {
    CheckResponse r = Decide("bucket");
    ASSERT_EQ(DecisionName(r), "ALLOW") << "call " << i << ": " << r.ShortDebugString();
    ASSERT_EQ(r.limits_size(), 1);
    EXPECT_EQ(r.limits(0).max(), 3);
    EXPECT_EQ(r.limits(0).remaining(), 3 - i);
  }
  CheckResponse r = Decide("bucket");
  EXPECT_EQ(DecisionName(r), "RATE_LIMITED") << r.ShortDebugString();
  ASSERT_TRUE(r.has_retry_after());
  // One token comes back every 31 days.
  EXPECT_GT(Millis(r.retry_after()), 30LL * 24 * 3600 * 1000);
  EXPECT_LE(Millis(r.retry_after()), 31LL * 24 * 3600 * 1000);
}

TEST_F(TestPolicyTest, FixedWindowRefusesAfterMax) {
  for (int i = 1; i <= 4; ++i) {
    CheckResponse r = Decide("fixed");
    ASSERT_EQ(DecisionName(r), "ALLOW") << "call " << i << ": " << r.ShortDebugString();
  }
  CheckResponse r = Decide("fixed");
  EXPECT_EQ(DecisionName(r), "RATE_LIMITED") << r.ShortDebugString();
  ASSERT_TRUE(r.has_retry_after());
  EXPECT_GT(Millis(r.retry_after()), 0);
  EXPECT_LE(Millis(r.retry_after()), 31LL * 24 * 3600 * 1000);
  ASSERT_EQ(r.limits_size(), 1);
  EXPECT_EQ(r.limits(0).max(), 4);
  EXPECT_EQ(r.limits(0).remaining(), 0);
}

TEST_F(TestPolicyTest, ArgumentsAreValidatedAndEveryViolationListed) {
  CheckResponse bad =
      Decide(ReqArgs("run_command", "grant-a", R"({"command": "RM -RF /", "timeout": 0})"));
  EXPECT_EQ(DecisionName(bad), "DENY") << bad.ShortDebugString();
  EXPECT_EQ(bad.rule(), "tools.run_command");
  EXPECT_FALSE(bad.reason().empty());
  std::vector<std::string> paths;
  for (const auto& v : bad.violations()) {
    paths.push_back(v.path());
    EXPECT_FALSE(v.message().empty()) << v.path();
  }
  std::sort(paths.begin(), paths.end());
  EXPECT_EQ(paths, (std::vector<std::string>{"/command", "/timeout"}));

  CheckResponse extra = Decide(ReqArgs("run_command", "grant-a", R"({"command": "ls", "force": true})"));
  EXPECT_EQ(DecisionName(extra), "DENY");
  EXPECT_GE(extra.violations_size(), 1);

  CheckResponse missing = Decide(ReqArgs("run_command", "grant-a", R"({"timeout": 5})"));
  EXPECT_EQ(DecisionName(missing), "DENY");
  EXPECT_GE(missing.violations_size(), 1);

  CheckResponse wrong_type =
      Decide(ReqArgs("run_command", "grant-a", R"({"command": "ls", "timeout": "5"})"));
  EXPECT_EQ(DecisionName(wrong_type), "DENY");
  ASSERT_EQ(wrong_type.violations_size(), 1);
  EXPECT_EQ(wrong_type.violations(0).path(), "/timeout");

  // Denied calls consumed nothing: the single allowed call is still there.
  CheckResponse ok =
      Decide(ReqArgs("run_command", "grant-a", R"({"command": "echo hello", "timeout": 30})"));
  EXPECT_EQ(DecisionName(ok), "ALLOW") << ok.ShortDebugString();
  EXPECT_EQ(ok.violations_size(), 0);
  CheckResponse again = Decide(ReqArgs("run_command", "grant-a", R"({"command": "ls"})"));
  EXPECT_EQ(DecisionName(again), "RATE_LIMITED") << again.ShortDebugString();
}

TEST(DefaultActionTest, UnlistedToolsGetTheDefault) {
  TempDir dir;
  const std::string policy = "version: \"1\"\ndefault: require_approval\ntools:\n  list_files: {}\n";
  const std::string path = dir.WriteFile("policy.yaml", policy);
  auto server = MustStartWithPolicy(path);
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckResponse r = MustCheck(*client, Req("unknown_tool", "g"));
  EXPECT_EQ(r.decision(), toolgate::v1::DECISION_REQUIRE_APPROVAL) << r.ShortDebugString();
  EXPECT_EQ(r.rule(), "default");
  EXPECT_THAT(r.reason(), HasSubstr("unknown_tool"));
  // Without `revision`, the revision is the content hash.
  EXPECT_EQ(r.policy_version(), Sha256Revision(policy));
  CheckResponse listed = MustCheck(*client, Req("list_files", "g"));
  EXPECT_EQ(listed.decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_EQ(listed.rule(), "tools.list_files");
}

// ---- a directory of policy files ----------------------------------------------

TEST(PolicyDirectoryTest, TheFilesOfADirectoryMakeOneRevision) {
  TempDir dir;
  dir.WriteFile("a.yaml",
                "version: \"1\"\nrevision: \"dir-rev-1\"\ndefault: deny\ntools:\n  list_files: {}\n");
  dir.WriteFile("b.yml",
                "version: \"1\"\ntools:\n  read_file:\n    action: deny\n    reason: \"no reading\"\n");
  dir.WriteFile("notes.txt", "not: [a policy\n");    // Not a policy file name: skipped.
  dir.WriteFile(".hidden.yaml", "not: [a policy\n");  // Hidden: skipped.
  auto server = MustStartWithPolicy(dir.path());
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckResponse list = MustCheck(*client, Req("list_files", "g"));
  EXPECT_EQ(list.decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_EQ(list.policy_version(), "dir-rev-1");
  CheckResponse read = MustCheck(*client, Req("read_file", "g"));
  EXPECT_EQ(read.decision(), toolgate::v1::DECISION_DENY);
  EXPECT_EQ(read.reason(), "no reading");
  EXPECT_EQ(read.rule(), "tools.read_file");
}

TEST(PolicyDirectoryTest, AToolDefinedInTwoFilesIsRejected) {
  TempDir dir;
  const std::string a = dir.WriteFile(
      "a.yaml", "version: \"1\"\ndefault: deny\ntools:\n  list_files: {}\n");
  const std::string b = dir.WriteFile(
      "b.yaml", "version: \"1\"\ntools:\n  read_file: {}\n  list_files: {action: deny}\n");
  auto p = ServerProcess::Spawn({"--listen", "127.0.0.1:0", "--policy", dir.path()});
  ASSERT_TRUE(p.ok()) << p.status();
  std::optional<int> status = (*p)->WaitExit(kProcessTimeout);
  ASSERT_TRUE(status.has_value()) << "toolgated started with a conflicting policy directory";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status;
  EXPECT_THAT((*p)->log(), HasSubstr(absl::StrCat(b, ":4:3: ")));
  EXPECT_THAT((*p)->log(), HasSubstr(absl::StrCat(a, ":4:3")));
}

// ---- server flags ------------------------------------------------------------

TEST(ServerFlagsTest, MaxArgsBytes) {
  auto server = MustStartWithPolicy(SeedPolicyPath(), {"--max-args-bytes", "1000"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckRequest big = Req("wait_for_background_task", "g");
  *big.mutable_args() = BlobArgs(2000);
  absl::StatusOr<CheckResponse> r = client->Check(big, kRpcTimeout);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("1000"));
  CheckRequest small = Req("wait_for_background_task", "g");
  *small.mutable_args() = BlobArgs(500);
  EXPECT_EQ(MustCheck(*client, small).decision(), toolgate::v1::DECISION_ALLOW);
}

// Up to the gRPC message size the server configures (twice --max-args-bytes
// plus 1 MiB), oversized args get INVALID_ARGUMENT from toolgate; beyond it
// gRPC itself refuses the message with RESOURCE_EXHAUSTED before toolgate
// sees it. Either way the call is refused and the server keeps serving.
TEST(ServerFlagsTest, HugeArgsAreRefusedAndTheServerKeepsServing) {
  auto server = MustStartWithPolicy(SeedPolicyPath());
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  for (size_t bytes : {size_t{1} << 20, size_t{8} << 20}) {
    CheckRequest req = Req("wait_for_background_task", "g");
    *req.mutable_args() = BlobArgs(bytes);
    absl::StatusOr<CheckResponse> r = client->Check(req, kRpcTimeout);
    EXPECT_TRUE(r.status().code() == absl::StatusCode::kInvalidArgument ||
                r.status().code() == absl::StatusCode::kResourceExhausted)
        << bytes << " bytes: " << r.status();
  }
  for (int depth : {1000, 5000}) {
    CheckRequest req = Req("wait_for_background_task", "g");
    *req.mutable_args() = NestedArgs(depth);
    absl::StatusOr<CheckResponse> r = client->Check(req, kRpcTimeout);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "depth " << depth;
  }
  EXPECT_TRUE(server->Running());
  EXPECT_EQ(MustCheck(*client, Req("wait_for_background_task", "g")).decision(),
            toolgate::v1::DECISION_ALLOW);
}

// A larger --max-args-bytes raises gRPC's message size limit with it.
TEST(ServerFlagsTest, LargeMaxArgsBytesAcceptsLargeArgs) {
  auto server = MustStartWithPolicy(SeedPolicyPath(), {"--max-args-bytes", "6000000"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckRequest req = Req("wait_for_background_task", "g");
  *req.mutable_args() = BlobArgs(5'000'000);
  EXPECT_EQ(MustCheck(*client, req).decision(), toolgate::v1::DECISION_ALLOW);
}

TEST(ServerFlagsTest, MaxArgsDepthFromEnvironment) {
  auto server = MustStartWithPolicy(SeedPolicyPath(), {}, {{"TOOLGATE_MAX_ARGS_DEPTH", "3"}});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckRequest ok = Req("wait_for_background_task", "g");
  *ok.mutable_args() = NestedArgs(3);
  EXPECT_EQ(MustCheck(*client, ok).decision(), toolgate::v1::DECISION_ALLOW);
  CheckRequest deep = Req("wait_for_background_task", "g");
  *deep.mutable_args() = NestedArgs(4);
  absl::StatusOr<CheckResponse> r = client->Check(deep, kRpcTimeout);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
}

TEST(ServerFlagsTest, ListenAndPolicyFromEnvironment) {
  auto server = MustStart({}, {{"TOOLGATE_LISTEN", "127.0.0.1:0"},
                               {"TOOLGATE_POLICY", SeedPolicyPath()}});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckResponse r = MustCheck(*client, Req("wait_for_background_task", "g"));
  EXPECT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_EQ(r.policy_version(), Sha256Revision(ReadFileOrEmpty(SeedPolicyPath())));
}

TEST(ServerFlagsTest, UnknownFlagExitsWithUsageError) {
  CommandResult r = RunCommand({ToolgatedBin(), "--no-such-flag", "--listen", "127.0.0.1:0"}, {},
                               kProcessTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no-such-flag"));
  EXPECT_THAT(r.err, Not(HasSubstr("listening")));
}

TEST(ServerFlagsTest, BadFlagValueExitsWithUsageError) {
  CommandResult r = RunCommand(
      {ToolgatedBin(), "--max-args-bytes", "lots", "--listen", "127.0.0.1:0"}, {}, kProcessTimeout);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("max-args-bytes"));
}

TEST(ServerFlagsTest, BadDurationsSayWhatIsWrong) {
  for (const auto& [value, message] : std::vector<std::pair<std::string, std::string>>{
           {"0ms", "\"0ms\": a duration must be more than zero"},
           {"40d", "\"40d\": a duration must be at most 31 days"},
           {"soon", "\"soon\" is not a duration"}}) {
    CommandResult r = RunCommand(
        {ToolgatedBin(), "--redis-timeout", value, "--listen", "127.0.0.1:0"}, {}, kProcessTimeout);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("--redis-timeout: " + message)) << r.err;
  }
}

TEST(ServerFlagsTest, HelpListsEveryFlagAndVariable) {
  CommandResult r = RunCommand({ToolgatedBin(), "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* s : {"--listen", "--policy", "--max-args-bytes", "--max-args-depth",
                        "TOOLGATE_LISTEN", "TOOLGATE_POLICY", "TOOLGATE_MAX_ARGS_BYTES",
                        "TOOLGATE_MAX_ARGS_DEPTH"}) {
    EXPECT_THAT(r.out, HasSubstr(s));
  }
}

TEST(ServerFlagsTest, MissingPolicyFileFailsToStart) {
  TempDir dir;
  auto p = ServerProcess::Spawn({"--listen", "127.0.0.1:0", "--policy", dir.path() + "/absent.yaml"});
  ASSERT_TRUE(p.ok()) << p.status();
  std::optional<int> status = (*p)->WaitExit(kProcessTimeout);
  ASSERT_TRUE(status.has_value()) << "toolgated kept running without its policy";
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_NE(WEXITSTATUS(*status), 0);
  EXPECT_THAT((*p)->log(), HasSubstr("absent.yaml"));
}

// ---- invalid policies --------------------------------------------------------

class InvalidPolicyTest : public ::testing::TestWithParam<BrokenPolicy> {};

TEST_P(InvalidPolicyTest, ToolgatedRefusesToStartWithALocatedMessage) {
  const BrokenPolicy& bp = GetParam();
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", bp.content);
  auto p = ServerProcess::Spawn({"--listen", "127.0.0.1:0", "--policy", path});
  ASSERT_TRUE(p.ok()) << p.status();
  // Generous: refusing an alias bomb walks its whole node budget, which
  // takes seconds in a sanitizer build on a busy machine.
  std::optional<int> status = (*p)->WaitExit(absl::Seconds(120));
  ASSERT_TRUE(status.has_value()) << "toolgated kept running with an invalid policy; log:\n"
                                  << (*p)->log();
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  const std::string log = (*p)->log();
  EXPECT_THAT(log, HasSubstr(absl::StrCat(bp.location, ": ")));
  EXPECT_THAT(log, HasSubstr(bp.message));
  EXPECT_THAT(log, Not(HasSubstr("listening on")));
}

INSTANTIATE_TEST_SUITE_P(Broken, InvalidPolicyTest, ::testing::ValuesIn(BrokenPolicies()),
                         [](const ::testing::TestParamInfo<BrokenPolicy>& info) {
                           return info.param.name;
                         });

// ---- signals -----------------------------------------------------------------

TEST(ShutdownTest, SigtermExitsZero) {
  // A grace far longer than the exit may take: nothing is in flight, so
  // none of it is waited for.
  auto server = MustStartWithPolicy(SeedPolicyPath(), {"--shutdown-grace", "60s"});
  ASSERT_NE(server, nullptr);
  {
    auto client = toolgate::Client::Connect(server->address());
    EXPECT_EQ(MustCheck(*client, Req("wait_for_background_task", "g")).decision(),
              toolgate::v1::DECISION_ALLOW);
  }  // The client is gone: nothing is connected or in flight.
  const absl::Time start = absl::Now();
  ASSERT_TRUE(server->Signal(SIGTERM));
  std::optional<int> status = server->WaitExit(kWait);
  ASSERT_TRUE(status.has_value()) << "toolgated did not exit after SIGTERM";
  // 10x what the exit takes even in a sanitizer build on a busy machine
  // (well under 1 s), and a sixth of the grace it must not wait out.
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  ASSERT_TRUE(WIFEXITED(*status)) << "status " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_THAT(server->log(), HasSubstr("SIGTERM"));
}

// An idle client keeps its connection open across the SIGTERM. gRPC's
// graceful GOAWAY waits for that client to acknowledge (an idle C++ channel
// only reads its socket every few seconds), so the exit must not wait for it:
// it is bounded by --shutdown-grace (toolgated closes idle connections as
// soon as no check is in flight).
TEST(ShutdownTest, SigtermWithAnIdleClientExitsZeroWithinTheGrace) {
  auto server = MustStartWithPolicy(SeedPolicyPath(), {"--shutdown-grace", "2s"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  EXPECT_EQ(MustCheck(*client, Req("wait_for_background_task", "g")).decision(),
            toolgate::v1::DECISION_ALLOW);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(server->Signal(SIGTERM));
  std::optional<int> status = server->WaitExit(kWait);
  ASSERT_TRUE(status.has_value()) << "toolgated did not exit after SIGTERM";
  const absl::Duration took = absl::Now() - start;
  // 10x the 2 s grace: the idle client does not hold the exit up.
  EXPECT_LT(took, 10 * absl::Seconds(2));
  std::cout << "SIGTERM with an idle client: exited after " << absl::FormatDuration(took)
            << " (grace 2s)\n";
  ASSERT_TRUE(WIFEXITED(*status)) << "status " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  // After the exit, calls fail cleanly instead of hanging.
  absl::StatusOr<CheckResponse> after =
      client->Check(Req("wait_for_background_task", "g"), absl::Seconds(2));
  EXPECT_FALSE(after.ok());
}

TEST(ShutdownTest, SigintExitsZero) {
  auto server = MustStartWithPolicy(SeedPolicyPath());
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Signal(SIGINT));
  std::optional<int> status = server->WaitExit(kProcessTimeout);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

// Bytes received but not yet read by the process on the server side of the
// established loopback connections to `port` (from /proc/net/tcp and tcp6:
// gRPC uses dual-stack sockets, so IPv4 connections may be listed as
// v4-mapped IPv6 ones).
int64_t UnreadBytesAtServer(int port) {
  int64_t total = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 5 || f[3] != "01") continue;  // ESTABLISHED
      const size_t colon = f[1].rfind(':');
      if (colon == std::string::npos) continue;
      if (std::stoi(f[1].substr(colon + 1), nullptr, 16) != port) continue;
      const size_t q = f[4].find(':');
      if (q == std::string::npos) continue;
      total += std::stoll(f[4].substr(q + 1), nullptr, 16);
    }
  }
  return total;
}

char ProcessState(pid_t pid) {
  std::string stat = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

// Several checks are sent while the server is frozen (SIGSTOP), so that they
// are all queued at the server (in its socket) before SIGTERM.
//
// kAfterRead: the server is resumed and SIGTERM is sent as soon as it has
// read them (its socket is empty again): the calls have reached gRPC when the
// drain starts.
// kWhileFrozen: SIGTERM is sent while the server is still frozen, then it is
// resumed: the drain starts while the calls are still unread bytes.
//
// With a --shutdown-delay, either way every call must be answered OK (they
// are read and decided during the delay); a second SIGTERM ends the delay and
// the server must exit 0.
enum class SigtermTiming { kAfterRead, kWhileFrozen };

void RunInFlightShutdown(SigtermTiming timing) {
  auto server = MustStartWithPolicy(SeedPolicyPath(), {"--shutdown-delay", "10m"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  // Connect first, so the checks below go over an established connection.
  ASSERT_EQ(MustCheck(*client, Req("wait_for_background_task", "g")).decision(),
            toolgate::v1::DECISION_ALLOW);

  ASSERT_TRUE(server->Signal(SIGSTOP));
  ASSERT_TRUE(PollUntil([&] { return ProcessState(server->pid()) == 'T'; }, kProcessTimeout));

  constexpr int kCalls = 5;
  constexpr size_t kBlob = 8000;  // kCalls * kBlob stays within HTTP/2's initial window.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<absl::StatusOr<CheckResponse>> results;
  for (int i = 0; i < kCalls; ++i) {
    CheckRequest req = Req(i % 2 == 0 ? "wait_for_background_task" : "other_tool",
                           absl::StrCat("inflight-", i));
    *req.mutable_args() = BlobArgs(kBlob);
    client->CheckAsync(req, absl::Seconds(20), [&](absl::StatusOr<CheckResponse> r) {
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(std::move(r));
      cv.notify_all();
    });
  }
  // All requests are in the server's socket buffer (each is > kBlob bytes).
  const bool queued = PollUntil(
      [&] { return UnreadBytesAtServer(server->port()) >= int64_t{kCalls} * int64_t{kBlob}; },
      kProcessTimeout);
  if (timing == SigtermTiming::kWhileFrozen) server->Signal(SIGTERM);
  server->Signal(SIGCONT);
  ASSERT_TRUE(queued) << "requests never reached the server; unread bytes: "
                      << UnreadBytesAtServer(server->port());
  if (timing == SigtermTiming::kAfterRead) {
    ASSERT_TRUE(
        PollUntil([&] { return UnreadBytesAtServer(server->port()) == 0; }, kProcessTimeout));
    ASSERT_TRUE(server->Signal(SIGTERM));
  }

  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return results.size() == kCalls; }))
        << results.size() << " of " << kCalls << " checks completed";
    for (const auto& r : results) {
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) continue;
      EXPECT_NE(r->decision(), toolgate::v1::DECISION_UNSPECIFIED);
      EXPECT_FALSE(r->decision_id().empty());
    }
  }
  EXPECT_TRUE(PollUntil([&] { return HealthStatus(server->address()) == 2; }, kWait))
      << "health should say NOT_SERVING";
  ASSERT_TRUE(server->Signal(SIGTERM));  // Ends the delay.
  std::optional<int> status = server->WaitExit(kProcessTimeout);
  ASSERT_TRUE(status.has_value()) << "toolgated did not exit after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << "status " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(ShutdownTest, InFlightChecksCompleteOnSigterm) {
  RunInFlightShutdown(SigtermTiming::kAfterRead);
}

// The drain starts while the checks are still unread bytes at the server:
// they are read and decided during --shutdown-delay.
TEST(ShutdownTest, ChecksQueuedAtTheServerCompleteWhenSigtermArrivesFirst) {
  RunInFlightShutdown(SigtermTiming::kWhileFrozen);
}

// SIGTERM while 300 checks are in flight over several connections: no check
// is cancelled. Each is decided, or refused with UNAVAILABLE (by the draining
// server, or by the client's transport once the connection is closed).
TEST(ShutdownTest, SigtermUnderLoadCancelsNoCheck) {
  auto server = MustStartWithPolicy(SeedPolicyPath());
  ASSERT_NE(server, nullptr);
  constexpr int kConnections = 6;
  constexpr int kPerConnection = 50;
  std::vector<std::unique_ptr<toolgate::Client>> clients;
  for (int c = 0; c < kConnections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("toolgate.test.connection", c);  // A channel (connection) of its own.
    clients.push_back(std::make_unique<toolgate::Client>(grpc::CreateCustomChannel(
        server->address(), grpc::InsecureChannelCredentials(), args)));
  }
  std::mutex mu;
  std::condition_variable cv;
  std::map<absl::StatusCode, int> by_code;
  std::map<std::string, int> messages;
  int completed = 0, stopped = 0;
  std::function<void(int)> issue;
  issue = [&](int worker) {
    toolgate::Client& client = *clients[worker % kConnections];
    client.CheckAsync(Req(worker % 2 ? "wait_for_background_task" : "other_tool",
                          absl::StrCat("load-", worker)),
                      absl::Seconds(30), [&, worker](absl::StatusOr<CheckResponse> r) {
                        bool again = false;
                        {
                          std::lock_guard<std::mutex> lock(mu);
                          ++by_code[r.status().code()];
                          ++completed;
                          if (!r.ok()) ++messages[std::string(r.status().message())];
                          again = r.ok();
                          if (!again) ++stopped;
                          cv.notify_all();
                        }
                        if (again) issue(worker);
                      });
  };
  for (int w = 0; w < kConnections * kPerConnection; ++w) issue(w);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return completed >= 3000; }))
        << completed << " checks completed; log:\n" << server->log();
  }
  ASSERT_TRUE(server->Signal(SIGTERM));
  std::optional<int> status = server->WaitExit(kWait);
  ASSERT_TRUE(status.has_value()) << "toolgated did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  {
    std::unique_lock<std::mutex> lock(mu);
    // Every worker ends on its first refusal; with the process gone, that is
    // at the latest its next call.
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60),
                            [&] { return stopped == kConnections * kPerConnection; }))
        << stopped << " workers stopped";
    std::ostringstream summary;
    for (const auto& [code, n] : by_code) summary << absl::StatusCodeToString(code) << "=" << n << " ";
    for (const auto& [message, n] : messages) summary << "\n  " << n << " x " << message;
    std::cout << "SIGTERM under load: " << summary.str() << "\n";
    EXPECT_EQ(by_code.count(absl::StatusCode::kCancelled), 0u) << summary.str();
    for (const auto& [code, n] : by_code) {
      EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kUnavailable)
          << summary.str();
    }
    EXPECT_GE(by_code[absl::StatusCode::kOk], 3000);
  }
}

// During --shutdown-delay health says NOT_SERVING and checks are still
// decided.
TEST(ShutdownTest, ChecksAreServedDuringTheShutdownDelay) {
  auto server = MustStartWithPolicy(SeedPolicyPath(), {"--shutdown-delay", "10m"});
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  EXPECT_EQ(HealthStatus(server->address()), 1);
  ASSERT_TRUE(server->Signal(SIGTERM));
  ASSERT_TRUE(PollUntil([&] { return HealthStatus(server->address()) == 2; }, kWait))
      << "health never said NOT_SERVING; log:\n" << server->log();
  CheckResponse during = MustCheck(*client, Req("wait_for_background_task", "g"));
  EXPECT_EQ(during.decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_TRUE(server->Running());
  ASSERT_TRUE(server->Signal(SIGTERM));  // A second signal ends the delay.
  std::optional<int> status = server->WaitExit(kWait);
  ASSERT_TRUE(status.has_value()) << "toolgated did not exit after the second SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_THAT(server->log(), HasSubstr("--shutdown-delay"));
}

constexpr char kRevisionA[] = R"(version: "1"
revision: "rev-a"
default: deny
tools:
  list_files: {}
)";
constexpr char kRevisionB[] = R"(version: "1"
revision: "rev-b"
default: deny
tools:
  list_files:
    action: deny
    reason: "no more listing"
)";
constexpr char kRevisionC[] = R"(version: "1"
revision: "rev-c"
default: allow
)";

TEST(ReloadTest, SighupLoadsTheNewRevision) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kRevisionA);
  auto server = MustStartWithPolicy(path);
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  CheckResponse a = MustCheck(*client, Req("list_files", "g"));
  EXPECT_EQ(a.policy_version(), "rev-a");
  EXPECT_EQ(a.decision(), toolgate::v1::DECISION_ALLOW);

  dir.WriteFile("policy.yaml", kRevisionB);
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(WaitForRevision(*client, Req("list_files", "g"), "rev-b"))
      << "the new revision was never served; log:\n"
      << server->log();
  CheckResponse b = MustCheck(*client, Req("list_files", "g"));
  EXPECT_EQ(b.policy_version(), "rev-b");
  EXPECT_EQ(b.decision(), toolgate::v1::DECISION_DENY);
  EXPECT_EQ(b.reason(), "no more listing");

  // The previous revision stays loaded for requests that pin it.
  CheckRequest pinned = Req("list_files", "g");
  pinned.set_policy_version("rev-a");
  CheckResponse old = MustCheck(*client, pinned);
  EXPECT_EQ(old.policy_version(), "rev-a");
  EXPECT_EQ(old.decision(), toolgate::v1::DECISION_ALLOW);
}

TEST(ReloadTest, InvalidPolicyIsRejectedAndTheOldRevisionKeepsServing) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kRevisionA);
  auto server = MustStartWithPolicy(path);
  ASSERT_NE(server, nullptr);
  auto client = toolgate::Client::Connect(server->address());
  EXPECT_EQ(MustCheck(*client, Req("list_files", "g")).policy_version(), "rev-a");

  for (const BrokenPolicy& bp : BrokenPolicies()) {
    SCOPED_TRACE(bp.name);
    const size_t log_before = server->log().size();
    dir.WriteFile("policy.yaml", bp.content);
    ASSERT_TRUE(server->Signal(SIGHUP));
    // Wait for the server to report the outcome of this reload.
    ASSERT_TRUE(PollUntil(
        [&] {
          const std::string log = server->log();
          return log.size() > log_before && log.find(bp.location, log_before) != std::string::npos;
        },
        absl::Seconds(120)))  // An alias bomb takes seconds to refuse under ASan.
        << "no error reported for the invalid policy; log:\n"
        << server->log();
    const std::string new_log = server->log().substr(log_before);
    EXPECT_THAT(new_log, HasSubstr(absl::StrCat(bp.location, ": ")));
    EXPECT_THAT(new_log, HasSubstr(bp.message));
    EXPECT_THAT(new_log, HasSubstr("rev-a"));
    ASSERT_TRUE(server->Running());
    CheckResponse r = MustCheck(*client, Req("list_files", "g"));
    EXPECT_EQ(r.policy_version(), "rev-a");
    EXPECT_EQ(r.decision(), toolgate::v1::DECISION_ALLOW);
  }

  // A fixed policy is picked up again.
  dir.WriteFile("policy.yaml", kRevisionC);
  ASSERT_TRUE(server->Signal(SIGHUP));
  ASSERT_TRUE(WaitForRevision(*client, Req("anything", "g"), "rev-c")) << server->log();
  EXPECT_EQ(MustCheck(*client, Req("anything", "g")).decision(), toolgate::v1::DECISION_ALLOW);
}

}  // namespace
}  // namespace toolgate_test
