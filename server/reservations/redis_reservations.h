// Redis reservation store: reservations shared by every server of a fleet,
// in the same Redis as the counters (any topology). A reservation created
// on one server can be settled on any other.
//
// Each reservation is one hash, `<prefix>res:{<id>}` (its own hash tag, so
// that a Cluster spreads them), changed only by runs of
// redis_reservations.lua: atomic in Redis and timed by its clock, so that
// exactly one settlement wins. Operations run off the decision path on a
// RedisScriptRunner (server/redis/script_runner.h: a queue, one worker, a
// deadline each).
//
// Expiry: the creating server remembers each of its reservations' deadline
// and, once it passes, runs an atomic check that records the commit
// (`on_expired`) when the reservation was never settled; so each expiry is
// reported once across the fleet. When that server is gone, the record
// just expires.
#ifndef TOOLGATE_SERVER_RESERVATIONS_REDIS_RESERVATIONS_H_
#define TOOLGATE_SERVER_RESERVATIONS_REDIS_RESERVATIONS_H_

#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/redis/script_runner.h"
#include "server/redis/url.h"
#include "server/reservations/reservation_store.h"

namespace toolgate {

struct RedisReservationOptions {
  RedisUrl url;
  std::string key_prefix = "toolgate:";
  ReservationOptions reservations;
  ReservationExpiredFn on_expired;
  int64_t timeout_ms = 1000;  // Of each Redis operation.
  int64_t sweep_ms = 100;     // How often due deadlines are looked at.
  size_t max_queue = 4096;
};

class RedisReservationStore final : public ReservationStore {
 public:
  explicit RedisReservationStore(RedisReservationOptions options);
  ~RedisReservationStore() override;

  void Create(NewReservation reservation, Callback<std::string> done) override;
  void Settle(std::string id, SettleOutcome outcome, std::optional<int64_t> cost,
              Callback<Settlement> done) override;
  void Revert(std::string id, SettleOutcome outcome, Callback<bool> done) override;
  int64_t open() const override;
  absl::string_view kind() const override { return "redis"; }

  // The reserved limits as the `limits` field holds them, and back
  // (INTERNAL when the text is not of that form). For tests.
  static std::string EncodeLimits(const std::vector<ReservedLimit>& limits);
  static absl::StatusOr<std::vector<ReservedLimit>> DecodeLimits(absl::string_view text);

 private:
  std::string Key(const std::string& id) const;
  // Worker thread: records the expiries that are due (`runner`: this
  // store's, which may not be in runner_ yet).
  void Sweep(RedisScriptRunner& runner);

  const RedisReservationOptions options_;

  mutable absl::Mutex mu_;
  // The reservations open here (created here, or reverted here) by
  // deadline (steady clock), until it passes or they are settled here;
  // `open_` finds each one's entry.
  using ByDeadline = std::multimap<int64_t, std::string>;
  ByDeadline deadlines_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, ByDeadline::iterator> open_ ABSL_GUARDED_BY(mu_);
  int64_t pending_creates_ ABSL_GUARDED_BY(mu_) = 0;
  // Adds `id`, due in `left_ms` (mu_ held).
  void Track(const std::string& id, int64_t left_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops tracking `id` (mu_ held); false when it was not tracked.
  bool Untrack(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<RedisScriptRunner> runner_;  // Last: its worker uses the above.
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_RESERVATIONS_REDIS_RESERVATIONS_H_
