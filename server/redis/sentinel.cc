#include "server/redis/sentinel.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/base/clock.h"
#include "server/base/log.h"
#include "server/redis/client.h"
#include "server/redis/reply.h"

namespace toolgate {
namespace {

constexpr char kSwitchMaster[] = "+switch-master";

// The URL to reach one sentinel: its address, the URL's credentials, db 0
// (a sentinel has no databases).
RedisUrl SentinelAt(const RedisUrl& url, const RedisHost& sentinel, bool with_credentials) {
  RedisUrl out = url.At(sentinel);
  out.db = 0;
  if (!with_credentials) {
    out.username.clear();
    out.password.clear();
  }
  return out;
}

// A sentinel without a password refuses AUTH ("ERR AUTH <password> called
// without any password configured ..."): it is then asked without.
bool NoPasswordSet(const absl::Status& status) {
  return absl::StrContains(status.message(), "without any password configured") ||
         absl::StrContains(status.message(), "no password is set");
}

absl::StatusOr<std::unique_ptr<RedisClient>> ConnectSentinel(const RedisUrl& url,
                                                             const RedisHost& sentinel,
                                                             int64_t timeout_ms) {
  const absl::Duration timeout = absl::Milliseconds(timeout_ms);
  absl::StatusOr<std::unique_ptr<RedisClient>> client =
      RedisClient::Connect(SentinelAt(url, sentinel, true), timeout);
  if (!client.ok() && !url.password.empty() && NoPasswordSet(client.status())) {
    client = RedisClient::Connect(SentinelAt(url, sentinel, false), timeout);
  }
  return client;
}

absl::StatusOr<RedisHost> AskOne(const RedisUrl& url, const RedisHost& sentinel,
                                 int64_t timeout_ms) {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = ConnectSentinel(url, sentinel, timeout_ms);
  if (!client.ok()) return client.status();
  absl::StatusOr<RedisReplyPtr> reply =
      (*client)->Command({"SENTINEL", "get-master-addr-by-name", url.master_name});
  if (!reply.ok()) return reply.status();
  const redisReply& r = **reply;
  if (r.type == REDIS_REPLY_NIL) {
    return absl::NotFoundError(
        absl::StrCat("sentinel ", sentinel.ToString(), " knows no master named \"",
                     url.master_name, "\""));
  }
  RedisHost out;
  if (r.type != REDIS_REPLY_ARRAY || r.elements != 2 ||
      r.element[0]->type != REDIS_REPLY_STRING || r.element[1]->type != REDIS_REPLY_STRING ||
      r.element[0]->len == 0 || r.element[0]->len > 255 ||
      !absl::SimpleAtoi(ReplyText(*r.element[1]), &out.port) || out.port <= 0 ||
      out.port > 65535) {
    return absl::InternalError(absl::StrCat("sentinel ", sentinel.ToString(),
                                            ": unexpected answer to get-master-addr-by-name"));
  }
  out.host = std::string(ReplyText(*r.element[0]));
  return out;
}

}  // namespace

absl::StatusOr<RedisHost> SentinelWatcher::AskSentinels(const RedisUrl& url, int64_t timeout_ms) {
  std::vector<std::string> errors;
  for (const RedisHost& sentinel : url.hosts) {
    absl::StatusOr<RedisHost> master = AskOne(url, sentinel, timeout_ms);
    if (master.ok()) return master;
    errors.push_back(std::string(master.status().message()));
  }
  return absl::UnavailableError(
      absl::StrCat("no sentinel named master \"", url.master_name, "\": ",
                   absl::StrJoin(errors, "; ")));
}

SentinelWatcher::SentinelWatcher(SentinelOptions options) : options_(std::move(options)) {
  absl::StatusOr<std::unique_ptr<Wakeup>> wakeup = Wakeup::Create();
  if (!wakeup.ok()) {
    absl::MutexLock lock(&mu_);
    master_.error = absl::StrCat("cannot start the sentinel watcher: ", wakeup.status().message());
    LogError("redis: ", master_.error);
    return;
  }
  wakeup_ = *std::move(wakeup);
  thread_ = std::thread([this] { Run(); });
}

SentinelWatcher::~SentinelWatcher() {
  if (wakeup_ == nullptr) return;
  wakeup_->RequestStop();
  thread_.join();
}

SentinelWatcher::Master SentinelWatcher::Current() const {
  absl::MutexLock lock(&mu_);
  return master_;
}

void SentinelWatcher::Recheck() {
  if (wakeup_ != nullptr) wakeup_->Wake();
}

void SentinelWatcher::Update(const absl::StatusOr<RedisHost>& answer) {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    if (!answer.ok()) {
      if (master_.error != answer.status().message()) {
        LogWarning("redis: ", answer.status().message());
      }
      master_.error = std::string(answer.status().message());
      return;
    }
    master_.error.clear();
    if (!master_.address.has_value() || !(*master_.address == *answer)) {
      LogInfo("redis: sentinels name ", answer->ToString(), " master \"",
              options_.url.master_name, "\"",
              master_.address.has_value() ? absl::StrCat(" (was ", master_.address->ToString(), ")")
                                          : std::string());
      master_.address = *answer;
      ++master_.generation;
      changed = true;
    }
  }
  if (changed && options_.on_change) options_.on_change();
}

std::unique_ptr<RedisClient> SentinelWatcher::Subscribe() {
  const std::vector<RedisHost>& hosts = options_.url.hosts;
  for (size_t tries = 0; tries < hosts.size(); ++tries) {
    const RedisHost& sentinel = hosts[next_subscribe_++ % hosts.size()];
    absl::StatusOr<std::unique_ptr<RedisClient>> sub =
        ConnectSentinel(options_.url, sentinel, options_.timeout_ms);
    if (sub.ok() && (*sub)->Command({"SUBSCRIBE", kSwitchMaster}).ok()) return *std::move(sub);
  }
  return nullptr;
}

void SentinelWatcher::Run() {
  std::unique_ptr<RedisClient> sub;
  while (!wakeup_->stop_requested()) {
    // Subscribe first: a switch announced while the sentinels are asked is
    // then not missed.
    if (sub == nullptr) sub = Subscribe();
    Update(AskSentinels(options_.url, options_.timeout_ms));
    pollfd fd = {sub != nullptr ? sub->fd() : -1, POLLIN, 0};
    if (absl::StatusOr<bool> woken = wakeup_->Wait(absl::MakeSpan(&fd, 1), options_.recheck_ms);
        !woken.ok()) {
      LogError("redis: sentinel watcher: ", woken.status().message(), "; stopped");
      return;
    }
    if (sub == nullptr || !(fd.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    absl::StatusOr<std::vector<RedisReplyPtr>> messages = sub->ReadAvailable();
    if (!messages.ok()) {
      sub.reset();
      continue;
    }
    // "+switch-master <name> <old ip> <old port> <new ip> <new port>": taken
    // at once for our master; the inquiry at the top of the loop confirms it.
    for (const RedisReplyPtr& m : *messages) {
      if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
          m->element[2]->type != REDIS_REPLY_STRING) {
        continue;
      }
      std::vector<absl::string_view> f = absl::StrSplit(ReplyText(*m->element[2]), ' ');
      RedisHost to;
      if (f.size() == 5 && f[0] == options_.url.master_name && !f[3].empty() &&
          f[3].size() <= 255 && absl::SimpleAtoi(f[4], &to.port) && to.port > 0 &&
          to.port <= 65535) {
        to.host = std::string(f[3]);
        Update(to);
      }
    }
  }
}

}  // namespace toolgate
