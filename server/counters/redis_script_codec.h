// The Redis limits script's protocol (redis_script.lua): the command that
// runs it for a batch of calls, and the reading of its reply. No I/O: the
// Redis counter store sends what is built here and hands back what Redis
// answered.
//
// Command, for calls c1..cN, each with limits l1..ln:
//   EVALSHA <sha> <numkeys> <key of each limit, call after call>
//           N <strings> (<mode> n (<algorithm> <window_ms> <max> <burst> <cost>)*n)*N
// (EVAL <script> ... when Redis does not have the script cached), where
// <mode> is "0" (decide and consume), "1" (dry run) or "r<ms>" (refund
// <cost> units consumed by an admission at Redis time <ms>:
// ScriptCall::refund_at_ms), <cost> is what the call takes (LimitCheck::cost,
// 0..capacity; for a refund, what it gives back),
// and <strings> is "1" when a limit is a fixed window or token bucket (the
// script then reads the run's keys with one MGET), else "0".
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
// What each key holds:
//   s  sliding window, exact log: a list of admission times (ms), oldest
//      first; a call of cost c adds c entries of its time (c <= max, so the
//      log stays within max live entries).
//   b  sliding window, 64 buckets a window, for max above exact_log_max
//      (bounded memory; a partly expired bucket counts whole, so never
//      over-admits): a hash, bucket index (time / bucket size) -> count.
//   f  fixed window, calendar aligned: a string, the integer
//      (window index mod 100000) * 10^10 + count, e.g. "4800000000017"
//      (count 17); one INCRBY counts in the same window (its expiry, the
//      window's end, stays), a SET ... PX starts a new one.
//   t  token bucket: a string "<level> <last refill time>" (a call takes
//      window_ms units, max units come back per ms, the capacity is
//      burst * window_ms).
// Every key expires with its window. Corrupt, for the script: a number
// that is not whole, negative, above 2^53 or longer than 16 characters, a
// time more than one window past the Redis clock, a bucket hash of more
// than 128 fields, a fixed window index out of its range, a token bucket
// not of its two numbers.
//
// A refund of g units gives back at most what the admission at <ms> took:
// "s" removes up to g log entries equal to <ms> if <ms> is still in the
// window (else they have expired: nothing); "b" decrements that time's
// bucket by g, down to 0 at most; "f" decrements the count by g (down to 0)
// if the stored window is still <ms>'s; "t" adds g calls' units to the level
// refilled to now, capped at the capacity. It
// never creates a key, and, like any call, changes nothing when one of its
// keys is of another type or corrupt.
//
// Keys: `<prefix>{<counter instance>}:<algorithm>[<format>]:<window_ms>`,
// e.g. `toolgate:{rate|g|agent-7}:s:60000`, `toolgate:{daily|g|a}:f2:86400000`
// (see redis_store.h); the window and the algorithm are part of the key, so
// that a revision that changes either starts a separate counter rather than
// misreading (or resetting) the state another revision still uses. The
// braces are a Redis Cluster hash tag.
//
// <format> versions the value's layout where it changed: fixed windows and
// token buckets were hashes (`...}:f:...`, `...}:t:...`) and are strings
// now (kStringFormat: `...}:f2:...`, `...}:t2:...`); sliding windows are
// unchanged. Because the version is in the key, a server never misreads a
// counter of the other layout: during a rolling upgrade, a fleet that mixes
// old and new servers counts each fixed window and token bucket twice, one
// counter per layout, each enforcing the full limit, so up to twice the max
// (twice the burst) can be admitted until every server runs the new layout;
// the old keys then expire with their windows. Sliding windows stay exact
// throughout.
#ifndef TOOLGATE_SERVER_COUNTERS_REDIS_SCRIPT_CODEC_H_
#define TOOLGATE_SERVER_COUNTERS_REDIS_SCRIPT_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
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
  // When > 0, the call is a refund: it gives back, exactly, the `cost` units
  // each of its limits consumed in an admission made by the script run whose
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
  // The layout version of fixed windows and token buckets (strings), part
  // of their keys.
  static constexpr char kStringFormat = '2';

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
  // The key's part after the hash tag, ":<algorithm>[<format>]:", in `buf`.
  static absl::string_view KeyKind(char algorithm, char (&buf)[4]);

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
