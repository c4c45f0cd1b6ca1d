// A real redis-server for tests: started on a free loopback port, with no
// persistence, killed and reaped on destruction. Tests can kill it and start
// it again on the same port (a restart empties its script cache).
#ifndef TOOLGATE_TESTS_SUPPORT_REDIS_PROCESS_H_
#define TOOLGATE_TESTS_SUPPORT_REDIS_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace toolgate_test {

class RedisProcess {
 public:
  // Starts redis-server (from PATH) and waits until it answers PING.
  static absl::StatusOr<std::unique_ptr<RedisProcess>> Start();
  ~RedisProcess();
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // SIGKILL, and reap.
  void Kill();
  // Starts again on the same port (after Kill) and waits for PING.
  absl::Status Restart();

  // Runs one command on a fresh connection; the reply as text (integers in
  // decimal, arrays joined by '\n'); errors as a non-OK status.
  absl::StatusOr<std::string> Command(const std::vector<std::string>& argv) const;
  // Every key matching `pattern` (SCAN).
  absl::StatusOr<std::vector<std::string>> Keys(const std::string& pattern = "*") const;

 private:
  RedisProcess() = default;
  absl::Status Launch();

  int port_ = 0;
  pid_t pid_ = -1;
  std::string dir_;
};

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_SUPPORT_REDIS_PROCESS_H_
