// A small synchronous Redis client for work off the decision path (policy
// revisions: the CLI and the server's policy follower). Every step has a
// deadline: connecting (with AUTH and SELECT as the URL asks) and each
// command must be done within the client's timeout, or fail.
//
// It also serves a pub/sub subscriber: after Command({"SUBSCRIBE", ...}),
// poll fd() for POLLIN and call ReadAvailable() for the messages.
//
// Failures are statuses:
//   UNAVAILABLE        Redis cannot be reached, or the connection was lost;
//   DEADLINE_EXCEEDED  no reply within the timeout;
//   INTERNAL           Redis answered with an error ("redis: <its text>"; for
//                      refused credentials, "redis: authentication failed:
//                      <its text>", see IsAuthError).
// After UNAVAILABLE or DEADLINE_EXCEEDED the connection is out of step with
// its replies: every later call fails with the same status.
#ifndef TOOLGATE_SERVER_REDIS_CLIENT_H_
#define TOOLGATE_SERVER_REDIS_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/redis/connection.h"
#include "server/redis/reply.h"
#include "server/redis/url.h"

namespace toolgate {

class RedisClient {
 public:
  // A redis+sentinel:// URL connects to the master the sentinels name now;
  // a redis+cluster:// URL is INVALID_ARGUMENT (nothing here routes by slot).
  static absl::StatusOr<std::unique_ptr<RedisClient>> Connect(const RedisUrl& url,
                                                              absl::Duration timeout);

  // Runs one command and waits for its reply. An error reply is INTERNAL.
  absl::StatusOr<RedisReplyPtr> Command(absl::Span<const std::string> argv);

  // The socket, to poll for messages (pub/sub).
  int fd() const { return conn_->fd(); }

  // Every complete reply (pub/sub message) that has arrived, without
  // waiting; UNAVAILABLE once the connection was closed and every reply
  // that came before was returned.
  absl::StatusOr<std::vector<RedisReplyPtr>> ReadAvailable();

 private:
  RedisClient(std::unique_ptr<RedisConnection> conn, absl::Duration timeout)
      : conn_(std::move(conn)), timeout_(timeout) {}
  // Waits for `events` on the socket until `deadline_ms` (steady clock).
  absl::Status WaitFor(short events, int64_t deadline_ms, absl::string_view what);
  absl::Status Fail(absl::Status status);

  std::unique_ptr<RedisConnection> conn_;
  const absl::Duration timeout_;
  std::string command_;  // Reused from command to command.
  absl::Status broken_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_CLIENT_H_
