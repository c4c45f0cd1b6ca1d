#include "server/provider/redis_policy_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace toolgate {
namespace {

const std::string& Prefix() {
  static const std::string* const p = new std::string(kPolicyKeyPrefix);
  return *p;
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Activates ARGV[1] if it was pushed: remembers the old active revision in
// the history (unless it is the same), sets the pointer, announces it.
constexpr char kActivateScript[] = R"(
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND') end
local old = redis.call('GET', KEYS[2])
if old and old ~= ARGV[1] then
  redis.call('LPUSH', KEYS[3], old)
  redis.call('LTRIM', KEYS[3], 0, 99)
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('PUBLISH', KEYS[4], ARGV[1])
return 1
)";

// Rolls back to the most recent previous revision that still exists.
constexpr char kRollbackScript[] = R"(
while true do
  local prev = redis.call('LPOP', KEYS[2])
  if not prev then return redis.error_reply('NOHISTORY') end
  if redis.call('EXISTS', ARGV[1] .. prev) == 1 then
    redis.call('SET', KEYS[1], prev)
    redis.call('PUBLISH', KEYS[3], prev)
    return prev
  end
end
)";

}  // namespace

struct RedisPolicyStore::Conn {
  redisContext* ctx = nullptr;
  ~Conn() {
    if (ctx != nullptr) redisFree(ctx);
  }
  // Runs a command; the reply (caller frees) or an error status.
  absl::StatusOr<redisReply*> Run(const std::vector<std::string>& argv) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const std::string& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
    if (r == nullptr) return absl::UnavailableError(absl::StrCat("redis: ", ctx->errstr));
    if (r->type == REDIS_REPLY_ERROR) {
      std::string msg(r->str, r->len);
      freeReplyObject(r);
      // Script errors come back as "ERR <text>" (or "<text>", depending on the version).
      if (absl::EndsWith(msg, "NOTFOUND")) return absl::NotFoundError("revision not found");
      if (absl::EndsWith(msg, "NOHISTORY")) {
        return absl::FailedPreconditionError("no previous revision to roll back to");
      }
      return absl::InternalError(absl::StrCat("redis: ", msg));
    }
    return r;
  }
};

RedisPolicyStore::RedisPolicyStore(std::unique_ptr<Conn> conn) : conn_(std::move(conn)) {}
RedisPolicyStore::~RedisPolicyStore() = default;

absl::StatusOr<std::unique_ptr<RedisPolicyStore>> RedisPolicyStore::Connect(const RedisUrl& url,
                                                                            absl::Duration timeout) {
  auto conn = std::make_unique<Conn>();
  const timeval tv = absl::ToTimeval(timeout);
  conn->ctx = redisConnectWithTimeout(url.host.c_str(), url.port, tv);
  if (conn->ctx == nullptr || conn->ctx->err) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", url.Redacted(), ": ",
                                               conn->ctx ? conn->ctx->errstr : "out of memory"));
  }
  redisSetTimeout(conn->ctx, tv);
  if (!url.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!url.username.empty()) auth.push_back(url.username);
    auth.push_back(url.password);
    auto r = conn->Run(auth);
    if (!r.ok()) return r.status();
    freeReplyObject(*r);
  }
  if (url.db != 0) {
    auto r = conn->Run({"SELECT", absl::StrCat(url.db)});
    if (!r.ok()) return r.status();
    freeReplyObject(*r);
  }
  return std::unique_ptr<RedisPolicyStore>(new RedisPolicyStore(std::move(conn)));
}

absl::StatusOr<std::string> RedisPolicyStore::Push(const std::vector<PolicySource>& sources) {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = LoadPolicyFromSources(sources);
  if (!policy.ok()) return policy.status();
  const std::string revision = (*policy)->revision();
  const std::string key = Prefix() + "rev:" + revision;
  std::vector<std::string> argv = {"HSET", key};
  for (const PolicySource& s : sources) {
    argv.push_back(s.name);
    argv.push_back(s.content);
  }
  // Replace, not merge: a revision is exactly its sources.
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"DEL", key}, argv, {"ZADD", Prefix() + "revisions", absl::StrCat(NowMillis()), revision}}) {
    auto r = conn_->Run(cmd);
    if (!r.ok()) return r.status();
    freeReplyObject(*r);
  }
  return revision;
}

absl::Status RedisPolicyStore::Activate(const std::string& revision) {
  auto r = conn_->Run({"EVAL", kActivateScript, "4", Prefix() + "rev:" + revision,
                       Prefix() + "active", Prefix() + "history", Prefix() + "events", revision});
  if (!r.ok()) {
    if (absl::IsNotFound(r.status())) {
      return absl::NotFoundError(absl::StrCat("revision \"", revision,
                                              "\" was not pushed (see 'toolgate policy list')"));
    }
    return r.status();
  }
  freeReplyObject(*r);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RedisPolicyStore::Rollback() {
  auto r = conn_->Run({"EVAL", kRollbackScript, "3", Prefix() + "active", Prefix() + "history",
                       Prefix() + "events", Prefix() + "rev:"});
  if (!r.ok()) return r.status();
  std::string out((*r)->str ? (*r)->str : "", (*r)->str ? (*r)->len : 0);
  freeReplyObject(*r);
  return out;
}

absl::StatusOr<std::string> RedisPolicyStore::ActiveRevision() {
  auto r = conn_->Run({"GET", Prefix() + "active"});
  if (!r.ok()) return r.status();
  if ((*r)->type != REDIS_REPLY_STRING) {
    freeReplyObject(*r);
    return absl::NotFoundError("no revision is active yet (toolgate policy activate REV)");
  }
  std::string out((*r)->str, (*r)->len);
  freeReplyObject(*r);
  return out;
}

absl::StatusOr<std::vector<PolicySource>> RedisPolicyStore::Sources(const std::string& revision) {
  auto r = conn_->Run({"HGETALL", Prefix() + "rev:" + revision});
  if (!r.ok()) return r.status();
  std::vector<PolicySource> out;
  for (size_t i = 0; i + 1 < (*r)->elements; i += 2) {
    out.push_back({std::string((*r)->element[i]->str, (*r)->element[i]->len),
                   std::string((*r)->element[i + 1]->str, (*r)->element[i + 1]->len)});
  }
  freeReplyObject(*r);
  if (out.empty()) return absl::NotFoundError(absl::StrCat("revision \"", revision, "\" is not in Redis"));
  // HGETALL order is arbitrary; sources are in name order, as from a directory.
  std::sort(out.begin(), out.end(),
            [](const PolicySource& a, const PolicySource& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<std::vector<StoredRevision>> RedisPolicyStore::List() {
  auto active = ActiveRevision();
  auto r = conn_->Run({"ZREVRANGE", Prefix() + "revisions", "0", "-1", "WITHSCORES"});
  if (!r.ok()) return r.status();
  std::vector<StoredRevision> out;
  for (size_t i = 0; i + 1 < (*r)->elements; i += 2) {
    StoredRevision s;
    s.revision = std::string((*r)->element[i]->str, (*r)->element[i]->len);
    s.pushed_at_ms = std::stoll(std::string((*r)->element[i + 1]->str, (*r)->element[i + 1]->len));
    s.active = active.ok() && *active == s.revision;
    out.push_back(std::move(s));
  }
  freeReplyObject(*r);
  return out;
}

}  // namespace toolgate
