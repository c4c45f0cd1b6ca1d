// The Redis limits script's protocol (redis_script.lua): the command that
// runs it for a batch of calls, and the reading of its reply. No I/O: the
// Redis counter store sends what is built here and hands back what Redis
// answered.
//
// Command, for calls c1..cN, each with limits l1..ln:
//   EVALSHA <sha> <numkeys> <key of each limit, call after call>
//           N  (<mode> n (<algorithm> <window_ms> <max> <burst>)*n)*N
// (EVAL <script> ... when Redis does not have the script cached), where
// <mode> is "0" (decide and consume), "1" (dry run) or "r<ms>" (refund the
// unit consumed by an admission at Redis time <ms>: ScriptCall::refund_at_ms).
//
// Reply: an array of integers: the script run's Redis time in ms (the time
// every admission of the run is recorded at), then call after call:
// `admitted` (0 or 1), then
// per limit `has_room` (0 or 1), `remaining`, `reset_after_ms`,
// `retry_after_ms`. A call one of whose keys holds a value of another type
// has `admitted` = 2 (kWrongTypeMarker) and, in place of the first limit's
// has_room, the 1-based position of that key; nothing of it was counted.
// A call one of whose keys is of the right type but holds content toolgate
// never writes (kCorruptMarker: not a number, negative, fractional, huge, a
// time past the Redis clock, more entries than a limit keeps) is reported
// the same way with `admitted` = 3 (position 0 when the script could not
// tell which key).
//
// Keys: `<prefix>{<counter instance>}:<algorithm>:<window_ms>` (see
// redis_store.h); the window and the algorithm are part of the key, so that
// a revision that changes either starts a separate counter rather than
// misreading (or resetting) the state another revision still uses.
#ifndef TOOLGATE_SERVER_COUNTERS_REDIS_SCRIPT_CODEC_H_
#define TOOLGATE_SERVER_COUNTERS_REDIS_SCRIPT_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/counters/counter_store.h"

struct redisReply;

namespace toolgate {

// The script's source, compiled in from redis_script.lua.
extern const char kRedisScript[];

// One call of a batch: its limits, and whether it only decides (dry run).
struct ScriptCall {
  std::vector<LimitCheck> checks;
  bool dry_run = false;
  // When > 0, the call is a refund: it gives back, exactly, the one unit each
  // of its limits consumed in an admission made by the script run whose
  // Redis time (DecodeBatch's `redis_time_ms`) was this. For a call that was
  // admitted in one Redis Cluster slot and refused in another. A refund
  // never creates a key, never leaves a counter with more room than it would
  // have had without that admission (a unit that has expired since is not
  // given back), and decodes as admitted with every limit has_room (the
  // other values are zeros). `dry_run` is ignored.
  int64_t refund_at_ms = 0;
};

class RedisScriptCodec {
 public:
  // `admitted` of a call one of whose keys holds a value of another type.
  static constexpr int64_t kWrongTypeMarker = 2;
  // `admitted` of a call one of whose keys holds corrupt content.
  static constexpr int64_t kCorruptMarker = 3;

  // Sliding windows with a max up to `exact_log_max` use an exact log ("s"),
  // larger ones 64 buckets ("b").
  RedisScriptCodec(std::string key_prefix, int64_t exact_log_max);

  const std::string& script() const { return script_; }
  const std::string& sha() const { return sha_; }  // SHA-1 of script(), hex.

  // The script's code for a limit's algorithm: s, b, f or t.
  char AlgorithmLetter(const LimitCheck& check) const;
  // The Redis key of a counter instance.
  std::string Key(const LimitCheck& check) const;

  // The command deciding `calls` (EVAL with the script itself when
  // `use_eval`), in RESP, into `out`: replaced, its capacity reused.
  void EncodeBatch(absl::Span<const ScriptCall* const> calls, bool use_eval,
                   std::string* out) const;

  // Reads the reply to EncodeBatch(calls): `done(i, result)` for each call
  // in order, with its result or, for a call whose key holds another type of
  // value or corrupt content, INTERNAL naming that key; and, when
  // `redis_time_ms` is not null, the script run's Redis time into it (before
  // the first `done`). An error reply, or a reply of the wrong shape, is
  // returned instead (INTERNAL), and neither `done` nor `redis_time_ms` is
  // touched.
  absl::Status DecodeBatch(const redisReply& reply, absl::Span<const ScriptCall* const> calls,
                           absl::FunctionRef<void(size_t, absl::StatusOr<AcquireResult>)> done,
                           int64_t* redis_time_ms = nullptr) const;

 private:
  // One call's result from its values in a well-formed reply.
  absl::StatusOr<AcquireResult> DecodeCall(const redisReply* const* values,
                                           const std::vector<LimitCheck>& checks) const;

  const std::string key_prefix_;
  const int64_t exact_log_max_;
  const std::string script_;
  const std::string sha_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_REDIS_SCRIPT_CODEC_H_
