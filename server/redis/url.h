// Redis connection URLs: redis://[[user]:password@]host[:port][/db]
#ifndef TOOLGATE_SERVER_REDIS_URL_H_
#define TOOLGATE_SERVER_REDIS_URL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace toolgate {

struct RedisUrl {
  std::string host;
  int port = 6379;
  std::string username;  // Redis 6 ACL user; empty for the default user.
  std::string password;  // Empty: no AUTH.
  int db = 0;

  // The URL without its password, for logs.
  std::string Redacted() const;
};

// INVALID_ARGUMENT with a message saying what is wrong.
absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_URL_H_
