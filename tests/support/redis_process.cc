#include "tests/support/redis_process.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace toolgate_test {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string ReplyText(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "";
    case REDIS_REPLY_ARRAY: {
      std::vector<std::string> parts;
      for (size_t i = 0; i < r->elements; ++i) parts.push_back(ReplyText(r->element[i]));
      return absl::StrJoin(parts, "\n");
    }
    default:
      return std::string(r->str, r->len);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisProcess>> RedisProcess::Start() {
  std::unique_ptr<RedisProcess> p(new RedisProcess());
  char tmpl[] = "/tmp/toolgate-redis-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  p->dir_ = tmpl;
  absl::Status last = absl::UnknownError("no attempt");
  for (int attempt = 0; attempt < 5; ++attempt) {
    p->port_ = FreePort();
    last = p->Launch();
    if (last.ok()) return p;
    p->Kill();
  }
  return last;
}

RedisProcess::~RedisProcess() {
  Kill();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

absl::Status RedisProcess::Launch() {
  const std::string port = std::to_string(port_);
  const std::string log = dir_ + "/redis.log";
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no", "--dir", dir_.c_str(), "--logfile", log.c_str(),
           "--enable-debug-command", "local", static_cast<char*>(nullptr));
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat(
          "redis-server exited at start (status ", status, "); is it installed? log: ", log));
    }
    if (auto pong = Command({"PING"}); pong.ok() && *pong == "PONG") return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError("redis-server did not answer PING within 10s");
}

void RedisProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

absl::Status RedisProcess::Restart() {
  Kill();
  // The port was just released; the kernel lets a listener bind it again.
  absl::Status s;
  for (int attempt = 0; attempt < 50; ++attempt) {
    s = Launch();
    if (s.ok()) return s;
    Kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return s;
}

absl::StatusOr<std::string> RedisProcess::Command(const std::vector<std::string>& argv) const {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err) {
    std::string err = c ? c->errstr : "cannot allocate";
    if (c) redisFree(c);
    return absl::UnavailableError(err);
  }
  redisSetTimeout(c, timeval{5, 0});
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  if (r == nullptr) {
    std::string err = c->errstr;
    redisFree(c);
    return absl::UnavailableError(err);
  }
  absl::StatusOr<std::string> out = r->type == REDIS_REPLY_ERROR
                                        ? absl::StatusOr<std::string>(absl::InternalError(r->str))
                                        : ReplyText(r);
  freeReplyObject(r);
  redisFree(c);
  return out;
}

absl::StatusOr<std::vector<std::string>> RedisProcess::Keys(const std::string& pattern) const {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c == nullptr || c->err) {
      if (c) redisFree(c);
      return absl::UnavailableError("cannot connect");
    }
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor.c_str(), pattern.c_str()));
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      if (r) freeReplyObject(r);
      redisFree(c);
      return absl::InternalError("bad SCAN reply");
    }
    cursor = std::string(r->element[0]->str, r->element[0]->len);
    for (size_t i = 0; i < r->element[1]->elements; ++i) {
      keys.emplace_back(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
    }
    freeReplyObject(r);
    redisFree(c);
  } while (cursor != "0");
  return keys;
}

}  // namespace toolgate_test
