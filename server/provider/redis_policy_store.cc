#include "server/provider/redis_policy_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <set>

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

// Pushes revision ARGV[1] (sources: name/content pairs from ARGV[6]) with its
// digest ARGV[2], signature ARGV[3] and signer ARGV[4] ("" when unsigned),
// at time ARGV[5]. Refused (CONFLICT) when the name holds other content: by
// its recorded digest, or for a revision pushed without one, by comparing
// the sources themselves. The same content is stored again (which restores
// it if it was changed in place); a signature given is recorded, none given
// keeps the one recorded.
constexpr char kPushScript[] = R"(
local recorded = redis.call('HGET', KEYS[2], 'digest')
if recorded then
  if recorded ~= ARGV[2] then return redis.error_reply('CONFLICT') end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  local old = redis.call('HGETALL', KEYS[1])
  if #old ~= #ARGV - 5 then return redis.error_reply('CONFLICT') end
  local want = {}
  for i = 6, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
  for i = 1, #old, 2 do
    if want[old[i]] ~= old[i + 1] then return redis.error_reply('CONFLICT') end
  end
end
redis.call('DEL', KEYS[1])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[2], 'digest', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'signature', ARGV[3], 'key', ARGV[4]) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
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
  if (absl::EndsWith(reply.status().message(), "CONFLICT")) {
    return absl::AlreadyExistsError("revision holds other content");
  }
  return reply;
}

absl::StatusOr<std::string> RedisPolicyStore::Push(const std::vector<PolicySource>& sources,
                                                   const Ed25519PrivateKey* signing_key) {
  absl::StatusOr<std::shared_ptr<const Policy>> policy = LoadPolicyFromSources(sources);
  if (!policy.ok()) return policy.status();
  // A hash holds one content per name: two files of one name cannot be stored.
  std::set<absl::string_view> names;
  for (const PolicySource& s : sources) {
    if (!names.insert(s.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two policy files are named \"", EscapeForLog(s.name), "\""));
    }
  }
  const std::string revision = (*policy)->revision();
  const RevisionMetadata meta = MakeRevisionMetadata(revision, sources, signing_key);
  std::vector<std::string> argv = {"EVAL",
                                   kPushScript,
                                   "3",
                                   Prefix() + "rev:" + revision,
                                   Prefix() + "meta:" + revision,
                                   Prefix() + "revisions",
                                   revision,
                                   meta.digest,
                                   meta.signature,
                                   meta.key,
                                   absl::StrCat(NowMillis())};
  for (const PolicySource& s : sources) {
    argv.push_back(s.name);
    argv.push_back(s.content);
  }
  auto r = Run(argv);
  if (absl::IsAlreadyExists(r.status())) {
    return absl::AlreadyExistsError(absl::StrCat(
        "revision \"", EscapeForLog(revision),
        "\" was already pushed with different content; a revision name is bound to its "
        "content: give the changed policy a new 'revision:' (or leave 'revision:' out to name it "
        "by its content)"));
  }
  if (!r.ok()) return r.status();
  return revision;
}

absl::StatusOr<std::optional<RevisionMetadata>> RedisPolicyStore::Metadata(
    const std::string& revision) {
  auto r = Run({"HGETALL", Prefix() + "meta:" + revision});
  if (!r.ok()) return r.status();
  if ((*r)->elements == 0) return std::optional<RevisionMetadata>();
  RevisionMetadata m;
  for (size_t i = 0; i + 1 < (*r)->elements; i += 2) {
    const absl::string_view field = ReplyText(*(*r)->element[i]);
    const std::string value(ReplyText(*(*r)->element[i + 1]));
    if (field == "digest") m.digest = value;
    if (field == "signature") m.signature = value;
    if (field == "key") m.key = value;
  }
  return std::optional<RevisionMetadata>(std::move(m));
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
    auto meta = Metadata(s.revision);
    if (!meta.ok()) return meta.status();
    if (meta->has_value()) {
      s.has_digest = !(*meta)->digest.empty();
      s.signed_by = (*meta)->key;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace toolgate
