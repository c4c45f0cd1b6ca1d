#include "server/base/clock.h"

#include <chrono>

namespace toolgate {
namespace {

template <typename StdClock>
int64_t MillisOf() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             StdClock::now().time_since_epoch())
      .count();
}

}  // namespace

int64_t SystemClock::NowMillis() const { return MillisOf<std::chrono::system_clock>(); }
int64_t SteadyClock::NowMillis() const { return MillisOf<std::chrono::steady_clock>(); }

const SystemClock* SystemClock::Get() {
  static const SystemClock* const clock = new SystemClock();
  return clock;
}

const SteadyClock* SteadyClock::Get() {
  static const SteadyClock* const clock = new SteadyClock();
  return clock;
}

}  // namespace toolgate
