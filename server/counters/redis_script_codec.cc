#include "server/counters/redis_script_codec.h"

#include <hiredis/hiredis.h>

#include "absl/strings/str_cat.h"
#include "server/base/digest.h"
#include "server/redis/reply.h"
#include "server/redis/resp.h"

namespace toolgate {
namespace {

// Each limit's values in the reply, after its call's `admitted`.
enum LimitField : size_t { kHasRoom, kRemaining, kResetAfter, kRetryAfter, kFieldsPerLimit };

// How many values of the reply belong to `call`.
size_t ReplyValues(const ScriptCall& call) { return 1 + kFieldsPerLimit * call.checks.size(); }

// One call's part of a well-formed reply.
class CallReply {
 public:
  explicit CallReply(const redisReply* const* values) : values_(values) {}
  long long admitted() const { return values_[0]->integer; }
  long long limit(size_t i, LimitField field) const {
    return values_[1 + kFieldsPerLimit * i + field]->integer;
  }

 private:
  const redisReply* const* values_;
};

}  // namespace

RedisScriptCodec::RedisScriptCodec(std::string key_prefix, int64_t exact_log_max)
    : key_prefix_(std::move(key_prefix)),
      exact_log_max_(exact_log_max),
      script_(kRedisScript),
      sha_(Sha1Hex(script_)) {}

char RedisScriptCodec::AlgorithmLetter(const LimitCheck& check) const {
  switch (check.algorithm) {
    case Algorithm::kSlidingWindow:
      return check.max <= exact_log_max_ ? 's' : 'b';
    case Algorithm::kFixedWindow:
      return 'f';
    case Algorithm::kTokenBucket:
      return 't';
  }
  return 's';
}

absl::string_view RedisScriptCodec::KeyKind(char algorithm, char (&buf)[4]) {
  // Sliding windows keep format 1 (a list, a hash): no digit.
  const bool strings = algorithm == 'f' || algorithm == 't';
  size_t n = 0;
  buf[n++] = ':';
  buf[n++] = algorithm;
  if (strings) buf[n++] = kStringFormat;
  buf[n++] = ':';
  return absl::string_view(buf, n);
}

std::string RedisScriptCodec::Key(const LimitCheck& check) const {
  char buf[4];
  return absl::StrCat(key_prefix_, "{", check.key, "}", KeyKind(AlgorithmLetter(check), buf),
                      check.window_ms);
}

void RedisScriptCodec::EncodeBatch(absl::Span<const ScriptCall* const> calls, bool use_eval,
                                   std::string* out) const {
  size_t keys = 0;
  bool strings = false;  // A fixed window or token bucket: the script reads strings.
  for (const ScriptCall* call : calls) {
    keys += call->checks.size();
    for (const LimitCheck& c : call->checks) {
      strings = strings || c.algorithm == Algorithm::kFixedWindow ||
                c.algorithm == Algorithm::kTokenBucket;
    }
  }
  // Command, script, numkeys, the keys, the number of calls, whether it
  // reads strings, per call its mode and number of limits, per limit five
  // values.
  RespCommand cmd(out, 3 + keys + 2 + 2 * calls.size() + 5 * keys);
  cmd.Arg(use_eval ? absl::string_view("EVAL") : absl::string_view("EVALSHA"));
  cmd.Arg(use_eval ? script_ : sha_);
  cmd.Arg(static_cast<int64_t>(keys));
  for (const ScriptCall* call : calls) {
    for (const LimitCheck& c : call->checks) {
      char buf[4];
      cmd.ArgOfPieces({key_prefix_, "{", c.key, "}", KeyKind(AlgorithmLetter(c), buf),
                       absl::AlphaNum(c.window_ms).Piece()});
    }
  }
  cmd.Arg(static_cast<int64_t>(calls.size()));
  cmd.Arg(strings ? absl::string_view("1") : absl::string_view("0"));
  for (const ScriptCall* call : calls) {
    if (call->refund_at_ms > 0) {
      cmd.ArgOfPieces({"r", absl::AlphaNum(call->refund_at_ms).Piece()});
    } else {
      cmd.Arg(call->dry_run ? absl::string_view("1") : absl::string_view("0"));
    }
    cmd.Arg(static_cast<int64_t>(call->checks.size()));
    for (const LimitCheck& c : call->checks) {
      const char alg = AlgorithmLetter(c);
      cmd.Arg(absl::string_view(&alg, 1));
      cmd.Arg(c.window_ms);
      cmd.Arg(c.max);
      cmd.Arg(c.burst);
      cmd.Arg(c.cost);
    }
  }
}

absl::Status RedisScriptCodec::DecodeBatch(
    const redisReply& reply, absl::Span<const ScriptCall* const> calls,
    absl::FunctionRef<void(size_t, absl::StatusOr<AcquireResult>)> done,
    int64_t* redis_time_ms) const {
  if (IsErrorReply(reply)) return absl::InternalError(absl::StrCat("redis: ", ReplyText(reply)));
  size_t expected = 1;  // The run's Redis time, then the calls.
  for (const ScriptCall* call : calls) expected += ReplyValues(*call);
  bool well_formed = reply.type == REDIS_REPLY_ARRAY && reply.elements == expected;
  for (size_t i = 0; well_formed && i < reply.elements; ++i) {
    well_formed = reply.element[i]->type == REDIS_REPLY_INTEGER;
  }
  // The time is a Redis clock's (positive); each call's `admitted` is 0, 1
  // or a marker, and a refund's is never 0.
  well_formed = well_formed && reply.element[0]->integer > 0;
  for (size_t i = 0, at = 1; well_formed && i < calls.size(); ++i) {
    const long long admitted = reply.element[at]->integer;
    well_formed = (admitted == 0 && calls[i]->refund_at_ms <= 0) || admitted == 1 ||
                  admitted == kWrongTypeMarker || admitted == kCorruptMarker;
    at += ReplyValues(*calls[i]);
  }
  if (!well_formed) return absl::InternalError("redis: unexpected reply to the limits script");
  if (redis_time_ms != nullptr) *redis_time_ms = reply.element[0]->integer;
  for (size_t i = 0, at = 1; i < calls.size(); ++i) {
    done(i, DecodeCall(reply.element + at, calls[i]->checks));
    at += ReplyValues(*calls[i]);
  }
  return absl::OkStatus();
}

absl::StatusOr<AcquireResult> RedisScriptCodec::DecodeCall(
    const redisReply* const* values, const std::vector<LimitCheck>& checks) const {
  const CallReply call(values);
  if (call.admitted() == kWrongTypeMarker || call.admitted() == kCorruptMarker) {
    const long long k = checks.empty() ? 0 : call.limit(0, kHasRoom);
    const bool known = k >= 1 && static_cast<size_t>(k) <= checks.size();
    return absl::InternalError(absl::StrCat(
        "redis: counter key ", known ? Key(checks[k - 1]) : std::string("?"),
        call.admitted() == kWrongTypeMarker
            ? " holds a value toolgate did not write (WRONGTYPE); nothing counted"
            : " holds content toolgate did not write (corrupt: not its numbers, or more "
              "entries than a limit keeps); nothing counted"));
  }
  AcquireResult result;
  result.admitted = call.admitted() == 1;
  result.outcomes.resize(checks.size());
  for (size_t i = 0; i < checks.size(); ++i) {
    LimitOutcome& o = result.outcomes[i];
    o.has_room = call.limit(i, kHasRoom) == 1;
    o.remaining = call.limit(i, kRemaining);
    o.reset_after_ms = call.limit(i, kResetAfter);
    o.retry_after_ms = call.limit(i, kRetryAfter);
  }
  return result;
}

}  // namespace toolgate
