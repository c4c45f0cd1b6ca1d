// Approvals over gRPC with real toolgated processes: in process (one server),
// and in Redis (two servers sharing it: one creates, the other decides, and
// either redeems). The round trip, every binding and state a redemption can
// fail on, limits after approval, WaitApproval, WatchApprovals, the decision
// log and metrics.
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/integration/scrape.h"
#include "tests/support/redis_process.h"
#include "toolgate/v1/approval.grpc.pb.h"
#include "toolgate/v1/decision.grpc.pb.h"

namespace toolgate_test {
namespace {

namespace v1 = toolgate::v1;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "approvals-1"
default: deny
tools:
  run_command:
    action: require_approval
    reason: "commands need a human"
    args:
      type: object
      properties: {command: {type: string, maxLength: 40}}
      required: [command]
  quick_fix:
    action: require_approval
    approval_ttl: 1s
  deploy:
    category: admin
    limits:
      - {counter: deploys, window: 1h, max: 1}
classes:
  admin:
    category: admin
    action: require_approval
)";

v1::CheckRequest Call(const std::string& tool, const std::string& args_json,
                      const std::string& grant = "agent-1", const std::string& session = "s-1") {
  v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  r.set_session(session);
  r.set_server("shell");
  r.set_args_json(args_json);
  r.set_request_id("req-" + tool);
  return r;
}

grpc::ClientContext* WithDeadline(grpc::ClientContext* c, int seconds = 10) {
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

// One toolgated's stubs.
struct Endpoint {
  std::unique_ptr<v1::DecisionService::Stub> decisions;
  std::unique_ptr<v1::ApprovalService::Stub> approvals;

  static Endpoint For(const ServerProcess& s) {
    Endpoint e;
    e.decisions = v1::DecisionService::NewStub(
        grpc::CreateChannel(s.address(), grpc::InsecureChannelCredentials()));
    e.approvals = v1::ApprovalService::NewStub(
        grpc::CreateChannel(s.admin_address(), grpc::InsecureChannelCredentials()));
    return e;
  }

  v1::CheckResponse Check(const v1::CheckRequest& req) {
    grpc::ClientContext ctx;
    v1::CheckResponse resp;
    const grpc::Status s = decisions->Check(WithDeadline(&ctx), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  grpc::Status Decide(const std::string& id, bool approve, const std::string& who = "bob",
                      const std::string& note = "", v1::Approval* out = nullptr) {
    grpc::ClientContext ctx;
    v1::DecideApprovalRequest req;
    req.set_id(id);
    req.set_approve(approve);
    req.set_approver(who);
    req.set_note(note);
    v1::Approval a;
    grpc::Status s = approvals->DecideApproval(WithDeadline(&ctx), req, out ? out : &a);
    return s;
  }
  v1::Approval Get(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetApprovalRequest req;
    req.set_id(id);
    v1::Approval a;
    const grpc::Status s = approvals->GetApproval(WithDeadline(&ctx), req, &a);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return a;
  }
  grpc::Status Wait(const std::string& id, int64_t timeout_ms, v1::Approval* out) {
    grpc::ClientContext ctx;
    v1::WaitApprovalRequest req;
    req.set_approval_id(id);
    req.mutable_timeout()->set_seconds(timeout_ms / 1000);
    req.mutable_timeout()->set_nanos(static_cast<int32_t>(timeout_ms % 1000) * 1'000'000);
    return decisions->WaitApproval(WithDeadline(&ctx, 60), req, out);
  }
};

class ApprovalsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    policy_ = dir_.WriteFile("policy.yaml", kPolicy);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy_,
                                     "--watch=false"};
    if (GetParam() == "redis") {
      auto redis = RedisProcess::Start();
      ASSERT_TRUE(redis.ok()) << redis.status();
      redis_ = *std::move(redis);
      args.push_back("--redis");
      args.push_back(redis_->url());
    }
    for (int i = 0; i < (GetParam() == "redis" ? 2 : 1); ++i) {
      std::vector<std::string> a = args;
      const std::string log = absl::StrCat(dir_.path(), "/decisions-", i, ".jsonl");
      logs_.push_back(log);
      for (const char* x : {"--decision-log", log.c_str(), "--metrics-listen", "127.0.0.1:0"}) {
        a.push_back(x);
      }
      auto s = ServerProcess::Start(a);
      ASSERT_TRUE(s.ok()) << s.status();
      servers_.push_back(*std::move(s));
    }
    creator_ = Endpoint::For(*servers_.front());
    approver_ = Endpoint::For(*servers_.back());
  }

  // Every decision-log line (both servers) with "event":"approval_<kind>" for `id`.
  int LoggedEvents(const std::string& kind, const std::string& id) {
    int n = 0;
    for (const std::string& path : logs_) {
      for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(path), '\n')) {
        if (absl::StrContains(line, absl::StrCat("\"event\":\"approval_", kind, "\"")) &&
            absl::StrContains(line, id)) {
          ++n;
        }
      }
    }
    return n;
  }

  TempDir dir_;
  std::string policy_;
  std::unique_ptr<RedisProcess> redis_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::string> logs_;
  Endpoint creator_, approver_;
};

TEST_P(ApprovalsTest, RoundTripAdmitsTheIdenticalCallOnce) {
  const v1::CheckRequest call = Call("run_command", R"({"command": "ls -l"})");
  v1::CheckResponse first = creator_.Check(call);
  ASSERT_EQ(first.decision(), v1::DECISION_REQUIRE_APPROVAL) << first.reason();
  const std::string id = first.approval_id();
  ASSERT_THAT(id, ::testing::StartsWith("apr_"));
  // The same call while pending: the same approval, on either server.
  EXPECT_EQ(creator_.Check(call).approval_id(), id);
  EXPECT_EQ(approver_.Check(call).approval_id(), id);

  // A short wait ends at its timeout, still pending.
  v1::Approval waited;
  ASSERT_TRUE(creator_.Wait(id, 200, &waited).ok());
  EXPECT_EQ(waited.state(), v1::APPROVAL_STATE_PENDING);

  // A long wait on the creating server ends as soon as the other decides.
  std::promise<std::chrono::steady_clock::time_point> returned;
  v1::Approval decided;
  std::thread waiter([&] {
    Endpoint mine = Endpoint::For(*servers_.front());
    const grpc::Status s = mine.Wait(id, 30'000, &decided);
    EXPECT_TRUE(s.ok()) << s.error_message();
    returned.set_value(std::chrono::steady_clock::now());
  });
  // Approve only once the wait is registered (polled through the metrics gauge).
  const std::string metrics = MetricsAddress(*servers_.front());
  ASSERT_TRUE(PollUntil(
      [&] { return Sample(HttpGet(metrics, "/metrics"), "toolgate_approvals_waiting") == 1; },
      absl::Seconds(20)));
  const auto approved_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(approver_.Decide(id, true, "bob", "fine").ok());
  const auto wait_returned = returned.get_future().get();
  waiter.join();
  EXPECT_EQ(decided.state(), v1::APPROVAL_STATE_APPROVED);
  EXPECT_EQ(decided.decided_by(), "bob");
  std::cout << "[ approval ] " << GetParam() << ": WaitApproval returned "
            << std::chrono::duration_cast<std::chrono::microseconds>(wait_returned - approved_at)
                   .count()
            << " us after DecideApproval was sent\n";

  v1::CheckRequest redeem = call;
  redeem.set_approval_id(id);
  v1::CheckResponse ok = creator_.Check(redeem);
  EXPECT_EQ(ok.decision(), v1::DECISION_ALLOW) << ok.reason();
  EXPECT_THAT(ok.reason(), HasSubstr("approved by bob"));
  EXPECT_EQ(approver_.Get(id).state(), v1::APPROVAL_STATE_USED);
  EXPECT_EQ(approver_.Get(id).used_by_decision(), ok.decision_id());
  // A second use, on either server.
  for (Endpoint* e : {&creator_, &approver_}) {
    v1::CheckResponse again = e->Check(redeem);
    EXPECT_EQ(again.decision(), v1::DECISION_DENY);
    EXPECT_THAT(again.reason(), HasSubstr("already used"));
  }
  // Each event is logged once across the fleet, by the server that saw it.
  EXPECT_TRUE(PollUntil([&] { return LoggedEvents("created", id) == 1; }, absl::Seconds(10)));
  EXPECT_TRUE(PollUntil([&] { return LoggedEvents("approved", id) == 1; }, absl::Seconds(10)));
  EXPECT_TRUE(PollUntil([&] { return LoggedEvents("used", id) == 1; }, absl::Seconds(10)));
  double created = 0;
  for (auto& s : servers_) {
    created += Sample(HttpGet(MetricsAddress(*s), "/metrics"),
                      "toolgate_approval_events_total{event=\"created\"}");
  }
  EXPECT_EQ(created, 1);
}

TEST_P(ApprovalsTest, AnApprovalFitsOnlyItsOwnCall) {
  const v1::CheckRequest call = Call("run_command", R"({"command": "make test"})");
  const std::string id = creator_.Check(call).approval_id();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(approver_.Decide(id, true).ok());
  struct Case {
    v1::CheckRequest req;
    std::string reason;
  } cases[] = {
      {Call("run_command", R"({"command": "make deploy"})"), "different arguments"},
      {Call("run_command", R"({"command": "make test"})", "agent-2"), "different grant"},
      {Call("run_command", R"({"command": "make test"})", "agent-1", "s-2"), "different session"},
  };
  for (Case& c : cases) {
    c.req.set_approval_id(id);
    v1::CheckResponse r = creator_.Check(c.req);
    EXPECT_EQ(r.decision(), v1::DECISION_DENY) << c.reason;
    EXPECT_THAT(r.reason(), HasSubstr(c.reason));
  }
  // Equivalent JSON (other key order, spaces) is the same call.
  v1::CheckRequest same = Call("run_command", R"({ "command" : "make test" })");
  same.set_approval_id(id);
  EXPECT_EQ(approver_.Check(same).decision(), v1::DECISION_ALLOW);
}

TEST_P(ApprovalsTest, DeniedAndExpiredApprovalsSayWhy) {
  const v1::CheckRequest call = Call("run_command", R"({"command": "rm -rf build"})");
  const std::string id = creator_.Check(call).approval_id();
  v1::Approval denied;
  ASSERT_TRUE(approver_.Decide(id, false, "carol", "not today", &denied).ok());
  EXPECT_EQ(denied.state(), v1::APPROVAL_STATE_DENIED);
  v1::CheckRequest redeem = call;
  redeem.set_approval_id(id);
  v1::CheckResponse r = creator_.Check(redeem);
  EXPECT_EQ(r.decision(), v1::DECISION_DENY);
  EXPECT_THAT(r.reason(), HasSubstr("denied by carol: not today"));
  const grpc::Status twice = approver_.Decide(id, true);
  EXPECT_EQ(twice.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(twice.error_message(), HasSubstr("denied"));

  // quick_fix: approval_ttl 1s. Approved, then past its expiry.
  const v1::CheckRequest quick = Call("quick_fix", "{}");
  const std::string q = creator_.Check(quick).approval_id();
  ASSERT_FALSE(q.empty());
  ASSERT_TRUE(approver_.Decide(q, true).ok());
  ASSERT_TRUE(PollUntil([&] { return approver_.Get(q).state() == v1::APPROVAL_STATE_EXPIRED; },
                        absl::Seconds(20)));
  v1::CheckRequest late = quick;
  late.set_approval_id(q);
  v1::CheckResponse expired = creator_.Check(late);
  EXPECT_EQ(expired.decision(), v1::DECISION_DENY);
  EXPECT_THAT(expired.reason(), HasSubstr("expired"));
  EXPECT_TRUE(PollUntil([&] { return LoggedEvents("expired", q) == 1; }, absl::Seconds(20)));
  // Expired: the same call asks for a new approval.
  EXPECT_NE(creator_.Check(quick).approval_id(), q);

  // An unknown id, and a malformed one.
  v1::CheckRequest unknown = call;
  unknown.set_approval_id("apr_0123456789abcdef0123456789abcdef");
  EXPECT_THAT(creator_.Check(unknown).reason(), HasSubstr("unknown"));
  v1::CheckRequest malformed = call;
  malformed.set_approval_id("yes-please");
  grpc::ClientContext ctx;
  v1::CheckResponse resp;
  const grpc::Status bad = creator_.decisions->Check(WithDeadline(&ctx), malformed, &resp);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ApprovalsTest, AnApprovedCallStillConsumesItsLimits) {
  // deploy: 1 per hour, and the admin class needs approval.
  const std::string first = creator_.Check(Call("deploy", R"({"env": "prod"})")).approval_id();
  const std::string second = creator_.Check(Call("deploy", R"({"env": "dev"})")).approval_id();
  ASSERT_TRUE(approver_.Decide(first, true).ok());
  ASSERT_TRUE(approver_.Decide(second, true).ok());
  v1::CheckRequest a = Call("deploy", R"({"env": "prod"})");
  a.set_approval_id(first);
  v1::CheckResponse ok = creator_.Check(a);
  ASSERT_EQ(ok.decision(), v1::DECISION_ALLOW) << ok.reason();
  ASSERT_EQ(ok.limits_size(), 1);
  EXPECT_EQ(ok.limits(0).remaining(), 0);
  v1::CheckRequest b = Call("deploy", R"({"env": "dev"})");
  b.set_approval_id(second);
  v1::CheckResponse limited = approver_.Check(b);
  EXPECT_EQ(limited.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_THAT(limited.reason(), HasSubstr("not used up"));
  // Not used up: still approved, for a retry after the window.
  EXPECT_EQ(creator_.Get(second).state(), v1::APPROVAL_STATE_APPROVED);
}

TEST_P(ApprovalsTest, WatchAndListSeeTheFleetsApprovals) {
  const std::string before = creator_.Check(Call("run_command", R"({"command": "a"})")).approval_id();
  grpc::ClientContext ctx;
  WithDeadline(&ctx, 60);
  v1::WatchApprovalsRequest w;
  w.set_include_pending(true);
  w.set_tool("run_command");
  auto stream = approver_.approvals->WatchApprovals(&ctx, w);
  v1::ApprovalEvent e;
  ASSERT_TRUE(stream->Read(&e));
  EXPECT_EQ(e.kind(), v1::APPROVAL_EVENT_PENDING);
  EXPECT_EQ(e.approval().id(), before);
  // Events of other tools are filtered out; this one's arrive in order.
  creator_.Check(Call("quick_fix", "{}"));
  const std::string after = creator_.Check(Call("run_command", R"({"command": "b"})")).approval_id();
  ASSERT_TRUE(stream->Read(&e));
  EXPECT_EQ(e.kind(), v1::APPROVAL_EVENT_CREATED);
  EXPECT_EQ(e.approval().id(), after);
  EXPECT_EQ(e.approval().args_json(), R"({"command":"b"})");
  ASSERT_TRUE(creator_.Decide(after, false, "dave").ok());
  ASSERT_TRUE(stream->Read(&e));
  EXPECT_EQ(e.kind(), v1::APPROVAL_EVENT_DENIED);
  EXPECT_EQ(e.approval().decided_by(), "dave");
  ctx.TryCancel();

  grpc::ClientContext lctx;
  v1::ListApprovalsRequest lr;
  lr.set_state(v1::APPROVAL_STATE_PENDING);
  v1::ListApprovalsResponse list;
  ASSERT_TRUE(approver_.approvals->ListApprovals(WithDeadline(&lctx), lr, &list).ok());
  std::vector<std::string> ids;
  for (const auto& a : list.approvals()) ids.push_back(a.id());
  EXPECT_THAT(ids, ::testing::Contains(before));
  EXPECT_THAT(ids, ::testing::Not(::testing::Contains(after)));

  // Bad requests are refused with the reason.
  grpc::ClientContext bctx;
  v1::DecideApprovalRequest no_one;
  no_one.set_id(before);
  no_one.set_approve(true);
  v1::Approval ignored;
  const grpc::Status s = approver_.approvals->DecideApproval(WithDeadline(&bctx), no_one, &ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("approver is required"));
  v1::Approval missing;
  const grpc::Status nf = creator_.Wait("apr_0123456789abcdef0123456789abcdef", 100, &missing);
  EXPECT_EQ(nf.error_code(), grpc::StatusCode::NOT_FOUND);
}

INSTANTIATE_TEST_SUITE_P(Stores, ApprovalsTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace toolgate_test
