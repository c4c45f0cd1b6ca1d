// Tests of the DecisionService handler, over an in-process gRPC channel,
// with a fake counter store that the test answers when it wants to (at
// once, later from another thread, or with an error), and a recording
// observer.
#include "server/service/decision_service.h"

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "server/policy/loader.h"
#include "server/service/observers.h"

namespace toolgate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records every Acquire; answers each one as the test says.
class FakeCounterStore final : public CounterStore {
 public:
  enum class Mode { kAdmit, kRefuse, kFail, kHold };

  void Acquire(std::vector<LimitCheck> checks, bool dry_run, Callback done) override {
    Mode mode;
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back({checks, dry_run});
      mode = mode_;
      if (mode == Mode::kHold) {
        held_.push_back({std::move(checks), std::move(done)});
        return;
      }
    }
    std::move(done)(Answer(mode, checks));
  }

  void Refund(std::vector<LimitCheck>, int64_t, RefundCallback done) override {
    std::move(done)(absl::UnimplementedError("fake store: no refunds"));
  }

  CounterStoreStatus Status() const override {
    CounterStoreStatus s;
    s.kind = "fake";
    return s;
  }

  void set_mode(Mode mode) {
    absl::MutexLock lock(&mu_);
    mode_ = mode;
  }

  struct Call {
    std::vector<LimitCheck> checks;
    bool dry_run;
  };
  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  // Waits until `n` calls are held, then answers them all with `mode`
  // from another thread, as the Redis store's I/O thread would.
  void ReleaseHeld(size_t n, Mode mode) {
    std::vector<Held> held;
    {
      absl::MutexLock lock(&mu_);
      auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return held_.size() >= n; };
      mu_.Await(absl::Condition(&enough));
      held.swap(held_);
    }
    std::thread([held = std::move(held), mode]() mutable {
      for (Held& h : held) std::move(h.done)(Answer(mode, h.checks));
    }).join();
  }

 private:
  struct Held {
    std::vector<LimitCheck> checks;
    Callback done;
  };

  static absl::StatusOr<AcquireResult> Answer(Mode mode, const std::vector<LimitCheck>& checks) {
    if (mode == Mode::kFail) return absl::UnavailableError("redis: connection refused");
    AcquireResult r;
    r.admitted = mode == Mode::kAdmit;
    for (const LimitCheck& c : checks) {
      LimitOutcome& o = r.outcomes.emplace_back();
      o.has_room = r.admitted;
      o.remaining = r.admitted ? c.max - 1 : 0;
      o.reset_after_ms = c.window_ms;
      o.retry_after_ms = r.admitted ? 0 : 1500;
    }
    return r;
  }

  mutable absl::Mutex mu_;
  Mode mode_ ABSL_GUARDED_BY(mu_) = Mode::kAdmit;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
};

class RecordingObserver final : public DecisionObserver {
 public:
  struct Seen {
    std::string decision_id, tool, rule;
    v1::Decision decision;
    bool decided_by_limits;
  };
  explicit RecordingObserver(std::vector<std::string>* order = nullptr, std::string name = "")
      : order_(order), name_(std::move(name)) {}

  void OnDecision(const DecisionRecord& r) override {
    absl::MutexLock lock(&mu_);
    if (order_ != nullptr) order_->push_back(name_);
    seen_.push_back({r.response.decision_id(), r.request.tool(), r.response.rule(),
                     r.response.decision(), r.decided_by_limits});
  }
  void OnError(absl::StatusCode code, absl::Duration latency) override {
    absl::MutexLock lock(&mu_);
    errors_.push_back(code);
  }
  std::vector<Seen> seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  std::vector<absl::StatusCode> errors() const {
    absl::MutexLock lock(&mu_);
    return errors_;
  }

 private:
  std::vector<std::string>* order_;
  std::string name_;
  mutable absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::StatusCode> errors_ ABSL_GUARDED_BY(mu_);
};

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-1"
default: deny
tools:
  delete_repository:
    action: deny
    reason: "Agents may not delete repositories"
  list_files: {}
  run_command:
    args:
      type: object
      required: [command]
      properties:
        command: {type: string, maxLength: 5}
  search_web:
    limits:
      - {counter: web, window: 1h, max: 100, scope: session}
      - {counter: fleet, window: day, max: 5000, scope: global}
)";

std::shared_ptr<const Policy> MustLoad(const std::string& text) {
  auto p = LoadPolicyFromSources({{"p.yaml", text}});
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

class DecisionServiceTest : public ::testing::Test {
 protected:
  void Start(FailureMode mode = FailureMode::kClosed, ArgsLimits limits = ArgsLimits()) {
    decider_ = std::make_unique<Decider>(&store_, Engine(mode), limits);
    service_ = std::make_unique<DecisionServiceImpl>(
        &registry_, decider_.get(), std::vector<DecisionObserver*>{&shadow_, &observer_});
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::DecisionService::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status Check(const v1::CheckRequest& req, v1::CheckResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return stub_->Check(&ctx, req, resp);
  }

  static v1::CheckRequest Request(const std::string& tool, const std::string& grant = "agent-1") {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant(grant);
    return req;
  }

  PolicyRegistry registry_;
  FakeCounterStore store_;
  ShadowComparer shadow_;
  RecordingObserver observer_;
  std::unique_ptr<Decider> decider_;
  std::unique_ptr<DecisionServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::DecisionService::Stub> stub_;
};

TEST_F(DecisionServiceTest, NoPolicyYetIsUnavailable) {
  Start();
  v1::CheckResponse resp;
  const grpc::Status s = Check(Request("list_files"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(observer_.errors(), ElementsAre(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(observer_.seen().empty());
}

TEST_F(DecisionServiceTest, RequestsThatCannotBeDecidedAreInvalidArguments) {
  registry_.Activate(MustLoad(kPolicy));
  ArgsLimits limits;
  limits.max_depth = 2;
  Start(FailureMode::kClosed, limits);
  v1::CheckResponse resp;
  grpc::Status s = Check(Request("", "agent-1"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tool is required"));
  s = Check(Request("list_files", ""), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("grant is required"));
  v1::CheckRequest deep = Request("list_files");
  (*(*deep.mutable_args()->mutable_fields())["a"].mutable_struct_value()->mutable_fields())["b"]
      .mutable_struct_value();
  s = Check(deep, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("nested"));
  EXPECT_EQ(observer_.errors().size(), 3u);
  EXPECT_TRUE(store_.calls().empty());
}

TEST_F(DecisionServiceTest, PinnedRevisionThatIsNotLoadedIsNotFound) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  v1::CheckRequest req = Request("list_files");
  req.set_policy_version("rev-0");
  v1::CheckResponse resp;
  EXPECT_EQ(Check(req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  req.set_policy_version("rev-1");
  ASSERT_TRUE(Check(req, &resp).ok());
  EXPECT_EQ(resp.policy_version(), "rev-1");
}

TEST_F(DecisionServiceTest, PolicyAloneDecidesWithoutTheStore) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  v1::CheckResponse resp;
  ASSERT_TRUE(Check(Request("delete_repository"), &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_EQ(resp.reason(), "Agents may not delete repositories");
  EXPECT_EQ(resp.rule(), "tools.delete_repository");

  v1::CheckRequest bad = Request("run_command");
  (*bad.mutable_args()->mutable_fields())["command"].set_string_value("rm -rf /");
  ASSERT_TRUE(Check(bad, &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  ASSERT_EQ(resp.violations_size(), 1);
  EXPECT_EQ(resp.violations(0).path(), "/command");

  ASSERT_TRUE(Check(Request("list_files"), &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_TRUE(store_.calls().empty());
}

TEST_F(DecisionServiceTest, ArgsJsonDecidesAsArgsDo) {
  registry_.Activate(MustLoad(kPolicy));
  ArgsLimits limits;
  limits.max_depth = 3;
  limits.max_bytes = 200;
  Start(FailureMode::kClosed, limits);
  // The same violation, whether the arguments come as a Struct or as text.
  v1::CheckRequest as_struct = Request("run_command");
  (*as_struct.mutable_args()->mutable_fields())["command"].set_string_value("rm -rf /");
  v1::CheckRequest as_text = Request("run_command");
  as_text.set_args_json(R"({"command": "rm -rf /"})");
  v1::CheckResponse from_struct, from_text;
  ASSERT_TRUE(Check(as_struct, &from_struct).ok());
  ASSERT_TRUE(Check(as_text, &from_text).ok());
  EXPECT_EQ(from_text.decision(), v1::DECISION_DENY);
  EXPECT_EQ(from_text.decision(), from_struct.decision());
  EXPECT_EQ(from_text.rule(), from_struct.rule());
  ASSERT_EQ(from_text.violations_size(), 1);
  EXPECT_EQ(from_text.violations(0).path(), from_struct.violations(0).path());
  // The observers (metrics, decision log) see the arguments, as for args.
  ASSERT_FALSE(observer_.seen().empty());

  struct Bad {
    std::string json;
    bool with_args;
    const char* message;
  };
  for (const Bad& b : {
           Bad{R"({"command": "ls"})", true, "args and args_json are both set"},
           Bad{R"({"command": )", false, "args_json: invalid JSON at byte 12"},
           Bad{R"(["ls"])", false, "args_json: invalid JSON at byte 0: expected an object"},
           Bad{R"({"a": {"b": {"c": {}}}})", false, "nested deeper than 3"},
           Bad{"{\"a\": \"" + std::string(300, 'x') + "\"}", false,
               "args_json: 309 bytes, over the limit of 200"},
       }) {
    v1::CheckRequest req = Request("run_command");
    req.set_args_json(b.json);
    if (b.with_args) (*req.mutable_args()->mutable_fields())["command"].set_string_value("ls");
    v1::CheckResponse resp;
    const grpc::Status st = Check(req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.json;
    EXPECT_THAT(st.error_message(), HasSubstr(b.message)) << b.json;
  }
  EXPECT_TRUE(store_.calls().empty());
}

TEST_F(DecisionServiceTest, LimitsGoToTheStoreWithTheCallsKeys) {
  registry_.Activate(MustLoad(kPolicy));
  Start();
  v1::CheckRequest req = Request("search_web");
  req.set_session("s-9");
  v1::CheckResponse resp;
  ASSERT_TRUE(Check(req, &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  ASSERT_EQ(resp.limits_size(), 2);
  EXPECT_EQ(resp.limits(0).remaining(), 99);
  const auto calls = store_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_FALSE(calls[0].dry_run);
  ASSERT_EQ(calls[0].checks.size(), 2u);
  EXPECT_EQ(calls[0].checks[0].key, "web|s|7:agent-1|s-9");
  EXPECT_EQ(calls[0].checks[1].key, "fleet|*");

  store_.set_mode(FakeCounterStore::Mode::kRefuse);
  req.set_dry_run(true);
  ASSERT_TRUE(Check(req, &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(resp.retry_after().seconds(), 1);
  EXPECT_EQ(resp.retry_after().nanos(), 500'000'000);
  EXPECT_TRUE(store_.calls().back().dry_run);
}

TEST_F(DecisionServiceTest, StoreFailureIsDecidedByTheFailureMode) {
  registry_.Activate(MustLoad(kPolicy));
  store_.set_mode(FakeCounterStore::Mode::kFail);
  Start(FailureMode::kClosed);
  v1::CheckResponse resp;
  ASSERT_TRUE(Check(Request("search_web"), &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  EXPECT_THAT(resp.reason(), HasSubstr("connection refused"));
}

TEST_F(DecisionServiceTest, StoreFailureFailsOpenWhenAsked) {
  registry_.Activate(MustLoad(kPolicy));
  store_.set_mode(FakeCounterStore::Mode::kFail);
  Start(FailureMode::kOpen);
  v1::CheckResponse resp;
  ASSERT_TRUE(Check(Request("search_web"), &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
}

TEST_F(DecisionServiceTest, CallsFinishFromTheStoresThreadInAnyOrder) {
  registry_.Activate(MustLoad(kPolicy));
  store_.set_mode(FakeCounterStore::Mode::kHold);
  Start();
  constexpr int kCalls = 8;
  std::vector<std::thread> clients;
  std::vector<v1::CheckResponse> responses(kCalls);
  std::vector<grpc::Status> statuses(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    clients.emplace_back([&, i] { statuses[i] = Check(Request("search_web"), &responses[i]); });
  }
  // Every call waits on the store, none on a gRPC thread: all eight are
  // held at once, then answered from one other thread.
  store_.ReleaseHeld(kCalls, FakeCounterStore::Mode::kAdmit);
  for (auto& t : clients) t.join();
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_EQ(responses[i].decision(), v1::DECISION_ALLOW);
  }
  EXPECT_EQ(service_->in_flight(), 0);
}

TEST_F(DecisionServiceTest, ObserversSeeEveryDecisionInOrderWithItsId) {
  registry_.Activate(MustLoad(kPolicy));
  decider_ = std::make_unique<Decider>(&store_, Engine(), ArgsLimits());
  std::vector<std::string> order;
  RecordingObserver first(&order, "first"), second(&order, "second");
  DecisionServiceImpl service(&registry_, decider_.get(), {&first, &second});
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  auto stub = v1::DecisionService::NewStub(server->InProcessChannel(grpc::ChannelArguments()));

  std::set<std::string> ids;
  for (const char* tool : {"list_files", "delete_repository", "search_web"}) {
    grpc::ClientContext ctx;
    v1::CheckResponse resp;
    ASSERT_TRUE(stub->Check(&ctx, Request(tool), &resp).ok());
    EXPECT_THAT(resp.decision_id(), ::testing::MatchesRegex("[0-9a-f]{32}"));
    ids.insert(resp.decision_id());
    // Observed before the answer left.
    ASSERT_FALSE(first.seen().empty());
    EXPECT_EQ(first.seen().back().decision_id, resp.decision_id());
  }
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_THAT(order, ElementsAre("first", "second", "first", "second", "first", "second"));
  const auto seen = second.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_FALSE(seen[0].decided_by_limits);
  EXPECT_EQ(seen[1].decision, v1::DECISION_DENY);
  EXPECT_TRUE(seen[2].decided_by_limits);
  server->Shutdown();
}

TEST_F(DecisionServiceTest, ShadowRevisionIsComparedButNeverDecides) {
  registry_.Activate(MustLoad(kPolicy));
  // The shadow denies list_files and allows delete_repository.
  registry_.SetShadow(MustLoad(R"(version: "1"
revision: "rev-2"
default: deny
tools:
  delete_repository: {}
  search_web:
    limits:
      - {counter: web, window: 1h, max: 1}
)"));
  Start();
  v1::CheckResponse resp;
  ASSERT_TRUE(Check(Request("list_files"), &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(resp.policy_version(), "rev-1");
  ASSERT_TRUE(Check(Request("delete_repository"), &resp).ok());
  EXPECT_EQ(resp.decision(), v1::DECISION_DENY);
  // Both "allowed subject to limits": the same.
  ASSERT_TRUE(Check(Request("search_web"), &resp).ok());
  // A pinned call is not compared.
  v1::CheckRequest pinned = Request("list_files");
  pinned.set_policy_version("rev-1");
  ASSERT_TRUE(Check(pinned, &resp).ok());
  EXPECT_EQ(shadow_.compared(), 3u);
  EXPECT_EQ(shadow_.differed(), 2u);
}

TEST(ShadowComparerLog, ValuesAreEscapedSoALineCannotBeForged) {
  const std::shared_ptr<const Policy> active = MustLoad(kPolicy);
  ShadowView shadow;
  shadow.policy = MustLoad("version: \"1\"\nrevision: \"rev-2\"\ndefault: deny\n");
  shadow.decision = v1::DECISION_DENY;
  shadow.rule = "default";
  v1::CheckRequest req;
  req.set_tool("x\"\n2026-01-01T00:00:00Z INFO forged");
  req.set_grant("g\x1b[2J");
  req.set_server("s\xE9");
  v1::CheckResponse resp;
  resp.set_decision(v1::DECISION_ALLOW);
  resp.set_rule("tools.x");
  ShadowComparer comparer;
  ::testing::internal::CaptureStderr();
  comparer.OnDecision(DecisionRecord{req, resp, *active, false, shadow, absl::ZeroDuration(), ""});
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_THAT(log, HasSubstr("tool \"x\\\"\\n2026-01-01T00:00:00Z INFO forged\" grant "
                             "\"g\\x1b[2J\" server \"s\\xe9\""));
}

}  // namespace
}  // namespace toolgate
