// Redis connection URLs: redis://[[user]:password@]host[:port][/db]
#ifndef TOOLGATE_SERVER_REDIS_URL_H_
#define TOOLGATE_SERVER_REDIS_URL_H_

#include <string>
#include <vector>

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

// Credentials given apart from the URL, read from files
// (--redis-username-file, --redis-password-file), so that no secret is on a
// command line or in an environment.
struct RedisCredentials {
  std::string username;  // Empty: the URL's user, else the default user.
  std::string password;  // Empty: none given (the URL's, if any, is used).
};

// Reads the files (an empty path: that file is not given) with
// ReadSecretFile (server/base/files.h): one trailing newline removed, at most
// 4 KiB. INVALID_ARGUMENT naming the flag when a file is unreadable or empty,
// or when a username file is given without a password file.
absl::StatusOr<RedisCredentials> ReadRedisCredentials(const std::string& username_file,
                                                      const std::string& password_file);

// Parses `url` and applies `credentials` to it. INVALID_ARGUMENT naming the
// flag when the URL carries a password and a password file is also given,
// or carries a user and a username file is also given: a secret is taken
// from one place only.
absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url, const RedisCredentials& credentials);

// A warning to log at start when any of `urls` (each "" or not "redis://..."
// is skipped) carries its password inline, where every local user can read
// it in /proc/PID/cmdline (or, for an environment variable, where the
// process's user can read it in /proc/PID/environ); "" when none does.
std::string InlinePasswordWarning(const std::vector<std::string>& urls);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_URL_H_
