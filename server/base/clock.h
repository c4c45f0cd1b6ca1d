// The one time source of the server. Counter stores and the engine read time
// only through a Clock, so tests can move time by hand instead of sleeping.
#ifndef TOOLGATE_SERVER_BASE_CLOCK_H_
#define TOOLGATE_SERVER_BASE_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace toolgate {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall clock: fixed windows are aligned
  // to calendar boundaries); for a SteadyClock, since an arbitrary start.
  virtual int64_t NowMillis() const = 0;
};

// Reads the system's real-time clock.
class SystemClock final : public Clock {
 public:
  int64_t NowMillis() const override;
  // A process-wide instance.
  static const SystemClock* Get();
};

// Reads a monotonic clock: milliseconds since an arbitrary start, never
// going back when the wall clock is set. For deadlines and expiries, not for
// calendar-aligned windows.
class SteadyClock final : public Clock {
 public:
  int64_t NowMillis() const override;
  // A process-wide instance.
  static const SteadyClock* Get();
};

// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_millis = 1'700'000'000'000) : now_(start_millis) {}
  int64_t NowMillis() const override { return now_.load(std::memory_order_relaxed); }
  void Advance(int64_t millis) { now_.fetch_add(millis, std::memory_order_relaxed); }
  void Set(int64_t millis) { now_.store(millis, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_CLOCK_H_
