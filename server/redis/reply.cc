#include "server/redis/reply.h"

#include <hiredis/hiredis.h>

#include "absl/strings/str_cat.h"

namespace toolgate {

void RedisReplyDeleter::operator()(redisReply* reply) const { freeReplyObject(reply); }

absl::string_view ReplyText(const redisReply& reply) {
  switch (reply.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return reply.str != nullptr ? absl::string_view(reply.str, reply.len) : absl::string_view();
    default:
      return absl::string_view();
  }
}

bool IsErrorReply(const redisReply& reply) { return reply.type == REDIS_REPLY_ERROR; }

absl::StatusOr<RedisReplyPtr> ParseReply(absl::string_view resp) {
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(),
                                                              &redisReaderFree);
  if (reader == nullptr) return absl::ResourceExhaustedError("redis: out of memory");
  void* raw = nullptr;
  if (redisReaderFeed(reader.get(), resp.data(), resp.size()) != REDIS_OK ||
      redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("redis: malformed reply: ", reader->errstr));
  }
  RedisReplyPtr reply = AdoptReply(raw);
  if (reply == nullptr) return absl::InvalidArgumentError("redis: incomplete reply");
  void* extra = nullptr;
  if (redisReaderGetReply(reader.get(), &extra) != REDIS_OK || extra != nullptr) {
    AdoptReply(extra);
    return absl::InvalidArgumentError("redis: more than one reply");
  }
  return reply;
}

}  // namespace toolgate
