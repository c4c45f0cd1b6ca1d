// Prometheus metrics of a toolgated, served on --metrics-listen (GET /metrics).
//
// The check path only touches atomics: per-decision counters, a lock-free
// histogram, and a per-rule counter block found in a small sharded map
// (a shared lock on one of 16 shards; the exclusive lock only the first time
// a rule is seen). The exposition is built at scrape time (Collect()), from
// these atomics and from sources asked for their current values then (the
// active revision, the Redis store's statistics, the decision log's drops).
//
// Names (all prefixed toolgate_):
//   checks_total{decision,rule,api}        counter  decisions given; api: how the
//                                          call arrived (check_api.h)
//   check_errors_total{code}               counter  checks answered with a gRPC error
//   check_duration_seconds                 histogram  start of Check to its answer
//   checks_in_flight                       gauge
//   policy_reloads_total{result="ok"|"failed"}  counter
//   policy_rejected_total{reason}          counter  revisions from Redis refused before
//                                          activation: "metadata" (no or malformed
//                                          digest/signature record), "digest" (content
//                                          changed since the push), "unsigned",
//                                          "signature" (verifies with no verify key),
//                                          "revision" (loads as another revision)
//   policy_info{revision}                  gauge, always 1
//   settlements_total{outcome}             counter  Settle calls and expiries: succeeded,
//                                          failed, duplicate (settled before),
//                                          not_found, expired (never settled: committed
//                                          at the timeout; counted by the creating server)
//   reservations_not_recorded_total{reason}  counter  admitted calls that got no reservation
//                                          (units committed): "full", "store_failed"
//   reservations_open                      gauge  reservations this server created, not
//                                          settled here and not past their timeout
//   redis_errors_total{kind="timeout"|"failure"}  counter
//   redis_over_limit_cache_hits_total      counter  calls refused without a round trip
//   redis_command_duration_seconds         histogram  write of a call's command to its reply
//   redis_pipeline_commands                histogram  commands per pipelined write
//   redis_connected                        gauge
//   decision_log_dropped_total             counter  log entries dropped (queue full)
//   decision_log_write_errors_total        counter  log entries lost to failed writes
//   log_write_errors_total                 counter  server log lines lost (stderr failed)
#ifndef TOOLGATE_SERVER_TELEMETRY_METRICS_H_
#define TOOLGATE_SERVER_TELEMETRY_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/counters/redis_store.h"
#include "server/telemetry/check_api.h"
#include "toolgate/v1/approval.pb.h"
#include "toolgate/v1/decision.pb.h"

namespace prometheus {
class Exposer;
}

namespace toolgate {

// A histogram over integer observations (e.g. nanoseconds) with fixed upper
// bounds; Observe() is wait-free. Exposed with every value times `scale`
// (1e-9 turns nanoseconds into seconds).
class AtomicHistogram {
 public:
  AtomicHistogram(std::vector<uint64_t> upper_bounds, double scale);

  void Observe(uint64_t value);
  // Cumulative buckets, count and sum as Prometheus expects them.
  prometheus::ClientMetric::Histogram Snapshot() const;

 private:
  const std::vector<uint64_t> bounds_;
  const double scale_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1 (+Inf).
  std::atomic<uint64_t> sum_{0};
};

// What the metrics ask for at scrape time. Any of these may be empty.
struct MetricsSources {
  std::function<std::string()> active_revision;      // "" when none.
  std::function<CounterStoreStatus()> store_status;  // Redis metrics when its kind is "redis".
  std::function<uint64_t()> decision_log_dropped;    // Only with a decision log.
  std::function<uint64_t()> decision_log_write_errors;
  std::function<int64_t()> in_flight;
  std::function<int64_t()> approvals_waiting;  // Only with approvals.
  std::function<int64_t()> reservations_open;
};

class Metrics final : public prometheus::Collectable, public RedisStoreObserver {
 public:
  Metrics();
  ~Metrics() override;

  // Set once, before serving.
  void SetSources(MetricsSources sources) { sources_ = std::move(sources); }

  // A decision (gRPC OK) and how long it took since Check started.
  void RecordCheck(v1::Decision decision, absl::string_view rule, absl::Duration latency,
                   CheckApi api = CheckApi::kToolgate);
  // A check answered with a gRPC error.
  void RecordError(absl::StatusCode code, absl::Duration latency);
  void RecordPolicyReload(bool ok);
  // A revision refused before activation, by reason (kPolicyRejectionReasons;
  // any other is counted as the last one, "other").
  void RecordPolicyRejected(absl::string_view reason);
  // An approval event this server recorded (ApprovalEvents::local).
  void RecordApprovalEvent(v1::ApprovalEventKind kind);
  // A settlement or expiry by its outcome (kSettlementOutcomes; any other is
  // not counted).
  void RecordSettlement(absl::string_view outcome);
  // An admitted call that got no reservation: "full" or "store_failed".
  void RecordReservationNotRecorded(absl::string_view reason);

  // Totals of what RecordCheck and RecordError counted: decisions by
  // v1::Decision value, and errors (for status: the same tally as the
  // exposition, not a second one).
  struct Totals {
    uint64_t by_decision[5] = {};
    uint64_t errors = 0;
  };
  Totals CheckTotals() const;

  // RedisStoreObserver (called on the store's I/O thread).
  void OnRedisReply(int64_t latency_us) override;
  void OnRedisPipeline(size_t commands) override;

  std::vector<prometheus::MetricFamily> Collect() const override;
  // The Prometheus text exposition of Collect().
  std::string Exposition() const;

 private:
  static constexpr int kDecisions = 5;  // v1::Decision values 0..4.
  struct RuleCounters {
    std::atomic<uint64_t> by_decision[kCheckApis][kDecisions] = {};
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, std::unique_ptr<RuleCounters>> rules ABSL_GUARDED_BY(mu);
  };
  static constexpr int kShards = 16;
  static constexpr int kCodes = 17;  // absl::StatusCode 0..16.

  RuleCounters* CountersFor(absl::string_view rule);

  MetricsSources sources_;
  Shard shards_[kShards];
  std::atomic<uint64_t> errors_[kCodes] = {};
  std::atomic<uint64_t> reloads_ok_{0}, reloads_failed_{0};
  static constexpr int kRejectionReasons = 6;
  std::atomic<uint64_t> rejected_[kRejectionReasons] = {};
  static constexpr int kApprovalEvents = 6;  // v1::ApprovalEventKind 0..5 (created..expired).
  std::atomic<uint64_t> approval_events_[kApprovalEvents] = {};
  static constexpr int kSettlementOutcomes = 5;
  std::atomic<uint64_t> settlements_[kSettlementOutcomes] = {};
  std::atomic<uint64_t> not_reserved_[2] = {};
  AtomicHistogram check_duration_;
  AtomicHistogram redis_latency_;
  AtomicHistogram redis_pipeline_;
};

// Serves `metrics` on http://`listen`/metrics (HOST:PORT; port 0 picks a
// free one) until destroyed. kMetricsWorkers connections are served at
// once; up to kMetricsConnectionQueue more wait for a worker; a connection
// that sends no complete request within kMetricsRequestTimeoutMs is closed;
// no connection is kept alive after its response.
inline constexpr int kMetricsWorkers = 16;
inline constexpr int kMetricsConnectionQueue = 64;
inline constexpr int kMetricsRequestTimeoutMs = 5000;
class MetricsEndpoint {
 public:
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& listen,
                                                                std::shared_ptr<Metrics> metrics);
  ~MetricsEndpoint();

  // The address bound, with the real port ("127.0.0.1:9464").
  const std::string& address() const { return address_; }

 private:
  MetricsEndpoint() = default;
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_TELEMETRY_METRICS_H_
