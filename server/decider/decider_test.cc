// Tests of the Decider (evaluate -> counters -> complete) and of Explain,
// over the in-process counter store and a manual clock.
#include "server/decider/decider.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/decider/explain.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "rev-7"
default: deny
tools:
  delete_repository:
    action: deny
    reason: "no"
  search_web:
    limits:
      - {counter: web, window: 1m, max: 2}
)";

class DeciderTest : public ::testing::Test {
 protected:
  DeciderTest() : store_(&clock_), decider_(&store_, Engine(), ArgsLimits()) {
    auto p = LoadPolicyFromSources({{"p.yaml", kPolicy}});
    EXPECT_TRUE(p.ok()) << p.status();
    policy_ = *p;
  }

  // Decides synchronously (the in-process store answers at once).
  v1::CheckResponse Decide(const std::string& tool, bool dry_run = false,
                           std::vector<std::string>* trace = nullptr) {
    v1::CheckRequest req;
    req.set_tool(tool);
    req.set_grant("g");
    v1::CheckResponse resp;
    DecisionTask task;
    task.policy = policy_;
    task.request = &req;
    task.response = &resp;
    task.dry_run = dry_run;
    task.trace = trace;
    bool done = false;
    decider_.Decide(task, [&done] { done = true; });
    EXPECT_TRUE(done);
    return resp;
  }

  ManualClock clock_;
  MemoryCounterStore store_;
  Decider decider_;
  std::shared_ptr<const Policy> policy_;
};

TEST_F(DeciderTest, ValidateNamesWhatIsMissing) {
  v1::CheckRequest req;
  EXPECT_THAT(decider_.Validate(req).message(), HasSubstr("tool is required"));
  req.set_tool("t");
  EXPECT_THAT(decider_.Validate(req).message(), HasSubstr("grant is required"));
  req.set_grant("g");
  EXPECT_TRUE(decider_.Validate(req).ok());
}

TEST_F(DeciderTest, ValidateNamesTheFieldAndTheRule) {
  auto error = [&](const std::function<void(v1::CheckRequest&)>& set) {
    v1::CheckRequest req;
    req.set_tool("t");
    req.set_grant("g");
    set(req);
    const absl::Status s = decider_.Validate(req);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    return std::string(s.message());
  };
  EXPECT_EQ(error([](auto& r) { r.set_tool("delete_\xE9x"); }), "tool: not valid UTF-8 at byte 7");
  EXPECT_EQ(error([](auto& r) { r.set_tool("tool\nINFO forged"); }),
            "tool: control character U+000A at byte 4");
  EXPECT_EQ(error([](auto& r) { r.set_grant(std::string(1 << 20, 'g')); }),
            "grant: 1048576 bytes, longer than --max-name-bytes (256)");
  EXPECT_EQ(error([](auto& r) { r.set_server("srv\x7F"); }),
            "server: control character U+007F at byte 3");
  EXPECT_EQ(error([](auto& r) { r.set_session("s\xC2\x9B"); }),
            "session: control character U+009B at byte 1");
  EXPECT_EQ(error([](auto& r) { r.set_policy_version(std::string(257, 'v')); }),
            "policy_version: 257 bytes, longer than --max-name-bytes (256)");
  EXPECT_EQ(error([](auto& r) { r.set_request_id(std::string(1025, 'r')); }),
            "request_id: 1025 bytes, longer than 1024 (4 x --max-name-bytes)");
  EXPECT_EQ(error([](auto& r) { r.set_request_id("\xF0\x9F\x98"); }),
            "request_id: not valid UTF-8 at byte 0");

  // At the bounds, and any Unicode character, are fine.
  v1::CheckRequest req;
  req.set_tool(std::string(254, 't') + "\xC3\xA9");
  req.set_grant("\xE4\xB8\xAD\xF0\x9F\x98\x80");
  req.set_server(std::string(256, 's'));
  req.set_session(std::string(256, 's'));
  req.set_policy_version(std::string(256, 'v'));
  req.set_request_id(std::string(1024, 'r'));
  EXPECT_TRUE(decider_.Validate(req).ok()) << decider_.Validate(req);
}

TEST(DeciderLimits, MaxNameBytesIsConfigurable) {
  ManualClock clock;
  MemoryCounterStore store(&clock);
  ArgsLimits limits;
  limits.max_name_bytes = 8;
  const Decider decider(&store, Engine(), limits);
  v1::CheckRequest req;
  req.set_tool("12345678");
  req.set_grant("g");
  req.set_request_id(std::string(32, 'r'));
  EXPECT_TRUE(decider.Validate(req).ok());
  req.set_tool("123456789");
  EXPECT_EQ(decider.Validate(req).message(), "tool: 9 bytes, longer than --max-name-bytes (8)");
  req.set_tool("t");
  req.set_request_id(std::string(33, 'r'));
  EXPECT_EQ(decider.Validate(req).message(),
            "request_id: 33 bytes, longer than 32 (4 x --max-name-bytes)");
}

TEST_F(DeciderTest, ExplainAppliesTheNameRules) {
  v1::CheckRequest req;
  req.set_tool("delete_repository\r");
  req.set_grant("g");
  absl::Status got;
  bool called = false;
  ExplainCheck(decider_, policy_, req, [&](absl::StatusOr<v1::ExplainResponse> r) {
    called = true;
    got = r.status();
  });
  ASSERT_TRUE(called);
  EXPECT_EQ(got.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.message(), "tool: control character U+000D at byte 17");
}

TEST_F(DeciderTest, LimitsAreConsumedUnlessDryRun) {
  EXPECT_EQ(Decide("search_web", /*dry_run=*/true).decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search_web").decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(Decide("search_web").decision(), v1::DECISION_ALLOW);
  const v1::CheckResponse third = Decide("search_web");
  EXPECT_EQ(third.decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(third.policy_version(), "rev-7");
  clock_.Advance(60'001);
  EXPECT_EQ(Decide("search_web").decision(), v1::DECISION_ALLOW);
}

TEST_F(DeciderTest, TraceHasAStepPerStage) {
  std::vector<std::string> trace;
  Decide("search_web", false, &trace);
  EXPECT_THAT(trace, Contains(HasSubstr("limit web")));
  trace.clear();
  EXPECT_EQ(Decide("delete_repository", false, &trace).decision(), v1::DECISION_DENY);
  EXPECT_FALSE(trace.empty());
}

TEST_F(DeciderTest, ExplainIsADryRunWithSteps) {
  v1::CheckRequest req;
  req.set_tool("search_web");
  req.set_grant("g");
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<v1::ExplainResponse> got;
    ExplainCheck(decider_, policy_, req, [&](absl::StatusOr<v1::ExplainResponse> r) { got = r; });
    ASSERT_TRUE(got.ok()) << got.status();
    // Three explanations consumed nothing: still allowed, with both left.
    EXPECT_EQ(got->decision().decision(), v1::DECISION_ALLOW);
    ASSERT_EQ(got->decision().limits_size(), 1);
    EXPECT_EQ(got->decision().limits(0).remaining(), 1);
    EXPECT_THAT(got->steps(), Contains("policy revision rev-7"));
    EXPECT_THAT(got->steps(), Contains(HasSubstr("dry run: no counter consumed")));
  }
  req.clear_grant();
  absl::StatusOr<v1::ExplainResponse> got;
  ExplainCheck(decider_, policy_, req, [&](absl::StatusOr<v1::ExplainResponse> r) { got = r; });
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace toolgate
