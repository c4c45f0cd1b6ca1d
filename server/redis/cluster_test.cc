#include "server/redis/cluster.h"

#include <hiredis/hiredis.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/redis/reply.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

TEST(KeySlotTest, MatchesRedisCluster) {
  // Values from Redis Cluster's specification and CLUSTER KEYSLOT.
  EXPECT_EQ(KeySlot("123456789"), 0x31C3 & 16383);
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("bar"), 5061);
  EXPECT_EQ(KeySlot(""), 0);
}

TEST(KeySlotTest, HashTags) {
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("{user1000}.followers"));
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  // The first '{' and the first '}' after it; an empty tag hashes the whole key.
  EXPECT_EQ(KeySlot("foo{}{bar}"), KeySlot(std::string("foo{}{bar}")));
  EXPECT_NE(KeySlot("foo{}{bar}"), KeySlot("bar"));
  EXPECT_EQ(KeySlot("foo{{bar}}zap"), KeySlot("{bar"));
  EXPECT_EQ(KeySlot("foo{bar}{zap}"), KeySlot("bar"));
  EXPECT_EQ(KeySlot("no{tag"), KeySlot(std::string("no{tag")));
  // toolgate's counter keys: everything of one counter instance in one slot.
  EXPECT_EQ(KeySlot("toolgate:{rate|g|agent-7}:s:60000"),
            KeySlot("toolgate:{rate|g|agent-7}:f:1000"));
}

RedisReplyPtr Reply(absl::string_view resp) {
  absl::StatusOr<RedisReplyPtr> r = ParseReply(resp);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : nullptr;
}

TEST(ParseClusterSlotsTest, Ranges) {
  // [[0, 5460, ["127.0.0.1", 7000, "id"], [replica]], [5461, 16383, ["", 7001, "id"]]]
  RedisReplyPtr r = Reply(
      "*2\r\n"
      "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
      "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n"
      "*3\r\n:5461\r\n:16383\r\n*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n");
  ASSERT_NE(r, nullptr);
  auto ranges = ParseClusterSlots(*r, RedisHost{"10.1.1.1", 7005});
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].first, 0);
  EXPECT_EQ((*ranges)[0].last, 5460);
  EXPECT_EQ((*ranges)[0].master.ToString(), "127.0.0.1:7000");
  EXPECT_EQ((*ranges)[1].master.ToString(), "10.1.1.1:7001") << "an empty host: the one asked";
}

TEST(ParseClusterSlotsTest, Rejected) {
  for (const char* resp : {
           "+OK\r\n",
           "*1\r\n:1\r\n",
           "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
           "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
           "*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
           "*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:0\r\n",
           "*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$1\r\nh\r\n",
       }) {
    RedisReplyPtr r = Reply(resp);
    ASSERT_NE(r, nullptr) << resp;
    auto ranges = ParseClusterSlots(*r, RedisHost{"h", 1});
    EXPECT_FALSE(ranges.ok()) << resp;
    EXPECT_THAT(ranges.status().message(), HasSubstr("CLUSTER SLOTS")) << resp;
  }
}

TEST(ParseRedirectTest, MovedAndAsk) {
  const RedisHost asked{"10.0.0.1", 7000};
  auto moved = ParseRedirect("MOVED 3999 127.0.0.1:6381", asked);
  ASSERT_TRUE(moved.has_value());
  EXPECT_FALSE(moved->ask);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->to.ToString(), "127.0.0.1:6381");
  auto ask = ParseRedirect("ASK 12 :7002", asked);
  ASSERT_TRUE(ask.has_value());
  EXPECT_TRUE(ask->ask);
  EXPECT_EQ(ask->to.ToString(), "10.0.0.1:7002") << "no host: the node asked";
  auto v6 = ParseRedirect("MOVED 1 [::1]:7001", asked);
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->to.host, "::1");
  for (const char* other : {"ERR unknown", "MOVED", "MOVED x h:1", "MOVED 16384 h:1",
                            "MOVED 1 h", "MOVED 1 h:0", "ASK 1 h:1 extra", "TRYAGAIN x"}) {
    EXPECT_FALSE(ParseRedirect(other, asked).has_value()) << other;
  }
}

}  // namespace
}  // namespace toolgate
