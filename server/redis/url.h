// Redis connection URLs, one for each way Redis is deployed:
//   redis://[[user]:password@]host[:port][/db]                     one server
//   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/db]
//       the master that Sentinel names MASTER, found from these sentinels
//       (port 26379 when not given) and followed across failovers
//   redis+cluster://[[user]:password@]host[:port][,host[:port]...]
//       a Redis Cluster, learned from these seed nodes (db 0 only)
// At most kMaxRedisHosts hosts, and at most kMaxRedisUrlBytes in all.
#ifndef TOOLGATE_SERVER_REDIS_URL_H_
#define TOOLGATE_SERVER_REDIS_URL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace toolgate {

enum class RedisMode { kSingle, kSentinel, kCluster };

struct RedisHost {
  std::string host;
  int port = 6379;
  bool operator==(const RedisHost& o) const { return host == o.host && port == o.port; }
  // "host:port" ("[::1]:port" for an IPv6 address).
  std::string ToString() const;
};

inline constexpr size_t kMaxRedisHosts = 32;
inline constexpr size_t kMaxRedisUrlBytes = 4096;

struct RedisUrl {
  RedisMode mode = RedisMode::kSingle;
  // The server to connect to: for kSingle the URL's; for kSentinel and
  // kCluster the first of `hosts` until the caller points it elsewhere
  // (At()): the master found, or a cluster node.
  std::string host;
  int port = 6379;
  // kSentinel: the sentinels; kCluster: the seed nodes; kSingle: the server.
  std::vector<RedisHost> hosts;
  std::string master_name;  // kSentinel only.
  std::string username;  // Redis 6 ACL user; empty for the default user.
  std::string password;  // Empty: no AUTH.
  int db = 0;

  // The URL without its password, for logs.
  std::string Redacted() const;
  // This URL's credentials and db, at another server (a master found from
  // the sentinels, a cluster node): a single-server URL.
  RedisUrl At(const RedisHost& server) const;
};

// True for a URL of any of the three forms (by its scheme alone).
bool IsRedisUrl(absl::string_view url);

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

// A warning to log at start when any of `urls` (each "" or not a Redis URL
// is skipped) carries its password inline, where every local user can read
// it in /proc/PID/cmdline (or, for an environment variable, where the
// process's user can read it in /proc/PID/environ); "" when none does.
std::string InlinePasswordWarning(const std::vector<std::string>& urls);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_URL_H_
