#include "server/redis/connection.h"

#include <hiredis/hiredis.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace toolgate {

std::vector<std::vector<std::string>> HandshakeCommands(const RedisUrl& url) {
  std::vector<std::vector<std::string>> out;
  if (!url.password.empty()) {
    if (url.username.empty()) {
      out.push_back({"AUTH", url.password});
    } else {
      out.push_back({"AUTH", url.username, url.password});
    }
  }
  if (url.db != 0) out.push_back({"SELECT", absl::StrCat(url.db)});
  return out;
}

bool IsAuthError(absl::string_view error) {
  for (absl::string_view prefix :
       {"NOAUTH", "WRONGPASS", "ERR invalid password", "ERR AUTH ", "ERR Client sent AUTH"}) {
    if (absl::StartsWith(error, prefix)) return true;
  }
  return false;
}

std::string AuthFailure(absl::string_view error) {
  return absl::StrCat("authentication failed: ", error);
}

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::Open(const RedisUrl& url) {
  redisContext* ctx = redisConnectNonBlock(url.host.c_str(), url.port);
  if (ctx == nullptr || ctx->err) {
    const std::string why = ctx != nullptr ? ctx->errstr : "out of memory";
    if (ctx != nullptr) redisFree(ctx);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", url.Redacted(), ": ", why));
  }
  return std::unique_ptr<RedisConnection>(new RedisConnection(ctx));
}

RedisConnection::~RedisConnection() { redisFree(ctx_); }

int RedisConnection::fd() const { return ctx_->fd; }

void RedisConnection::Append(absl::string_view command) {
  redisAppendFormattedCommand(ctx_, command.data(), command.size());
  want_write_ = true;
}

absl::StatusOr<bool> RedisConnection::Write() {
  int done = 0;
  if (redisBufferWrite(ctx_, &done) == REDIS_ERR) {
    return absl::UnavailableError(absl::StrCat("write failed: ", ctx_->errstr));
  }
  want_write_ = !done;
  return done != 0;
}

absl::Status RedisConnection::Read() {
  if (redisBufferRead(ctx_) == REDIS_OK) return absl::OkStatus();
  return absl::UnavailableError(ctx_->err == REDIS_ERR_EOF
                                    ? std::string("connection closed by Redis")
                                    : absl::StrCat("read failed: ", ctx_->errstr));
}

absl::StatusOr<RedisReplyPtr> RedisConnection::NextReply() {
  void* reply = nullptr;
  if (redisGetReplyFromReader(ctx_, &reply) == REDIS_ERR) {
    return absl::UnavailableError(absl::StrCat("protocol error: ", ctx_->errstr));
  }
  return AdoptReply(reply);
}

}  // namespace toolgate
