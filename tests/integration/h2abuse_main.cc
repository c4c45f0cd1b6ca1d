// toolgate_h2abuse: abuses a toolgated's gRPC port the way a hostile client
// would, and reports what the server did about it (and its memory, given
// its pid). For measurements by hand; the integration tests use the same
// code (h2_abuse.h).
//
//   toolgate_h2abuse rapid-reset PORT SECONDS [--data] [--reconnect] [--no-ack] [--pid PID]
//   toolgate_h2abuse idle PORT CONNECTIONS SECONDS [--no-preface] [--pid PID]
//   toolgate_h2abuse silent PORT CONNECTIONS STREAMS SECONDS [--pid PID]
//   toolgate_h2abuse good PORT SECONDS [CONCURRENCY]
//
// rapid-reset: HEADERS (+ DATA with a CheckRequest with --data) + RST_STREAM
//   in a loop on one connection (with --reconnect: a new one whenever the
//   server cuts one off). Each connection first waits for the server's
//   SETTINGS and acknowledges them, unless --no-ack.
// idle: opens CONNECTIONS connections that send nothing more (not even the
//   preface with --no-preface) and reports how many the server still holds.
// silent: opens CONNECTIONS connections with STREAMS streams each that send
//   their HEADERS but never their message.
// good: well-behaved Check calls (the toolgate client), latency percentiles.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/integration/h2_abuse.h"
#include "toolgate/client.h"

namespace {

using toolgate_test::H2Connection;

int Usage() {
  std::cerr << "usage:\n"
               "  toolgate_h2abuse rapid-reset PORT SECONDS [--data] [--reconnect] [--no-ack] [--pid PID]\n"
               "  toolgate_h2abuse idle PORT CONNECTIONS SECONDS [--no-preface] [--pid PID]\n"
               "  toolgate_h2abuse silent PORT CONNECTIONS STREAMS SECONDS [--pid PID]\n"
               "  toolgate_h2abuse good PORT SECONDS [CONCURRENCY]\n";
  return 2;
}

std::string CheckMessage() {
  toolgate::v1::CheckRequest req;
  req.set_tool("read_file");
  req.set_grant("abuse");
  return req.SerializeAsString();
}

std::string Memory(int pid) {
  if (pid <= 0) return "";
  const toolgate_test::MemoryUse m = toolgate_test::ReadMemoryUse(pid);
  return absl::StrCat(" rss=", m.rss_kib / 1024, "MiB hwm=", m.hwm_kib / 1024, "MiB");
}

// Watches `pid`'s memory on a thread while `run` runs; prints the peak RSS.
template <typename F>
void WithMemoryWatch(int pid, F run) {
  std::atomic<bool> stop{false};
  std::atomic<int64_t> peak{0};
  std::thread watch([&] {
    while (!stop && pid > 0) {
      const int64_t rss = toolgate_test::ReadMemoryUse(pid).rss_kib;
      peak = std::max<int64_t>(peak, rss);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  run();
  stop = true;
  watch.join();
  if (pid > 0) std::cout << "peak rss during the run: " << peak / 1024 << " MiB\n";
}

int RapidResetMode(int port, int seconds, bool data, bool reconnect, bool ack, int pid) {
  std::cout << "before:" << Memory(pid) << "\n";
  toolgate_test::RapidResetResult r;
  WithMemoryWatch(pid, [&] {
    r = toolgate_test::RapidReset(port, absl::Seconds(seconds), data ? CheckMessage() : "",
                                  reconnect, ack);
  });
  std::cout << "streams opened and reset: " << r.streams << "\n";
  if (!r.error.empty()) std::cout << "error: " << r.error << "\n";
  if (r.cut_off_after != absl::InfiniteDuration()) {
    std::cout << "first connection cut off after " << absl::FormatDuration(r.cut_off_after)
              << ": goaway=" << r.goaway << " (error " << r.goaway_error << ", \""
              << r.goaway_debug << "\") closed=" << r.closed << "\n";
  } else {
    std::cout << "never cut off\n";
  }
  std::cout << "after:" << Memory(pid) << "\n";
  return 0;
}

int IdleMode(int port, int n, int seconds, bool preface, int pid) {
  std::cout << "before:" << Memory(pid) << "\n";
  std::vector<std::unique_ptr<H2Connection>> conns;
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    auto c = H2Connection::Connect(port, preface);
    if (!c.ok()) {
      ++failed;
      continue;
    }
    if (preface) (void)(*c)->Flush();
    conns.push_back(*std::move(c));
  }
  std::cout << "opened " << conns.size() << " (" << failed << " failed)\n";
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  int64_t open = 0;
  while (absl::Now() < end) {
    open = 0;
    for (auto& c : conns) {
      c->Poll(absl::ZeroDuration());
      (void)c->Flush();
      if (!c->closed()) ++open;
    }
    std::cout << "t+" << absl::FormatDuration(absl::Seconds(seconds) - (end - absl::Now()))
              << " open=" << open << Memory(pid) << "\n";
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return 0;
}

int SilentMode(int port, int n, int streams, int seconds, int pid) {
  std::cout << "before:" << Memory(pid) << "\n";
  std::vector<std::unique_ptr<H2Connection>> conns;
  for (int i = 0; i < n; ++i) {
    auto c = H2Connection::Connect(port);
    if (!c.ok()) continue;
    (void)(*c)->Flush();
    (*c)->Poll(absl::Milliseconds(100));  // The server's SETTINGS, acknowledged.
    for (int s = 0; s < streams; ++s) (*c)->QueueHeaders(static_cast<uint32_t>(1 + 2 * s), false);
    (void)(*c)->Flush();
    conns.push_back(*std::move(c));
  }
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  while (absl::Now() < end) {
    int64_t open = 0, refused = 0;
    for (auto& c : conns) {
      c->Poll(absl::ZeroDuration());
      (void)c->Flush();
      if (!c->closed()) ++open;
      refused += static_cast<int64_t>(c->resets_received());
    }
    std::cout << "open=" << open << " streams reset by the server=" << refused << Memory(pid)
              << "\n";
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return 0;
}

int GoodMode(int port, int seconds, int concurrency) {
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> latencies(static_cast<size_t>(concurrency));
  std::atomic<int64_t> failures{0};
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      auto client = toolgate::Client::Connect(absl::StrCat("127.0.0.1:", port));
      toolgate::v1::CheckRequest req;
      req.set_tool("read_file");
      req.set_grant(absl::StrCat("good-", t));
      while (absl::Now() < end) {
        const absl::Time start = absl::Now();
        auto r = client->Check(req, absl::Seconds(5));
        if (!r.ok()) ++failures;
        latencies[static_cast<size_t>(t)].push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[static_cast<size_t>(p * (all.size() - 1))]; };
  std::printf("calls=%zu failures=%lld p50=%.2fms p99=%.2fms p999=%.2fms max=%.2fms\n", all.size(),
              static_cast<long long>(failures.load()), pct(0.5), pct(0.99), pct(0.999),
              all.empty() ? 0.0 : all.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  int pid = 0;
  bool data = false, reconnect = false, preface = true, ack = true;
  std::vector<int> nums;
  std::string mode;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--pid" && i + 1 < args.size()) {
      if (!absl::SimpleAtoi(args[++i], &pid)) return Usage();
    } else if (args[i] == "--data") {
      data = true;
    } else if (args[i] == "--reconnect") {
      reconnect = true;
    } else if (args[i] == "--no-ack") {
      ack = false;
    } else if (args[i] == "--no-preface") {
      preface = false;
    } else if (mode.empty()) {
      mode = args[i];
    } else {
      int n = 0;
      if (!absl::SimpleAtoi(args[i], &n)) return Usage();
      nums.push_back(n);
    }
  }
  if (mode == "rapid-reset" && nums.size() == 2) {
    return RapidResetMode(nums[0], nums[1], data, reconnect, ack, pid);
  }
  if (mode == "idle" && nums.size() == 3) return IdleMode(nums[0], nums[1], nums[2], preface, pid);
  if (mode == "silent" && nums.size() == 4) {
    return SilentMode(nums[0], nums[1], nums[2], nums[3], pid);
  }
  if (mode == "good" && (nums.size() == 2 || nums.size() == 3)) {
    return GoodMode(nums[0], nums[1], nums.size() == 3 ? nums[2] : 1);
  }
  return Usage();
}
