// Jittered exponential backoff between attempts to reach a server: the
// first delay is `initial_ms`, each next one twice the last up to `max_ms`,
// and each is multiplied by a random factor in [1 - jitter, 1 + jitter), so
// that clients that lost the same server do not all come back in step.
#ifndef TOOLGATE_SERVER_REDIS_BACKOFF_H_
#define TOOLGATE_SERVER_REDIS_BACKOFF_H_

#include <cstdint>

#include "absl/random/bit_gen_ref.h"

namespace toolgate {

struct BackoffOptions {
  int64_t initial_ms = 10;
  int64_t max_ms = 400;
  double jitter = 0.5;  // In [0, 1).
};

class Backoff {
 public:
  explicit Backoff(BackoffOptions options = {}) : options_(options) {}

  // The delay before the next attempt, drawn from `gen`; the one after it
  // will be longer, until Reset().
  int64_t NextDelayMs(absl::BitGenRef gen);

  // After a success: the next delay is the initial one again.
  void Reset() { base_ms_ = 0; }

 private:
  const BackoffOptions options_;
  int64_t base_ms_ = 0;  // The last delay before jitter; 0: none yet.
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_BACKOFF_H_
