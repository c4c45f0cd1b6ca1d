// Reservations over gRPC with real toolgated processes: in process (one
// server), and in Redis (two servers sharing one redis-server: reserve on
// one, settle on the other). FAILED gives the units back, SUCCEEDED keeps
// them, a cost is corrected downward, a double settle is a no-op, an
// unsettled reservation commits at the timeout; the errors; the decision
// log and metrics.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "tests/integration/scrape.h"
#include "tests/support/redis_process.h"
#include "toolgate/v1/decision.grpc.pb.h"

namespace toolgate_test {
namespace {

namespace v1 = toolgate::v1;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(version: "1"
revision: "reservations-1"
default: deny
tools:
  search:
    limits:
      - {counter: searches, window: 1h, max: 2, settle: required}
      - {counter: search_calls, window: 1h, max: 1000}
  charge:
    limits:
      - {counter: spend, window: 1h, max: 10, cost_from: /amount, settle: required}
  read:
    limits:
      - {counter: reads, window: 1h, max: 1}
)";

v1::CheckRequest Call(const std::string& tool, const std::string& args_json = "{}") {
  v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant("agent-1");
  r.set_args_json(args_json);
  return r;
}

grpc::ClientContext* WithDeadline(grpc::ClientContext* c, int seconds = 10) {
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

struct Endpoint {
  std::unique_ptr<v1::DecisionService::Stub> stub;

  static Endpoint For(const ServerProcess& s) {
    return Endpoint{v1::DecisionService::NewStub(
        grpc::CreateChannel(s.address(), grpc::InsecureChannelCredentials()))};
  }
  v1::CheckResponse Check(const v1::CheckRequest& req) {
    grpc::ClientContext ctx;
    v1::CheckResponse resp;
    const grpc::Status s = stub->Check(WithDeadline(&ctx), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  grpc::Status Settle(const std::string& id, v1::SettleOutcome outcome,
                      v1::SettleResponse* out = nullptr, std::optional<int64_t> cost = {}) {
    grpc::ClientContext ctx;
    v1::SettleRequest req;
    req.set_reservation_id(id);
    req.set_outcome(outcome);
    if (cost.has_value()) req.set_cost(*cost);
    v1::SettleResponse resp;
    return stub->Settle(WithDeadline(&ctx), req, out != nullptr ? out : &resp);
  }
};

class ReservationsTest : public ::testing::TestWithParam<std::string> {
 protected:
  // One server in process; two sharing a redis-server with Redis.
  void StartServers(std::vector<std::string> extra = {}) {
    policy_ = dir_.WriteFile("policy.yaml", kPolicy);
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy_,
                                     "--watch=false"};
    args.insert(args.end(), extra.begin(), extra.end());
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
    reserver_ = Endpoint::For(*servers_.front());
    settler_ = Endpoint::For(*servers_.back());
  }

  // A call that must be admitted with a reservation.
  std::string Reserve(const v1::CheckRequest& call) {
    const v1::CheckResponse r = reserver_.Check(call);
    EXPECT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
    EXPECT_THAT(r.reservation_id(), ::testing::StartsWith("rsv_")) << r.reason();
    return r.reservation_id();
  }

  // Polls the reserving server until `call` is admitted (other servers'
  // over-limit caches see given-back room within 100 ms).
  bool AdmittedSoon(const v1::CheckRequest& call) {
    return PollUntil([&] { return reserver_.Check(call).decision() == v1::DECISION_ALLOW; },
                     absl::Seconds(20));
  }

  // Decision-log lines (every server) holding all of `parts`.
  int Logged(const std::vector<std::string>& parts) {
    int n = 0;
    for (const std::string& path : logs_) {
      for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(path), '\n')) {
        bool all = !line.empty();
        for (const std::string& p : parts) all = all && absl::StrContains(line, p);
        n += all;
      }
    }
    return n;
  }

  double Metric(const std::string& series) {
    double total = 0;
    for (auto& s : servers_) total += Sample(HttpGet(MetricsAddress(*s), "/metrics"), series);
    return total;
  }

  TempDir dir_;
  std::string policy_;
  std::unique_ptr<RedisProcess> redis_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::string> logs_;
  Endpoint reserver_, settler_;
};

TEST_P(ReservationsTest, FailedGivesTheUnitsBackAndSucceededKeepsThem) {
  StartServers();
  const v1::CheckRequest search = Call("search");
  const std::string first = Reserve(search);
  const std::string second = Reserve(search);
  EXPECT_NE(first, second);
  EXPECT_EQ(reserver_.Check(search).decision(), v1::DECISION_RATE_LIMITED);

  v1::SettleResponse settled;
  grpc::Status s = settler_.Settle(first, v1::SETTLE_OUTCOME_FAILED, &settled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(settled.reservation_id(), first);
  EXPECT_EQ(settled.outcome(), v1::SETTLE_OUTCOME_FAILED);
  EXPECT_FALSE(settled.already_settled());
  EXPECT_FALSE(settled.decision_id().empty());
  // The unit is back: the next call that needed it is admitted.
  ASSERT_TRUE(AdmittedSoon(search));
  EXPECT_EQ(reserver_.Check(search).decision(), v1::DECISION_RATE_LIMITED);

  // SUCCEEDED keeps the unit.
  s = settler_.Settle(second, v1::SETTLE_OUTCOME_SUCCEEDED, &settled);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(settled.outcome(), v1::SETTLE_OUTCOME_SUCCEEDED);
  EXPECT_EQ(reserver_.Check(search).decision(), v1::DECISION_RATE_LIMITED);

  // One log line per settlement, with the decision that reserved.
  EXPECT_TRUE(PollUntil(
      [&] {
        return Logged({"\"event\":\"reservation_settled\"", first, "\"outcome\":\"failed\""}) ==
                   1 &&
               Logged({"\"event\":\"reservation_settled\"", second, "\"outcome\":\"succeeded\""}) ==
                   1;
      },
      absl::Seconds(10)));
  EXPECT_EQ(Logged({"\"decision\":\"allow\"", first}), 1);  // The decision names its reservation.
  EXPECT_EQ(Metric("toolgate_settlements_total{outcome=\"failed\"}"), 1);
  EXPECT_EQ(Metric("toolgate_settlements_total{outcome=\"succeeded\"}"), 1);
}

TEST_P(ReservationsTest, SettlingTwiceIsANoOp) {
  StartServers();
  const v1::CheckRequest search = Call("search");
  const std::string id = Reserve(search);
  ASSERT_TRUE(settler_.Settle(id, v1::SETTLE_OUTCOME_FAILED).ok());
  v1::SettleResponse again;
  grpc::Status s = reserver_.Settle(id, v1::SETTLE_OUTCOME_SUCCEEDED, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(again.already_settled());
  EXPECT_EQ(again.outcome(), v1::SETTLE_OUTCOME_FAILED);
  s = settler_.Settle(id, v1::SETTLE_OUTCOME_FAILED, &again);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(again.already_settled());
  // Given back once: two units in all (the max), not three.
  Reserve(search);
  ASSERT_TRUE(AdmittedSoon(search));
  EXPECT_EQ(reserver_.Check(search).decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(Metric("toolgate_settlements_total{outcome=\"duplicate\"}"), 2);
}

TEST_P(ReservationsTest, ACostIsCorrectedDownward) {
  StartServers();
  const std::string id = Reserve(Call("charge", R"({"amount": 8})"));
  EXPECT_EQ(reserver_.Check(Call("charge", R"({"amount": 3})")).decision(),
            v1::DECISION_RATE_LIMITED);
  v1::SettleResponse out;
  grpc::Status s = settler_.Settle(id, v1::SETTLE_OUTCOME_SUCCEEDED, &out, 9);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("8 units reserved"));
  s = settler_.Settle(id, v1::SETTLE_OUTCOME_SUCCEEDED, &out, 2);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.cost(), 2);
  // 2 of 10 are used now: 3 fits, then 6 does not (2 + 3 + 6 > 10).
  ASSERT_TRUE(AdmittedSoon(Call("charge", R"({"amount": 3})")));
  const v1::CheckResponse over = reserver_.Check(Call("charge", R"({"amount": 6})"));
  EXPECT_EQ(over.decision(), v1::DECISION_RATE_LIMITED);
  ASSERT_EQ(over.limits_size(), 1);
  EXPECT_EQ(over.limits(0).remaining(), 5);
  EXPECT_TRUE(PollUntil(
      [&] {
        return Logged({"\"event\":\"reservation_settled\"", id, "\"cost\":2"}) == 1;
      },
      absl::Seconds(10)));
}

TEST_P(ReservationsTest, AnUnsettledReservationCommitsAtTheTimeout) {
  StartServers({"--settlement-timeout", "1s"});
  const v1::CheckRequest search = Call("search");
  const std::string first = Reserve(search);
  const std::string second = Reserve(search);
  // The commits are recorded once each, by the server that created them
  // (watched through its metrics: a Settle would settle them).
  ASSERT_TRUE(
      PollUntil([&] { return Metric("toolgate_settlements_total{outcome=\"expired\"}") == 2; },
                absl::Seconds(30)));
  EXPECT_TRUE(PollUntil(
      [&] {
        return Logged({"\"event\":\"reservation_expired\"", first}) == 1 &&
               Logged({"\"event\":\"reservation_expired\"", second}) == 1;
      },
      absl::Seconds(10)));
  // Past the timeout Settle no longer finds them, on any server...
  EXPECT_EQ(settler_.Settle(first, v1::SETTLE_OUTCOME_FAILED).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(reserver_.Settle(second, v1::SETTLE_OUTCOME_FAILED).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // ...and their units stay consumed.
  EXPECT_EQ(reserver_.Check(search).decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(Metric("toolgate_settlements_total{outcome=\"not_found\"}"), 2);
  EXPECT_EQ(Metric("toolgate_reservations_open"), 0);
}

TEST_P(ReservationsTest, OnlyAdmittedCallsWithSettledLimitsGetOne) {
  StartServers();
  EXPECT_TRUE(reserver_.Check(Call("read")).reservation_id().empty());
  v1::CheckRequest dry = Call("search");
  dry.set_dry_run(true);
  const v1::CheckResponse r = reserver_.Check(dry);
  EXPECT_EQ(r.decision(), v1::DECISION_ALLOW);
  EXPECT_TRUE(r.reservation_id().empty());
  EXPECT_TRUE(reserver_.Check(Call("charge", R"({"amount": 11})")).reservation_id().empty());
}

TEST_P(ReservationsTest, BadSettlementsAreRefused) {
  StartServers();
  auto code = [&](const std::string& id, v1::SettleOutcome o, std::optional<int64_t> cost = {}) {
    return settler_.Settle(id, o, nullptr, cost);
  };
  grpc::Status s = code("", v1::SETTLE_OUTCOME_FAILED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("reservation_id is required"));
  s = code("rsv_nothex", v1::SETTLE_OUTCOME_FAILED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("not a reservation id"));
  const std::string id = Reserve(Call("search"));
  s = code(id, v1::SETTLE_OUTCOME_UNSPECIFIED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("outcome is required"));
  s = code(id, v1::SETTLE_OUTCOME_SUCCEEDED, -1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = code(std::string("rsv_") + std::string(32, 'a'), v1::SETTLE_OUTCOME_FAILED);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  // None of those settled it.
  v1::SettleResponse out;
  ASSERT_TRUE(settler_.Settle(id, v1::SETTLE_OUTCOME_FAILED, &out).ok());
  EXPECT_FALSE(out.already_settled());
}

TEST_P(ReservationsTest, TheCliSettlesAndCheckPrintsTheReservation) {
  StartServers();
  const CommandResult check =
      RunCommand({CliBin(), "check", "--target", servers_.front()->address(), "--tool", "search",
                  "--grant", "agent-1"});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  std::string id;
  for (absl::string_view line : absl::StrSplit(check.out, '\n')) {
    if (absl::ConsumePrefix(&line, "reservation_id: ")) id = std::string(line);
  }
  ASSERT_THAT(id, ::testing::StartsWith("rsv_")) << check.out;
  CommandResult settle = RunCommand({CliBin(), "settle", "--target", servers_.back()->address(),
                                     "--reservation-id", id, "--outcome", "failed"});
  ASSERT_EQ(settle.exit_code, 0) << settle.err;
  EXPECT_THAT(settle.out, HasSubstr("already_settled: false"));
  settle = RunCommand({CliBin(), "settle", "--target", servers_.back()->address(),
                       "--reservation-id", id, "--outcome", "succeeded"});
  ASSERT_EQ(settle.exit_code, 0) << settle.err;
  EXPECT_THAT(settle.out, HasSubstr("already_settled: true"));
  EXPECT_THAT(settle.out, HasSubstr("outcome:         failed"));
  settle =
      RunCommand({CliBin(), "settle", "--target", servers_.back()->address(), "--reservation-id",
                  std::string("rsv_") + std::string(32, 'b'), "--outcome", "failed"});
  EXPECT_EQ(settle.exit_code, 1);
  EXPECT_THAT(settle.err, HasSubstr("NOT_FOUND"));
}

// Redis keeps the counters but refuses the reservations (a user whose ACL
// leaves their keys out): admitted calls are still admitted, without an id,
// their units committed, which the reason says and a metric counts. Once
// Redis takes reservations again, admitted calls get them.
TEST(ReservationStoreFaultsTest, AFailingStoreCommitsTheUnitsAndSaysSo) {
  auto redis = RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  ASSERT_TRUE(
      (*redis)->Command({"ACL", "SETUSER", "tg", "on", ">pw", "~toolgate:{*", "+@all"}).ok());
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", policy, "--watch=false", "--redis",
       absl::StrCat("redis://tg:pw@", (*redis)->address()), "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(server.ok()) << server.status();
  Endpoint endpoint = Endpoint::For(**server);
  const auto not_recorded = [&] {
    return Sample(HttpGet(MetricsAddress(**server), "/metrics"),
                  "toolgate_reservations_not_recorded_total{reason=\"store_failed\"}");
  };

  const v1::CheckRequest search = Call("search");
  for (int i = 0; i < 2; ++i) {
    const v1::CheckResponse r = endpoint.Check(search);
    ASSERT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
    EXPECT_EQ(r.reservation_id(), "");
    EXPECT_THAT(r.reason(), HasSubstr("no reservation"));
    EXPECT_THAT(r.reason(), HasSubstr("the units are committed"));
  }
  // Committed: the limit of 2 is full.
  EXPECT_EQ(endpoint.Check(search).decision(), v1::DECISION_RATE_LIMITED);
  EXPECT_EQ(not_recorded(), 2);
  auto kept = (*redis)->Keys("toolgate:res:*");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(kept->empty());

  // Reservations are allowed again: the next admitted call gets one.
  ASSERT_TRUE((*redis)->Command({"ACL", "SETUSER", "tg", "~toolgate:res:*"}).ok());
  const v1::CheckResponse r = endpoint.Check(Call("charge", R"({"amount": 10})"));
  ASSERT_EQ(r.decision(), v1::DECISION_ALLOW) << r.reason();
  ASSERT_THAT(r.reservation_id(), ::testing::StartsWith("rsv_")) << r.reason();
  EXPECT_EQ(endpoint.Check(Call("charge", R"({"amount": 1})")).decision(),
            v1::DECISION_RATE_LIMITED);
  const grpc::Status s = endpoint.Settle(r.reservation_id(), v1::SETTLE_OUTCOME_FAILED);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(endpoint.Check(Call("charge", R"({"amount": 10})")).decision(), v1::DECISION_ALLOW);
  EXPECT_EQ(not_recorded(), 2);
}

INSTANTIATE_TEST_SUITE_P(Stores, ReservationsTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace toolgate_test
