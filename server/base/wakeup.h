// Waking a thread that waits on file descriptors.
//
// Each of the server's worker threads (the Redis counter store's I/O thread,
// the Redis policy follower, the policy file watcher) blocks in poll() on
// its own descriptors (a socket, an inotify descriptor) and must also be
// woken from other threads: for new work, or to stop. A Wakeup owns the
// eventfd that does that, polls it together with the caller's descriptors,
// and drains it.
#ifndef TOOLGATE_SERVER_BASE_WAKEUP_H_
#define TOOLGATE_SERVER_BASE_WAKEUP_H_

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace toolgate {

// poll() over `fds` for up to `timeout_ms` (negative: no limit): the number
// of descriptors with events, as poll() returns it. Negative descriptors are
// ignored (their revents are 0). An interrupted poll (EINTR) returns 0 with
// every revents cleared; callers loop anyway. Any other failure is the errno
// as a status: "poll: <errno text>".
absl::StatusOr<int> Poll(absl::Span<pollfd> fds, int64_t timeout_ms);

class Wakeup {
 public:
  // An eventfd; the errno as a status ("eventfd: <errno text>") when none
  // can be created.
  static absl::StatusOr<std::unique_ptr<Wakeup>> Create();
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // Makes the Wait() in progress, or else the next one, return at once.
  // Wake-ups before a Wait() returns count as one. Any thread; never blocks.
  void Wake();

  // Wakes the waiting thread for good: stop_requested() is true from now on.
  void RequestStop();
  bool stop_requested() const { return stop_.load(std::memory_order_acquire); }

  // Blocks until Wake() has been called since the last Wait() returned, one
  // of `fds` has an event (their revents are set), or `timeout_ms` has
  // passed (negative: no limit). True when woken by Wake(); the wake-up is
  // then consumed. Failures as Poll().
  absl::StatusOr<bool> Wait(absl::Span<pollfd> fds, int64_t timeout_ms);

 private:
  explicit Wakeup(int fd) : fd_(fd) {}

  const int fd_;
  std::atomic<bool> stop_{false};
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_WAKEUP_H_
