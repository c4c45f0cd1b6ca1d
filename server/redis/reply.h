// Ownership of hiredis replies: every reply is held by a RedisReplyPtr and
// freed by it, never by hand.
#ifndef TOOLGATE_SERVER_REDIS_REPLY_H_
#define TOOLGATE_SERVER_REDIS_REPLY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct redisReply;

namespace toolgate {

struct RedisReplyDeleter {
  void operator()(redisReply* reply) const;
};

// A reply and, for an array, its elements.
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

// Takes ownership of what hiredis hands out as `void*`.
inline RedisReplyPtr AdoptReply(void* reply) {
  return RedisReplyPtr(static_cast<redisReply*>(reply));
}

// The text of a string, status or error reply; empty for other types.
absl::string_view ReplyText(const redisReply& reply);

// True for an error reply ("-ERR ...").
bool IsErrorReply(const redisReply& reply);

// Parses one complete reply from its RESP bytes, as it would arrive from
// Redis (for tests of what reads replies). INVALID_ARGUMENT when the bytes
// are malformed, incomplete, or hold more than one reply.
absl::StatusOr<RedisReplyPtr> ParseReply(absl::string_view resp);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_REPLY_H_
