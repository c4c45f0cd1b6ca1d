// Check requests for integration tests: building them, sending many at
// once, and keeping a steady load of them going while a test breaks
// something underneath (Redis killed, failed over, resharded); and reading
// what the servers then report of their counter store.
#ifndef TOOLGATE_TESTS_INTEGRATION_CHECKS_H_
#define TOOLGATE_TESTS_INTEGRATION_CHECKS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "toolgate/client.h"

namespace toolgate_test {

// A check of `tool` by `grant`, nothing else set.
toolgate::v1::CheckRequest Req(const std::string& tool, const std::string& grant);

// True when the counter store's failure mode decided `r` (Redis could not:
// its reason says "counter store failed").
bool ByFailureMode(const toolgate::v1::CheckResponse& r);

// Sends every request at once, spread round-robin over the clients, and
// waits for all answers (each with `timeout`); an answer never received is
// an UNKNOWN status (and a test failure).
std::vector<absl::StatusOr<toolgate::v1::CheckResponse>> CheckAll(
    const std::vector<std::unique_ptr<toolgate::Client>>& clients,
    const std::vector<toolgate::v1::CheckRequest>& requests,
    absl::Duration timeout = absl::Seconds(30));

// Sends make() to every client at once, round after round (each check with
// `timeout`), until each client's answer has satisfied `done` once, or
// `deadline` passes. Returns, per client, when its answer first did
// (absl::InfiniteFuture(): never); `last` (may be null) gets each client's
// last answer as text, for failure messages.
std::vector<absl::Time> PollEach(
    const std::vector<std::unique_ptr<toolgate::Client>>& clients,
    const std::function<toolgate::v1::CheckRequest()>& make,
    const std::function<bool(const toolgate::v1::CheckResponse&)>& done, absl::Time deadline,
    std::vector<std::string>* last = nullptr, absl::Duration timeout = absl::Seconds(10));

// One check sent by a CheckLoad.
struct TimedCheck {
  int caller = 0;
  toolgate::v1::CheckRequest request;
  absl::Time start;  // Just before it was sent.
  absl::Time end;    // Just after its answer came.
  absl::StatusOr<toolgate::v1::CheckResponse> result = absl::UnknownError("no answer");
};

// `callers` threads, each sending one check after another (blocking, with
// `timeout` each) until Stop: caller t sends make(t, 0), make(t, 1), ... to
// clients[t % clients.size()]. Every check is recorded with its times.
class CheckLoad {
 public:
  using MakeRequest = std::function<toolgate::v1::CheckRequest(int caller, int n)>;

  // `clients` must outlive the load.
  CheckLoad(const std::vector<std::unique_ptr<toolgate::Client>>& clients, int callers,
            MakeRequest make, absl::Duration timeout = absl::Seconds(5));
  ~CheckLoad();  // Stops.
  CheckLoad(const CheckLoad&) = delete;
  CheckLoad& operator=(const CheckLoad&) = delete;

  // Polls until `n` checks sent at or after `since` were answered (true), or
  // `timeout` passed (false).
  bool WaitForAnswers(int n, absl::Time since, absl::Duration timeout);
  bool WaitForAnswers(int n, absl::Duration timeout) {
    return WaitForAnswers(n, absl::InfinitePast(), timeout);
  }

  // Stops the callers (each finishes the check it is waiting for) and
  // returns every check, in the order answered. Once only.
  std::vector<TimedCheck> Stop();

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<TimedCheck> checks_;  // Guarded by mu_.
  std::vector<std::thread> threads_;
};

// One count of a counter store's status (AdminService/GetStatus), by its
// field name ("redirects", "refunds", ...): NOT_FOUND when the API this
// test was built with has no such field, so that a test asking for a count
// that newer servers report fails with that message instead of not
// building.
absl::StatusOr<uint64_t> StoreCount(const toolgate::v1::CounterStoreStatus& status,
                                    const std::string& field);

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_INTEGRATION_CHECKS_H_
