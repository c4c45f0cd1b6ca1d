// The counting algorithms a limit may use. Every counter store implements
// all three, with the same meaning (see counter_store.h).
#ifndef TOOLGATE_SERVER_COUNTERS_ALGORITHM_H_
#define TOOLGATE_SERVER_COUNTERS_ALGORITHM_H_

#include "absl/strings/string_view.h"

namespace toolgate {

// sliding_window: never more than `max` in any interval of `window` (exact).
// fixed_window: at most `max` per calendar-aligned window.
// token_bucket: `max` tokens refilled per window, up to `burst`.
enum class Algorithm { kSlidingWindow, kFixedWindow, kTokenBucket };

// "sliding_window" | "fixed_window" | "token_bucket"
inline absl::string_view AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kSlidingWindow:
      return "sliding_window";
    case Algorithm::kFixedWindow:
      return "fixed_window";
    case Algorithm::kTokenBucket:
      return "token_bucket";
  }
  return "unknown";
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_COUNTERS_ALGORITHM_H_
