#include "tests/integration/checks.h"

#include <algorithm>
#include <condition_variable>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace toolgate_test {

using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;

bool ByFailureMode(const CheckResponse& r) {
  return absl::StrContains(r.reason(), "counter store failed");
}

CheckRequest Req(const std::string& tool, const std::string& grant) {
  CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  return r;
}

std::vector<absl::StatusOr<CheckResponse>> CheckAll(
    const std::vector<std::unique_ptr<toolgate::Client>>& clients,
    const std::vector<CheckRequest>& requests, absl::Duration timeout) {
  // Shared with the callbacks, which may outlive this call if an answer
  // never comes.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    size_t pending = 0;
    std::vector<absl::StatusOr<CheckResponse>> results;
  };
  auto state = std::make_shared<State>();
  state->pending = requests.size();
  state->results.assign(requests.size(), absl::UnknownError("no answer"));
  for (size_t i = 0; i < requests.size(); ++i) {
    clients[i % clients.size()]->CheckAsync(requests[i], timeout,
                                            [state, i](absl::StatusOr<CheckResponse> r) {
                                              std::lock_guard<std::mutex> lock(state->mu);
                                              state->results[i] = std::move(r);
                                              if (--state->pending == 0) state->cv.notify_all();
                                            });
  }
  std::unique_lock<std::mutex> lock(state->mu);
  // gRPC answers every call by its deadline; twice that is a guard.
  state->cv.wait_for(lock, absl::ToChronoSeconds(2 * timeout + absl::Seconds(1)),
                     [&] { return state->pending == 0; });
  EXPECT_EQ(state->pending, 0u);
  return state->results;
}

std::vector<absl::Time> PollEach(const std::vector<std::unique_ptr<toolgate::Client>>& clients,
                                 const std::function<CheckRequest()>& make,
                                 const std::function<bool(const CheckResponse&)>& done,
                                 absl::Time deadline, std::vector<std::string>* last,
                                 absl::Duration timeout) {
  std::vector<absl::Time> when(clients.size(), absl::InfiniteFuture());
  std::vector<std::string> text(clients.size());
  while (std::count(when.begin(), when.end(), absl::InfiniteFuture()) > 0) {
    std::vector<CheckRequest> round;
    for (size_t i = 0; i < clients.size(); ++i) round.push_back(make());
    // Request i goes to client i.
    const auto answers = CheckAll(clients, round, timeout);
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < clients.size(); ++i) {
      if (when[i] != absl::InfiniteFuture()) continue;
      if (!answers[i].ok()) {
        text[i] = answers[i].status().ToString();
        continue;
      }
      text[i] =
          absl::StrCat(toolgate::DecisionName(answers[i]->decision()), ": ", answers[i]->reason());
      if (done(*answers[i])) when[i] = now;
    }
    if (now >= deadline) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (last != nullptr) *last = std::move(text);
  return when;
}

CheckLoad::CheckLoad(const std::vector<std::unique_ptr<toolgate::Client>>& clients, int callers,
                     MakeRequest make, absl::Duration timeout) {
  for (int t = 0; t < callers; ++t) {
    toolgate::Client* client = clients[t % clients.size()].get();
    threads_.emplace_back([this, client, t, make, timeout] {
      for (int i = 0; !stop_.load(); ++i) {
        TimedCheck c;
        c.caller = t;
        c.request = make(t, i);
        c.start = absl::Now();
        c.result = client->Check(c.request, timeout);
        c.end = absl::Now();
        std::lock_guard<std::mutex> lock(mu_);
        checks_.push_back(std::move(c));
      }
    });
  }
}

CheckLoad::~CheckLoad() { Stop(); }

bool CheckLoad::WaitForAnswers(int n, absl::Time since, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t seen = 0;  // Checks already counted.
  int answered = 0;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (; seen < checks_.size(); ++seen) {
        if (checks_[seen].start >= since) ++answered;
      }
    }
    if (answered >= n) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

std::vector<TimedCheck> CheckLoad::Stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  return std::move(checks_);
}

absl::StatusOr<uint64_t> StoreCount(const toolgate::v1::CounterStoreStatus& status,
                                    const std::string& field) {
  const google::protobuf::FieldDescriptor* f = status.GetDescriptor()->FindFieldByName(field);
  if (f == nullptr || f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_UINT64) {
    return absl::NotFoundError("the counter store status has no count named " + field);
  }
  return status.GetReflection()->GetUInt64(status, f);
}

}  // namespace toolgate_test
