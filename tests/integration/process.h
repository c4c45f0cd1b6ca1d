// Test harness for integration tests: real toolgated processes, the toolgate
// CLI run as a child process, and temporary policy files.
//
// Nothing here sleeps to "let things settle": every wait polls a condition
// (a log line, a child's exit) under a deadline.
#ifndef TOOLGATE_TESTS_INTEGRATION_PROCESS_H_
#define TOOLGATE_TESTS_INTEGRATION_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace toolgate_test {

// Paths given by the build (see CMakeLists.txt).
std::string SourcePath(const std::string& relative);  // TOOLGATE_SOURCE_DIR/relative
std::string ToolgatedBin();
std::string CliBin();

// Environment changes for a child: (NAME, VALUE) pairs to set. Every
// TOOLGATE_* variable of the test's own environment is removed first, so that
// the caller's shell cannot change what a test sees.
using EnvVars = std::vector<std::pair<std::string, std::string>>;

// A private temporary directory, removed (with its contents) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes (or overwrites) `name` in the directory; returns its full path.
  // The write is atomic (temp file + rename) so that a server reloading the
  // file never reads half of it.
  std::string WriteFile(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// A policy document that must be rejected, with where and what the error is.
// Shared by the server and CLI tests, so that both check the same messages.
struct BrokenPolicy {
  std::string name;      // Test-friendly name.
  std::string content;   // Written to a file named "policy.yaml".
  std::string location;  // "policy.yaml:LINE:COL" expected in the message.
  std::string message;   // Part of the expected message after the location.
};
const std::vector<BrokenPolicy>& BrokenPolicies();

// A "billion laughs" policy: `levels` + 1 anchored lists under tool t's
// argument schema, used as `key` (enum or const), each listing the previous
// one ten times (10^(levels+1) scalars once expanded, in under 1 KiB).
std::string AliasBombPolicy(const std::string& key, int levels);
// For gtest's messages and test names: prints the name.
void PrintTo(const BrokenPolicy& policy, std::ostream* os);

// Polls `cond` (every 2 ms) until it holds (true) or `timeout` has passed
// (false, after one last try): for waiting on a condition with a generous
// deadline instead of sleeping a fixed time.
bool PollUntil(const std::function<bool()>& cond, absl::Duration timeout);

// Reads a whole file; empty when it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);

struct CommandResult {
  // The exit status (0-255); 128+N when killed by signal N; -1 when it did
  // not finish within the timeout (it is then killed) or could not start.
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs argv[0] (a path) with argv, stdin from /dev/null, and collects its
// output. Bounded by `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv, const EnvVars& env = {},
                         absl::Duration timeout = absl::Seconds(30));

// A toolgated child process. Its stdout and stderr go to a log file.
class ServerProcess {
 public:
  // Starts toolgated with `args` and waits (up to `timeout`) for
  // "toolgated listening on HOST:PORT". An error (with the log) when the
  // process exits or does not listen in time.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::vector<std::string>& args, const EnvVars& env = {},
      absl::Duration timeout = absl::Seconds(10));

  // As Start, with the process's stdout on `stdout_fd` instead of the log
  // (stderr stays the log).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartWithStdout(
      const std::vector<std::string>& args, int stdout_fd);

  // Starts toolgated without waiting for anything (for processes expected
  // to fail at startup).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Spawn(const std::vector<std::string>& args,
                                                              const EnvVars& env = {});

  // Kills (SIGKILL) the process if it is still running, and reaps it.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  pid_t pid() const { return pid_; }
  // "127.0.0.1:PORT" once listening (empty before).
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // The admin listener's "HOST:PORT" (empty when it has none). Unless the
  // arguments or environment set --admin-listen, the server is started with
  // --admin-listen=127.0.0.1:0.
  const std::string& admin_address() const { return admin_address_; }

  // Everything the process wrote so far.
  std::string log() const;
  const std::string& log_path() const { return log_path_; }

  // Polls the log until it contains `needle` (true), or the deadline passes
  // or the process exits without writing it (false).
  bool WaitForLog(const std::string& needle, absl::Duration timeout);

  // Sends `sig` to the process (false when it has already been reaped).
  bool Signal(int sig);

  // Waits up to `timeout` for the process to exit; returns its raw wait
  // status (use WIFEXITED/WEXITSTATUS), or nullopt on timeout.
  std::optional<int> WaitExit(absl::Duration timeout);

  // True while the process has not exited (reaps it if it has).
  bool Running();

 private:
  static absl::StatusOr<std::unique_ptr<ServerProcess>> SpawnWith(
      const std::vector<std::string>& args, const EnvVars& env, int stdout_fd);
  ServerProcess() = default;
  absl::Status WaitListening(absl::Duration timeout);

  pid_t pid_ = -1;
  std::optional<int> wait_status_;
  std::string log_path_;
  std::string address_;
  std::string admin_address_;
  int port_ = 0;
  std::unique_ptr<TempDir> dir_;
};

// A command running in the background (e.g. `toolgate approvals watch`),
// its stdout and stderr in files that can be read while it runs.
class BackgroundCommand {
 public:
  // Starts argv[0] (a path) with argv, stdin from /dev/null.
  static absl::StatusOr<std::unique_ptr<BackgroundCommand>> Start(
      const std::vector<std::string>& argv, const EnvVars& env = {});
  // Kills (SIGKILL) the process if it is still running, and reaps it.
  ~BackgroundCommand();
  BackgroundCommand(const BackgroundCommand&) = delete;
  BackgroundCommand& operator=(const BackgroundCommand&) = delete;

  // What it wrote so far.
  std::string out() const;
  std::string err() const;
  // Polls stdout until it contains `needle` (true), or the deadline passes
  // or the process exits without writing it (false).
  bool WaitForOutput(const std::string& needle, absl::Duration timeout);
  // Sends `sig` (false when the process has already been reaped).
  bool Signal(int sig);
  // Waits up to `timeout` for the process to exit; its raw wait status, or
  // nullopt on timeout.
  std::optional<int> WaitExit(absl::Duration timeout);

 private:
  BackgroundCommand() = default;
  pid_t pid_ = -1;
  std::optional<int> wait_status_;
  std::unique_ptr<TempDir> dir_;
};

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_INTEGRATION_PROCESS_H_
