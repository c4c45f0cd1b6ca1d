// toolgate.v1.DecisionService over gRPC's callback API.
//
// The handler parses the request itself (the raw-bytes form of the method),
// so that over-deep arguments get INVALID_ARGUMENT instead of a parse
// failure, then runs the engine. Calls that need counters finish from the
// counter store's completion; no gRPC thread waits on the store.
#ifndef TOOLGATE_SERVER_SERVICE_DECISION_SERVICE_H_
#define TOOLGATE_SERVER_SERVICE_DECISION_SERVICE_H_

#include <atomic>
#include <cstdint>

#include "server/engine/engine.h"
#include "server/engine/args_limits.h"
#include "server/policy/registry.h"
#include "server/counters/counter_store.h"
#include "toolgate/v1/decision.grpc.pb.h"

namespace toolgate {

class Metrics;
class DecisionLog;

// Counts of answers given, for status and tests.
struct DecisionStats {
  std::atomic<uint64_t> allow{0}, deny{0}, rate_limited{0}, require_approval{0}, errors{0};
  // Shadow revision: calls compared, and those it would have decided otherwise.
  std::atomic<uint64_t> shadow_compared{0}, shadow_differed{0};
};

class DecisionServiceImpl final
    : public v1::DecisionService::WithRawCallbackMethod_Check<v1::DecisionService::Service> {
 public:
  // The registry and store must outlive the service.
  DecisionServiceImpl(const PolicyRegistry* policies, CounterStore* store, Engine engine,
                      ArgsLimits limits);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

  // Optional: metrics recorded and decision log written for every check
  // (either may be null). Set before serving; both must outlive the service.
  void SetObservers(Metrics* metrics, DecisionLog* decision_log) {
    metrics_ = metrics;
    decision_log_ = decision_log;
  }

  const DecisionStats& stats() const { return stats_; }
  const Engine& engine() const { return engine_; }
  // Checks started and not finished yet.
  int64_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }

 private:
  struct Call;
  void Finish(Call* call, const absl::Status& status);
  std::string NextDecisionId();
  void CompareShadow(const Call& call);
  void LogDecision(Call* call, absl::Duration latency);

  const PolicyRegistry* policies_;
  CounterStore* store_;
  const Engine engine_;
  const ArgsLimits limits_;
  const uint64_t id_prefix_;
  std::atomic<uint64_t> id_counter_{0};
  DecisionStats stats_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> shadow_log_second_{0};
  std::atomic<int> shadow_logged_{0};
  Metrics* metrics_ = nullptr;
  DecisionLog* decision_log_ = nullptr;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_DECISION_SERVICE_H_
