// RedisPolicyStore against a real redis-server: pushing, activating, rolling
// back and listing revisions, and what fails how.
#include "server/provider/redis_policy_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/redis/client.h"
#include "tests/support/redis_process.h"

namespace toolgate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using toolgate_test::RedisProcess;

std::vector<PolicySource> Revision(const std::string& revision) {
  return {{"policy.yaml",
           absl::StrCat("version: \"1\"\nrevision: \"", revision, "\"\ndefault: allow\n")}};
}

std::vector<std::string> Names(const std::vector<StoredRevision>& list) {
  std::vector<std::string> out;
  for (const StoredRevision& r : list) out.push_back((r.active ? "*" : "") + r.revision);
  return out;
}

class RedisPolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    url_ = *ParseRedisUrl(redis_->url());
    store_ = Connect(url_);
    ASSERT_NE(store_, nullptr);
  }
  static std::unique_ptr<RedisPolicyStore> Connect(const RedisUrl& url) {
    auto store = RedisPolicyStore::Connect(url);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  void PushAll(const std::vector<std::string>& revisions) {
    for (const std::string& r : revisions) ASSERT_EQ(store_->Push(Revision(r)).value_or(""), r);
  }

  std::unique_ptr<RedisProcess> redis_;
  RedisUrl url_;
  std::unique_ptr<RedisPolicyStore> store_;
};

TEST_F(RedisPolicyStoreTest, PushStoresTheSourcesUnderTheirRevision) {
  absl::StatusOr<std::string> pushed = store_->Push(Revision("r1"));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(*pushed, "r1");
  auto sources = store_->Sources("r1");
  ASSERT_TRUE(sources.ok()) << sources.status();
  ASSERT_EQ(sources->size(), 1u);
  EXPECT_EQ((*sources)[0].name, "policy.yaml");
  EXPECT_EQ((*sources)[0].content, Revision("r1")[0].content);
  auto list = store_->List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Names(*list), ElementsAre("r1")) << "pushed, not active";
  EXPECT_GT((*list)[0].pushed_at_ms, 0);
  EXPECT_EQ(store_->ActiveRevision().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RedisPolicyStoreTest, SourcesComeBackInNameOrder) {
  const std::vector<PolicySource> sources = {
      {"b.yaml", "version: \"1\"\ntools:\n  read_file: {}\n"},
      {"a.yaml", "version: \"1\"\nrevision: \"two-files\"\ndefault: deny\n"},
  };
  ASSERT_EQ(store_->Push(sources).value_or(""), "two-files");
  auto read = store_->Sources("two-files");
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[0].name, "a.yaml");
  EXPECT_EQ((*read)[1].name, "b.yaml");
  EXPECT_EQ((*read)[1].content, sources[0].content);
}

TEST_F(RedisPolicyStoreTest, PushRecordsTheContentDigest) {
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r");
  auto meta = store_->Metadata("r");
  ASSERT_TRUE(meta.ok()) << meta.status();
  ASSERT_TRUE(meta->has_value());
  EXPECT_EQ((*meta)->digest, RevisionDigest(Revision("r")));
  EXPECT_EQ((*meta)->signature, "") << "pushed without a signing key";
  auto keys = redis_->Keys();
  ASSERT_TRUE(keys.ok());
  EXPECT_THAT(*keys, ::testing::Contains(absl::StrCat(kPolicyKeyPrefix, "meta:r")))
      << "beside the sources, not among them";
  EXPECT_THAT(store_->Sources("r").value_or(std::vector<PolicySource>{}), ::testing::SizeIs(1));
  auto none = store_->Metadata("never-pushed");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
}

TEST_F(RedisPolicyStoreTest, SignedPushRecordsASignatureThatVerifies) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  ASSERT_EQ(store_->Push(Revision("r"), &key).value_or(""), "r");
  auto meta = store_->Metadata("r");
  ASSERT_TRUE(meta.ok() && meta->has_value());
  EXPECT_EQ((*meta)->key, key.public_key().Fingerprint());
  auto sources = store_->Sources("r");
  ASSERT_TRUE(sources.ok());
  EXPECT_TRUE(VerifyRevision("r", *sources, *meta, {key.public_key()}).ok());
  const Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  EXPECT_FALSE(VerifyRevision("r", *sources, *meta, {other.public_key()}).ok());
  auto list = store_->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].signed_by, key.public_key().Fingerprint());
}

TEST_F(RedisPolicyStoreTest, DifferentContentUnderAPushedNameIsRefused) {
  const std::vector<PolicySource> two = {
      {"a.yaml", "version: \"1\"\nrevision: \"r\"\n"},
      {"b.yaml", "version: \"1\"\ndefault: allow\n"},
  };
  ASSERT_EQ(store_->Push(two).value_or(""), "r");
  auto pushed = store_->Push(Revision("r"));
  ASSERT_FALSE(pushed.ok());
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(pushed.status().message(),
              HasSubstr("revision \"r\" was already pushed with different content"));
  auto read = store_->Sources("r");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(RevisionDigest(*read), RevisionDigest(two)) << "the first push is unchanged";
  EXPECT_EQ(store_->Metadata("r").value_or(RevisionMetadata{})->digest, RevisionDigest(two));
}

TEST_F(RedisPolicyStoreTest, PushingTheSameContentAgainIsIdempotentAndCanAddASignature) {
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r");
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r");
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  ASSERT_EQ(store_->Push(Revision("r"), &key).value_or(""), "r");
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r") << "unsigned again: keeps the signature";
  auto meta = store_->Metadata("r");
  ASSERT_TRUE(meta.ok() && meta->has_value());
  EXPECT_TRUE(VerifyRevision("r", Revision("r"), *meta, {key.public_key()}).ok());
  EXPECT_THAT(store_->List().value_or(std::vector<StoredRevision>{}), ::testing::SizeIs(1));
}

TEST_F(RedisPolicyStoreTest, PushingTheSameContentAgainRestoresContentChangedInRedis) {
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r");
  const std::string key = absl::StrCat(kPolicyKeyPrefix, "rev:r");
  ASSERT_TRUE(redis_
                  ->Command({"HSET", key, "policy.yaml",
                             "version: \"1\"\nrevision: \"r\"\n"
                             "default: deny\n"})
                  .ok());
  ASSERT_TRUE(redis_->Command({"HSET", key, "extra.yaml", "version: \"1\"\n"}).ok());
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r");
  auto read = store_->Sources("r");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(RevisionDigest(*read), RevisionDigest(Revision("r")));
}

TEST_F(RedisPolicyStoreTest, RevisionPushedWithoutADigestTakesOnlyItsOwnContent) {
  // As an older toolgate stored it: the sources, no metadata.
  const std::string key = absl::StrCat(kPolicyKeyPrefix, "rev:r");
  ASSERT_TRUE(redis_->Command({"HSET", key, "policy.yaml", Revision("r")[0].content}).ok());
  auto other = store_->Push({{"policy.yaml", "version: \"1\"\nrevision: \"r\"\n"}});
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists) << other.status();
  auto none = store_->Metadata("r");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value()) << "refused: nothing recorded";
  ASSERT_EQ(store_->Push(Revision("r")).value_or(""), "r");
  auto meta = store_->Metadata("r");
  ASSERT_TRUE(meta.ok() && meta->has_value()) << "the same content: digest recorded";
  EXPECT_EQ((*meta)->digest, RevisionDigest(Revision("r")));
}

TEST_F(RedisPolicyStoreTest, OfConcurrentPushesOfDifferentContentExactlyOneWins) {
  // Several rounds, each with its own name, of pushers racing (each on its
  // own connection) to store different content under that name.
  constexpr int kRounds = 5;
  constexpr int kPushers = 4;
  for (int round = 0; round < kRounds; ++round) {
    const std::string name = absl::StrCat("race-", round);
    std::vector<std::unique_ptr<RedisPolicyStore>> stores;
    for (int i = 0; i < kPushers; ++i) stores.push_back(Connect(url_));
    std::vector<absl::StatusOr<std::string>> results(kPushers, absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kPushers; ++i) {
      threads.emplace_back([&, i] {
        results[i] =
            stores[i]->Push({{"policy.yaml", absl::StrCat("version: \"1\"\nrevision: \"", name,
                                                          "\"\n# pusher ", i, "\n")}});
      });
    }
    for (std::thread& t : threads) t.join();
    int won = -1;
    for (int i = 0; i < kPushers; ++i) {
      if (results[i].ok()) {
        EXPECT_EQ(won, -1) << "two pushes of different content both won";
        won = i;
      } else {
        EXPECT_EQ(results[i].status().code(), absl::StatusCode::kAlreadyExists)
            << results[i].status();
      }
    }
    ASSERT_NE(won, -1);
    auto read = store_->Sources(name);
    ASSERT_TRUE(read.ok());
    EXPECT_THAT((*read)[0].content, HasSubstr(absl::StrCat("# pusher ", won)));
  }
}

TEST_F(RedisPolicyStoreTest, InvalidPolicyIsNotStored) {
  auto pushed = store_->Push({{"policy.yaml", "version: \"1\"\ndefault: maybe\n"}});
  ASSERT_FALSE(pushed.ok());
  EXPECT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pushed.status().message(), HasSubstr("policy.yaml:"));
  auto list = store_->List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(list->empty());
}

TEST_F(RedisPolicyStoreTest, ActivateAndListNewestFirst) {
  PushAll({"r1", "r2", "r3"});
  ASSERT_TRUE(store_->Activate("r2").ok());
  EXPECT_EQ(store_->ActiveRevision().value_or(""), "r2");
  auto list = store_->List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Names(*list), ElementsAre("r3", "*r2", "r1"));
}

TEST_F(RedisPolicyStoreTest, UnknownRevisionsAreNotFound) {
  PushAll({"r1"});
  ASSERT_TRUE(store_->Activate("r1").ok());
  absl::Status activated = store_->Activate("nope");
  EXPECT_EQ(activated.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(activated.message(), HasSubstr("revision \"nope\" was not pushed"));
  EXPECT_EQ(store_->ActiveRevision().value_or(""), "r1") << "unchanged";
  auto sources = store_->Sources("nope");
  EXPECT_EQ(sources.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(sources.status().message(), HasSubstr("\"nope\" is not in Redis"));
}

TEST_F(RedisPolicyStoreTest, RollbackGoesBackThroughTheHistory) {
  PushAll({"r1", "r2", "r3"});
  for (const char* r : {"r1", "r2", "r3"}) ASSERT_TRUE(store_->Activate(r).ok()) << r;
  ASSERT_TRUE(store_->Activate("r3").ok()) << "activating the active one adds no history";
  EXPECT_EQ(store_->Rollback().value_or(""), "r2");
  EXPECT_EQ(store_->ActiveRevision().value_or(""), "r2");
  EXPECT_EQ(store_->Rollback().value_or(""), "r1");
  auto none = store_->Rollback();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("no previous revision"));
  EXPECT_EQ(store_->ActiveRevision().value_or(""), "r1");
}

TEST_F(RedisPolicyStoreTest, RollbackSkipsRevisionsNoLongerStored) {
  PushAll({"r1", "r2", "r3"});
  for (const char* r : {"r1", "r2", "r3"}) ASSERT_TRUE(store_->Activate(r).ok()) << r;
  ASSERT_TRUE(redis_->Command({"DEL", absl::StrCat(kPolicyKeyPrefix, "rev:r2")}).ok());
  EXPECT_EQ(store_->Rollback().value_or(""), "r1");
}

TEST_F(RedisPolicyStoreTest, ActivationIsAnnounced) {
  PushAll({"r1"});
  auto sub = RedisClient::Connect(url_, absl::Seconds(30));
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_TRUE((*sub)->Command({"SUBSCRIBE", absl::StrCat(kPolicyKeyPrefix, "events")}).ok());
  ASSERT_TRUE(store_->Activate("r1").ok());
  std::vector<RedisReplyPtr> messages;
  while (messages.empty()) {
    pollfd fd = {(*sub)->fd(), POLLIN, 0};
    ASSERT_EQ(poll(&fd, 1, 30'000), 1) << "no announcement within 30s";
    auto read = (*sub)->ReadAvailable();
    ASSERT_TRUE(read.ok()) << read.status();
    messages = *std::move(read);
  }
  ASSERT_EQ(messages[0]->elements, 3u);
  EXPECT_EQ(ReplyText(*messages[0]->element[2]), "r1");
}

TEST_F(RedisPolicyStoreTest, PasswordAndDbFromTheUrl) {
  ASSERT_TRUE(redis_->Command({"CONFIG", "SET", "requirepass", "p@ss:w/rd"}).ok());
  const std::string base = absl::StrCat("127.0.0.1:", redis_->port());
  auto in_db2 = Connect(*ParseRedisUrl(absl::StrCat("redis://:p@ss:w/rd@", base, "/2")));
  ASSERT_NE(in_db2, nullptr);
  ASSERT_EQ(in_db2->Push(Revision("r1")).value_or(""), "r1");
  auto in_db0 = Connect(*ParseRedisUrl(absl::StrCat("redis://default:p@ss:w/rd@", base)));
  ASSERT_NE(in_db0, nullptr);
  EXPECT_TRUE(in_db0->List().value().empty()) << "db 2 holds it, not db 0";
  EXPECT_THAT(Names(in_db2->List().value()), ElementsAre("r1"));

  auto wrong = RedisPolicyStore::Connect(*ParseRedisUrl(absl::StrCat("redis://:nope@", base)));
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("WRONGPASS"));
  // Without a password the connection opens, and commands are refused.
  auto anonymous = Connect(*ParseRedisUrl(absl::StrCat("redis://", base)));
  ASSERT_NE(anonymous, nullptr);
  EXPECT_THAT(anonymous->List().status().message(), HasSubstr("NOAUTH"));
}

TEST_F(RedisPolicyStoreTest, RedisDownIsUnavailable) {
  redis_->Kill();
  auto store = RedisPolicyStore::Connect(url_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr("cannot connect to " + url_.Redacted()));
  // A store connected before: its next command fails.
  EXPECT_EQ(store_->ActiveRevision().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(RedisPolicyStoreTest, NoAnswerWithinTheTimeoutIsDeadlineExceeded) {
  auto store = RedisPolicyStore::Connect(url_, absl::Milliseconds(50));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(redis_->Command({"CLIENT", "PAUSE", "10000", "ALL"}).ok());
  EXPECT_EQ((*store)->ActiveRevision().status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace toolgate
