#include "tests/support/redis_process.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace toolgate_test {
namespace {

// How long redis-server may take to answer PING after it was started: it
// needs milliseconds; this is only a guard against hangs.
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kPollInterval = absl::Milliseconds(5);
// Fresh ports tried when the one picked is taken.
constexpr int kPortAttempts = 20;

std::string ReplyText(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "";
    case REDIS_REPLY_ARRAY: {
      std::vector<std::string> parts;
      for (size_t i = 0; i < r->elements; ++i) parts.push_back(ReplyText(r->element[i]));
      return absl::StrJoin(parts, "\n");
    }
    default:
      return std::string(r->str, r->len);
  }
}

std::string ReadFrom(const std::string& path, std::streamoff offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(offset);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::streamoff FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<std::streamoff>(size);
}

// The "process_id:" field of INFO's text; 0 when absent.
pid_t ProcessIdOf(const std::string& info) {
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "process_id:")) {
      int64_t pid = 0;
      if (absl::SimpleAtoi(line, &pid)) return static_cast<pid_t>(pid);
    }
  }
  return 0;
}

// One MONITOR line: `1712345678.123456 [0 lua] "RPUSH" "key" "value"`.
// Arguments are quoted as Redis's sdscatrepr writes them.
bool ParseMonitorLine(absl::string_view line, RedisMonitor::Command* out) {
  const size_t open = line.find('[');
  const size_t close = line.find(']', open);
  if (open == absl::string_view::npos || close == absl::string_view::npos) return false;
  absl::string_view who = line.substr(open + 1, close - open - 1);  // "0 lua"
  const size_t space = who.find(' ');
  out->client = std::string(space == absl::string_view::npos ? who : who.substr(space + 1));
  out->args.clear();
  size_t i = close + 1;
  while (i < line.size()) {
    if (line[i] != '"') {
      ++i;
      continue;
    }
    std::string arg;
    ++i;
    while (i < line.size() && line[i] != '"') {
      char c = line[i++];
      if (c == '\\' && i < line.size()) {
        const char e = line[i++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 'r': c = '\r'; break;
          case 't': c = '\t'; break;
          case 'a': c = '\a'; break;
          case 'b': c = '\b'; break;
          case 'x': {
            int v = 0;
            if (i + 2 <= line.size() &&
                absl::SimpleHexAtoi(line.substr(i, 2), &v)) {
              c = static_cast<char>(v);
              i += 2;
            }
            break;
          }
          default: c = e; break;  // \\ and \"
        }
      }
      arg.push_back(c);
    }
    ++i;  // The closing quote.
    out->args.push_back(std::move(arg));
  }
  if (out->args.empty()) return false;
  out->args[0] = absl::AsciiStrToUpper(out->args[0]);
  return true;
}

}  // namespace

std::pair<int, int> EphemeralPortRange() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0, high = 0;
  if (in >> low >> high && low > 0 && high >= low && high <= 65535) return {low, high};
  return {32768, 60999};
}

int PortOutsideEphemeralRange() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  const auto [low, high] = EphemeralPortRange();
  absl::MutexLock lock(&mu);
  constexpr int kFirst = 10000;
  if (low - kFirst >= 1000) return absl::Uniform<int>(absl::IntervalClosed, *gen, kFirst, low - 1);
  if (65535 - high >= 1000) return absl::Uniform<int>(absl::IntervalClosed, *gen, high + 1, 65535);
  // An unusual range: anything unprivileged outside it.
  while (true) {
    const int port = absl::Uniform<int>(absl::IntervalClosed, *gen, 1024, 65535);
    if (port < low || port > high) return port;
  }
}

absl::StatusOr<std::unique_ptr<RedisProcess>> RedisProcess::Start(RedisOptions options) {
  std::unique_ptr<RedisProcess> p(new RedisProcess());
  p->options_ = std::move(options);
  char tmpl[] = "/tmp/toolgate-redis-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  p->dir_ = tmpl;
  absl::Status last = absl::UnknownError("no attempt");
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    p->port_ = PortOutsideEphemeralRange();
    if (p->options_.cluster) {
      do {
        p->cluster_port_ = PortOutsideEphemeralRange();
      } while (p->cluster_port_ == p->port_);
    }
    last = p->Launch();
    if (last.ok()) return p;
    p->Kill();
    // Only a port someone else has is worth another try.
    if (!absl::IsAlreadyExists(last)) return last;
  }
  return last;
}

RedisProcess::~RedisProcess() {
  Kill();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

absl::Status RedisProcess::Launch() {
  const std::string port = std::to_string(port_);
  const std::string log = dir_ + "/redis.log";
  // Redis appends to its log: look only at what this start writes.
  const std::streamoff log_start = FileSize(log);
  std::vector<std::string> argv = {"redis-server"};
  if (!options_.sentinel_config.empty()) {
    // Written afresh for each start: Sentinel rewrites it with what it
    // learnt (its id, the other sentinels, the current master).
    const std::string conf = dir_ + "/sentinel.conf";
    std::ofstream out(conf, std::ios::trunc);
    out << options_.sentinel_config;
    if (!out.good()) return absl::InternalError("cannot write " + conf);
    out.close();
    argv.insert(argv.end(), {conf, "--sentinel"});
  }
  argv.insert(argv.end(), {"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
                           "no", "--dir", dir_, "--logfile", log, "--enable-debug-command",
                           "local"});
  if (options_.cluster) {
    argv.insert(argv.end(), {"--cluster-enabled", "yes", "--cluster-config-file",
                             dir_ + "/nodes.conf", "--cluster-port",
                             std::to_string(cluster_port_)});
  }
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  // Built before fork: the child only calls async-signal-safe functions.
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    // Dies with the test, even when the test itself is killed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execvp("redis-server", cargv.data());
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (true) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      const std::string text = ReadFrom(log, log_start);
      if (absl::StrContains(text, "Address already in use")) {
        return absl::AlreadyExistsError(absl::StrCat("port ", port_, " is taken"));
      }
      return absl::UnavailableError(absl::StrCat("redis-server exited at start (status ", status,
                                                 "); is it installed? log:\n", text));
    }
    // Answering, and ours (not another server that has the port).
    if (auto pong = Command({"PING"}); pong.ok() && *pong == "PONG") {
      auto info = Command({"INFO", "server"});
      if (info.ok() && ProcessIdOf(*info) == pid_) return absl::OkStatus();
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(kPollInterval);
  }
  return absl::DeadlineExceededError(absl::StrCat("redis-server did not answer PING on port ",
                                                  port_, " within ",
                                                  absl::FormatDuration(kStartTimeout)));
}

std::string RedisProcess::log() const { return ReadFrom(dir_ + "/redis.log", 0); }

void RedisProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

absl::Status RedisProcess::Restart() {
  Kill();
  // The port was just released, and it is outside the range the kernel
  // hands out, so it is normally free at once; it can only be taken by
  // another test's redis-server, which may let it go again.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (true) {
    absl::Status s = Launch();
    if (s.ok() || !absl::IsAlreadyExists(s) || absl::Now() >= deadline) return s;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<std::string> RedisProcess::Command(const std::vector<std::string>& argv) const {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err) {
    std::string err = c ? c->errstr : "cannot allocate";
    if (c) redisFree(c);
    return absl::UnavailableError(err);
  }
  redisSetTimeout(c, timeval{5, 0});
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  if (r == nullptr) {
    std::string err = c->errstr;
    redisFree(c);
    return absl::UnavailableError(err);
  }
  absl::StatusOr<std::string> out = r->type == REDIS_REPLY_ERROR
                                        ? absl::StatusOr<std::string>(absl::InternalError(r->str))
                                        : ReplyText(r);
  freeReplyObject(r);
  redisFree(c);
  return out;
}

absl::StatusOr<std::vector<std::string>> RedisProcess::Keys(const std::string& pattern) const {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    if (c == nullptr || c->err) {
      if (c) redisFree(c);
      return absl::UnavailableError("cannot connect");
    }
    auto* r = static_cast<redisReply*>(
        redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor.c_str(), pattern.c_str()));
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      if (r) freeReplyObject(r);
      redisFree(c);
      return absl::InternalError("bad SCAN reply");
    }
    cursor = std::string(r->element[0]->str, r->element[0]->len);
    for (size_t i = 0; i < r->element[1]->elements; ++i) {
      keys.emplace_back(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
    }
    freeReplyObject(r);
    redisFree(c);
  } while (cursor != "0");
  return keys;
}

absl::StatusOr<std::map<std::string, int64_t>> RedisProcess::KeysWithTtl(
    const std::string& pattern) const {
  static constexpr char kScript[] =
      "local out = {}\n"
      "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do\n"
      "  out[#out + 1] = k\n"
      "  out[#out + 1] = redis.call('PTTL', k)\n"
      "end\n"
      "return out\n";
  absl::StatusOr<std::string> reply = Command({"EVAL", kScript, "0", pattern});
  if (!reply.ok()) return reply.status();
  std::map<std::string, int64_t> out;
  if (reply->empty()) return out;
  const std::vector<std::string> v = absl::StrSplit(*reply, '\n');
  if (v.size() % 2 != 0) return absl::InternalError(absl::StrCat("bad reply: ", *reply));
  for (size_t i = 0; i < v.size(); i += 2) {
    int64_t ttl = 0;
    if (!absl::SimpleAtoi(v[i + 1], &ttl)) {
      return absl::InternalError(absl::StrCat("bad PTTL of ", v[i], ": ", v[i + 1]));
    }
    out[v[i]] = ttl;
  }
  return out;
}

// ---- RedisMonitor --------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RedisMonitor>> RedisMonitor::Start(const RedisProcess& redis) {
  timeval tv{5, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", redis.port(), tv);
  if (c == nullptr || c->err) {
    std::string err = c ? c->errstr : "cannot allocate";
    if (c) redisFree(c);
    return absl::UnavailableError(err);
  }
  redisSetTimeout(c, tv);
  auto* r = static_cast<redisReply*>(redisCommand(c, "MONITOR"));
  if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
    std::string err = r ? std::string(r->str, r->len) : std::string(c->errstr);
    if (r) freeReplyObject(r);
    redisFree(c);
    return absl::UnavailableError(absl::StrCat("MONITOR: ", err));
  }
  freeReplyObject(r);
  // From here on the reader blocks until a command arrives or Stop.
  redisSetTimeout(c, timeval{0, 0});
  return std::unique_ptr<RedisMonitor>(new RedisMonitor(redis, c));
}

RedisMonitor::RedisMonitor(const RedisProcess& redis, redisContext* ctx)
    : redis_(redis), ctx_(ctx), reader_([this] { Run(); }) {}

RedisMonitor::~RedisMonitor() {
  // Wakes the reader (its read fails) without touching the context it owns.
  shutdown(ctx_->fd, SHUT_RDWR);
  reader_.join();
  redisFree(ctx_);
}

void RedisMonitor::Run() {
  while (true) {
    void* reply = nullptr;
    if (redisGetReply(ctx_, &reply) != REDIS_OK || reply == nullptr) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = ctx_->err ? ctx_->errstr : "connection closed";
      stopped_ = true;
      return;
    }
    auto* r = static_cast<redisReply*>(reply);
    Command command;
    const bool parsed = (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
                        ParseMonitorLine(absl::string_view(r->str, r->len), &command);
    freeReplyObject(r);
    if (parsed) {
      std::lock_guard<std::mutex> lock(mu_);
      commands_.push_back(std::move(command));
    }
  }
}

absl::StatusOr<std::vector<RedisMonitor::Command>> RedisMonitor::Sync(absl::Duration timeout) {
  const std::string marker = absl::StrCat("toolgate-test-monitor-sync-", getpid(), "-", ++syncs_);
  absl::StatusOr<std::string> echo = redis_.Command({"ECHO", marker});
  if (!echo.ok()) return echo.status();
  // Redis sends MONITOR lines in the order it executes commands: once the
  // marker is here, so is everything executed before it.
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = commands_.rbegin(); it != commands_.rend(); ++it) {
        if (it->args.size() == 2 && it->args[0] == "ECHO" && it->args[1] == marker) {
          return commands_;
        }
      }
      if (stopped_) return absl::UnavailableError(absl::StrCat("MONITOR stopped: ", error_));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("MONITOR did not report the sync marker");
    }
    absl::SleepFor(kPollInterval);
  }
}

ScriptWrites WritesByScripts(const std::vector<RedisMonitor::Command>& commands) {
  static const std::set<std::string> kWrites = {"RPUSH", "LPUSH",  "HSET", "HMSET",
                                                "HINCRBY", "SET", "INCR", "INCRBY"};
  ScriptWrites out;
  std::set<std::string> expiring;  // Keys given an expiry so far.
  for (const RedisMonitor::Command& c : commands) {
    if (c.client != "lua" || c.args.size() < 2) continue;
    const std::string& key = c.args[1];
    if (kWrites.count(c.args[0])) {
      out.keys.insert(key);
      // INCR and INCRBY keep the key's expiry (if it had one); the others
      // need one of their own.
      const bool keeps = c.args[0] == "INCR" || c.args[0] == "INCRBY";
      if (!keeps || !expiring.count(key)) out.without_expiry.insert(key);
      // SET key value PX ms: written with its expiry.
      for (size_t i = 3; c.args[0] == "SET" && i + 1 < c.args.size(); ++i) {
        if (absl::AsciiStrToUpper(c.args[i]) != "PX") continue;
        int64_t ms = 0;
        out.expiries.emplace_back(key, absl::SimpleAtoi(c.args[i + 1], &ms) ? ms : -1);
        out.without_expiry.erase(key);
        expiring.insert(key);
      }
    } else if (c.args[0] == "PEXPIRE" && c.args.size() >= 3) {
      int64_t ms = 0;
      out.expiries.emplace_back(key, absl::SimpleAtoi(c.args[2], &ms) ? ms : -1);
      out.without_expiry.erase(key);
      expiring.insert(key);
    }
  }
  return out;
}

}  // namespace toolgate_test
