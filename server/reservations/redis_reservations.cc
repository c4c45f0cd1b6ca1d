#include "server/reservations/redis_reservations.h"

#include <hiredis/hiredis.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/base/clock.h"
#include "server/redis/reply.h"

namespace toolgate {

extern const char kReservationsScript[];

namespace {

int64_t NowMillis() { return SteadyClock::Get()->NowMillis(); }

// How long a record outlives its deadline, so that the creating server's
// sweep still finds it when it runs late.
constexpr int64_t kKeepAfterDeadlineMs = 60'000;
// Expiries recorded at most per sweep (the rest wait for the next).
constexpr int kMaxExpiriesPerSweep = 256;
constexpr int kFieldsPerLimit = 8;

absl::Status Malformed() { return absl::InternalError("redis: malformed reservations reply"); }

// The reply's code (element 0); false when the reply is not of the
// script's form.
bool Code(const redisReply& r, absl::string_view* code) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 2) return false;
  *code = ReplyText(*r.element[0]);
  return true;
}

absl::string_view Element(const redisReply& r, size_t i) {
  return i < r.elements ? ReplyText(*r.element[i]) : absl::string_view();
}

}  // namespace

// Each field as its length, ':' and its bytes; kFieldsPerLimit fields a
// limit (the key holds any byte, so no separator would do).
std::string RedisReservationStore::EncodeLimits(const std::vector<ReservedLimit>& limits) {
  std::string out;
  auto field = [&out](absl::string_view v) { absl::StrAppend(&out, v.size(), ":", v); };
  for (const ReservedLimit& l : limits) {
    field(l.check.key);
    field(absl::StrCat(static_cast<int>(l.check.algorithm)));
    field(absl::StrCat(l.check.window_ms));
    field(absl::StrCat(l.check.max));
    field(absl::StrCat(l.check.burst));
    field(absl::StrCat(l.check.cost));
    field(absl::StrCat(l.consumed_at_ms));
    field(l.cost_from ? "1" : "0");
  }
  return out;
}

absl::StatusOr<std::vector<ReservedLimit>> RedisReservationStore::DecodeLimits(
    absl::string_view text) {
  const absl::Status bad = absl::InternalError("reservation: malformed limits record");
  std::vector<absl::string_view> fields;
  while (!text.empty()) {
    const size_t colon = text.find(':');
    size_t n = 0;
    if (colon == absl::string_view::npos || !absl::SimpleAtoi(text.substr(0, colon), &n) ||
        n > text.size() - colon - 1) {
      return bad;
    }
    fields.push_back(text.substr(colon + 1, n));
    text.remove_prefix(colon + 1 + n);
  }
  if (fields.size() % kFieldsPerLimit != 0 ||
      fields.size() / kFieldsPerLimit > kMaxReservedLimits) {
    return bad;
  }
  std::vector<ReservedLimit> out;
  for (size_t i = 0; i < fields.size(); i += kFieldsPerLimit) {
    ReservedLimit l;
    int algorithm = 0;
    l.check.key = std::string(fields[i]);
    if (!absl::SimpleAtoi(fields[i + 1], &algorithm) || algorithm < 0 || algorithm > 2 ||
        !absl::SimpleAtoi(fields[i + 2], &l.check.window_ms) ||
        !absl::SimpleAtoi(fields[i + 3], &l.check.max) ||
        !absl::SimpleAtoi(fields[i + 4], &l.check.burst) ||
        !absl::SimpleAtoi(fields[i + 5], &l.check.cost) ||
        !absl::SimpleAtoi(fields[i + 6], &l.consumed_at_ms)) {
      return bad;
    }
    l.check.algorithm = static_cast<Algorithm>(algorithm);
    l.cost_from = fields[i + 7] == "1";
    out.push_back(std::move(l));
  }
  return out;
}

RedisReservationStore::RedisReservationStore(RedisReservationOptions options)
    : options_(std::move(options)) {
  ScriptRunnerOptions r;
  r.url = options_.url;
  r.script = kReservationsScript;
  r.name = "reservation store";
  r.timeout_ms = options_.timeout_ms;
  r.max_queue = options_.max_queue;
  r.tick_ms = options_.sweep_ms;
  r.tick = [this](RedisScriptRunner& runner) { Sweep(runner); };
  runner_ = std::make_unique<RedisScriptRunner>(std::move(r));
}

RedisReservationStore::~RedisReservationStore() { runner_.reset(); }

std::string RedisReservationStore::Key(const std::string& id) const {
  return absl::StrCat(options_.key_prefix, "res:{", id, "}");
}

int64_t RedisReservationStore::open() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(open_.size());
}

void RedisReservationStore::Create(NewReservation r, Callback<std::string> done) {
  bool full = false;
  {
    absl::MutexLock lock(&mu_);
    full = static_cast<int64_t>(open_.size()) + pending_creates_ >= options_.reservations.max_open;
    if (!full) ++pending_creates_;
  }
  if (full) {
    std::move(done)(absl::ResourceExhaustedError(
        absl::StrCat(options_.reservations.max_open,
                     " reservations are open already (--max-open-reservations)")));
    return;
  }
  int64_t bound = -1;
  for (const ReservedLimit& l : r.limits) {
    if (l.cost_from && (bound < 0 || l.check.cost < bound)) bound = l.check.cost;
  }
  std::string id = NewReservationId();
  runner_->Submit(
      {Key(id)},
      {"create", std::move(r.decision_id), absl::StrCat(options_.reservations.timeout_ms),
       absl::StrCat(bound), EncodeLimits(r.limits), absl::StrCat(kKeepAfterDeadlineMs)},
      [this, id, done = std::move(done)](absl::StatusOr<RedisReplyPtr> reply) mutable {
        absl::string_view code;
        absl::Status status = reply.status();
        if (status.ok() && (!Code(**reply, &code) || code != "created")) status = Malformed();
        {
          absl::MutexLock lock(&mu_);
          --pending_creates_;
          if (status.ok()) Track(id, options_.reservations.timeout_ms);
        }
        if (!status.ok()) return std::move(done)(status);
        std::move(done)(id);
      });
}

void RedisReservationStore::Settle(std::string id, SettleOutcome outcome,
                                   std::optional<int64_t> cost, Callback<Settlement> done) {
  std::string key = Key(id);
  runner_->Submit(
      {std::move(key)},
      {"settle", std::string(SettleOutcomeName(outcome)),
       cost.has_value() ? absl::StrCat(*cost) : std::string()},
      [this, id, outcome, cost, done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
        if (!r.ok()) return std::move(done)(r.status());
        const redisReply& reply = **r;
        absl::string_view code;
        if (!Code(reply, &code)) return std::move(done)(Malformed());
        if (code == "not_found") {
          return std::move(done)(absl::NotFoundError(
              absl::StrCat("reservation ", id, " is unknown or past its settlement timeout")));
        }
        if (code == "cost_too_high") {
          return std::move(done)(absl::InvalidArgumentError(
              absl::StrCat("cost ", *cost, " is more than the ", Element(reply, 2),
                           " units reserved; a settlement can only correct a cost downward")));
        }
        Settlement s;
        s.decision_id = std::string(Element(reply, 2));
        if (code == "already") {
          s.already_settled = true;
          s.outcome =
              Element(reply, 3) == "failed" ? SettleOutcome::kFailed : SettleOutcome::kSucceeded;
          int64_t c = 0;
          if (absl::SimpleAtoi(Element(reply, 4), &c)) s.cost = c;
          return std::move(done)(std::move(s));
        }
        if (code != "settled") return std::move(done)(Malformed());
        absl::StatusOr<std::vector<ReservedLimit>> limits = DecodeLimits(Element(reply, 3));
        if (!limits.ok()) return std::move(done)(limits.status());
        s.outcome = outcome;
        s.cost = cost;
        s.limits = *std::move(limits);
        {
          absl::MutexLock lock(&mu_);
          Untrack(id);
        }
        std::move(done)(std::move(s));
      });
}

void RedisReservationStore::Revert(std::string id, SettleOutcome outcome, Callback<bool> done) {
  runner_->Submit({Key(id)}, {"revert", std::string(SettleOutcomeName(outcome))},
                  [this, id, done = std::move(done)](absl::StatusOr<RedisReplyPtr> r) mutable {
                    if (!r.ok()) return std::move(done)(r.status());
                    absl::string_view code;
                    if (!Code(**r, &code)) return std::move(done)(Malformed());
                    if (code == "reverted") {
                      // Open again: counted here, and its expiry recorded
                      // here (the atomic check records it once).
                      int64_t left = 0;
                      absl::SimpleAtoi(Element(**r, 2), &left);
                      absl::MutexLock lock(&mu_);
                      Track(id, std::max<int64_t>(1, left));
                    }
                    std::move(done)(code == "reverted");
                  });
}

void RedisReservationStore::Track(const std::string& id, int64_t left_ms) {
  if (open_.contains(id)) return;
  open_[id] = deadlines_.emplace(NowMillis() + left_ms, id);
}

bool RedisReservationStore::Untrack(const std::string& id) {
  auto it = open_.find(id);
  if (it == open_.end()) return false;
  deadlines_.erase(it->second);
  open_.erase(it);
  return true;
}

void RedisReservationStore::Sweep(RedisScriptRunner& runner) {
  std::vector<std::string> due;
  {
    absl::MutexLock lock(&mu_);
    if (deadlines_.empty()) return;
    const int64_t now = NowMillis();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now &&
           due.size() < kMaxExpiriesPerSweep) {
      std::string id = deadlines_.begin()->second;
      Untrack(id);
      due.push_back(std::move(id));
    }
  }
  for (const std::string& id : due) {
    absl::StatusOr<RedisReplyPtr> r =
        runner.RunNow({Key(id)}, {"expire"}, NowMillis() + options_.timeout_ms);
    absl::string_view code;
    if (!r.ok() || !Code(**r, &code)) continue;  // The record just expires, unreported.
    if (code == "early") {
      // Redis's clock is behind this server's: ask again when it is due there.
      int64_t left = 0;
      absl::SimpleAtoi(Element(**r, 2), &left);
      absl::MutexLock lock(&mu_);
      Track(id, std::max<int64_t>(1, left));
      continue;
    }
    if (code == "expired" && options_.on_expired) {
      options_.on_expired(id, std::string(Element(**r, 2)));
    }
  }
}

}  // namespace toolgate
