// The decision observers a server runs (decision_observer.h): metrics (whose
// tally status also reads), the shadow comparison, the decision log.
#ifndef TOOLGATE_SERVER_SERVICE_OBSERVERS_H_
#define TOOLGATE_SERVER_SERVICE_OBSERVERS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "server/approvals/approval_store.h"
#include "server/engine/engine.h"
#include "server/policy/registry.h"
#include "server/service/decision_observer.h"
#include "server/telemetry/decision_log.h"
#include "server/telemetry/metrics.h"

namespace toolgate {

// Counts every decision and error in the metrics.
class MetricsObserver final : public DecisionObserver {
 public:
  explicit MetricsObserver(Metrics* metrics) : metrics_(metrics) {}
  void OnDecision(const DecisionRecord& r) override;
  void OnError(absl::StatusCode code, absl::Duration latency) override;

 private:
  Metrics* const metrics_;
};

// Compares the active revision's decisions with a shadow revision's: counts
// the calls compared and those the shadow would decide otherwise, and logs
// at most 10 differences a second.
class ShadowComparer final : public DecisionObserver {
 public:
  // The shadow revision's view of a call, when a shadow is set and the call
  // does not pin a revision (and the shadow is not the deciding revision).
  // Cheap when there is no shadow. Call before the counters are asked.
  // `peer` is the caller's identity, the same the active revision sees.
  static ShadowView Evaluate(const PolicyRegistry& registry, const Engine& engine,
                             const Policy& active, const v1::CheckRequest& request,
                             absl::string_view peer);

  void OnDecision(const DecisionRecord& r) override;

  uint64_t compared() const { return compared_.load(std::memory_order_relaxed); }
  uint64_t differed() const { return differed_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> compared_{0}, differed_{0};
  std::atomic<int64_t> log_second_{0};
  std::atomic<int> logged_{0};
};

// Queues one decision-log entry a decision (never waits on the log's I/O).
class DecisionLogObserver final : public DecisionObserver {
 public:
  explicit DecisionLogObserver(DecisionLog* log) : log_(log) {}
  void OnDecision(const DecisionRecord& r) override;

 private:
  DecisionLog* const log_;
};

// Writes an approval event to the decision log (see decision_log.h).
void LogApprovalEvent(DecisionLog* log, v1::ApprovalEventKind kind, const v1::Approval& approval);

// Writes a reservation event ("reservation_settled", "reservation_expired")
// to the decision log (see decision_log.h).
void LogReservationEvent(DecisionLog* log, absl::string_view event,
                         const std::string& reservation_id, const std::string& decision_id,
                         absl::string_view outcome, std::optional<int64_t> cost);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_OBSERVERS_H_
