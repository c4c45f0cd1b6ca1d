#include "server/base/wakeup.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "absl/container/inlined_vector.h"

namespace toolgate {

absl::StatusOr<int> Poll(absl::Span<pollfd> fds, int64_t timeout_ms) {
  const int timeout = timeout_ms < 0 ? -1 : static_cast<int>(std::min<int64_t>(timeout_ms, INT_MAX));
  const int n = ::poll(fds.data(), fds.size(), timeout);
  if (n >= 0) return n;
  if (errno != EINTR) return absl::ErrnoToStatus(errno, "poll");
  for (pollfd& p : fds) p.revents = 0;
  return 0;
}

absl::StatusOr<std::unique_ptr<Wakeup>> Wakeup::Create() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd");
  return std::unique_ptr<Wakeup>(new Wakeup(fd));
}

Wakeup::~Wakeup() { ::close(fd_); }

void Wakeup::Wake() {
  const uint64_t one = 1;
  // EAGAIN (the counter is full) needs no retry: it is already readable.
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void Wakeup::RequestStop() {
  stop_.store(true, std::memory_order_release);
  Wake();
}

absl::StatusOr<bool> Wakeup::Wait(absl::Span<pollfd> fds, int64_t timeout_ms) {
  absl::InlinedVector<pollfd, 4> all;
  all.push_back({fd_, POLLIN, 0});
  all.insert(all.end(), fds.begin(), fds.end());
  absl::StatusOr<int> n = Poll(absl::MakeSpan(all), timeout_ms);
  if (!n.ok()) return n.status();
  for (size_t i = 0; i < fds.size(); ++i) fds[i].revents = all[i + 1].revents;
  if ((all[0].revents & POLLIN) == 0) return false;
  uint64_t count = 0;  // Reading an eventfd resets it.
  while (::read(fd_, &count, sizeof count) < 0 && errno == EINTR) {
  }
  return true;
}

}  // namespace toolgate
