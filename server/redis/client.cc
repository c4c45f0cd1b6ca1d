#include "server/redis/client.h"

#include <poll.h>
#include <sys/socket.h>

#include <system_error>

#include "absl/strings/str_cat.h"
#include "server/base/clock.h"
#include "server/base/status_macros.h"
#include "server/base/wakeup.h"
#include "server/redis/resp.h"
#include "server/redis/sentinel.h"

namespace toolgate {
namespace {

// The outcome of a non-blocking connect, once the socket is writable.
absl::Status ConnectResult(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) return absl::OkStatus();
  return absl::UnavailableError(std::error_code(err, std::generic_category()).message());
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisClient>> RedisClient::Connect(const RedisUrl& given,
                                                                  absl::Duration timeout) {
  RedisUrl url = given;
  if (given.mode == RedisMode::kCluster) {
    return absl::InvalidArgumentError(
        absl::StrCat(given.Redacted(), ": policy revisions are kept in one Redis server or in a "
                                       "Sentinel-managed master, not in a Redis Cluster"));
  }
  if (given.mode == RedisMode::kSentinel) {
    // The master the sentinels name now; a later connection asks again.
    TOOLGATE_ASSIGN_OR_RETURN(
        const RedisHost master,
        SentinelWatcher::AskSentinels(given, absl::ToInt64Milliseconds(timeout)));
    url = given.At(master);
  }
  TOOLGATE_ASSIGN_OR_RETURN(std::unique_ptr<RedisConnection> conn, RedisConnection::Open(url));
  std::unique_ptr<RedisClient> client(new RedisClient(std::move(conn), timeout));
  const int64_t deadline = SteadyClock::Get()->NowMillis() + absl::ToInt64Milliseconds(timeout);
  absl::Status connected = client->WaitFor(POLLOUT, deadline, "connection");
  if (connected.ok()) connected = ConnectResult(client->fd());
  if (!connected.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", url.Redacted(), ": ", connected.message()));
  }
  for (const std::vector<std::string>& argv : HandshakeCommands(url)) {
    TOOLGATE_RETURN_IF_ERROR(client->Command(argv).status());
  }
  return client;
}

absl::StatusOr<RedisReplyPtr> RedisClient::Command(absl::Span<const std::string> argv) {
  if (!broken_.ok()) return broken_;
  const int64_t deadline = SteadyClock::Get()->NowMillis() + absl::ToInt64Milliseconds(timeout_);
  EncodeCommand(argv, &command_);
  conn_->Append(command_);
  while (true) {
    absl::StatusOr<bool> written = conn_->Write();
    if (!written.ok()) return Fail(written.status());
    if (*written) break;
    if (absl::Status s = WaitFor(POLLOUT, deadline, "write"); !s.ok()) return Fail(s);
  }
  while (true) {
    absl::StatusOr<RedisReplyPtr> reply = conn_->NextReply();
    if (!reply.ok()) return Fail(reply.status());
    if (*reply != nullptr) {
      if (IsErrorReply(**reply)) {
        const absl::string_view error = ReplyText(**reply);
        return absl::InternalError(
            absl::StrCat("redis: ", IsAuthError(error) ? AuthFailure(error) : std::string(error)));
      }
      return reply;
    }
    if (absl::Status s = WaitFor(POLLIN, deadline, "reply"); !s.ok()) return Fail(s);
    if (absl::Status s = conn_->Read(); !s.ok()) return Fail(s);
  }
}

absl::StatusOr<std::vector<RedisReplyPtr>> RedisClient::ReadAvailable() {
  if (!broken_.ok()) return broken_;
  // Replies that arrived before a hang-up are returned; the hang-up is
  // returned by the next call.
  const absl::Status read = conn_->Read();
  std::vector<RedisReplyPtr> out;
  while (true) {
    absl::StatusOr<RedisReplyPtr> reply = conn_->NextReply();
    if (!reply.ok()) return Fail(reply.status());
    if (*reply == nullptr) break;
    out.push_back(*std::move(reply));
  }
  if (!read.ok()) {
    absl::Status failed = Fail(read);
    if (out.empty()) return failed;
  }
  return out;
}

absl::Status RedisClient::WaitFor(short events, int64_t deadline_ms, absl::string_view what) {
  while (true) {
    const int64_t left = deadline_ms - SteadyClock::Get()->NowMillis();
    if (left <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("no ", what, " within ", absl::FormatDuration(timeout_)));
    }
    pollfd fd = {conn_->fd(), events, 0};
    TOOLGATE_ASSIGN_OR_RETURN(const int ready, Poll(absl::MakeSpan(&fd, 1), left));
    // An error or hang-up shows when the socket is then read or written.
    if (ready > 0) return absl::OkStatus();
  }
}

absl::Status RedisClient::Fail(absl::Status status) {
  broken_ = absl::Status(status.code(), absl::StrCat("redis: ", status.message()));
  return broken_;
}

}  // namespace toolgate
