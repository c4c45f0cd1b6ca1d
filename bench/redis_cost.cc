// toolgate_redis_cost: what one check costs redis-server, in CPU.
//
// Drives a redis-server the way toolgated does: a RedisCounterStore with
// --concurrency Acquire() calls in flight (closed loop: each completion
// starts the next call), each call one limit on one of --instances counter
// instances, for each algorithm (fixed window, token bucket, exact sliding
// window, bucketed sliding window). Beside them, in the same run, the floor:
// plain INCR on a raw connection with as many commands in flight, pipelined.
//
// Redis's cost is read from Redis itself: INFO's used_cpu_user +
// used_cpu_sys before and after each measured run (CPU µs per check), and
// INFO commandstats (EVALSHA calls and µs). Each round measures every
// scenario once, one after the other; the report gives medians over the
// rounds and each algorithm's ratio to the INCR floor (the median of the
// rounds' ratios, so that background load hits both alike).
//
// Every check must be admitted (the limits are never reached) and none may
// fail: otherwise the program reports it and exits 1 (--smoke relies on it).
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "server/base/flags.h"
#include "server/counters/redis_store.h"
#include "server/redis/url.h"

namespace {

constexpr char kUsage[] =
    "toolgate_redis_cost: redis-server CPU per check, for each limit algorithm, against\n"
    "the floor of a pipelined INCR, measured in the same run.\n"
    "\n"
    "Usage: toolgate_redis_cost --redis redis://HOST:PORT [flags]\n"
    "\n"
    "Uses keys under \"bench:<run>:\" in the given Redis (they expire within a\n"
    "minute, or are deleted) and resets its INFO statistics (CONFIG RESETSTAT):\n"
    "give it a Redis of its own. Exit codes: 0 done; 1 a check failed or was\n"
    "refused; 2 bad usage or Redis unreachable.";

using Clock = std::chrono::steady_clock;

struct Options {
  std::string redis;
  int64_t rounds = 5;
  int64_t warmup_ms = 250;
  int64_t duration_ms = 1500;
  int64_t concurrency = 64;
  int64_t instances = 1000;
  std::string markdown;
};

// A scenario: the floor (no limit), or one limit per check.
struct Scenario {
  std::string name;   // In the report.
  std::string limit;  // How the limit is defined, in the report.
  bool floor = false;
  toolgate::LimitCheck check;  // Its key is the prefix of the instances' keys.
  double target_us = 0;        // 0: none.
};

std::vector<Scenario> Scenarios() {
  using toolgate::Algorithm;
  auto check = [](const char* key, Algorithm alg, int64_t max, int64_t burst) {
    toolgate::LimitCheck c;
    c.key = key;
    c.algorithm = alg;
    c.window_ms = 60'000;
    c.max = max;
    c.burst = burst;
    return c;
  };
  constexpr int64_t kHuge = 1'000'000'000;  // Never reached.
  return {
      {"INCR (floor)", "a pipelined `INCR` per check, raw connection", true, {}, 0},
      {"fixed_window", "max 1,000,000,000 a minute", false,
       check("fixed", Algorithm::kFixedWindow, kHuge, kHuge), 2},
      {"token_bucket", "1,000,000,000 a minute, burst 1,000,000,000", false,
       check("token", Algorithm::kTokenBucket, kHuge, kHuge), 3},
      {"sliding_window (exact log)", "max 1,000 a minute (≤ 1,024: an exact log)", false,
       check("sliding", Algorithm::kSlidingWindow, 1000, 1000), 5},
      {"sliding_window (64 buckets)", "max 1,000,000,000 a minute (> 1,024: buckets)", false,
       check("bucketed", Algorithm::kSlidingWindow, kHuge, kHuge), 0},
  };
}

// The instance a check uses: spread over the instances, not in order, so
// that the calls batched together hit different keys, and now and then the
// same one (as a fleet's traffic does).
int64_t InstanceOf(uint64_t n, int64_t instances) {
  return static_cast<int64_t>((n * 2654435761u) % static_cast<uint64_t>(instances));
}

// A synchronous connection for INFO, CONFIG and the INCR floor.
class Conn {
 public:
  static std::unique_ptr<Conn> Open(const toolgate::RedisUrl& url, std::string* error) {
    redisContext* c = redisConnectWithTimeout(url.host.c_str(), url.port, timeval{5, 0});
    if (c == nullptr || c->err != 0) {
      *error = c == nullptr ? "cannot allocate" : c->errstr;
      if (c != nullptr) redisFree(c);
      return nullptr;
    }
    auto conn = std::unique_ptr<Conn>(new Conn(c));
    if (!url.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!url.username.empty()) auth.push_back(url.username);
      auth.push_back(url.password);
      if (conn->Text(auth).rfind("ERR:", 0) == 0) {
        *error = "authentication failed";
        return nullptr;
      }
    }
    if (url.db != 0) conn->Text({"SELECT", absl::StrCat(url.db)});
    return conn;
  }
  ~Conn() { redisFree(c_); }

  // One command; its reply as text ("ERR: ..." for an error).
  std::string Text(const std::vector<std::string>& argv) {
    Append(argv);
    return Reply();
  }
  void Append(const std::vector<std::string>& argv) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const std::string& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(c_, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  }
  // The next reply, as text.
  std::string Reply() {
    void* raw = nullptr;
    if (redisGetReply(c_, &raw) != REDIS_OK || raw == nullptr)
      return absl::StrCat("ERR: ", c_->errstr);
    auto* r = static_cast<redisReply*>(raw);
    std::string out;
    if (r->type == REDIS_REPLY_ERROR) {
      out = absl::StrCat("ERR: ", std::string(r->str, r->len));
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
      out.assign(r->str, r->len);
    } else if (r->type == REDIS_REPLY_INTEGER) {
      out = absl::StrCat(r->integer);
    }
    freeReplyObject(r);
    return out;
  }

 private:
  explicit Conn(redisContext* c) : c_(c) {}
  redisContext* c_;
};

// "name:value" lines of an INFO reply.
std::map<std::string, std::string> InfoFields(const std::string& info) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    line = absl::StripSuffix(line, "\r");
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos || line.empty() || line[0] == '#') continue;
    out[std::string(line.substr(0, colon))] = std::string(line.substr(colon + 1));
  }
  return out;
}

// A "calls=N,usec=M,..." commandstats value's field.
double StatField(const std::string& stat, absl::string_view field) {
  for (absl::string_view kv : absl::StrSplit(stat, ',')) {
    if (absl::ConsumePrefix(&kv, field) && absl::ConsumePrefix(&kv, "=")) {
      double v = 0;
      if (absl::SimpleAtod(kv, &v)) return v;
    }
  }
  return 0;
}

// Redis's CPU seconds so far (user + system, all threads).
double RedisCpuSeconds(Conn& conn) {
  std::map<std::string, std::string> f = InfoFields(conn.Text({"INFO", "cpu"}));
  double user = 0, sys = 0;
  absl::SimpleAtod(f["used_cpu_user"], &user);
  absl::SimpleAtod(f["used_cpu_sys"], &sys);
  return user + sys;
}

struct Measurement {
  uint64_t checks = 0;
  uint64_t failures = 0;  // Errors, or refusals (never expected).
  std::string first_failure;
  double seconds = 0;                          // Wall time.
  double cpu_us = 0;                           // Redis CPU during the run.
  double evalsha_calls = 0, evalsha_usec = 0;  // EVALSHA and EVAL, from commandstats.
  double command_usec = 0;                     // Every command's µs, from commandstats.
};

// Closed loop over a store: `concurrency` calls in flight until `stop_at`.
class StoreLoop {
 public:
  StoreLoop(toolgate::RedisCounterStore& store, const Scenario& s, const Options& o)
      : store_(store), scenario_(s), options_(o) {}

  void Run(Clock::time_point stop_at, Measurement* m) {
    stop_at_ = stop_at;
    m_ = m;
    active_.store(static_cast<int>(options_.concurrency));
    for (int64_t i = 0; i < options_.concurrency; ++i) Next();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::atomic<int>* active) { return active->load() == 0; }, &active_));
  }

 private:
  void Next() {
    toolgate::LimitCheck check = scenario_.check;
    const uint64_t n = issued_.fetch_add(1, std::memory_order_relaxed);
    check.key = absl::StrCat(scenario_.check.key, "|g|", InstanceOf(n, options_.instances));
    store_.Acquire({std::move(check)}, /*dry_run=*/false,
                   [this](absl::StatusOr<toolgate::AcquireResult> r) { Done(std::move(r)); });
  }
  // On the store's I/O thread, one at a time.
  void Done(absl::StatusOr<toolgate::AcquireResult> r) {
    ++m_->checks;
    if (!r.ok() || !r->admitted) {
      if (m_->failures++ == 0) {
        m_->first_failure = r.ok() ? "refused (a limit was reached)" : r.status().ToString();
      }
    }
    if (Clock::now() < stop_at_) {
      Next();
    } else {
      absl::MutexLock lock(&mu_);
      active_.fetch_sub(1);
    }
  }

  toolgate::RedisCounterStore& store_;
  const Scenario& scenario_;
  const Options& options_;
  Clock::time_point stop_at_;
  Measurement* m_ = nullptr;
  std::atomic<uint64_t> issued_{0};
  std::atomic<int> active_{0};
  absl::Mutex mu_;
};

// The floor: INCR with `concurrency` in flight, on one connection.
void IncrLoop(Conn& conn, const std::string& prefix, const Options& o, Clock::time_point stop_at,
              Measurement* m) {
  uint64_t n = 0;
  auto send = [&] { conn.Append({"INCR", absl::StrCat(prefix, InstanceOf(n++, o.instances))}); };
  for (int64_t i = 0; i < o.concurrency; ++i) send();
  int64_t inflight = o.concurrency;
  while (inflight > 0) {
    const std::string r = conn.Reply();  // Writes what is queued, then reads one reply.
    --inflight;
    ++m->checks;
    if (r.rfind("ERR:", 0) == 0 && m->failures++ == 0) m->first_failure = r;
    // The clock is read once per 64 replies: cheaper than the replies.
    if ((m->checks & 63) != 0 || Clock::now() < stop_at) {
      send();
      ++inflight;
    }
  }
}

// One measured run of `s` (after a warm-up), on fresh keys (`prefix`).
Measurement Measure(const Scenario& s, const Options& o, const toolgate::RedisUrl& url, Conn& admin,
                    const std::string& prefix) {
  Measurement warm, m;
  std::unique_ptr<Conn> raw;
  std::unique_ptr<toolgate::RedisCounterStore> store;
  std::unique_ptr<StoreLoop> loop;
  auto run = [&](int64_t ms, Measurement* into) {
    const Clock::time_point stop_at = Clock::now() + std::chrono::milliseconds(ms);
    if (s.floor) {
      IncrLoop(*raw, prefix + "incr:", o, stop_at, into);
    } else {
      loop = std::make_unique<StoreLoop>(*store, s, o);
      loop->Run(stop_at, into);
    }
  };
  if (s.floor) {
    std::string error;
    raw = Conn::Open(url, &error);
    if (raw == nullptr) {
      m.failures = 1;
      m.first_failure = error;
      return m;
    }
  } else {
    toolgate::RedisStoreOptions so;
    so.url = url;
    so.timeout_ms = 10'000;       // Measures cost, not deadlines.
    so.over_limit_cache = false;  // Every check reaches Redis (none is refused anyway).
    so.key_prefix = prefix;
    store = std::make_unique<toolgate::RedisCounterStore>(so);
  }
  run(o.warmup_ms, &warm);
  admin.Text({"CONFIG", "RESETSTAT"});
  const double cpu0 = RedisCpuSeconds(admin);
  const Clock::time_point t0 = Clock::now();
  run(o.duration_ms, &m);
  m.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  m.cpu_us = (RedisCpuSeconds(admin) - cpu0) * 1e6;
  std::map<std::string, std::string> stats = InfoFields(admin.Text({"INFO", "commandstats"}));
  for (const auto& [name, value] : stats) {
    if (name == "cmdstat_info" || name == "cmdstat_config") continue;  // Ours.
    m.command_usec += StatField(value, "usec");
    if (name == "cmdstat_evalsha" || name == "cmdstat_eval") {
      m.evalsha_calls += StatField(value, "calls");
      m.evalsha_usec += StatField(value, "usec");
    }
  }
  m.failures += warm.failures;
  if (m.first_failure.empty()) m.first_failure = warm.first_failure;
  if (s.floor) {  // The floor's counters have no expiry: removed, once measured.
    std::vector<std::string> del = {"DEL"};
    for (int64_t i = 0; i < o.instances; ++i) del.push_back(absl::StrCat(prefix, "incr:", i));
    admin.Text(del);
  }
  return m;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Fixed(double v, int digits) { return absl::StrFormat("%.*f", digits, v); }

// 1234567 -> "1,234,567".
std::string Thousands(double v) {
  std::string digits = absl::StrFormat("%.0f", v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  toolgate::FlagSet flags(kUsage, "");
  flags.String("redis", &o.redis, "The redis-server to measure, redis://HOST:PORT[/db].");
  flags.Int("rounds", &o.rounds, 1, 1000, "Rounds; each measures every scenario once.");
  flags.Duration("warmup", &o.warmup_ms, "Load before each measured run.");
  flags.Duration("duration", &o.duration_ms, "How long each measured run lasts.");
  flags.Int("concurrency", &o.concurrency, 1, 10'000, "Checks (or INCRs) kept in flight.");
  flags.Int("instances", &o.instances, 1, 100'000'000, "Counter instances the checks spread over.");
  flags.String("markdown", &o.markdown,
               "Also write the report's section, in Markdown, to this file.");
  absl::StatusOr<std::vector<std::string>> positional =
      flags.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!positional.ok()) {
    std::cerr << "toolgate_redis_cost: " << positional.status().message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (!positional->empty() || o.redis.empty()) {
    std::cerr << "toolgate_redis_cost: --redis is required, and nothing else (see --help)\n";
    return 2;
  }
  absl::StatusOr<toolgate::RedisUrl> url = toolgate::ParseRedisUrl(o.redis);
  if (!url.ok()) {
    std::cerr << "toolgate_redis_cost: --redis: " << url.status().message() << "\n";
    return 2;
  }
  std::string error;
  std::unique_ptr<Conn> admin = Conn::Open(*url, &error);
  if (admin == nullptr) {
    std::cerr << "toolgate_redis_cost: cannot connect to " << url->Redacted() << ": " << error
              << "\n";
    return 2;
  }

  // Keys of this run only (a run id from the clock): earlier runs' counters
  // on the same Redis (longer logs, more buckets) would change the cost.
  const std::string run_id = absl::StrCat(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count() %
                                          100'000'000);
  const std::vector<Scenario> scenarios = Scenarios();
  std::vector<std::vector<Measurement>> results(scenarios.size());
  int exit_code = 0;
  for (int64_t round = 1; round <= o.rounds; ++round) {
    for (size_t i = 0; i < scenarios.size(); ++i) {
      // Fresh keys every round: each run starts from empty counters.
      const std::string prefix = absl::StrCat("bench:", run_id, ":r", round, ":");
      Measurement m = Measure(scenarios[i], o, *url, *admin, prefix);
      std::cerr << absl::StrFormat(
          "round %d %-28s %8d checks %9.0f/s  redis CPU %6.2f us/check  EVALSHA %6.1f us, "
          "%5.1f checks each%s\n",
          round, scenarios[i].name, m.checks, m.checks / std::max(m.seconds, 1e-9),
          m.cpu_us / std::max<double>(1, m.checks), m.evalsha_usec / std::max(1.0, m.evalsha_calls),
          m.checks / std::max(1.0, m.evalsha_calls),
          m.failures ? absl::StrCat("  FAILURES ", m.failures, ": ", m.first_failure) : "");
      if (m.failures > 0 || m.checks == 0) exit_code = 1;
      results[i].push_back(std::move(m));
    }
  }

  // The report: medians over the rounds.
  auto per_check = [](const Measurement& m) { return m.cpu_us / std::max<double>(1, m.checks); };
  std::string md;
  absl::StrAppend(&md, "## Redis CPU per check\n\n");
  absl::StrAppend(
      &md, "What one check costs redis-server in CPU, for each algorithm, beside the floor of a\n",
      "plain pipelined `INCR` measured in the same run, by `toolgate_redis_cost` ",
      "(`bench/redis_cost.cc`): a\n`RedisCounterStore` (the store toolgated uses; over-limit ",
      "cache off) with ", o.concurrency, " checks in flight (closed\nloop), each check one limit ",
      "on one of ", Thousands(o.instances), " counter instances (fresh keys each round), a ",
      o.warmup_ms, " ms\nwarm-up, then ", o.duration_ms, " ms measured; the floor keeps ",
      o.concurrency, " `INCR`s in flight on one raw connection, pipelined,\nover as many keys. ",
      "**Redis CPU** is `INFO`'s `used_cpu_user` + `used_cpu_sys` over the measured run,\n",
      "divided by the checks answered. The EVALSHA columns are from `INFO commandstats` (reset ",
      "before\neach run); its time is wall time inside the command, which includes any time ",
      "redis-server waited\nfor a CPU, so on a busy machine it exceeds the CPU time. ", o.rounds,
      " rounds, each measuring every row\nonce; medians over the rounds; the ratio to the floor ",
      "is the median of each round's ratio.\nEvery check was admitted and none failed",
      exit_code == 0 ? "" : " — **except as the warnings say**", ".\n\n");
  absl::StrAppend(&md,
                  "| algorithm | limit | Redis CPU µs per check | × INCR floor | checks/s | checks "
                  "per EVALSHA | wall µs per EVALSHA | wall EVALSHA µs per check |\n",
                  "|---|---|---:|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < scenarios.size(); ++i) {
    std::vector<double> cpu, ratio, rate, batch, usec, usec_check;
    for (size_t r = 0; r < results[i].size(); ++r) {
      const Measurement& m = results[i][r];
      cpu.push_back(per_check(m));
      ratio.push_back(per_check(m) / std::max(1e-9, per_check(results[0][r])));
      rate.push_back(m.checks / std::max(m.seconds, 1e-9));
      batch.push_back(m.checks / std::max(1.0, m.evalsha_calls));
      usec.push_back(m.evalsha_usec / std::max(1.0, m.evalsha_calls));
      usec_check.push_back(m.evalsha_usec / std::max<double>(1, m.checks));
    }
    const Scenario& s = scenarios[i];
    absl::StrAppend(&md, "| ", s.floor ? s.name : absl::StrCat("`", s.name, "`"), " | ", s.limit,
                    " | **", Fixed(Median(cpu), 2), "** | ",
                    s.floor ? "1.00" : Fixed(Median(ratio), 2), " | ", Thousands(Median(rate)),
                    " | ", s.floor ? "—" : Fixed(Median(batch), 1), " | ",
                    s.floor ? "—" : Fixed(Median(usec), 1), " | ",
                    s.floor ? "—" : Fixed(Median(usec_check), 2), " |\n");
  }
  absl::StrAppend(&md, "\nTargets (Redis CPU per check at concurrency ", o.concurrency, "):\n\n",
                  "| algorithm | target | measured | met |\n|---|---:|---:|---|\n");
  for (size_t i = 0; i < scenarios.size(); ++i) {
    if (scenarios[i].target_us <= 0) continue;
    std::vector<double> cpu;
    for (const Measurement& m : results[i]) cpu.push_back(per_check(m));
    const double v = Median(cpu);
    absl::StrAppend(&md, "| `", scenarios[i].name, "` | ≤ ", Fixed(scenarios[i].target_us, 0),
                    " µs | ", Fixed(v, 2), " µs | ", v <= scenarios[i].target_us ? "yes" : "no",
                    " |\n");
  }
  std::cout << md;
  if (!o.markdown.empty()) {
    std::ofstream out(o.markdown);
    out << md;
    if (!out) {
      std::cerr << "toolgate_redis_cost: cannot write " << o.markdown << "\n";
      return 2;
    }
  }
  return exit_code;
}
