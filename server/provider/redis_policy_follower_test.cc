// RedisPolicyFollower and LoadActivePolicyFromRedis against a real
// redis-server.
//
// Waiting: every test waits for what the follower reports (an activation, a
// failure) as it happens, with a generous deadline (kDeadline, far above the
// milliseconds these take) so that a busy machine cannot fail a test. No
// test sleeps to wait out a window, and none asserts how long something
// took.
#include "server/provider/redis_policy_follower.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/provider/redis_policy_store.h"
#include "tests/support/redis_process.h"

namespace toolgate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using toolgate_test::RedisProcess;

constexpr absl::Duration kDeadline = absl::Seconds(30);
// A check interval no test waits for: changes must arrive by announcement.
constexpr int64_t kNoPeriodicCheck = 3'600'000;

std::vector<PolicySource> Revision(const std::string& revision) {
  return {{"policy.yaml",
           absl::StrCat("version: \"1\"\nrevision: \"", revision, "\"\ndefault: allow\n")}};
}

// What a follower activated and reported, in order.
class Events {
 public:
  RedisPolicyFollower::ActivateFn activate() {
    return [this](std::shared_ptr<const Policy> p) {
      absl::MutexLock lock(&mu_);
      activated_.push_back(p->revision());
    };
  }
  RedisPolicyFollower::ReportFn report() {
    return [this](const absl::Status& s) {
      absl::MutexLock lock(&mu_);
      reports_.push_back(s);
    };
  }
  // Waits until `n` revisions have been activated; false after kDeadline.
  bool WaitForActivations(size_t n) {
    return Await([&] { return activated_.size() >= n; });
  }
  // Waits until `n` failures have been reported; false after kDeadline.
  bool WaitForReports(size_t n) {
    return Await([&] { return reports_.size() >= n; });
  }
  std::vector<std::string> activated() {
    absl::MutexLock lock(&mu_);
    return activated_;
  }
  std::vector<absl::Status> reports() {
    absl::MutexLock lock(&mu_);
    return reports_;
  }

 private:
  template <typename Pred>
  bool Await(Pred pred) {
    absl::MutexLock lock(&mu_);
    // Re-evaluated whenever a callback changes what was recorded.
    return mu_.AwaitWithTimeout(absl::Condition(&pred), kDeadline);
  }

  absl::Mutex mu_;
  std::vector<std::string> activated_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> reports_ ABSL_GUARDED_BY(mu_);
};

class RedisPolicyFollowerTest : public ::testing::Test {
 protected:
  std::unique_ptr<RedisProcess> redis_;
  RedisUrl url_;
  std::unique_ptr<RedisPolicyStore> store_;  // To push and activate revisions.
  Events events_;

  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    url_ = *ParseRedisUrl(redis_->url());
    ConnectStore();
  }
  void ConnectStore() {
    auto store = RedisPolicyStore::Connect(url_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void PushAndActivate(const std::string& revision) {
    ASSERT_EQ(store_->Push(Revision(revision)).value_or(""), revision);
    ASSERT_TRUE(store_->Activate(revision).ok());
  }
  // Stores a revision that does not load, and makes it active.
  void ActivateBroken(const std::string& revision) {
    ASSERT_TRUE(redis_
                    ->Command({"HSET", absl::StrCat(kPolicyKeyPrefix, "rev:", revision),
                               "policy.yaml", "version: \"1\"\ndefault: [not, a, decision]\n"})
                    .ok());
    ASSERT_TRUE(store_->Activate(revision).ok());
  }
  std::unique_ptr<RedisPolicyFollower> Follow(int64_t interval_ms, const std::string& current,
                                              std::vector<Ed25519PublicKey> keys = {}) {
    return std::make_unique<RedisPolicyFollower>(url_, interval_ms, current, events_.activate(),
                                                 events_.report(), std::move(keys));
  }
  void PushSignedAndActivate(const std::string& revision, const Ed25519PrivateKey& key) {
    ASSERT_EQ(store_->Push(Revision(revision), &key).value_or(""), revision);
    ASSERT_TRUE(store_->Activate(revision).ok());
  }
  // What anyone who can write to Redis can do: store sources under a name,
  // make it active, announce it.
  void TakeOver(const std::string& revision, const std::string& content) {
    ASSERT_TRUE(redis_
                    ->Command({"HSET", absl::StrCat(kPolicyKeyPrefix, "rev:", revision),
                               "policy.yaml", content})
                    .ok());
    ASSERT_TRUE(redis_->Command({"SET", absl::StrCat(kPolicyKeyPrefix, "active"), revision}).ok());
    ASSERT_TRUE(
        redis_->Command({"PUBLISH", absl::StrCat(kPolicyKeyPrefix, "events"), revision}).ok());
  }
};

TEST_F(RedisPolicyFollowerTest, LoadsTheActiveRevision) {
  EXPECT_EQ(LoadActivePolicyFromRedis(url_).status().code(), absl::StatusCode::kNotFound);
  PushAndActivate("r1");
  auto policy = LoadActivePolicyFromRedis(url_);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->revision(), "r1");
}

TEST_F(RedisPolicyFollowerTest, LoadRefusesARevisionStoredUnderAnotherName) {
  ASSERT_TRUE(redis_
                  ->Command({"HSET", absl::StrCat(kPolicyKeyPrefix, "rev:alias"), "policy.yaml",
                             Revision("real")[0].content})
                  .ok());
  ASSERT_TRUE(store_->Activate("alias").ok());
  auto policy = LoadActivePolicyFromRedis(url_);
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(policy.status().message(),
              HasSubstr("\"alias\" from Redis refused: its sources load as \"real\""));
  EXPECT_EQ(RevisionRejectionReason(policy.status()).value_or(""), "revision");
}

TEST_F(RedisPolicyFollowerTest, PicksUpTheActiveRevisionThenEachActivation) {
  ASSERT_EQ(store_->Push(Revision("r2")).value_or(""), "r2");
  PushAndActivate("r1");
  auto follower = Follow(kNoPeriodicCheck, "");
  ASSERT_TRUE(events_.WaitForActivations(1)) << "the first check loads the active revision";
  EXPECT_THAT(events_.activated(), ElementsAre("r1"));
  ASSERT_TRUE(store_->Activate("r2").ok());
  ASSERT_TRUE(events_.WaitForActivations(2)) << "announced activation not picked up";
  EXPECT_THAT(events_.activated(), ElementsAre("r1", "r2"));
  ASSERT_EQ(store_->Rollback().value_or(""), "r1");
  ASSERT_TRUE(events_.WaitForActivations(3));
  EXPECT_THAT(events_.activated(), ElementsAre("r1", "r2", "r1"));
  EXPECT_TRUE(events_.reports().empty());
}

TEST_F(RedisPolicyFollowerTest, TheRevisionAlreadyServingIsNotActivatedAgain) {
  PushAndActivate("r1");
  ASSERT_EQ(store_->Push(Revision("r2")).value_or(""), "r2");
  auto follower = Follow(kNoPeriodicCheck, "r1");
  ASSERT_TRUE(store_->Activate("r2").ok());
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
}

TEST_F(RedisPolicyFollowerTest, PeriodicCheckFindsAnUnannouncedChange) {
  PushAndActivate("r1");
  ASSERT_EQ(store_->Push(Revision("r2")).value_or(""), "r2");
  auto follower = Follow(/*interval_ms=*/20, "r1");
  // Moved without an announcement (as if the message were lost).
  ASSERT_TRUE(redis_->Command({"SET", absl::StrCat(kPolicyKeyPrefix, "active"), "r2"}).ok());
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
}

TEST_F(RedisPolicyFollowerTest, CheckNowFindsAnUnannouncedChange) {
  PushAndActivate("r1");
  ASSERT_EQ(store_->Push(Revision("r2")).value_or(""), "r2");
  auto follower = Follow(kNoPeriodicCheck, "r1");
  ASSERT_TRUE(redis_->Command({"SET", absl::StrCat(kPolicyKeyPrefix, "active"), "r2"}).ok());
  follower->CheckNow();
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
}

TEST_F(RedisPolicyFollowerTest, BrokenRevisionIsReportedOnceAndTheCurrentOneKeepsServing) {
  PushAndActivate("r1");
  auto follower = Follow(kNoPeriodicCheck, "r1");
  ActivateBroken("broken");
  ASSERT_TRUE(events_.WaitForReports(1));
  const absl::Status report = events_.reports()[0];
  EXPECT_EQ(report.code(), absl::StatusCode::kInvalidArgument) << report;
  EXPECT_THAT(report.message(), HasSubstr("revision \"broken\" from Redis: "));
  EXPECT_TRUE(events_.activated().empty()) << "r1 keeps serving";

  // Checking again (a wake-up, then the next activation) does not report
  // the same broken revision again.
  follower->CheckNow();
  PushAndActivate("r2");
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
  EXPECT_EQ(events_.reports().size(), 1u);
}

TEST_F(RedisPolicyFollowerTest, RedisDownIsReportedThenFollowingResumes) {
  PushAndActivate("r1");
  auto follower = Follow(/*interval_ms=*/20, "r1");
  redis_->Kill();
  ASSERT_TRUE(events_.WaitForReports(1)) << "Redis down, not reported";
  const absl::Status report = events_.reports()[0];
  EXPECT_EQ(report.code(), absl::StatusCode::kUnavailable) << report;
  EXPECT_THAT(report.message(), HasSubstr("cannot connect to " + url_.Redacted()));

  ASSERT_TRUE(redis_->Restart().ok());  // Empty: the revisions are gone.
  ConnectStore();
  PushAndActivate("r2");
  ASSERT_TRUE(events_.WaitForActivations(1)) << "not following again after Redis came back";
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
}

TEST_F(RedisPolicyFollowerTest, SignedRevisionsAreFollowedWithAnyOfTheKeys) {
  const Ed25519PrivateKey old_key = Ed25519PrivateKey::Generate();
  const Ed25519PrivateKey new_key = Ed25519PrivateKey::Generate();
  PushSignedAndActivate("r1", old_key);
  auto loaded = LoadActivePolicyFromRedis(url_, {old_key.public_key(), new_key.public_key()});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto follower = Follow(kNoPeriodicCheck, "r1", {old_key.public_key(), new_key.public_key()});
  PushSignedAndActivate("r2", new_key);  // Rotated.
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
  EXPECT_TRUE(events_.reports().empty());
}

TEST_F(RedisPolicyFollowerTest, RevisionsWrittenToRedisDirectlyAreRefusedWithAKey) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  PushSignedAndActivate("r1", key);
  auto follower = Follow(kNoPeriodicCheck, "r1", {key.public_key()});

  // An unsigned revision made active with raw commands.
  TakeOver("evil", "version: \"1\"\nrevision: \"evil\"\ndefault: allow\n");
  ASSERT_TRUE(events_.WaitForReports(1));
  EXPECT_EQ(RevisionRejectionReason(events_.reports()[0]).value_or(""), "metadata")
      << events_.reports()[0];
  EXPECT_THAT(events_.reports()[0].message(), HasSubstr("revision \"evil\" from Redis refused"));

  // Pushed unsigned through toolgate: refused as unsigned.
  ASSERT_EQ(store_->Push(Revision("plain")).value_or(""), "plain");
  ASSERT_TRUE(store_->Activate("plain").ok());
  ASSERT_TRUE(events_.WaitForReports(2));
  EXPECT_EQ(RevisionRejectionReason(events_.reports()[1]).value_or(""), "unsigned");

  // Signed by another key.
  const Ed25519PrivateKey stranger = Ed25519PrivateKey::Generate();
  PushSignedAndActivate("strange", stranger);
  ASSERT_TRUE(events_.WaitForReports(3));
  EXPECT_EQ(RevisionRejectionReason(events_.reports()[2]).value_or(""), "signature");
  EXPECT_TRUE(events_.activated().empty()) << "r1 keeps serving";

  // A properly signed revision is taken up.
  PushSignedAndActivate("r2", key);
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
}

TEST_F(RedisPolicyFollowerTest, ContentChangedInPlaceIsRefusedEvenWithoutAKeyUntilRestored) {
  PushAndActivate("r1");
  ASSERT_EQ(store_->Push(Revision("r2")).value_or(""), "r2");
  auto follower = Follow(kNoPeriodicCheck, "r1");
  // r2's content replaced under its name, then activated.
  TakeOver("r2", "version: \"1\"\nrevision: \"r2\"\ndefault: deny\n");
  ASSERT_TRUE(events_.WaitForReports(1));
  EXPECT_EQ(RevisionRejectionReason(events_.reports()[0]).value_or(""), "digest")
      << events_.reports()[0];
  auto loaded = LoadActivePolicyFromRedis(url_);
  EXPECT_EQ(RevisionRejectionReason(loaded.status()).value_or(""), "digest") << loaded.status();

  // The same refusal is not reported again; restoring the content (pushing
  // it again) and announcing it is taken up.
  follower->CheckNow();
  ASSERT_EQ(store_->Push(Revision("r2")).value_or(""), "r2");
  ASSERT_TRUE(store_->Activate("r2").ok());
  ASSERT_TRUE(events_.WaitForActivations(1));
  EXPECT_THAT(events_.activated(), ElementsAre("r2"));
  EXPECT_EQ(events_.reports().size(), 1u);
}

TEST_F(RedisPolicyFollowerTest, OlderRevisionsWithoutADigestAreAcceptedOnlyWithoutAKey) {
  TakeOver("old", Revision("old")[0].content);
  auto without = LoadActivePolicyFromRedis(url_);
  ASSERT_TRUE(without.ok()) << without.status();
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  auto with = LoadActivePolicyFromRedis(url_, {key.public_key()});
  EXPECT_EQ(RevisionRejectionReason(with.status()).value_or(""), "metadata") << with.status();
}

}  // namespace
}  // namespace toolgate
