#include "server/approvals/redis_approvals.h"

#include <hiredis/hiredis.h>
#include <poll.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "server/approvals/memory_approvals.h"
#include "server/base/clock.h"
#include "server/base/digest.h"
#include "server/base/log.h"
#include "server/redis/cluster.h"
#include "server/redis/reply.h"

namespace toolgate {

extern const char kApprovalsScript[];

namespace {

int64_t NowMillis() { return SteadyClock::Get()->NowMillis(); }

// Reconnecting the subscriber waits at least this long after a failure.
constexpr int64_t kReconnectMillis = 200;

v1::ApprovalState StateFromName(absl::string_view s) {
  if (s == "pending") return v1::APPROVAL_STATE_PENDING;
  if (s == "approved") return v1::APPROVAL_STATE_APPROVED;
  if (s == "denied") return v1::APPROVAL_STATE_DENIED;
  if (s == "expired") return v1::APPROVAL_STATE_EXPIRED;
  if (s == "used") return v1::APPROVAL_STATE_USED;
  return v1::APPROVAL_STATE_UNSPECIFIED;
}

v1::ApprovalEventKind EventFromName(absl::string_view s) {
  if (s == "created") return v1::APPROVAL_EVENT_CREATED;
  if (s == "approved") return v1::APPROVAL_EVENT_APPROVED;
  if (s == "denied") return v1::APPROVAL_EVENT_DENIED;
  if (s == "used") return v1::APPROVAL_EVENT_USED;
  if (s == "expired") return v1::APPROVAL_EVENT_EXPIRED;
  return v1::APPROVAL_EVENT_UNSPECIFIED;
}

int64_t ToInt(absl::string_view s) {
  int64_t v = 0;
  return absl::SimpleAtoi(s, &v) ? v : 0;
}

// The approval held in reply elements [from, from + count) (HGETALL pairs),
// as a reader sees it at Redis time `now`.
v1::Approval FromFields(const redisReply& reply, size_t from, size_t count, int64_t now) {
  v1::Approval a;
  int64_t expires = 0;
  for (size_t i = from; i + 1 < from + count && i + 1 < reply.elements; i += 2) {
    const absl::string_view k = ReplyText(*reply.element[i]);
    const absl::string_view v = ReplyText(*reply.element[i + 1]);
    if (k == "id") a.set_id(std::string(v));
    else if (k == "state") a.set_state(StateFromName(v));
    else if (k == "grant") a.set_grant(std::string(v));
    else if (k == "tool") a.set_tool(std::string(v));
    else if (k == "server") a.set_server(std::string(v));
    else if (k == "session") a.set_session(std::string(v));
    else if (k == "digest") a.set_args_digest(std::string(v));
    else if (k == "args") a.set_args_json(std::string(v));
    else if (k == "rule") a.set_rule(std::string(v));
    else if (k == "reason") a.set_reason(std::string(v));
    else if (k == "rev") a.set_policy_version(std::string(v));
    else if (k == "reqid") a.set_request_id(std::string(v));
    else if (k == "created") SetMillis(ToInt(v), a.mutable_created_at());
    else if (k == "expires") SetMillis(expires = ToInt(v), a.mutable_expires_at());
    else if (k == "decided_at") SetMillis(ToInt(v), a.mutable_decided_at());
    else if (k == "decided_by") a.set_decided_by(std::string(v));
    else if (k == "note") a.set_note(std::string(v));
    else if (k == "used_at") SetMillis(ToInt(v), a.mutable_used_at());
    else if (k == "used_by") a.set_used_by_decision(std::string(v));
  }
  if ((a.state() == v1::APPROVAL_STATE_PENDING || a.state() == v1::APPROVAL_STATE_APPROVED) &&
      now >= expires) {
    a.set_state(v1::APPROVAL_STATE_EXPIRED);
  }
  return a;
}

// The reply's code (element 0) and Redis time (element 1); false when the
// reply is not of the script's form.
bool Head(const redisReply& r, absl::string_view* code, int64_t* now) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 2) return false;
  *code = ReplyText(*r.element[0]);
  *now = ToInt(ReplyText(*r.element[1]));
  return true;
}

absl::Status Malformed() { return absl::InternalError("redis: malformed approvals reply"); }

v1::Approval Whole(const redisReply& r, int64_t now) { return FromFields(r, 2, r.elements - 2, now); }

}  // namespace

RedisApprovalStore::RedisApprovalStore(RedisApprovalOptions options)
    : options_(std::move(options)), prefix_(options_.key_prefix + "{approvals}:") {
  ScriptRunnerOptions r;
  r.url = options_.url;
  r.script = kApprovalsScript;
  r.name = "approval store";
  r.timeout_ms = options_.timeout_ms;
  r.max_queue = options_.max_queue;
  r.tick_ms = options_.sweep_ms;
  r.tick = [this](RedisScriptRunner& runner) { Sweep(runner); };
  runner_ = std::make_unique<RedisScriptRunner>(std::move(r));
  subscriber_ = std::thread([this] { Subscriber(); });
}

RedisApprovalStore::~RedisApprovalStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  subscriber_.join();
  // Answers what is still queued, then joins the worker.
  runner_.reset();
}

bool RedisApprovalStore::subscribed() const {
  absl::MutexLock lock(&mu_);
  return subscribed_;
}

void RedisApprovalStore::Emit(const ApprovalEventFn& fn, v1::ApprovalEventKind kind,
                              const v1::Approval& a) const {
  if (fn) fn(kind, a);
}

void RedisApprovalStore::Submit(std::vector<std::string> args, ReplyFn done) {
  runner_->Submit({prefix_ + "idx"}, std::move(args), std::move(done));
}

absl::StatusOr<RedisReplyPtr> RedisApprovalStore::Run(RedisScriptRunner& runner,
                                                      const std::vector<std::string>& args,
                                                      int64_t deadline) {
  return runner.RunNow({prefix_ + "idx"}, args, deadline);
}

void RedisApprovalStore::Sweep(RedisScriptRunner& runner) {
  const int64_t deadline = NowMillis() + options_.timeout_ms;
  absl::StatusOr<RedisReplyPtr> reply = Run(runner, {"sweep", prefix_}, deadline);
  if (!reply.ok()) return;  // Tried again at the next sweep.
  absl::string_view code;
  int64_t now = 0;
  if (!Head(**reply, &code, &now)) return;
  for (size_t i = 2; i < (*reply)->elements; ++i) {
    const std::string id(ReplyText(*(*reply)->element[i]));
    absl::StatusOr<v1::Approval> a = GetNow(runner, id, deadline);
    if (a.ok()) Emit(options_.events.local, v1::APPROVAL_EVENT_EXPIRED, *a);
  }
}

absl::StatusOr<v1::Approval> RedisApprovalStore::GetNow(RedisScriptRunner& runner,
                                                        const std::string& id, int64_t deadline) {
  absl::StatusOr<RedisReplyPtr> reply = Run(runner, {"get", prefix_, id}, deadline);
  if (!reply.ok()) return reply.status();
  absl::string_view code;
  int64_t now = 0;
  if (!Head(**reply, &code, &now)) return Malformed();
  if (code != "ok") return absl::NotFoundError(absl::StrCat("approval ", id, " is unknown"));
  return Whole(**reply, now);
}

void RedisApprovalStore::Subscriber() {
  const std::string channel = prefix_ + "events";
  std::unique_ptr<RedisClient> sub;
  int64_t next_try = 0;
  size_t seed = 0;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (sub == nullptr) subscribed_ = false;
    }
    const int64_t now = NowMillis();
    if (sub == nullptr) {
      if (now < next_try) {
        absl::SleepFor(absl::Milliseconds(std::min<int64_t>(next_try - now, 100)));
        continue;
      }
      // Any node will do in a Cluster: PUBLISH reaches every node.
      const RedisUrl url = options_.url.mode == RedisMode::kCluster
                               ? options_.url.At(options_.url.hosts[seed++ % options_.url.hosts.size()])
                               : options_.url;
      absl::StatusOr<std::unique_ptr<RedisClient>> c =
          RedisClient::Connect(url, absl::Milliseconds(options_.timeout_ms));
      if (c.ok() && (*c)->Command({"SUBSCRIBE", channel}).ok()) {
        sub = *std::move(c);
        absl::MutexLock lock(&mu_);
        subscribed_ = true;
      } else {
        next_try = now + kReconnectMillis;
        continue;
      }
    }
    pollfd p{sub->fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    absl::StatusOr<std::vector<RedisReplyPtr>> messages = sub->ReadAvailable();
    if (!messages.ok()) {
      sub.reset();
      next_try = NowMillis() + kReconnectMillis;
      continue;
    }
    for (const RedisReplyPtr& m : *messages) {
      if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
          ReplyText(*m->element[0]) != "message") {
        continue;
      }
      const std::pair<absl::string_view, absl::string_view> parts =
          absl::StrSplit(ReplyText(*m->element[2]), absl::MaxSplits(':', 1));
      const v1::ApprovalEventKind kind = EventFromName(parts.first);
      if (kind == v1::APPROVAL_EVENT_UNSPECIFIED || !IsApprovalId(parts.second)) continue;
      // Read on the worker, in order with the other operations.
      Get(std::string(parts.second), [this, kind](absl::StatusOr<v1::Approval> a) {
        if (a.ok()) Emit(options_.events.fleet, kind, *a);
      });
    }
  }
}

void RedisApprovalStore::Create(NewApproval in, Callback<CreatedApproval> done) {
  const ApprovalBinding& b = in.binding;
  std::vector<std::string> args = {"create",
                                   prefix_,
                                   NewApprovalId(),
                                   BindingKey(b),
                                   absl::StrCat(in.ttl_ms),
                                   absl::StrCat(options_.limits.max_open),
                                   absl::StrCat(options_.limits.max_open_per_grant),
                                   absl::StrCat(options_.limits.retention_ms),
                                   b.grant,
                                   b.tool,
                                   b.server,
                                   b.session,
                                   b.args_digest,
                                   std::move(in.args_json),
                                   std::move(in.rule),
                                   std::move(in.reason),
                                   std::move(in.policy_version),
                                   std::move(in.request_id),
                                   absl::StrCat(options_.limits.max_records())};
  Submit(std::move(args), [this, done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
    if (!r.ok()) return std::move(done)(r.status());
    absl::string_view code;
    int64_t now = 0;
    if (!Head(**r, &code, &now)) return std::move(done)(Malformed());
    if (code == "full") {
      return std::move(done)(absl::ResourceExhaustedError(absl::StrCat(
          options_.limits.max_open, " approvals are open already (--max-open-approvals)")));
    }
    if (code == "grant_full") {
      return std::move(done)(absl::ResourceExhaustedError(
          absl::StrCat("this grant has ", options_.limits.max_open_per_grant,
                       " approvals open already (--max-open-approvals-per-grant)")));
    }
    CreatedApproval out{Whole(**r, now), code == "created"};
    if (out.created) Emit(options_.events.local, v1::APPROVAL_EVENT_CREATED, out.approval);
    std::move(done)(std::move(out));
  });
}

void RedisApprovalStore::Redeem(std::string id, ApprovalBinding b, std::string decision_id,
                                bool dry_run, Callback<RedeemResult> done) {
  std::vector<std::string> args = {"redeem",  prefix_,       id,
                                   b.grant,   b.tool,        b.server,
                                   b.session, b.args_digest, std::move(decision_id),
                                   dry_run ? "1" : "0"};
  Submit(std::move(args), [this, id, dry_run, done = std::move(done)](
                              absl::StatusOr<RedisReplyPtr> r) mutable {
    if (!r.ok()) return std::move(done)(r.status());
    absl::string_view code;
    int64_t now = 0;
    if (!Head(**r, &code, &now)) return std::move(done)(Malformed());
    RedeemResult out;
    if (code == "not_found") {
      out.outcome = RedeemOutcome::kNotFound;
      return std::move(done)(std::move(out));
    }
    if (code == "mismatch") {
      out.outcome = RedeemOutcome::kMismatch;
      const absl::string_view field = (*r)->elements > 2 ? ReplyText(*(*r)->element[2]) : "";
      out.field = field == "digest" ? "arguments" : std::string(field);
      out.approval.set_id(id);
      return std::move(done)(std::move(out));
    }
    out.approval = Whole(**r, now);
    if (code == "redeemed") {
      out.outcome = RedeemOutcome::kRedeemed;
      if (!dry_run) Emit(options_.events.local, v1::APPROVAL_EVENT_USED, out.approval);
    } else if (code == "pending") {
      out.outcome = RedeemOutcome::kPending;
    } else if (code == "denied") {
      out.outcome = RedeemOutcome::kDenied;
    } else if (code == "expired") {
      out.outcome = RedeemOutcome::kExpired;
    } else if (code == "used") {
      out.outcome = RedeemOutcome::kUsed;
    } else {
      return std::move(done)(Malformed());
    }
    std::move(done)(std::move(out));
  });
}

void RedisApprovalStore::Release(std::string id, std::string decision_id, Callback<bool> done) {
  Submit({"release", prefix_, std::move(id), std::move(decision_id)},
         [done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
           if (!r.ok()) return std::move(done)(r.status());
           absl::string_view code;
           int64_t now = 0;
           if (!Head(**r, &code, &now)) return std::move(done)(Malformed());
           std::move(done)(code == "released");
         });
}

void RedisApprovalStore::Decide(std::string id, bool approve, std::string approver,
                                std::string note, Callback<v1::Approval> done) {
  Submit({"decide", prefix_, id, approve ? "1" : "0", std::move(approver), std::move(note)},
         [this, id, done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
           if (!r.ok()) return std::move(done)(r.status());
           absl::string_view code;
           int64_t now = 0;
           if (!Head(**r, &code, &now)) return std::move(done)(Malformed());
           if (code == "not_found") {
             return std::move(done)(absl::NotFoundError(absl::StrCat("approval ", id, " is unknown")));
           }
           v1::Approval a = Whole(**r, now);
           if (absl::StartsWith(code, "not_pending:")) {
             return std::move(done)(absl::FailedPreconditionError(absl::StrCat(
                 "approval ", id, " is ", ApprovalStateName(a.state()),
                 a.decided_by().empty() ? std::string()
                                        : absl::StrCat(" (decided by ", a.decided_by(), ")"),
                 ", not pending")));
           }
           Emit(options_.events.local,
                code == "approved" ? v1::APPROVAL_EVENT_APPROVED : v1::APPROVAL_EVENT_DENIED, a);
           std::move(done)(std::move(a));
         });
}

void RedisApprovalStore::Get(std::string id, Callback<v1::Approval> done) {
  Submit({"get", prefix_, id},
         [id, done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
           if (!r.ok()) return std::move(done)(r.status());
           absl::string_view code;
           int64_t now = 0;
           if (!Head(**r, &code, &now)) return std::move(done)(Malformed());
           if (code != "ok") {
             return std::move(done)(absl::NotFoundError(absl::StrCat("approval ", id, " is unknown")));
           }
           std::move(done)(Whole(**r, now));
         });
}

void RedisApprovalStore::List(ApprovalFilter f, Callback<std::vector<v1::Approval>> done) {
  std::string state = f.state == v1::APPROVAL_STATE_UNSPECIFIED
                          ? std::string()
                          : std::string(ApprovalStateName(f.state));
  Submit({"list", prefix_, std::move(state), f.grant, f.tool, absl::StrCat(f.limit),
          absl::StrCat(kListScan)},
         [done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
           if (!r.ok()) return std::move(done)(r.status());
           absl::string_view code;
           int64_t now = 0;
           if (!Head(**r, &code, &now)) return std::move(done)(Malformed());
           std::vector<v1::Approval> out;
           const redisReply& reply = **r;
           for (size_t i = 2; i < reply.elements;) {
             const size_t n = static_cast<size_t>(ToInt(ReplyText(*reply.element[i])));
             if (i + 1 + n > reply.elements) return std::move(done)(Malformed());
             out.push_back(FromFields(reply, i + 1, n, now));
             i += 1 + n;
           }
           std::move(done)(std::move(out));
         });
}

}  // namespace toolgate
