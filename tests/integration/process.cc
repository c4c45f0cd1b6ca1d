#include "tests/integration/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

extern char** environ;

namespace toolgate_test {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(5);

// argv/envp for execve, built before fork (the child may only call
// async-signal-safe functions).
struct ExecArgs {
  std::vector<std::string> storage_argv, storage_env;
  std::vector<char*> argv, envp;
};

ExecArgs BuildExecArgs(const std::vector<std::string>& args, const EnvVars& env) {
  ExecArgs e;
  e.storage_argv = args;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    const std::string var = *p;
    if (absl::StartsWith(var, "TOOLGATE_")) continue;
    bool overridden = false;
    for (const auto& [name, value] : env) {
      overridden = overridden || absl::StartsWith(var, name + "=");
    }
    if (!overridden) e.storage_env.push_back(var);
  }
  for (const auto& [name, value] : env) e.storage_env.push_back(absl::StrCat(name, "=", value));
  for (std::string& s : e.storage_argv) e.argv.push_back(s.data());
  e.argv.push_back(nullptr);
  for (std::string& s : e.storage_env) e.envp.push_back(s.data());
  e.envp.push_back(nullptr);
  return e;
}

// Forks and execs with stdin from /dev/null, stdout to `out_fd` and stderr to
// `err_fd`. The child is killed if the test process dies.
absl::StatusOr<pid_t> ForkExec(const std::vector<std::string>& args, const EnvVars& env,
                               int out_fd, int err_fd) {
  if (args.empty()) return absl::InvalidArgumentError("empty argv");
  ExecArgs e = BuildExecArgs(args, env);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return absl::InternalError("cannot open /dev/null");
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(null_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(null_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execve(e.argv[0], e.argv.data(), e.envp.data());
    static const char kMsg[] = "exec failed\n";
    (void)!write(2, kMsg, sizeof(kMsg) - 1);
    _exit(127);
  }
  close(null_fd);
  return pid;
}

// Reaps `pid` if it has exited, waiting up to `timeout`.
std::optional<int> WaitPid(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(kPollInterval);
  }
}

// gRPC 1.51's C++ callback API runs its callbacks on a process-wide
// completion queue that is torn down when the last channel that used it is
// destroyed, and set up again by the next one. That teardown can free the
// queue twice (seen as "attempting double-free" in grpc_cq_internal_unref on
// a "nexting_thread" when tests create and destroy many callback channels in
// a row). Holding one channel that used it, for the life of the test
// process, keeps the queue from ever being torn down.
void HoldGrpcCallbackQueue() {
  struct Holder {
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
    grpc::GenericStub stub{channel};
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
  };
  // Never destroyed (reachable from this static, so not a leak).
  static Holder* const holder = [] {
    auto* h = new Holder();
    grpc::Slice empty(std::string(""));
    h->request = grpc::ByteBuffer(&empty, 1);
    h->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1));
    h->stub.UnaryCall(&h->ctx, "/none.None/None", grpc::StubOptions(), &h->request,
                      &h->response, [](grpc::Status) {});
    return h;
  }();
  (void)holder;
}

}  // namespace

std::string SourcePath(const std::string& relative) {
  return absl::StrCat(TOOLGATE_SOURCE_DIR, "/", relative);
}
std::string ToolgatedBin() { return TOOLGATED_BIN; }
std::string CliBin() { return TOOLGATE_CLI_BIN; }

std::string AliasBombPolicy(const std::string& key, int levels) {
  std::string text =
      "version: \"1\"\ndefault: allow\ntools:\n  t:\n    args:\n      type: object\n"
      "      properties:\n"
      "        l0: {" + key + ": &l0 [x, x, x, x, x, x, x, x, x, x]}\n";
  for (int i = 1; i <= levels; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    text += "        l" + std::to_string(i) + ": {" + key + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) text += (j ? ", " : "") + prev;
    text += "]}\n";
  }
  return text;
}

const std::vector<BrokenPolicy>& BrokenPolicies() {
  static const auto* const kPolicies = new std::vector<BrokenPolicy>{
      {"BadYaml",
       "version: \"1\"\n"
       "default: deny\n"
       "tools:\n"
       "  list_files: bar: baz\n"
       "  read_file: {}\n",
       // The second ':' of line 4.
       "policy.yaml:4:18", "syntax error"},
      {"UnknownKey",
       "version: \"1\"\n"
       "default: deny\n"
       "tools:\n"
       "  list_files: {}\n"
       "  wait_for_background_task:\n"
       "    limitz:\n"
       "      - {counter: wait_rate, window: minute, max: 10}\n",
       "policy.yaml:6:5", "unknown key \"limitz\""},
      {"NegativeMax",
       "version: \"1\"\n"
       "tools:\n"
       "  wait_for_background_task:\n"
       "    limits:\n"
       "      - counter: wait_rate\n"
       "        window: minute\n"
       "        max: -10\n"
       "        scope: grant\n",
       "policy.yaml:7:14", "max must be a positive integer, got -10"},
      {"UnknownWindow",
       "version: \"1\"\n"
       "tools:\n"
       "  wait_for_background_task:\n"
       "    limits:\n"
       "      - counter: wait_rate\n"
       "        window: fortnight\n"
       "        max: 10\n",
       "policy.yaml:6:17", "unknown window \"fortnight\""},
      {"Latin1Reason",
       "version: \"1\"\n"
       "default: allow\n"
       "tools:\n"
       "  delete_repository: {action: deny, reason: \"r\xE9sum\xE9 forbidden\"}\n",
       // The first byte that is not UTF-8: é in Latin-1.
       "policy.yaml:4:47", "not valid UTF-8: byte 0xE9"},
      // Where the budget ran out: a scalar of the first anchored list.
      {"AliasBombEnum", AliasBombPolicy("enum", 9), "policy.yaml:8:43",
       "the document is too large with its aliases expanded: more than 2000000 nodes"},
      {"AliasBombConst", AliasBombPolicy("const", 9), "policy.yaml:8:44",
       "the document is too large with its aliases expanded: more than 2000000 nodes"},
  };
  return *kPolicies;
}

void PrintTo(const BrokenPolicy& policy, std::ostream* os) { *os << policy.name; }

TempDir::TempDir() {
  std::string base = ::testing::TempDir();
  if (base.empty()) base = "/tmp/";
  if (base.back() != '/') base.push_back('/');
  std::string tmpl = base + "toolgate-it-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << tmpl << "): " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::WriteFile(const std::string& name, const std::string& content) const {
  const std::string path = absl::StrCat(path_, "/", name);
  const std::string tmp = absl::StrCat(path_, "/.", name, ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) ADD_FAILURE() << "cannot write " << tmp;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ADD_FAILURE() << "rename " << tmp << ": " << std::strerror(errno);
  }
  return path;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv, const EnvVars& env,
                         absl::Duration timeout) {
  CommandResult result;
  TempDir dir;
  const std::string out_path = dir.path() + "/stdout", err_path = dir.path() + "/stderr";
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out_fd < 0 || err_fd < 0) {
    if (out_fd >= 0) close(out_fd);
    if (err_fd >= 0) close(err_fd);
    result.err = "cannot create output files";
    return result;
  }
  absl::StatusOr<pid_t> pid = ForkExec(argv, env, out_fd, err_fd);
  close(out_fd);
  close(err_fd);
  if (!pid.ok()) {
    result.err = std::string(pid.status().message());
    return result;
  }
  std::optional<int> status = WaitPid(*pid, timeout);
  if (!status) {
    kill(*pid, SIGKILL);
    int ignored = 0;
    waitpid(*pid, &ignored, 0);
    result.exit_code = -1;
  } else if (WIFEXITED(*status)) {
    result.exit_code = WEXITSTATUS(*status);
  } else if (WIFSIGNALED(*status)) {
    result.exit_code = 128 + WTERMSIG(*status);
  }
  result.out = ReadFileOrEmpty(out_path);
  result.err = ReadFileOrEmpty(err_path);
  return result;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Spawn(
    const std::vector<std::string>& args, const EnvVars& env) {
  return SpawnWith(args, env, -1);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartWithStdout(
    const std::vector<std::string>& args, int stdout_fd) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> p = SpawnWith(args, {}, stdout_fd);
  if (!p.ok()) return p.status();
  if (absl::Status s = (*p)->WaitListening(absl::Seconds(10)); !s.ok()) return s;
  return p;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::SpawnWith(
    const std::vector<std::string>& args, const EnvVars& env, int stdout_fd) {
  HoldGrpcCallbackQueue();
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->dir_ = std::make_unique<TempDir>();
  p->log_path_ = p->dir_->path() + "/toolgated.log";
  const int log_fd =
      open(p->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return absl::InternalError(absl::StrCat("cannot create ", p->log_path_));
  std::vector<std::string> argv = {ToolgatedBin()};
  // The admin listener's default port would be shared by every server the
  // tests start at once: a free one unless the test chose.
  const bool admin_chosen =
      std::any_of(args.begin(), args.end(),
                  [](const std::string& a) { return absl::StartsWith(a, "--admin-listen"); }) ||
      std::any_of(env.begin(), env.end(),
                  [](const auto& kv) { return kv.first == "TOOLGATE_ADMIN_LISTEN"; });
  if (!admin_chosen) argv.push_back("--admin-listen=127.0.0.1:0");
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<pid_t> pid = ForkExec(argv, env, stdout_fd >= 0 ? stdout_fd : log_fd, log_fd);
  close(log_fd);
  if (!pid.ok()) return pid.status();
  p->pid_ = *pid;
  return p;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::vector<std::string>& args, const EnvVars& env, absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> p = Spawn(args, env);
  if (!p.ok()) return p.status();
  if (absl::Status s = (*p)->WaitListening(timeout); !s.ok()) return s;
  return p;
}

absl::Status ServerProcess::WaitListening(absl::Duration timeout) {
  static constexpr char kNeedle[] = "toolgated listening on ";
  if (!WaitForLog(kNeedle, timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("toolgated did not report listening within ", absl::FormatDuration(timeout),
                     Running() ? " (still running)" : " (exited)", "; log:\n", log()));
  }
  // The line may still be being written: wait for its end.
  const absl::Time deadline = absl::Now() + timeout;
  std::string text = log();
  size_t at = text.find(kNeedle);
  while (text.find('\n', at) == std::string::npos && absl::Now() < deadline) {
    absl::SleepFor(kPollInterval);
    text = log();
  }
  const size_t start = at + sizeof(kNeedle) - 1;
  const size_t end = text.find_first_of(" \n", start);
  const std::string address = text.substr(start, end == std::string::npos ? end : end - start);
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port <= 0 || port > 65535) {
    return absl::InternalError(absl::StrCat("cannot parse the address in the log:\n", text));
  }
  address_ = address;
  port_ = port;
  static constexpr char kAdminNeedle[] = "toolgated admin listening on ";
  if (const size_t admin = text.find(kAdminNeedle); admin != std::string::npos) {
    const size_t from = admin + sizeof(kAdminNeedle) - 1;
    admin_address_ = text.substr(from, text.find_first_of(" \n", from) - from);
  }
  return absl::OkStatus();
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !wait_status_) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  // Keep the log of a failed test for inspection: print it.
  if (::testing::Test::HasFailure() && !log_path_.empty()) {
    std::fprintf(stderr, "---- toolgated log (%s) ----\n%s---- end of log ----\n",
                 log_path_.c_str(), log().c_str());
  }
}

std::string ServerProcess::log() const { return ReadFileOrEmpty(log_path_); }

bool ServerProcess::WaitForLog(const std::string& needle, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (absl::StrContains(log(), needle)) return true;
    if (!Running()) return absl::StrContains(log(), needle);
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(kPollInterval);
  }
}

bool ServerProcess::Signal(int sig) {
  if (pid_ <= 0 || wait_status_) return false;
  return kill(pid_, sig) == 0;
}

std::optional<int> ServerProcess::WaitExit(absl::Duration timeout) {
  if (wait_status_) return wait_status_;
  if (pid_ <= 0) return std::nullopt;
  wait_status_ = WaitPid(pid_, timeout);
  return wait_status_;
}

bool ServerProcess::Running() {
  if (pid_ <= 0 || wait_status_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    wait_status_ = status;
    return false;
  }
  return true;
}

bool PollUntil(const std::function<bool()>& cond, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return cond();
}

absl::StatusOr<std::unique_ptr<BackgroundCommand>> BackgroundCommand::Start(
    const std::vector<std::string>& argv, const EnvVars& env) {
  std::unique_ptr<BackgroundCommand> c(new BackgroundCommand());
  c->dir_ = std::make_unique<TempDir>();
  const std::string out_path = c->dir_->path() + "/stdout", err_path = c->dir_->path() + "/stderr";
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out_fd < 0 || err_fd < 0) {
    if (out_fd >= 0) close(out_fd);
    if (err_fd >= 0) close(err_fd);
    return absl::InternalError("cannot create output files");
  }
  absl::StatusOr<pid_t> pid = ForkExec(argv, env, out_fd, err_fd);
  close(out_fd);
  close(err_fd);
  if (!pid.ok()) return pid.status();
  c->pid_ = *pid;
  return c;
}

BackgroundCommand::~BackgroundCommand() {
  if (pid_ > 0 && !wait_status_) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

std::string BackgroundCommand::out() const { return ReadFileOrEmpty(dir_->path() + "/stdout"); }
std::string BackgroundCommand::err() const { return ReadFileOrEmpty(dir_->path() + "/stderr"); }

bool BackgroundCommand::WaitForOutput(const std::string& needle, absl::Duration timeout) {
  return PollUntil(
      [&] {
        if (absl::StrContains(out(), needle)) return true;
        if (!wait_status_) {
          int status = 0;
          if (waitpid(pid_, &status, WNOHANG) == pid_) wait_status_ = status;
        }
        // Exited without writing it: no use waiting longer.
        return wait_status_.has_value();
      },
      timeout) &&
         absl::StrContains(out(), needle);
}

bool BackgroundCommand::Signal(int sig) {
  if (pid_ <= 0 || wait_status_) return false;
  return kill(pid_, sig) == 0;
}

std::optional<int> BackgroundCommand::WaitExit(absl::Duration timeout) {
  if (wait_status_) return wait_status_;
  if (pid_ <= 0) return std::nullopt;
  wait_status_ = WaitPid(pid_, timeout);
  return wait_status_;
}

}  // namespace toolgate_test
