#include "server/provider/redis_policy_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/base/utf8.h"

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

RedisPolicyStore::RedisPolicyStore(std::unique_ptr<RedisClient> client)
    : client_(std::move(client)) {}
RedisPolicyStore::~RedisPolicyStore() = default;

absl::StatusOr<std::unique_ptr<RedisPolicyStore>> RedisPolicyStore::Connect(const RedisUrl& url,
                                                                            absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<RedisClient>> client = RedisClient::Connect(url, timeout);
  if (!client.ok()) return client.status();
  return std::unique_ptr<RedisPolicyStore>(new RedisPolicyStore(*std::move(client)));
}

absl::StatusOr<RedisReplyPtr> RedisPolicyStore::Run(absl::Span<const std::string> argv) {
  absl::StatusOr<RedisReplyPtr> reply = client_->Command(argv);
  // An error reply is INTERNAL "redis: <text>"; a script's error comes back
  // as "ERR <text>" (or "<text>", depending on the version).
  if (reply.ok() || !absl::IsInternal(reply.status())) return reply;
  if (absl::EndsWith(reply.status().message(), "NOTFOUND")) {
    return absl::NotFoundError("revision not found");
  }
  if (absl::EndsWith(reply.status().message(), "NOHISTORY")) {
    return absl::FailedPreconditionError("no previous revision to roll back to");
  }
  return reply;
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
    if (auto r = Run(cmd); !r.ok()) return r.status();
  }
  return revision;
}

absl::Status RedisPolicyStore::Activate(const std::string& revision) {
  auto r = Run({"EVAL", kActivateScript, "4", Prefix() + "rev:" + revision, Prefix() + "active",
                Prefix() + "history", Prefix() + "events", revision});
  if (absl::IsNotFound(r.status())) {
    return absl::NotFoundError(
        absl::StrCat("revision \"", EscapeForLog(revision),
                     "\" was not pushed (see 'toolgate policy list')"));
  }
  return r.status();
}

absl::StatusOr<std::string> RedisPolicyStore::Rollback() {
  auto r = Run({"EVAL", kRollbackScript, "3", Prefix() + "active", Prefix() + "history",
                Prefix() + "events", Prefix() + "rev:"});
  if (!r.ok()) return r.status();
  return std::string(ReplyText(**r));
}

absl::StatusOr<std::string> RedisPolicyStore::ActiveRevision() {
  auto r = Run({"GET", Prefix() + "active"});
  if (!r.ok()) return r.status();
  if ((*r)->type != REDIS_REPLY_STRING) {
    return absl::NotFoundError("no revision is active yet (toolgate policy activate REV)");
  }
  return std::string(ReplyText(**r));
}

absl::StatusOr<std::vector<PolicySource>> RedisPolicyStore::Sources(const std::string& revision) {
  auto r = Run({"HGETALL", Prefix() + "rev:" + revision});
  if (!r.ok()) return r.status();
  std::vector<PolicySource> out;
  for (size_t i = 0; i + 1 < (*r)->elements; i += 2) {
    out.push_back({std::string(ReplyText(*(*r)->element[i])),
                   std::string(ReplyText(*(*r)->element[i + 1]))});
  }
  if (out.empty()) {
    return absl::NotFoundError(
        absl::StrCat("revision \"", EscapeForLog(revision), "\" is not in Redis"));
  }
  // HGETALL order is arbitrary; sources are in name order, as from a directory.
  std::sort(out.begin(), out.end(),
            [](const PolicySource& a, const PolicySource& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<std::vector<StoredRevision>> RedisPolicyStore::List() {
  auto active = ActiveRevision();
  auto r = Run({"ZREVRANGE", Prefix() + "revisions", "0", "-1", "WITHSCORES"});
  if (!r.ok()) return r.status();
  std::vector<StoredRevision> out;
  for (size_t i = 0; i + 1 < (*r)->elements; i += 2) {
    StoredRevision s;
    s.revision = std::string(ReplyText(*(*r)->element[i]));
    if (!absl::SimpleAtoi(ReplyText(*(*r)->element[i + 1]), &s.pushed_at_ms)) {
      return absl::InternalError(absl::StrCat("redis: revision \"", EscapeForLog(s.revision),
                                              "\" has no valid push time"));
    }
    s.active = active.ok() && *active == s.revision;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace toolgate
