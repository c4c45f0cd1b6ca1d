// A non-blocking connection to Redis: commands are queued and written when
// the socket takes them, replies read as they arrive. The caller polls fd()
// (POLLOUT while want_write(), POLLIN always) and owns the timing; nothing
// here blocks, except for resolving the host name when opening.
//
// Errors are UNAVAILABLE statuses whose message says what happened
// ("connection closed by Redis", "write failed: ..."); after one, the
// connection is unusable and is to be destroyed.
#ifndef TOOLGATE_SERVER_REDIS_CONNECTION_H_
#define TOOLGATE_SERVER_REDIS_CONNECTION_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/redis/reply.h"
#include "server/redis/url.h"

struct redisContext;

namespace toolgate {

// The commands that set up a connection as `url` asks, in order: AUTH (with
// the user, if any) when there is a password, SELECT when the db is not 0.
std::vector<std::vector<std::string>> HandshakeCommands(const RedisUrl& url);

// True for an error reply that refuses the connection's credentials: NOAUTH
// (a password is required and none was given), WRONGPASS, "ERR invalid
// password", AUTH sent to a server without a password ("ERR AUTH ... called
// without any password configured", "ERR Client sent AUTH, but no password
// is set").
bool IsAuthError(absl::string_view error);
// What to say of such a reply: "authentication failed: <Redis's text>"
// (Redis's text never holds the password).
std::string AuthFailure(absl::string_view error);

class RedisConnection {
 public:
  // Starts connecting to `url`'s host and port (the handshake is the
  // caller's: see HandshakeCommands). UNAVAILABLE "cannot connect to URL:
  // why" when that fails at once; a refused connection may also show only
  // when it is first written to.
  static absl::StatusOr<std::unique_ptr<RedisConnection>> Open(const RedisUrl& url);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  int fd() const;

  // Queues a command encoded in RESP (server/redis/resp.h) for writing.
  void Append(absl::string_view command);

  // Writes what is queued, as much as the socket takes now. True when all
  // of it is written; false when the rest waits for POLLOUT (the socket is
  // full, or still connecting).
  absl::StatusOr<bool> Write();
  // True while queued commands are not all written.
  bool want_write() const { return want_write_; }

  // Reads what the socket holds, without blocking.
  absl::Status Read();

  // The next complete reply read, or null when there is none (yet).
  absl::StatusOr<RedisReplyPtr> NextReply();

 private:
  explicit RedisConnection(redisContext* ctx) : ctx_(ctx) {}

  redisContext* const ctx_;
  bool want_write_ = false;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_CONNECTION_H_
