#include "server/base/wakeup.h"

#include <sys/resource.h>
#include <unistd.h>

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

// No test here waits out a timeout to see that nothing happened: each either
// polls with a zero timeout, or waits (with a long limit) for an event that
// is sure to come.
constexpr int64_t kLongMs = 60'000;

std::unique_ptr<Wakeup> MakeWakeup() {
  absl::StatusOr<std::unique_ptr<Wakeup>> w = Wakeup::Create();
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *std::move(w) : nullptr;
}

TEST(WakeupTest, WakeBeforeWaitIsConsumedOnce) {
  auto w = MakeWakeup();
  ASSERT_NE(w, nullptr);
  EXPECT_FALSE(*w->Wait({}, 0));
  w->Wake();
  w->Wake();
  w->Wake();
  EXPECT_TRUE(*w->Wait({}, kLongMs));  // Returns at once: already woken.
  EXPECT_FALSE(*w->Wait({}, 0)) << "three wake-ups before a Wait count as one";
}

TEST(WakeupTest, WakeFromAnotherThreadEndsAWait) {
  auto w = MakeWakeup();
  ASSERT_NE(w, nullptr);
  std::thread waker([&] { w->Wake(); });
  EXPECT_TRUE(*w->Wait({}, kLongMs));
  waker.join();
}

TEST(WakeupTest, EventOnACallerDescriptorEndsAWaitWithoutAWakeUp) {
  auto w = MakeWakeup();
  ASSERT_NE(w, nullptr);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ASSERT_EQ(::write(pipe_fds[1], "x", 1), 1);
  pollfd fds[2] = {{-1, POLLIN, 0}, {pipe_fds[0], POLLIN, 0}};  // -1: ignored.
  EXPECT_FALSE(*w->Wait(absl::MakeSpan(fds), kLongMs));
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_TRUE(fds[1].revents & POLLIN);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(WakeupTest, TimeoutWithNothingToDo) {
  auto w = MakeWakeup();
  ASSERT_NE(w, nullptr);
  pollfd fd = {-1, POLLIN, 0};
  EXPECT_FALSE(*w->Wait(absl::MakeSpan(&fd, 1), 1));
  EXPECT_EQ(fd.revents, 0);
}

TEST(WakeupTest, RequestStopWakesAndStays) {
  auto w = MakeWakeup();
  ASSERT_NE(w, nullptr);
  EXPECT_FALSE(w->stop_requested());
  std::thread stopper([&] { w->RequestStop(); });
  EXPECT_TRUE(*w->Wait({}, kLongMs));
  stopper.join();
  EXPECT_TRUE(w->stop_requested());
}

TEST(WakeupTest, CreateReportsTheErrnoWhenNoDescriptorIsLeft) {
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit none = saved;
  none.rlim_cur = 0;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &none), 0);
  absl::StatusOr<std::unique_ptr<Wakeup>> w = Wakeup::Create();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted) << w.status();
  EXPECT_EQ(w.status().message(), "eventfd: Too many open files");
}

TEST(PollTest, FailureIsTheErrnoText) {
  // More descriptors than the process may have open: EINVAL.
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur > (1u << 24)) GTEST_SKIP() << "descriptor limit too large to exceed";
  std::vector<pollfd> fds(limit.rlim_cur + 1, pollfd{-1, POLLIN, 0});
  absl::StatusOr<int> n = Poll(absl::MakeSpan(fds), 0);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(n.status().message(), "poll: Invalid argument");
}

}  // namespace
}  // namespace toolgate
