// One suite over both reservation stores: in process, and Redis (a real
// redis-server). Expiry is real time (short timeouts), waited for by polling.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/clock.h"
#include "server/reservations/memory_reservations.h"
#include "server/reservations/redis_reservations.h"
#include "tests/support/redis_process.h"
#include "tests/support/redis_topology.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

template <typename T, typename Fn>
absl::StatusOr<T> Sync(Fn&& fn) {
  std::promise<absl::StatusOr<T>> promise;
  auto future = promise.get_future();
  fn([&promise](absl::StatusOr<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}

// Polls `cond` every 10 ms for up to `seconds`.
template <typename Fn>
bool PollFor(Fn cond, int seconds = 20) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

struct Expiries {
  absl::Mutex mu;
  std::vector<std::pair<std::string, std::string>> seen ABSL_GUARDED_BY(mu);
  ReservationExpiredFn Fn() {
    return [this](const std::string& id, const std::string& decision) {
      absl::MutexLock lock(&mu);
      seen.emplace_back(id, decision);
    };
  }
  int Count(const std::string& id) {
    absl::MutexLock lock(&mu);
    int n = 0;
    for (const auto& e : seen) n += e.first == id;
    return n;
  }
};

ReservedLimit Limit(std::string key, int64_t cost, bool cost_from = false) {
  ReservedLimit l;
  l.check.key = std::move(key);
  l.check.algorithm = Algorithm::kSlidingWindow;
  l.check.window_ms = 60'000;
  l.check.max = 10'000;
  l.check.burst = 10'000;
  l.check.cost = cost;
  l.consumed_at_ms = 1'700'000'000'123;
  l.cost_from = cost_from;
  return l;
}

NewReservation Make(std::vector<ReservedLimit> limits = {Limit("spend|grant|a", 4000, true),
                                                         Limit("calls|grant|a", 1)}) {
  NewReservation n;
  n.decision_id = "dec-1";
  n.limits = std::move(limits);
  return n;
}

using toolgate_test::RedisProcess;

class ReservationStoreTest : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
    if (GetParam() == "redis") {
      auto redis = RedisProcess::Start();
      ASSERT_TRUE(redis.ok()) << redis.status();
      redis_ = *std::move(redis);
    }
  }

  std::unique_ptr<ReservationStore> Open(ReservationOptions options = {},
                                         Expiries* expiries = nullptr) {
    ReservationExpiredFn fn = expiries != nullptr ? expiries->Fn() : nullptr;
    if (GetParam() == "memory") {
      return std::make_unique<MemoryReservationStore>(SystemClock::Get(), options, fn, 20);
    }
    RedisReservationOptions o;
    o.url = *ParseRedisUrl(redis_->url());
    o.reservations = options;
    o.on_expired = fn;
    o.sweep_ms = 20;
    return std::make_unique<RedisReservationStore>(std::move(o));
  }

  static absl::StatusOr<std::string> Create(ReservationStore& s, NewReservation n = Make()) {
    return Sync<std::string>([&](auto cb) { s.Create(std::move(n), std::move(cb)); });
  }
  static absl::StatusOr<Settlement> Settle(ReservationStore& s, const std::string& id,
                                           SettleOutcome outcome,
                                           std::optional<int64_t> cost = std::nullopt) {
    return Sync<Settlement>([&](auto cb) { s.Settle(id, outcome, cost, std::move(cb)); });
  }
  static absl::StatusOr<bool> Revert(ReservationStore& s, const std::string& id,
                                     SettleOutcome outcome) {
    return Sync<bool>([&](auto cb) { s.Revert(id, outcome, std::move(cb)); });
  }

  std::unique_ptr<RedisProcess> redis_;
};

TEST_P(ReservationStoreTest, AFailedSettlementReturnsWhatWasReservedOnce) {
  auto store = Open();
  auto id = Create(*store);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(IsReservationId(*id)) << *id;
  EXPECT_EQ(store->open(), 1);
  auto s = Settle(*store, *id, SettleOutcome::kFailed);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->already_settled);
  EXPECT_EQ(s->decision_id, "dec-1");
  ASSERT_EQ(s->limits.size(), 2u);
  EXPECT_EQ(s->limits[0].check.key, "spend|grant|a");
  EXPECT_EQ(s->limits[0].check.cost, 4000);
  EXPECT_TRUE(s->limits[0].cost_from);
  EXPECT_EQ(s->limits[0].consumed_at_ms, 1'700'000'000'123);
  EXPECT_EQ(s->limits[1].check.cost, 1);
  EXPECT_FALSE(s->limits[1].cost_from);
  EXPECT_EQ(store->open(), 0);

  // Settling again changes nothing and says what was found.
  auto again = Settle(*store, *id, SettleOutcome::kSucceeded, 10);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_settled);
  EXPECT_EQ(again->outcome, SettleOutcome::kFailed);
  EXPECT_FALSE(again->cost.has_value());
  EXPECT_EQ(again->decision_id, "dec-1");
  EXPECT_TRUE(again->limits.empty());
}

TEST_P(ReservationStoreTest, ACostCanOnlyBeCorrectedDownward) {
  auto store = Open();
  const std::string id = *Create(*store);
  auto high = Settle(*store, id, SettleOutcome::kSucceeded, 4001);
  EXPECT_EQ(high.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(high.status().message(), HasSubstr("4000 units reserved"));
  // Nothing changed: still open, and settles.
  EXPECT_EQ(store->open(), 1);
  auto ok = Settle(*store, id, SettleOutcome::kSucceeded, 2500);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(ok->already_settled);
  EXPECT_EQ(ok->cost, 2500);
  auto again = Settle(*store, id, SettleOutcome::kFailed);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_settled);
  EXPECT_EQ(again->outcome, SettleOutcome::kSucceeded);
  EXPECT_EQ(again->cost, 2500);
}

TEST_P(ReservationStoreTest, ACostWithoutArgumentCostedLimitsIsRecordedOnly) {
  auto store = Open();
  const std::string id = *Create(*store, Make({Limit("calls|grant|a", 1)}));
  auto s = Settle(*store, id, SettleOutcome::kSucceeded, 99);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->cost, 99);
}

TEST_P(ReservationStoreTest, AnUnknownIdIsNotFound) {
  auto store = Open();
  auto s = Settle(*store, NewReservationId(), SettleOutcome::kFailed);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  auto r = Revert(*store, NewReservationId(), SettleOutcome::kFailed);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
}

TEST_P(ReservationStoreTest, AnUnsettledReservationExpiresOnceAndIsThenUnknown) {
  Expiries expiries;
  ReservationOptions options;
  options.timeout_ms = 300;
  auto store = Open(options, &expiries);
  const std::string open_id = *Create(*store);
  const std::string settled_id = *Create(*store);
  ASSERT_TRUE(Settle(*store, settled_id, SettleOutcome::kSucceeded).ok());
  EXPECT_TRUE(PollFor([&] { return expiries.Count(open_id) == 1; }));
  EXPECT_TRUE(PollFor([&] { return store->open() == 0; }));
  auto s = Settle(*store, open_id, SettleOutcome::kFailed);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
  // A settled one is not reported; neither is the expired one again.
  EXPECT_TRUE(PollFor([&] {
    return Settle(*store, settled_id, SettleOutcome::kFailed).status().code() ==
           absl::StatusCode::kNotFound;
  }));
  EXPECT_EQ(expiries.Count(settled_id), 0);
  EXPECT_EQ(expiries.Count(open_id), 1);
}

TEST_P(ReservationStoreTest, OpenReservationsAreBounded) {
  ReservationOptions options;
  options.max_open = 2;
  auto store = Open(options);
  const std::string a = *Create(*store);
  ASSERT_TRUE(Create(*store).ok());
  auto full = Create(*store);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("--max-open-reservations"));
  ASSERT_TRUE(Settle(*store, a, SettleOutcome::kFailed).ok());
  EXPECT_TRUE(Create(*store).ok());
}

TEST_P(ReservationStoreTest, ARevertedSettlementCanBeMadeAgain) {
  auto store = Open();
  const std::string id = *Create(*store);
  ASSERT_TRUE(Settle(*store, id, SettleOutcome::kFailed).ok());
  auto other = Revert(*store, id, SettleOutcome::kSucceeded);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(*other);  // Not settled so: kept.
  auto r = Revert(*store, id, SettleOutcome::kFailed);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
  EXPECT_EQ(store->open(), 1);
  auto s = Settle(*store, id, SettleOutcome::kFailed);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->already_settled);
  EXPECT_EQ(s->limits.size(), 2u);
}

TEST_P(ReservationStoreTest, ConcurrentSettlementsHaveOneWinner) {
  auto store = Open();
  auto other = GetParam() == "redis" ? Open() : nullptr;
  ReservationStore* second = other != nullptr ? other.get() : store.get();
  for (int round = 0; round < 20; ++round) {
    const std::string id = *Create(*store);
    std::atomic<int> winners{0}, duplicates{0};
    auto settle = [&](ReservationStore* s, SettleOutcome o) {
      auto r = Settle(*s, id, o);
      ASSERT_TRUE(r.ok()) << r.status();
      (r->already_settled ? duplicates : winners).fetch_add(1);
    };
    std::thread t1(settle, store.get(), SettleOutcome::kFailed);
    std::thread t2(settle, second, SettleOutcome::kSucceeded);
    t1.join();
    t2.join();
    EXPECT_EQ(winners.load(), 1);
    EXPECT_EQ(duplicates.load(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, ReservationStoreTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

TEST(MemoryReservationStore, KeepsAtMostMaxOpenSettledRecords) {
  ManualClock clock;
  ReservationOptions options;
  options.max_open = 2;
  MemoryReservationStore store(&clock, options, nullptr);
  const std::string a = *ReservationStoreTest::Create(store);
  clock.Advance(1);
  const std::string b = *ReservationStoreTest::Create(store);
  ASSERT_TRUE(ReservationStoreTest::Settle(store, a, SettleOutcome::kFailed).ok());
  ASSERT_TRUE(ReservationStoreTest::Settle(store, b, SettleOutcome::kFailed).ok());
  // A new one makes room by forgetting the oldest settled record.
  ASSERT_TRUE(ReservationStoreTest::Create(store).ok());
  EXPECT_EQ(ReservationStoreTest::Settle(store, a, SettleOutcome::kFailed).status().code(),
            absl::StatusCode::kNotFound);
  auto kept = ReservationStoreTest::Settle(store, b, SettleOutcome::kFailed);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(kept->already_settled);
}

TEST(RedisReservationStoreFaults, AnUnreachableRedisFailsEachOperationInTime) {
  RedisReservationOptions o;
  // A port nothing listens on: redis-server is started and stopped there.
  {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    o.url = *ParseRedisUrl((*redis)->url());
  }
  o.timeout_ms = 300;
  RedisReservationStore store(std::move(o));
  NewReservation n;
  n.decision_id = "d";
  n.limits = {Limit("k", 1)};
  auto id = Sync<std::string>([&](auto cb) { store.Create(std::move(n), std::move(cb)); });
  EXPECT_TRUE(id.status().code() == absl::StatusCode::kUnavailable ||
              id.status().code() == absl::StatusCode::kDeadlineExceeded)
      << id.status();
  EXPECT_EQ(store.open(), 0);
  auto s = Sync<Settlement>([&](auto cb) {
    store.Settle(NewReservationId(), SettleOutcome::kFailed, std::nullopt, std::move(cb));
  });
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.status().code(), absl::StatusCode::kNotFound);
}

TEST(RedisReservationStoreCluster, ReservationsSpreadOverSlotsAndSettleFromAnyStore) {
  auto cluster = toolgate_test::RedisClusterSet::Start(3, 0);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Expiries expiries;
  auto open = [&](Expiries* e, int64_t timeout_ms) {
    RedisReservationOptions o;
    o.url = *ParseRedisUrl((*cluster)->url());
    o.reservations.timeout_ms = timeout_ms;
    if (e != nullptr) o.on_expired = e->Fn();
    o.sweep_ms = 20;
    return std::make_unique<RedisReservationStore>(std::move(o));
  };
  auto a = open(&expiries, 60'000);
  auto b = open(nullptr, 60'000);
  // Enough reservations to land on every master: each is followed there by
  // MOVED, then found again from the other store.
  std::vector<std::string> ids;
  std::set<int> slots;
  for (int i = 0; i < 24; ++i) {
    auto id = ReservationStoreTest::Create(*a);
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
    slots.insert(toolgate_test::RedisClusterSet::KeySlot("toolgate:res:{" + *id + "}"));
  }
  std::set<int> masters;
  for (int slot : slots) {
    auto port = (*cluster)->MasterOf(slot);
    ASSERT_TRUE(port.ok()) << port.status();
    masters.insert(*port);
  }
  EXPECT_GE(masters.size(), 2u);  // 24 random slots: never all on one master.
  for (size_t i = 0; i < ids.size(); ++i) {
    auto s = ReservationStoreTest::Settle(
        *b, ids[i], i % 2 ? SettleOutcome::kFailed : SettleOutcome::kSucceeded);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_FALSE(s->already_settled);
    auto again = ReservationStoreTest::Settle(*a, ids[i], SettleOutcome::kFailed);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_TRUE(again->already_settled);
  }
  // An unsettled one commits at its timeout, reported by its creator.
  auto short_lived = open(&expiries, 300);
  const std::string id = *ReservationStoreTest::Create(*short_lived);
  EXPECT_TRUE(PollFor([&] { return expiries.Count(id) == 1; }));
  EXPECT_EQ(ReservationStoreTest::Settle(*b, id, SettleOutcome::kFailed).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RedisReservationLimits, EncodeAndDecodeAgree) {
  std::vector<ReservedLimit> in = {Limit("a:b|{x}|7:9", 3, true), Limit("", 0)};
  in[1].check.algorithm = Algorithm::kTokenBucket;
  in[1].check.burst = 20;
  auto out = RedisReservationStore::DecodeLimits(RedisReservationStore::EncodeLimits(in));
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[0].check.key, "a:b|{x}|7:9");
  EXPECT_EQ((*out)[0].check.cost, 3);
  EXPECT_TRUE((*out)[0].cost_from);
  EXPECT_EQ((*out)[1].check.algorithm, Algorithm::kTokenBucket);
  EXPECT_EQ((*out)[1].check.burst, 20);
  EXPECT_FALSE(RedisReservationStore::DecodeLimits("3:ab").ok());
  EXPECT_FALSE(RedisReservationStore::DecodeLimits("x").ok());
}

}  // namespace
}  // namespace toolgate
