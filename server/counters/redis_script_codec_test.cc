// The limits script's command and reply, without Redis: what is sent for a
// batch of calls, and how replies (well-formed or not) become results.
// counter_store_test.cc runs the same through a real redis-server.
#include "server/counters/redis_script_codec.h"

#include <hiredis/hiredis.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/redis/reply.h"
#include "server/redis/resp.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

LimitCheck Check(const std::string& key, Algorithm alg, int64_t window, int64_t max,
                 int64_t burst = 0) {
  return LimitCheck{key, alg, window, max, burst};
}

// A reply of integers, as the script returns it: in RESP, and read.
std::string IntegersResp(const std::vector<long long>& values) {
  std::string resp = absl::StrCat("*", values.size(), "\r\n");
  for (long long v : values) absl::StrAppend(&resp, ":", v, "\r\n");
  return resp;
}
RedisReplyPtr Integers(const std::vector<long long>& values) {
  return *ParseReply(IntegersResp(values));
}

struct Decoded {
  absl::Status status;  // Of the whole reply.
  std::vector<absl::StatusOr<AcquireResult>> calls;
};

Decoded Decode(const RedisScriptCodec& codec, const redisReply& reply,
               const std::vector<ScriptCall>& calls) {
  std::vector<const ScriptCall*> ptrs;
  for (const ScriptCall& c : calls) ptrs.push_back(&c);
  Decoded out;
  out.status = codec.DecodeBatch(reply, ptrs, [&](size_t i, absl::StatusOr<AcquireResult> r) {
    EXPECT_EQ(i, out.calls.size()) << "calls are completed in order";
    out.calls.push_back(std::move(r));
  });
  return out;
}

class RedisScriptCodecTest : public ::testing::Test {
 protected:
  RedisScriptCodec codec_{"tg:", /*exact_log_max=*/100};
  // Two calls: a dry run with two limits, then one with one limit.
  std::vector<ScriptCall> calls_ = {
      {{Check("rate|g|a", Algorithm::kSlidingWindow, 60'000, 10),
        Check("daily|*", Algorithm::kFixedWindow, 86'400'000, 5000)},
       /*dry_run=*/true},
      {{Check("msgs|s|x", Algorithm::kTokenBucket, 60'000, 30, 10)}, /*dry_run=*/false},
  };
};

TEST_F(RedisScriptCodecTest, KeysNameTheInstanceAlgorithmAndWindow) {
  EXPECT_EQ(codec_.Key(Check("rate|g|a", Algorithm::kSlidingWindow, 60'000, 100)),
            "tg:{rate|g|a}:s:60000");
  EXPECT_EQ(codec_.Key(Check("rate|g|a", Algorithm::kSlidingWindow, 60'000, 101)),
            "tg:{rate|g|a}:b:60000")
      << "above exact_log_max: buckets";
  EXPECT_EQ(codec_.Key(Check("daily|*", Algorithm::kFixedWindow, 86'400'000, 1)),
            "tg:{daily|*}:f:86400000");
  EXPECT_EQ(codec_.Key(Check("m", Algorithm::kTokenBucket, 1000, 3, 2)), "tg:{m}:t:1000");
  EXPECT_EQ(RedisScriptCodec("", 1).Key(Check("k", Algorithm::kSlidingWindow, 5, 1)), "{k}:s:5");
}

TEST_F(RedisScriptCodecTest, ScriptAndItsSha) {
  EXPECT_EQ(codec_.script(), kRedisScript);
  ASSERT_EQ(codec_.sha().size(), 40u);
  EXPECT_EQ(codec_.sha().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST_F(RedisScriptCodecTest, EncodesEvalshaWithKeysThenCalls) {
  std::string out;
  codec_.EncodeBatch({&calls_[0], &calls_[1]}, /*use_eval=*/false, &out);
  std::string expected;
  EncodeCommand({"EVALSHA", codec_.sha(), "3",
                 "tg:{rate|g|a}:s:60000", "tg:{daily|*}:f:86400000", "tg:{msgs|s|x}:t:60000",
                 "2",
                 "1", "2", "s", "60000", "10", "0", "f", "86400000", "5000", "0",
                 "0", "1", "t", "60000", "30", "10"},
                &expected);
  EXPECT_EQ(out, expected);
}

TEST_F(RedisScriptCodecTest, EncodesEvalWithTheScriptItself) {
  std::string out;
  codec_.EncodeBatch({&calls_[1]}, /*use_eval=*/true, &out);
  std::string expected;
  EncodeCommand({"EVAL", kRedisScript, "1", "tg:{msgs|s|x}:t:60000", "1",
                 "0", "1", "t", "60000", "30", "10"},
                &expected);
  EXPECT_EQ(out, expected);
}

TEST_F(RedisScriptCodecTest, EncodingReusesTheBuffer) {
  std::string out;
  std::vector<const ScriptCall*> many(64, &calls_[0]);
  codec_.EncodeBatch(many, false, &out);
  const size_t capacity = out.capacity();
  const char* const data = out.data();
  codec_.EncodeBatch({&calls_[1]}, false, &out);
  EXPECT_EQ(out.capacity(), capacity);
  EXPECT_EQ(out.data(), data) << "no new allocation for a smaller command";
}

TEST_F(RedisScriptCodecTest, DecodesEachCallInOrder) {
  // Call 1 (two limits): refused; the first limit full for 1500ms more.
  // Call 2 (one limit): admitted, 9 left.
  RedisReplyPtr reply = Integers({0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0,
                                  1, 1, 9, 6000, 0});
  Decoded d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.calls.size(), 2u);
  ASSERT_TRUE(d.calls[0].ok());
  const AcquireResult& refused = *d.calls[0];
  EXPECT_FALSE(refused.admitted);
  ASSERT_EQ(refused.outcomes.size(), 2u);
  EXPECT_FALSE(refused.outcomes[0].has_room);
  EXPECT_EQ(refused.outcomes[0].remaining, 0);
  EXPECT_EQ(refused.outcomes[0].reset_after_ms, 2000);
  EXPECT_EQ(refused.outcomes[0].retry_after_ms, 1500);
  EXPECT_TRUE(refused.outcomes[0].known);
  EXPECT_TRUE(refused.outcomes[1].has_room);
  EXPECT_EQ(refused.outcomes[1].remaining, 4999);
  EXPECT_EQ(refused.outcomes[1].reset_after_ms, 86'000);
  ASSERT_TRUE(d.calls[1].ok());
  EXPECT_TRUE(d.calls[1]->admitted);
  ASSERT_EQ(d.calls[1]->outcomes.size(), 1u);
  EXPECT_TRUE(d.calls[1]->outcomes[0].has_room);
  EXPECT_EQ(d.calls[1]->outcomes[0].remaining, 9);
  EXPECT_EQ(d.calls[1]->outcomes[0].reset_after_ms, 6000);
}

TEST_F(RedisScriptCodecTest, WrongTypeFailsOnlyItsCallAndNamesTheKey) {
  // Call 1: its second key holds another type (marker 2, position 2).
  RedisReplyPtr reply = Integers({RedisScriptCodec::kWrongTypeMarker, 2, 0, 0, 0, 0, 0, 0, 0,
                                  1, 1, 9, 6000, 0});
  Decoded d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.calls.size(), 2u);
  ASSERT_FALSE(d.calls[0].ok());
  EXPECT_EQ(d.calls[0].status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(d.calls[0].status().message(),
            "redis: counter key tg:{daily|*}:f:86400000 holds a value toolgate did not write "
            "(WRONGTYPE); nothing counted");
  ASSERT_TRUE(d.calls[1].ok());
  EXPECT_TRUE(d.calls[1]->admitted);
}

TEST_F(RedisScriptCodecTest, WrongTypeAtAnUnknownPosition) {
  for (long long position : {0LL, 3LL, -1LL}) {
    RedisReplyPtr reply = Integers({RedisScriptCodec::kWrongTypeMarker, position, 0, 0, 0, 0, 0,
                                    0, 0, 1, 1, 9, 6000, 0});
    Decoded d = Decode(codec_, *reply, calls_);
    ASSERT_TRUE(d.status.ok()) << d.status;
    ASSERT_FALSE(d.calls[0].ok());
    EXPECT_THAT(d.calls[0].status().message(), HasSubstr("counter key ? holds a value"))
        << position;
  }
}

TEST_F(RedisScriptCodecTest, CorruptKeyFailsOnlyItsCallAndNamesTheKey) {
  // Call 2: its only key holds content toolgate never writes (marker 3).
  RedisReplyPtr reply = Integers({0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0,
                                  RedisScriptCodec::kCorruptMarker, 1, 0, 0, 0});
  Decoded d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.calls.size(), 2u);
  ASSERT_TRUE(d.calls[0].ok());
  EXPECT_FALSE(d.calls[0]->admitted);
  ASSERT_FALSE(d.calls[1].ok());
  EXPECT_EQ(d.calls[1].status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(d.calls[1].status().message()),
              HasSubstr("counter key tg:{msgs|s|x}:t:60000 holds content toolgate did not "
                        "write (corrupt"));
  // An error the script did not foresee: no position.
  reply = Integers({RedisScriptCodec::kCorruptMarker, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, 6000, 0});
  d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_FALSE(d.calls[0].ok());
  EXPECT_THAT(std::string(d.calls[0].status().message()), HasSubstr("counter key ? holds content"));
  EXPECT_TRUE(d.calls[1].ok());
}

TEST_F(RedisScriptCodecTest, CallWithoutLimits) {
  const std::vector<ScriptCall> calls = {{{}, false}};
  Decoded d = Decode(codec_, *Integers({1}), calls);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_TRUE(d.calls[0].ok());
  EXPECT_TRUE(d.calls[0]->admitted);
  EXPECT_TRUE(d.calls[0]->outcomes.empty());
}

TEST_F(RedisScriptCodecTest, MalformedRepliesFailTheWholeBatch) {
  const std::vector<std::string> malformed = {
      "+OK\r\n",  // Not an array.
      ":1\r\n",
      "$-1\r\n",
      "*0\r\n",  // Too short.
      IntegersResp({1, 1, 9, 6000, 0}),
      IntegersResp(std::vector<long long>(15, 0)),  // Too long.
      // A string among the integers.
      "*14\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1\r\n:1\r\n:0\r\n:0\r\n"
      ":1\r\n:1\r\n$1\r\n9\r\n:6000\r\n:0\r\n",
      // `admitted` neither 0, 1, 2 nor 3, for either call.
      IntegersResp({4, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 9, 6000, 0}),
      IntegersResp({0, 0, 0, 0, 0, 1, 1, 0, 0, -1, 1, 9, 6000, 0}),
  };
  for (const std::string& resp : malformed) {
    absl::StatusOr<RedisReplyPtr> reply = ParseReply(resp);
    ASSERT_TRUE(reply.ok()) << resp << ": " << reply.status();
    Decoded d = Decode(codec_, **reply, calls_);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kInternal) << resp;
    EXPECT_EQ(d.status.message(), "redis: unexpected reply to the limits script") << resp;
    EXPECT_TRUE(d.calls.empty()) << "no call completed from " << resp;
  }
}

TEST_F(RedisScriptCodecTest, ErrorReplyIsReturnedWithItsText) {
  RedisReplyPtr reply = *ParseReply("-ERR Error running script: oops\r\n");
  Decoded d = Decode(codec_, *reply, calls_);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(d.status.message(), "redis: ERR Error running script: oops");
  EXPECT_TRUE(d.calls.empty());
}

}  // namespace
}  // namespace toolgate
