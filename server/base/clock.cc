#include "server/base/clock.h"

#include <chrono>

namespace toolgate {

int64_t SystemClock::NowMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const SystemClock* SystemClock::Get() {
  static const SystemClock* const clock = new SystemClock();
  return clock;
}

}  // namespace toolgate
