#include "server/base/runtime.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

// As hiredis does to a connection Redis has reset: write() to a socket whose
// peer is gone. Without ConfigureServingRuntime this kills the process.
TEST(RuntimeTest, WriteToAClosedSocketFailsInsteadOfKillingTheProcess) {
  ConfigureServingRuntime();
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  close(fds[1]);
  const char byte = 'x';
  EXPECT_EQ(write(fds[0], &byte, 1), -1);
  EXPECT_EQ(errno, EPIPE);
  close(fds[0]);
}

}  // namespace
}  // namespace toolgate
