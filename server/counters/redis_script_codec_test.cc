// The limits script's command and reply: what is sent for a batch of calls,
// and how replies (well-formed or not) become results, without Redis; and
// refunds, through a real redis-server. counter_store_test.cc runs the rest
// of the script through a real redis-server.
#include "server/counters/redis_script_codec.h"

#include <hiredis/hiredis.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/counters/counter_testing.h"
#include "server/redis/reply.h"
#include "server/redis/resp.h"
#include "tests/support/redis_process.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

// A Redis time, as the reply carries first.
constexpr long long kTime = 1'764'000'000'000;

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
  int64_t time = -1;    // The run's Redis time.
  std::vector<absl::StatusOr<AcquireResult>> calls;
};

Decoded Decode(const RedisScriptCodec& codec, const redisReply& reply,
               const std::vector<ScriptCall>& calls) {
  std::vector<const ScriptCall*> ptrs;
  for (const ScriptCall& c : calls) ptrs.push_back(&c);
  Decoded out;
  out.status = codec.DecodeBatch(
      reply, ptrs,
      [&](size_t i, absl::StatusOr<AcquireResult> r) {
        EXPECT_EQ(i, out.calls.size()) << "calls are completed in order";
        out.calls.push_back(std::move(r));
      },
      &out.time);
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

// The algorithm's letter is followed by the value layout's version.
TEST_F(RedisScriptCodecTest, KeysNameTheInstanceAlgorithmFormatAndWindow) {
  EXPECT_EQ(codec_.Key(Check("rate|g|a", Algorithm::kSlidingWindow, 60'000, 100)),
            "tg:{rate|g|a}:s:60000");
  EXPECT_EQ(codec_.Key(Check("rate|g|a", Algorithm::kSlidingWindow, 60'000, 101)),
            "tg:{rate|g|a}:b:60000")
      << "above exact_log_max: buckets";
  EXPECT_EQ(codec_.Key(Check("daily|*", Algorithm::kFixedWindow, 86'400'000, 1)),
            "tg:{daily|*}:f2:86400000");
  EXPECT_EQ(codec_.Key(Check("m", Algorithm::kTokenBucket, 1000, 3, 2)), "tg:{m}:t2:1000");
  EXPECT_EQ(RedisScriptCodec("", 1).Key(Check("k", Algorithm::kSlidingWindow, 5, 1)), "{k}:s:5");
}

TEST_F(RedisScriptCodecTest, ScriptAndItsSha) {
  EXPECT_EQ(codec_.script(), kRedisScript);
  // Redis answers an argument longer than 16 KiB from a client that has not
  // authenticated yet with a protocol error instead of NOAUTH: SCRIPT LOAD,
  // sent right after AUTH, must stay below that.
  EXPECT_LE(codec_.script().size(), 16u * 1024u);
  ASSERT_EQ(codec_.sha().size(), 40u);
  EXPECT_EQ(codec_.sha().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST_F(RedisScriptCodecTest, EncodesEvalshaWithKeysThenCalls) {
  std::string out;
  codec_.EncodeBatch({&calls_[0], &calls_[1]}, /*use_eval=*/false, &out);
  std::string expected;
  EncodeCommand({"EVALSHA", codec_.sha(), "3",
                 "tg:{rate|g|a}:s:60000", "tg:{daily|*}:f2:86400000", "tg:{msgs|s|x}:t2:60000",
                 "2", "1",  // Two calls; strings (a fixed window, a token bucket) to read.
                 "1", "2", "s", "60000", "10", "0", "1", "f", "86400000", "5000", "0", "1",
                 "0", "1", "t", "60000", "30", "10", "1"},
                &expected);
  EXPECT_EQ(out, expected);
}

TEST_F(RedisScriptCodecTest, EncodesEvalWithTheScriptItself) {
  std::string out;
  codec_.EncodeBatch({&calls_[1]}, /*use_eval=*/true, &out);
  std::string expected;
  EncodeCommand({"EVAL", kRedisScript, "1", "tg:{msgs|s|x}:t2:60000", "1", "1",
                 "0", "1", "t", "60000", "30", "10", "1"},
                &expected);
  EXPECT_EQ(out, expected);
}

TEST_F(RedisScriptCodecTest, SlidingWindowsAloneReadNoStrings) {
  const ScriptCall call{{Check("rate|g|a", Algorithm::kSlidingWindow, 60'000, 10),
                         Check("big|*", Algorithm::kSlidingWindow, 60'000, 5000)},
                        false};
  std::string out;
  codec_.EncodeBatch({&call}, /*use_eval=*/false, &out);
  std::string expected;
  EncodeCommand({"EVALSHA", codec_.sha(), "2", "tg:{rate|g|a}:s:60000", "tg:{big|*}:b:60000",
                 "1", "0", "0", "2", "s", "60000", "10", "0", "1", "b", "60000", "5000", "0", "1"},
                &expected);
  EXPECT_EQ(out, expected);
}

TEST_F(RedisScriptCodecTest, EncodesARefundWithItsTime) {
  ScriptCall refund = calls_[0];  // A dry run: ignored by a refund.
  refund.refund_at_ms = kTime;
  refund.checks[1].cost = 7;  // Units to give back.
  std::string out;
  codec_.EncodeBatch({&refund}, /*use_eval=*/false, &out);
  std::string expected;
  EncodeCommand({"EVALSHA", codec_.sha(), "2", "tg:{rate|g|a}:s:60000", "tg:{daily|*}:f2:86400000",
                 "1", "1", absl::StrCat("r", kTime), "2", "s", "60000", "10", "0", "1", "f",
                 "86400000", "5000", "0", "7"},
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
  RedisReplyPtr reply = Integers({kTime, 0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0,
                                  1, 1, 9, 6000, 0});
  Decoded d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_EQ(d.time, kTime);
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
  RedisReplyPtr reply = Integers({kTime, RedisScriptCodec::kWrongTypeMarker, 2, 0, 0, 0, 0, 0, 0, 0,
                                  1, 1, 9, 6000, 0});
  Decoded d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.calls.size(), 2u);
  ASSERT_FALSE(d.calls[0].ok());
  EXPECT_EQ(d.calls[0].status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(d.calls[0].status().message(),
            "redis: counter key tg:{daily|*}:f2:86400000 holds a value toolgate did not write "
            "(WRONGTYPE); nothing counted");
  ASSERT_TRUE(d.calls[1].ok());
  EXPECT_TRUE(d.calls[1]->admitted);
}

TEST_F(RedisScriptCodecTest, WrongTypeAtAnUnknownPosition) {
  for (long long position : {0LL, 3LL, -1LL}) {
    RedisReplyPtr reply = Integers({kTime, RedisScriptCodec::kWrongTypeMarker, position, 0, 0, 0,
                                    0, 0, 0, 0, 1, 1, 9, 6000, 0});
    Decoded d = Decode(codec_, *reply, calls_);
    ASSERT_TRUE(d.status.ok()) << d.status;
    ASSERT_FALSE(d.calls[0].ok());
    EXPECT_THAT(d.calls[0].status().message(), HasSubstr("counter key ? holds a value"))
        << position;
  }
}

TEST_F(RedisScriptCodecTest, CorruptKeyFailsOnlyItsCallAndNamesTheKey) {
  // Call 2: its only key holds content toolgate never writes (marker 3).
  RedisReplyPtr reply = Integers({kTime, 0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0,
                                  RedisScriptCodec::kCorruptMarker, 1, 0, 0, 0});
  Decoded d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.calls.size(), 2u);
  ASSERT_TRUE(d.calls[0].ok());
  EXPECT_FALSE(d.calls[0]->admitted);
  ASSERT_FALSE(d.calls[1].ok());
  EXPECT_EQ(d.calls[1].status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(d.calls[1].status().message()),
              HasSubstr("counter key tg:{msgs|s|x}:t2:60000 holds content toolgate did not "
                        "write (corrupt"));
  // An error the script did not foresee: no position.
  reply = Integers(
      {kTime, RedisScriptCodec::kCorruptMarker, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 9, 6000, 0});
  d = Decode(codec_, *reply, calls_);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_FALSE(d.calls[0].ok());
  EXPECT_THAT(std::string(d.calls[0].status().message()), HasSubstr("counter key ? holds content"));
  EXPECT_TRUE(d.calls[1].ok());
}

TEST_F(RedisScriptCodecTest, CallWithoutLimits) {
  const std::vector<ScriptCall> calls = {{{}, false}};
  Decoded d = Decode(codec_, *Integers({kTime, 1}), calls);
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
      IntegersResp({kTime, 1, 1, 9, 6000, 0}),
      IntegersResp(std::vector<long long>(16, 1)),  // Too long.
      // Without the time (the reply of a script before refunds).
      IntegersResp({0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0, 1, 1, 9, 6000, 0}),
      // A time that is no Redis clock's.
      IntegersResp({0, 0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0, 1, 1, 9, 6000, 0}),
      IntegersResp({-5, 0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0, 1, 1, 9, 6000, 0}),
      // A string among the integers.
      "*15\r\n:1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1\r\n:1\r\n:0\r\n:0\r\n"
      ":1\r\n:1\r\n$1\r\n9\r\n:6000\r\n:0\r\n",
      // `admitted` neither 0, 1, 2 nor 3, for either call.
      IntegersResp({kTime, 4, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 9, 6000, 0}),
      IntegersResp({kTime, 0, 0, 0, 0, 0, 1, 1, 0, 0, -1, 1, 9, 6000, 0}),
  };
  for (const std::string& resp : malformed) {
    absl::StatusOr<RedisReplyPtr> reply = ParseReply(resp);
    ASSERT_TRUE(reply.ok()) << resp << ": " << reply.status();
    Decoded d = Decode(codec_, **reply, calls_);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kInternal) << resp;
    EXPECT_EQ(d.status.message(), "redis: unexpected reply to the limits script") << resp;
    EXPECT_TRUE(d.calls.empty()) << "no call completed from " << resp;
  }
  // A refund is never refused.
  ScriptCall refund = calls_[1];
  refund.refund_at_ms = kTime;
  const std::vector<ScriptCall> calls = {calls_[0], refund};
  Decoded d = Decode(codec_, *Integers({kTime, 0, 0, 0, 2000, 1500, 1, 4999, 86'000, 0, 0, 1, 0,
                                         0, 0}),
                     calls);
  EXPECT_EQ(d.status.message(), "redis: unexpected reply to the limits script");
  EXPECT_TRUE(d.calls.empty());
  EXPECT_EQ(d.time, -1) << "the time is not written from a malformed reply";
}

TEST_F(RedisScriptCodecTest, ErrorReplyIsReturnedWithItsText) {
  RedisReplyPtr reply = *ParseReply("-ERR Error running script: oops\r\n");
  Decoded d = Decode(codec_, *reply, calls_);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(d.status.message(), "redis: ERR Error running script: oops");
  EXPECT_TRUE(d.calls.empty());
}

// --- Refunds, against a real redis-server. ---

using counters_testing::kHour;
using counters_testing::kMinute;
using counters_testing::MakeCheck;

// A guard against hangs, far beyond what anything here takes.
constexpr absl::Duration kWait = absl::Seconds(30);

class RedisScriptRefundTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto redis = toolgate_test::RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = redis->release();
  }
  static void TearDownTestSuite() {
    delete redis_;
    redis_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(redis_, nullptr);
    conn_ = redisConnect("127.0.0.1", redis_->port());
    ASSERT_TRUE(conn_ != nullptr && conn_->err == 0);
  }
  void TearDown() override {
    if (conn_ != nullptr) redisFree(conn_);
  }

  // Runs `calls` in one script run; the decoded reply.
  Decoded Run(const std::vector<ScriptCall>& calls) {
    std::vector<const ScriptCall*> ptrs;
    for (const ScriptCall& c : calls) ptrs.push_back(&c);
    std::string cmd;
    codec_.EncodeBatch(ptrs, /*use_eval=*/true, &cmd);
    Decoded out;
    if (redisAppendFormattedCommand(conn_, cmd.data(), cmd.size()) != REDIS_OK) {
      out.status = absl::InternalError("cannot send");
      return out;
    }
    void* raw = nullptr;
    if (redisGetReply(conn_, &raw) != REDIS_OK || raw == nullptr) {
      out.status = absl::InternalError(conn_->errstr);
      return out;
    }
    RedisReplyPtr reply(static_cast<redisReply*>(raw));
    out.status = codec_.DecodeBatch(*reply, ptrs, [&](size_t, absl::StatusOr<AcquireResult> r) {
      out.calls.push_back(std::move(r));
    }, &out.time);
    return out;
  }
  // One call, admitted or not; the time of its run.
  int64_t Admit(const LimitCheck& check, bool expect_admitted = true) {
    Decoded d = Run({{{check}, false}});
    EXPECT_TRUE(d.status.ok()) << d.status;
    EXPECT_EQ(d.calls.size(), 1u);
    if (d.calls.size() == 1) {
      EXPECT_TRUE(d.calls[0].ok()) << d.calls[0].status();
      if (d.calls[0].ok()) {
        EXPECT_EQ(d.calls[0]->admitted, expect_admitted);
      }
    }
    return d.time;
  }
  // Refunds `check`'s unit of the admission at `at`; expects success.
  void Refund(const LimitCheck& check, int64_t at, bool dry_run = false) {
    ScriptCall call{{check}, dry_run};
    call.refund_at_ms = at;
    Decoded d = Run({call});
    ASSERT_TRUE(d.status.ok()) << d.status;
    ASSERT_EQ(d.calls.size(), 1u);
    ASSERT_TRUE(d.calls[0].ok()) << d.calls[0].status();
    EXPECT_TRUE(d.calls[0]->admitted);
    ASSERT_EQ(d.calls[0]->outcomes.size(), 1u);
    EXPECT_TRUE(d.calls[0]->outcomes[0].has_room);
  }
  // The room `check` has now: how many calls it would admit (a dry run's
  // remaining counts the call itself as admitted).
  int64_t Remaining(const LimitCheck& check) {
    Decoded d = Run({{{check}, true}});
    EXPECT_TRUE(d.status.ok()) << d.status;
    if (d.calls.size() != 1 || !d.calls[0].ok()) {
      ADD_FAILURE() << "dry run failed";
      return -1;
    }
    return d.calls[0]->admitted ? d.calls[0]->outcomes[0].remaining + 1 : 0;
  }
  std::string Exists(const LimitCheck& check) {
    return redis_->Command({"EXISTS", codec_.Key(check)}).value_or("(redis error)");
  }
  // A key of its own for each test and algorithm.
  static std::string KeyOf(absl::string_view what) {
    return absl::StrCat(::testing::UnitTest::GetInstance()->current_test_info()->name(), "|",
                        what);
  }

  static toolgate_test::RedisProcess* redis_;
  RedisScriptCodec codec_{"tg:", /*exact_log_max=*/100};
  redisContext* conn_ = nullptr;
};

toolgate_test::RedisProcess* RedisScriptRefundTest::redis_ = nullptr;

// Every algorithm, as a limit of max 5 (the bucketed sliding window: 500).
std::vector<LimitCheck> EveryAlgorithm(const std::string& prefix, int64_t window) {
  return {MakeCheck(prefix + "s", Algorithm::kSlidingWindow, window, 5),
          MakeCheck(prefix + "b", Algorithm::kSlidingWindow, window, 500),
          MakeCheck(prefix + "f", Algorithm::kFixedWindow, window, 5),
          MakeCheck(prefix + "t", Algorithm::kTokenBucket, window, 5)};
}

// Admit at T, refund at T: the counter is as if the admission had not
// happened (an hour's window: a token bucket refills a negligible part of a
// unit meanwhile, and no fixed window ends, in all but a rare run that
// crosses the hour: then the fixed window is checked against a fresh count).
TEST_F(RedisScriptRefundTest, RefundUndoesTheAdmissionExactly) {
  for (const LimitCheck& check : EveryAlgorithm(KeyOf(""), kHour)) {
    SCOPED_TRACE(codec_.Key(check));
    Admit(check);
    Admit(check);
    const int64_t before = Remaining(check);
    const int64_t max = check.max;
    EXPECT_EQ(before, max - 2);
    const int64_t at = Admit(check);
    EXPECT_EQ(Remaining(check), before - 1);
    Refund(check, at);
    const int64_t after = Remaining(check);
    if (check.algorithm == Algorithm::kFixedWindow && after == max) continue;  // A new hour.
    EXPECT_EQ(after, before);
    // The units given back are usable again, exactly: max - 2 more, then full.
    for (int64_t i = 0; i < before; ++i) Admit(check);
    Admit(check, /*expect_admitted=*/false);
  }
}

// A refund is its own call in a run: it never changes the other calls of
// the run, nor fails them, and a dry-run flag does not stop it.
TEST_F(RedisScriptRefundTest, RefundInABatchAndDespiteDryRun) {
  const LimitCheck a = MakeCheck(KeyOf("a"), Algorithm::kSlidingWindow, kHour, 3);
  const LimitCheck b = MakeCheck(KeyOf("b"), Algorithm::kFixedWindow, 10 * 365 * 24 * kHour, 3);
  const int64_t at = Admit(a);
  ScriptCall refund{{a}, /*dry_run=*/true};
  refund.refund_at_ms = at;
  Decoded d = Run({{{b}, false}, refund, {{a, b}, false}});
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.calls.size(), 3u);
  ASSERT_TRUE(d.calls[0].ok() && d.calls[1].ok() && d.calls[2].ok());
  EXPECT_EQ(d.calls[0]->outcomes[0].remaining, 2);
  EXPECT_TRUE(d.calls[1]->admitted);
  EXPECT_EQ(d.calls[2]->outcomes[0].remaining, 2) << "the refund came before it";
  EXPECT_EQ(d.calls[2]->outcomes[1].remaining, 1);
  EXPECT_EQ(Remaining(a), 2);
  EXPECT_EQ(Remaining(b), 1);
}

// A refund never creates a key, whatever the algorithm.
TEST_F(RedisScriptRefundTest, RefundOfAMissingKeyCreatesNothing) {
  auto time = redis_->Command({"TIME"});
  ASSERT_TRUE(time.ok());
  const int64_t now_ms = std::stoll(time->substr(0, time->find('\n'))) * 1000;
  for (const LimitCheck& check : EveryAlgorithm(KeyOf(""), kMinute)) {
    SCOPED_TRACE(codec_.Key(check));
    Refund(check, now_ms);
    EXPECT_EQ(Exists(check), "0");
  }
}

// Refunding the same admission twice: the sliding log removes only entries
// that exist (the second refund finds none at that time); the counts of a
// bucket and of a fixed window never go below zero; a token bucket never
// rises above its capacity. None gives more room than no admission at all.
TEST_F(RedisScriptRefundTest, DoubleRefundNeverGivesMoreThanTheAdmission) {
  for (const LimitCheck& check : EveryAlgorithm(KeyOf(""), kHour)) {
    SCOPED_TRACE(codec_.Key(check));
    const int64_t at = Admit(check);
    Refund(check, at);
    Refund(check, at);
    const int64_t max = check.max;
    EXPECT_EQ(Remaining(check), max);
    // Exactly max admitted from here, not one more.
    for (int64_t i = 0; i < max; ++i) Admit(check);
    Admit(check, /*expect_admitted=*/false);
  }
  // Two admissions in one run record the same time twice: three refunds at
  // that time remove both, and nothing else.
  const LimitCheck log = MakeCheck(KeyOf("log"), Algorithm::kSlidingWindow, kHour, 5);
  const int64_t first = Admit(log);
  // The next run, at a later millisecond of Redis's clock (until then,
  // another admission would record the same time).
  Decoded d;
  const absl::Time deadline = absl::Now() + kWait;
  do {
    ASSERT_LT(absl::Now(), deadline);
    d = Run({{{log}, true}});
    ASSERT_TRUE(d.status.ok()) << d.status;
  } while (d.time <= first);
  d = Run({{{log}, false}, {{log}, false}});
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_GT(d.time, first);
  EXPECT_EQ(Remaining(log), 2);
  for (int i = 0; i < 3; ++i) Refund(log, d.time);
  EXPECT_EQ(Remaining(log), 4) << "the first admission stays";
}

// Once the admitted unit has expired (the sliding windows), or its window
// has ended (the fixed window), a refund gives nothing back: the counter
// keeps what it counted since. Windows of 300 ms, waited out by polling.
TEST_F(RedisScriptRefundTest, RefundAfterTheUnitExpiredDoesNothing) {
  for (const LimitCheck& check : EveryAlgorithm(KeyOf(""), 300)) {
    if (check.algorithm == Algorithm::kTokenBucket) continue;  // Capped: tested above.
    SCOPED_TRACE(codec_.Key(check));
    const int64_t at = Admit(check);
    const int64_t max = check.max;
    // Until the admission no longer counts.
    const absl::Time deadline = absl::Now() + kWait;
    while (Remaining(check) != max) {
      ASSERT_LT(absl::Now(), deadline) << "the admission never expired";
      absl::SleepFor(absl::Milliseconds(5));
    }
    const int64_t at2 = Admit(check);
    ASSERT_GE(at2, at + 1);
    Refund(check, at);
    const int64_t left = Remaining(check);
    // The later admission still counts (unless it too expired meanwhile, on
    // a very slow machine: then the counter is empty, never above max).
    EXPECT_TRUE(left == max - 1 || left == max) << left;
    if (left == max - 1) {
      Refund(check, at2);
      EXPECT_EQ(Remaining(check), max);
    }
  }
}

// A refund on a key of another type fails its call with the usual error,
// and changes nothing.
TEST_F(RedisScriptRefundTest, RefundOnAKeyOfAnotherTypeFails) {
  for (const LimitCheck& check : EveryAlgorithm(KeyOf(""), kMinute)) {
    SCOPED_TRACE(codec_.Key(check));
    ASSERT_TRUE(redis_->Command({"SADD", codec_.Key(check), "x"}).ok());
    ScriptCall refund{{check}, false};
    refund.refund_at_ms = 1'000'000;
    Decoded d = Run({refund});
    ASSERT_TRUE(d.status.ok()) << d.status;
    ASSERT_EQ(d.calls.size(), 1u);
    ASSERT_FALSE(d.calls[0].ok());
    EXPECT_THAT(std::string(d.calls[0].status().message()), HasSubstr("WRONGTYPE"));
    EXPECT_EQ(redis_->Command({"SMEMBERS", codec_.Key(check)}).value_or("?"), "x");
  }
}

// A refund is all or nothing too: when one of its keys is of another type,
// none of its other keys is given back.
TEST_F(RedisScriptRefundTest, RefundFailingOnOneKeyChangesNone) {
  for (const LimitCheck& check : EveryAlgorithm(KeyOf(""), kHour)) {
    SCOPED_TRACE(codec_.Key(check));
    const LimitCheck bad = MakeCheck(KeyOf("bad") + codec_.Key(check), check.algorithm,
                                     check.window_ms, check.max, check.burst);
    ASSERT_TRUE(redis_->Command({"SADD", codec_.Key(bad), "x"}).ok());
    const int64_t at = Admit(check);
    const int64_t room = Remaining(check);
    ScriptCall refund{{check, bad}, false};
    refund.refund_at_ms = at;
    Decoded d = Run({refund});
    ASSERT_TRUE(d.status.ok()) << d.status;
    ASSERT_EQ(d.calls.size(), 1u);
    ASSERT_FALSE(d.calls[0].ok());
    EXPECT_EQ(Remaining(check), room) << "given back although the refund failed";
  }
}

}  // namespace
}  // namespace toolgate
