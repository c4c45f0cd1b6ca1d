#include "server/redis/resp.h"

#include <hiredis/hiredis.h>

#include <vector>

#include "gtest/gtest.h"
#include "server/redis/reply.h"

namespace toolgate {
namespace {

// What hiredis's own formatter makes of `argv`: the reference.
std::string HiredisFormat(const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  char* out = nullptr;
  const int n = redisFormatCommandArgv(&out, static_cast<int>(argv.size()), ptrs.data(),
                                       lens.data());
  std::string s(out, n > 0 ? n : 0);
  redisFreeCommand(out);
  return s;
}

TEST(RespCommandTest, EncodesAnArrayOfBulkStrings) {
  std::string out;
  EncodeCommand({"SET", "k", "v"}, &out);
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
}

TEST(RespCommandTest, MatchesHiredisForAnyBytes) {
  const std::vector<std::vector<std::string>> commands = {
      {"PING"},
      {"GET", ""},
      {"SET", std::string("a\0b", 3), "line\r\nbreak"},
      {"HSET", "key", std::string(1000, 'x'), "\xff\xfe"},
  };
  std::string out;
  for (const auto& argv : commands) {
    EncodeCommand(argv, &out);
    EXPECT_EQ(out, HiredisFormat(argv)) << argv[0];
  }
}

TEST(RespCommandTest, IntegerArgumentsInDecimal) {
  std::string out;
  RespCommand cmd(&out, 4);
  cmd.Arg("X");
  cmd.Arg(int64_t{0});
  cmd.Arg(int64_t{-42});
  cmd.Arg(int64_t{9'007'199'254'740'993});
  EXPECT_EQ(out, HiredisFormat({"X", "0", "-42", "9007199254740993"}));
}

TEST(RespCommandTest, ArgumentOfPiecesIsTheirConcatenation) {
  std::string out;
  RespCommand cmd(&out, 2);
  cmd.Arg("GET");
  cmd.ArgOfPieces({"toolgate:", "{", "c|g|a", "}:", "s", ":", "60000"});
  EXPECT_EQ(out, HiredisFormat({"GET", "toolgate:{c|g|a}:s:60000"}));
  RespCommand empty(&out, 1);
  empty.ArgOfPieces({});
  EXPECT_EQ(out, HiredisFormat({""}));
}

TEST(RespCommandTest, ReusesTheBufferWithoutKeepingOldContent) {
  std::string out;
  EncodeCommand({"HSET", "key", std::string(4096, 'x'), "v"}, &out);
  const size_t capacity = out.capacity();
  EncodeCommand({"PING"}, &out);
  EXPECT_EQ(out, "*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(out.capacity(), capacity);
}

TEST(RespCommandTest, RedisReadsWhatWasEncoded) {
  // A command is itself valid RESP: an array of bulk strings.
  std::string out;
  EncodeCommand({"EVALSHA", "abc", "1", "k"}, &out);
  absl::StatusOr<RedisReplyPtr> parsed = ParseReply(out);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ((*parsed)->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ((*parsed)->elements, 4u);
  EXPECT_EQ(ReplyText(*(*parsed)->element[0]), "EVALSHA");
  EXPECT_EQ(ReplyText(*(*parsed)->element[3]), "k");
}

TEST(ParseReplyTest, OneReplyOfEachType) {
  auto integer = ParseReply(":42\r\n");
  ASSERT_TRUE(integer.ok());
  EXPECT_EQ((*integer)->type, REDIS_REPLY_INTEGER);
  EXPECT_EQ((*integer)->integer, 42);
  auto error = ParseReply("-NOSCRIPT No matching script\r\n");
  ASSERT_TRUE(error.ok());
  EXPECT_TRUE(IsErrorReply(**error));
  EXPECT_EQ(ReplyText(**error), "NOSCRIPT No matching script");
  auto status = ParseReply("+OK\r\n");
  ASSERT_TRUE(status.ok());
  EXPECT_FALSE(IsErrorReply(**status));
  EXPECT_EQ(ReplyText(**status), "OK");
  auto nil = ParseReply("$-1\r\n");
  ASSERT_TRUE(nil.ok());
  EXPECT_EQ((*nil)->type, REDIS_REPLY_NIL);
  EXPECT_EQ(ReplyText(**nil), "");
}

TEST(ParseReplyTest, RejectsWhatIsNotExactlyOneReply) {
  EXPECT_FALSE(ParseReply("").ok());
  EXPECT_FALSE(ParseReply("*2\r\n:1\r\n").ok()) << "incomplete";
  EXPECT_FALSE(ParseReply("?what\r\n").ok()) << "malformed";
  EXPECT_FALSE(ParseReply(":1\r\n:2\r\n").ok()) << "two replies";
}

}  // namespace
}  // namespace toolgate
