#include "server/telemetry/metrics.h"

#include <algorithm>
#include <exception>
#include <iterator>
#include <limits>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"
#include "server/base/log.h"
#include "server/engine/engine.h"

namespace toolgate {

namespace {

// Check latency, in nanoseconds: 25us .. 1s.
std::vector<uint64_t> CheckBounds() {
  return {25'000,    50'000,     100'000,    250'000,    500'000,     1'000'000,   2'500'000,
          5'000'000, 10'000'000, 25'000'000, 50'000'000, 100'000'000, 250'000'000, 1'000'000'000};
}

// Redis command latency, in microseconds: 50us .. 1s.
std::vector<uint64_t> RedisBounds() {
  return {50, 100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 1'000'000};
}

std::vector<uint64_t> PipelineBounds() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}; }

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

prometheus::ClientMetric Value(prometheus::MetricType type, double v,
                               std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

prometheus::MetricFamily HistogramFamily(std::string name, std::string help,
                                         const AtomicHistogram& histogram) {
  prometheus::MetricFamily f =
      Family(std::move(name), std::move(help), prometheus::MetricType::Histogram);
  prometheus::ClientMetric m;
  m.histogram = histogram.Snapshot();
  f.metric.push_back(std::move(m));
  return f;
}

int64_t Nanos(absl::Duration d) { return std::max<int64_t>(0, absl::ToInt64Nanoseconds(d)); }

}  // namespace

// ---- AtomicHistogram ----------------------------------------------------------

AtomicHistogram::AtomicHistogram(std::vector<uint64_t> upper_bounds, double scale)
    : bounds_(std::move(upper_bounds)),
      scale_(scale),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void AtomicHistogram::Observe(uint64_t value) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                       bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

prometheus::ClientMetric::Histogram AtomicHistogram::Snapshot() const {
  prometheus::ClientMetric::Histogram h;
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < bounds_.size() ? static_cast<double>(bounds_[i]) * scale_
                                       : std::numeric_limits<double>::infinity();
    h.bucket.push_back(b);
  }
  h.sample_count = cumulative;
  h.sample_sum = static_cast<double>(sum_.load(std::memory_order_relaxed)) * scale_;
  return h;
}

// ---- Metrics ------------------------------------------------------------------

Metrics::Metrics()
    : check_duration_(CheckBounds(), 1e-9),
      redis_latency_(RedisBounds(), 1e-6),
      redis_pipeline_(PipelineBounds(), 1.0) {}

Metrics::~Metrics() = default;

Metrics::RuleCounters* Metrics::CountersFor(absl::string_view rule) {
  Shard& shard = shards_[absl::Hash<absl::string_view>()(rule) % kShards];
  {
    absl::ReaderMutexLock lock(&shard.mu);
    auto it = shard.rules.find(rule);
    if (it != shard.rules.end()) return it->second.get();
  }
  absl::MutexLock lock(&shard.mu);
  std::unique_ptr<RuleCounters>& slot = shard.rules[rule];
  if (slot == nullptr) slot = std::make_unique<RuleCounters>();
  return slot.get();
}

void Metrics::RecordCheck(v1::Decision decision, absl::string_view rule, absl::Duration latency,
                          CheckApi api) {
  const int d = decision >= 0 && decision < kDecisions ? static_cast<int>(decision) : 0;
  CountersFor(rule)->by_decision[static_cast<int>(api)][d].fetch_add(1, std::memory_order_relaxed);
  check_duration_.Observe(static_cast<uint64_t>(Nanos(latency)));
}

void Metrics::RecordError(absl::StatusCode code, absl::Duration latency) {
  const int c = static_cast<int>(code);
  errors_[c >= 0 && c < kCodes ? c : static_cast<int>(absl::StatusCode::kUnknown)].fetch_add(
      1, std::memory_order_relaxed);
  check_duration_.Observe(static_cast<uint64_t>(Nanos(latency)));
}

Metrics::Totals Metrics::CheckTotals() const {
  Totals t;
  static_assert(sizeof(t.by_decision) / sizeof(t.by_decision[0]) == kDecisions);
  for (const Shard& shard : shards_) {
    absl::ReaderMutexLock lock(&shard.mu);
    for (const auto& [rule, counters] : shard.rules) {
      for (int a = 0; a < kCheckApis; ++a) {
        for (int d = 0; d < kDecisions; ++d) {
          t.by_decision[d] += counters->by_decision[a][d].load(std::memory_order_relaxed);
        }
      }
    }
  }
  for (const auto& e : errors_) t.errors += e.load(std::memory_order_relaxed);
  return t;
}

void Metrics::RecordPolicyReload(bool ok) {
  (ok ? reloads_ok_ : reloads_failed_).fetch_add(1, std::memory_order_relaxed);
}

namespace {
constexpr absl::string_view kPolicyRejectionReasons[] = {"metadata",  "digest",   "unsigned",
                                                         "signature", "revision", "other"};
}  // namespace

void Metrics::RecordPolicyRejected(absl::string_view reason) {
  static_assert(std::size(kPolicyRejectionReasons) == kRejectionReasons);
  int i = 0;
  while (i + 1 < kRejectionReasons && kPolicyRejectionReasons[i] != reason) ++i;
  rejected_[i].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordApprovalEvent(v1::ApprovalEventKind kind) {
  if (kind > 0 && kind < kApprovalEvents) approval_events_[kind].fetch_add(1, std::memory_order_relaxed);
}

namespace {
constexpr absl::string_view kSettlementOutcomeNames[] = {"succeeded", "failed", "duplicate",
                                                         "not_found", "expired"};
constexpr absl::string_view kNotReservedReasons[] = {"full", "store_failed"};
}  // namespace

void Metrics::RecordSettlement(absl::string_view outcome) {
  static_assert(std::size(kSettlementOutcomeNames) == kSettlementOutcomes);
  for (int i = 0; i < kSettlementOutcomes; ++i) {
    if (kSettlementOutcomeNames[i] == outcome) {
      settlements_[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

void Metrics::RecordReservationNotRecorded(absl::string_view reason) {
  not_reserved_[reason == "full" ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::OnRedisReply(int64_t latency_us) {
  redis_latency_.Observe(static_cast<uint64_t>(std::max<int64_t>(0, latency_us)));
}

void Metrics::OnRedisPipeline(size_t commands) { redis_pipeline_.Observe(commands); }

std::vector<prometheus::MetricFamily> Metrics::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;

  auto checks = Family("toolgate_checks_total",
                       "Checks decided, by decision, by the policy rule that decided and by API.",
                       MetricType::Counter);
  std::vector<std::pair<std::string, const RuleCounters*>> rules;
  for (const Shard& shard : shards_) {
    absl::ReaderMutexLock lock(&shard.mu);
    for (const auto& [rule, counters] : shard.rules) rules.emplace_back(rule, counters.get());
  }
  std::sort(rules.begin(), rules.end());
  for (const auto& [rule, counters] : rules) {
    for (int a = 0; a < kCheckApis; ++a) {
      for (int d = 0; d < kDecisions; ++d) {
        const uint64_t n = counters->by_decision[a][d].load(std::memory_order_relaxed);
        if (n == 0) continue;
        checks.metric.push_back(
            Value(MetricType::Counter, static_cast<double>(n),
                  {{"decision", std::string(DecisionLabel(static_cast<v1::Decision>(d)))},
                   {"rule", rule},
                   {"api", std::string(CheckApiLabel(static_cast<CheckApi>(a)))}}));
      }
    }
  }
  out.push_back(std::move(checks));

  auto errors = Family("toolgate_check_errors_total",
                       "Checks answered with a gRPC error instead of a decision, by code.",
                       MetricType::Counter);
  for (int c = 0; c < kCodes; ++c) {
    const uint64_t n = errors_[c].load(std::memory_order_relaxed);
    if (n == 0) continue;
    std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(c));
    errors.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(n), {{"code", std::move(code)}}));
  }
  out.push_back(std::move(errors));

  out.push_back(HistogramFamily(
      "toolgate_check_duration_seconds",
      "Time from the start of a check to its answer (decisions and errors).", check_duration_));

  if (sources_.in_flight) {
    auto f = Family("toolgate_checks_in_flight", "Checks started and not answered yet.",
                    MetricType::Gauge);
    f.metric.push_back(Value(MetricType::Gauge, static_cast<double>(sources_.in_flight())));
    out.push_back(std::move(f));
  }

  auto reloads =
      Family("toolgate_policy_reloads_total",
             "Policy reloads (file change, SIGHUP or Redis), by result.", MetricType::Counter);
  reloads.metric.push_back(Value(MetricType::Counter,
                                 static_cast<double>(reloads_ok_.load(std::memory_order_relaxed)),
                                 {{"result", "ok"}}));
  reloads.metric.push_back(Value(
      MetricType::Counter, static_cast<double>(reloads_failed_.load(std::memory_order_relaxed)),
      {{"result", "failed"}}));
  out.push_back(std::move(reloads));

  auto rejected = Family("toolgate_policy_rejected_total",
                         "Policy revisions from Redis refused before activation (digest or "
                         "signature checks), by reason.",
                         MetricType::Counter);
  for (int i = 0; i < kRejectionReasons; ++i) {
    rejected.metric.push_back(Value(
        MetricType::Counter, static_cast<double>(rejected_[i].load(std::memory_order_relaxed)),
        {{"reason", std::string(kPolicyRejectionReasons[i])}}));
  }
  out.push_back(std::move(rejected));

  auto approvals = Family("toolgate_approval_events_total",
                          "Approval events this server recorded (each event of a fleet is "
                          "counted by one server), by event.",
                          MetricType::Counter);
  for (int k = 1; k < kApprovalEvents; ++k) {
    const auto kind = static_cast<v1::ApprovalEventKind>(k);
    std::string name = v1::ApprovalEventKind_Name(kind);
    name = absl::AsciiStrToLower(name.substr(std::string("APPROVAL_EVENT_").size()));
    approvals.metric.push_back(
        Value(MetricType::Counter,
              static_cast<double>(approval_events_[k].load(std::memory_order_relaxed)),
              {{"event", name}}));
  }
  out.push_back(std::move(approvals));
  auto settlements = Family("toolgate_settlements_total",
                            "Reservations settled (Settle) or committed at their timeout "
                            "(expired), by outcome.",
                            MetricType::Counter);
  for (int i = 0; i < kSettlementOutcomes; ++i) {
    settlements.metric.push_back(Value(
        MetricType::Counter, static_cast<double>(settlements_[i].load(std::memory_order_relaxed)),
        {{"outcome", std::string(kSettlementOutcomeNames[i])}}));
  }
  out.push_back(std::move(settlements));
  auto not_reserved = Family("toolgate_reservations_not_recorded_total",
                             "Admitted calls that should have had a reservation and got none "
                             "(their units are committed), by reason.",
                             MetricType::Counter);
  for (int i = 0; i < 2; ++i) {
    not_reserved.metric.push_back(Value(
        MetricType::Counter, static_cast<double>(not_reserved_[i].load(std::memory_order_relaxed)),
        {{"reason", std::string(kNotReservedReasons[i])}}));
  }
  out.push_back(std::move(not_reserved));
  if (sources_.reservations_open) {
    auto f = Family("toolgate_reservations_open",
                    "Reservations this server created, not settled here and not past their "
                    "settlement timeout.",
                    MetricType::Gauge);
    f.metric.push_back(
        Value(MetricType::Gauge, static_cast<double>(sources_.reservations_open()), {}));
    out.push_back(std::move(f));
  }
  if (sources_.approvals_waiting) {
    auto f = Family("toolgate_approvals_waiting",
                    "WaitApproval calls waiting for an approver.", MetricType::Gauge);
    f.metric.push_back(
        Value(MetricType::Gauge, static_cast<double>(sources_.approvals_waiting()), {}));
    out.push_back(std::move(f));
  }

  if (sources_.active_revision) {
    const std::string revision = sources_.active_revision();
    auto info = Family("toolgate_policy_info",
                       "The active policy revision (the value is always 1).", MetricType::Gauge);
    if (!revision.empty()) {
      info.metric.push_back(Value(MetricType::Gauge, 1, {{"revision", revision}}));
    }
    out.push_back(std::move(info));
  }

  const CounterStoreStatus s =
      sources_.store_status ? sources_.store_status() : CounterStoreStatus();
  if (s.kind == "redis") {
    auto errs = Family("toolgate_redis_errors_total",
                       "Counter-store calls Redis did not answer in time (timeout) or failed "
                       "(failure: unreachable or an error reply).",
                       MetricType::Counter);
    errs.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(s.timeouts), {{"kind", "timeout"}}));
    errs.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(s.failures), {{"kind", "failure"}}));
    out.push_back(std::move(errs));

    auto hits = Family("toolgate_redis_over_limit_cache_hits_total",
                       "Calls refused by the over-limit cache, without a Redis round trip.",
                       MetricType::Counter);
    hits.metric.push_back(Value(MetricType::Counter, static_cast<double>(s.cache_hits)));
    out.push_back(std::move(hits));

    auto connected =
        Family("toolgate_redis_connected", "1 while connected to Redis.", MetricType::Gauge);
    connected.metric.push_back(Value(MetricType::Gauge, s.connected ? 1 : 0));
    out.push_back(std::move(connected));

    auto topology = Family("toolgate_redis_topology_events_total",
                           "Redis Sentinel/Cluster events: redirect (MOVED, ASK, TRYAGAIN "
                           "followed), refund (a cross-slot reservation given back), "
                           "refund_failure (one that could not be delivered), change (a new "
                           "master or slot map).",
                           MetricType::Counter);
    for (const auto& [kind, n] : {std::pair<const char*, uint64_t>{"redirect", s.redirects},
                                  {"refund", s.refunds},
                                  {"refund_failure", s.refund_failures},
                                  {"change", s.topology_changes}}) {
      topology.metric.push_back(
          Value(MetricType::Counter, static_cast<double>(n), {{"kind", kind}}));
    }
    out.push_back(std::move(topology));

    out.push_back(HistogramFamily(
        "toolgate_redis_command_duration_seconds",
        "Time from writing a call's command to Redis to reading its reply.", redis_latency_));
    out.push_back(HistogramFamily("toolgate_redis_pipeline_commands",
                                  "Commands carried by each pipelined write to Redis.",
                                  redis_pipeline_));
  }

  if (sources_.decision_log_dropped) {
    auto dropped = Family("toolgate_decision_log_dropped_total",
                          "Decision log entries dropped because the log's queue was full.",
                          MetricType::Counter);
    dropped.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(sources_.decision_log_dropped())));
    out.push_back(std::move(dropped));
  }
  if (sources_.decision_log_write_errors) {
    auto failed = Family("toolgate_decision_log_write_errors_total",
                         "Decision log entries lost because writing them failed (a full disk, a "
                         "closed pipe).",
                         MetricType::Counter);
    failed.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(sources_.decision_log_write_errors())));
    out.push_back(std::move(failed));
  }
  auto log_errors = Family("toolgate_log_write_errors_total",
                           "Server log lines lost because writing to stderr failed.",
                           MetricType::Counter);
  log_errors.metric.push_back(Value(MetricType::Counter, static_cast<double>(LogWriteErrors())));
  out.push_back(std::move(log_errors));
  return out;
}

std::string Metrics::Exposition() const {
  return prometheus::TextSerializer().Serialize(Collect());
}

// ---- MetricsEndpoint ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& listen, std::shared_ptr<Metrics> metrics) {
  const size_t colon = listen.rfind(':');
  int64_t port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", listen, "\" is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint());
  e->metrics_ = std::move(metrics);
  try {
    // civetweb: "HOST:PORT" binds one address; IPv6 hosts go in brackets
    // already ("[::1]:9464"). Each worker serves one connection at a time,
    // so connections that send nothing must not hold the workers for long:
    // kMetricsWorkers of them, a connection silent for
    // kMetricsRequestTimeoutMs is closed, and none is kept alive after its
    // response.
    e->exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", listen, "num_threads", std::to_string(kMetricsWorkers),
        "request_timeout_ms", std::to_string(kMetricsRequestTimeoutMs), "enable_keep_alive",
        "no", "connection_queue", std::to_string(kMetricsConnectionQueue)});
  } catch (const std::exception& ex) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ", ex.what()));
  }
  const std::vector<int> ports = e->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen));
  }
  e->exposer_->RegisterCollectable(e->metrics_);
  e->address_ = absl::StrCat(host, ":", ports.front());
  return e;
}

MetricsEndpoint::~MetricsEndpoint() {
  exposer_.reset();  // Stops serving before the metrics go.
}

}  // namespace toolgate
