#include "server/redis/backoff.h"

#include <algorithm>

#include "absl/random/distributions.h"

namespace toolgate {

int64_t Backoff::NextDelayMs(absl::BitGenRef gen) {
  base_ms_ = base_ms_ == 0 ? options_.initial_ms : std::min(options_.max_ms, 2 * base_ms_);
  base_ms_ = std::min(base_ms_, options_.max_ms);
  if (options_.jitter <= 0) return base_ms_;
  const double factor = absl::Uniform<double>(gen, 1 - options_.jitter, 1 + options_.jitter);
  return static_cast<int64_t>(static_cast<double>(base_ms_) * factor);
}

}  // namespace toolgate
