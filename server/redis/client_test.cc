// RedisClient against a scripted stand-in for Redis on a loopback socket:
// what the client sends is checked byte for byte, and the server can answer,
// stay silent or hang up when a test needs it. (The policy store's tests run
// the client against a real redis-server.)
#include "server/redis/client.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/redis/resp.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

// The client's timeout where a test expects an answer: long, so that a busy
// machine never fails a test. Tests that expect a timeout use a short one
// and never assert how long it took.
constexpr absl::Duration kGenerous = absl::Seconds(30);

// One exchange: the command the client must send, and the bytes answered.
struct Exchange {
  std::vector<std::string> command;
  std::string reply;
};

class FakeRedis {
 public:
  FakeRedis() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~FakeRedis() {
    done_.Notify();
    if (thread_.joinable()) thread_.join();
    close(listen_fd_);
  }

  RedisUrl Url(absl::string_view auth = "", absl::string_view db = "") const {
    return *ParseRedisUrl(absl::StrCat("redis://", auth, "127.0.0.1:", port_, db));
  }

  // Accepts one connection and plays `script`; then, if `push` is set, sends
  // it; then hangs up if `hang_up`, else keeps the connection open, silent,
  // until the test ends.
  void Serve(std::vector<Exchange> script, std::string push = "", bool hang_up = false) {
    thread_ = std::thread([this, script = std::move(script), push, hang_up] {
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::string expected;
      for (const Exchange& e : script) {
        EncodeCommand(e.command, &expected);
        if (!ReadExactly(fd, expected)) break;
        Send(fd, e.reply);
      }
      Send(fd, push);
      if (!hang_up) done_.WaitForNotification();
      close(fd);
    });
  }

  // What arrived that was not what the script expected, if anything.
  std::string mismatch() const { return mismatch_; }

 private:
  bool ReadExactly(int fd, const std::string& expected) {
    std::string got(expected.size(), '\0');
    size_t have = 0;
    while (have < got.size()) {
      const ssize_t n = read(fd, got.data() + have, got.size() - have);
      if (n <= 0) return false;
      have += static_cast<size_t>(n);
    }
    if (got != expected) mismatch_ = got;
    return got == expected;
  }
  static void Send(int fd, const std::string& bytes) {
    if (bytes.empty()) return;
    EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Notification done_;
  std::string mismatch_;
};

TEST(RedisClientTest, AuthAndSelectFromTheUrlThenCommands) {
  FakeRedis redis;
  redis.Serve({{{"AUTH", "admin", "p@ss:w"}, "+OK\r\n"},
               {{"SELECT", "3"}, "+OK\r\n"},
               {{"GET", "k"}, "$5\r\nvalue\r\n"}});
  auto client = RedisClient::Connect(redis.Url("admin:p@ss:w@", "/3"), kGenerous);
  ASSERT_TRUE(client.ok()) << client.status() << redis.mismatch();
  auto reply = (*client)->Command({"GET", "k"});
  ASSERT_TRUE(reply.ok()) << reply.status() << redis.mismatch();
  EXPECT_EQ(ReplyText(**reply), "value");
}

TEST(RedisClientTest, NoHandshakeWithoutPasswordOrDb) {
  FakeRedis redis;
  redis.Serve({{{"PING"}, "+PONG\r\n"}});
  auto client = RedisClient::Connect(redis.Url(), kGenerous);
  ASSERT_TRUE(client.ok()) << client.status();
  auto reply = (*client)->Command({"PING"});
  ASSERT_TRUE(reply.ok()) << reply.status() << redis.mismatch();
  EXPECT_EQ(ReplyText(**reply), "PONG");
}

TEST(RedisClientTest, RejectedAuthFailsTheConnect) {
  FakeRedis redis;
  redis.Serve({{{"AUTH", "wrong"}, "-WRONGPASS invalid username-password pair\r\n"}});
  auto client = RedisClient::Connect(redis.Url("wrong@"), kGenerous);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(client.status().message(),
            "redis: authentication failed: WRONGPASS invalid username-password pair");
}

TEST(RedisClientTest, AuthErrorsAreNamedAsSuch) {
  for (absl::string_view error :
       {"NOAUTH Authentication required.", "WRONGPASS invalid username-password pair",
        "ERR invalid password",
        "ERR AUTH <password> called without any password configured for the default user.",
        "ERR Client sent AUTH, but no password is set"}) {
    EXPECT_TRUE(IsAuthError(error)) << error;
    EXPECT_EQ(AuthFailure(error), absl::StrCat("authentication failed: ", error));
  }
  for (absl::string_view error : {"ERR unknown command", "NOSCRIPT No matching script",
                                  "ERR DB index is out of range", "WRONGTYPE Operation", ""}) {
    EXPECT_FALSE(IsAuthError(error)) << error;
  }
}

TEST(RedisClientTest, NoAuthOnACommandIsNamedAsSuch) {
  FakeRedis redis;
  redis.Serve({{{"GET", "k"}, "-NOAUTH Authentication required.\r\n"}});
  auto client = RedisClient::Connect(redis.Url(), kGenerous);
  ASSERT_TRUE(client.ok()) << client.status();
  auto reply = (*client)->Command({"GET", "k"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().message(),
            "redis: authentication failed: NOAUTH Authentication required.");
}

TEST(RedisClientTest, ErrorReplyIsInternalAndTheClientStaysUsable) {
  FakeRedis redis;
  redis.Serve({{{"INCR", "k"}, "-ERR value is not an integer\r\n"}, {{"INCR", "n"}, ":1\r\n"}});
  auto client = RedisClient::Connect(redis.Url(), kGenerous);
  ASSERT_TRUE(client.ok()) << client.status();
  auto failed = (*client)->Command({"INCR", "k"});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(failed.status().message(), "redis: ERR value is not an integer");
  auto ok = (*client)->Command({"INCR", "n"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->integer, 1);
}

TEST(RedisClientTest, NoReplyInTimeIsDeadlineExceededForGood) {
  FakeRedis redis;
  redis.Serve({});  // Accepts, reads nothing, answers nothing.
  auto client = RedisClient::Connect(redis.Url(), absl::Milliseconds(50));
  ASSERT_TRUE(client.ok()) << client.status();
  auto reply = (*client)->Command({"PING"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(reply.status().message(), "redis: no reply within 50ms");
  // A late reply would now answer the wrong command: the client is done.
  EXPECT_EQ((*client)->Command({"PING"}).status(), reply.status());
}

TEST(RedisClientTest, RefusedConnectionIsUnavailable) {
  int port = 0;
  {
    FakeRedis closed;  // Its port, once closed, refuses connections.
    port = closed.Url().port;
  }
  RedisUrl url;
  url.host = "127.0.0.1";
  url.port = port;
  url.password = "secret";
  auto client = RedisClient::Connect(url, kGenerous);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.status().message(),
            absl::StrCat("cannot connect to redis://:***@127.0.0.1:", port,
                         "/0: Connection refused"));
}

TEST(RedisClientTest, HangUpIsUnavailable) {
  FakeRedis redis;
  redis.Serve({}, "", /*hang_up=*/true);
  auto client = RedisClient::Connect(redis.Url(), kGenerous);
  ASSERT_TRUE(client.ok()) << client.status();
  auto reply = (*client)->Command({"PING"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable) << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("redis: "));
}

TEST(RedisClientTest, SubscriberReadsMessagesUntilTheServerHangsUp) {
  FakeRedis redis;
  redis.Serve({{{"SUBSCRIBE", "events"}, "*3\r\n$9\r\nsubscribe\r\n$6\r\nevents\r\n:1\r\n"}},
              "*3\r\n$7\r\nmessage\r\n$6\r\nevents\r\n$4\r\nrev2\r\n", /*hang_up=*/true);
  auto client = RedisClient::Connect(redis.Url(), kGenerous);
  ASSERT_TRUE(client.ok()) << client.status();
  auto confirmed = (*client)->Command({"SUBSCRIBE", "events"});
  ASSERT_TRUE(confirmed.ok()) << confirmed.status();
  ASSERT_EQ((*confirmed)->type, REDIS_REPLY_ARRAY);

  // Read until the hang-up; the message comes first.
  std::vector<std::string> messages;
  absl::Status closed;
  while (closed.ok()) {
    pollfd fd = {(*client)->fd(), POLLIN, 0};
    ASSERT_EQ(poll(&fd, 1, 30'000), 1);
    auto read = (*client)->ReadAvailable();
    if (!read.ok()) {
      closed = read.status();
      break;
    }
    for (const RedisReplyPtr& m : *read) {
      ASSERT_EQ(m->type, REDIS_REPLY_ARRAY);
      ASSERT_EQ(m->elements, 3u);
      messages.emplace_back(ReplyText(*m->element[2]));
    }
  }
  EXPECT_EQ(messages, std::vector<std::string>{"rev2"});
  EXPECT_EQ(closed.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(closed.message(), "redis: connection closed by Redis");
}

}  // namespace
}  // namespace toolgate
