// A running toolgated: the gRPC server with the decision service, health
// and reflection, the policy registry and the counter store.
#ifndef TOOLGATE_SERVER_APP_SERVER_H_
#define TOOLGATE_SERVER_APP_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "server/base/clock.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/service/admin_service.h"
#include "server/telemetry/decision_log.h"
#include "server/service/decision_service.h"
#include "server/telemetry/metrics.h"
#include "server/policy/registry.h"
#include "server/provider/embedded_policy.h"
#include "server/counters/counter_store.h"
#include "server/counters/memory_store.h"
#include "server/counters/redis_store.h"

namespace toolgate {

struct ServerConfig {
  std::string listen = "0.0.0.0:50051";
  // A policy file or directory; "redis://..." to follow the revision made
  // active in Redis (toolgate policy activate); empty means the embedded
  // example policy.
  std::string policy_path;
  // With a redis:// policy: how often the active pointer is also polled
  // (announcements arrive by pub/sub at once).
  int64_t policy_check_interval_ms = 1000;
  // A candidate revision evaluated beside the active one (file or
  // directory); empty: none.
  std::string shadow_policy_path;
  ArgsLimits args_limits;
  int64_t keep_revisions = 5;
  int64_t shutdown_grace_ms = 10'000;
  // Counters: in process when empty, else in Redis at this URL.
  std::string redis_url;
  int64_t redis_timeout_ms = 25;
  FailureMode failure_mode = FailureMode::kClosed;
  bool over_limit_cache = true;
  // Prometheus metrics on http://HOST:PORT/metrics; empty: off.
  std::string metrics_listen;
  // Decision log: "stdout", "stderr" or a file path; empty: off.
  std::string decision_log;
  // Tools (names or globs) whose arguments the decision log holds in full.
  std::vector<std::string> decision_log_args;
  int64_t decision_log_queue = 10'000;
};

// True when `policy_path` names Redis rather than a file.
bool IsRedisPolicyPath(const std::string& policy_path);

// Loads the policy the configuration names (or the embedded one).
absl::StatusOr<std::shared_ptr<const Policy>> LoadConfiguredPolicy(const ServerConfig& config);

class ToolgateServer {
 public:
  // Loads the policy, binds the address and starts serving. Errors: an
  // invalid policy (INVALID_ARGUMENT, with every problem listed), a missing
  // policy path (NOT_FOUND), an address that cannot be bound (UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<ToolgateServer>> Start(const ServerConfig& config);
  ~ToolgateServer();

  // The address actually bound ("127.0.0.1:50051"; the real port when 0 was asked).
  const std::string& address() const { return address_; }

  // Reloads the policy from its path (and the shadow policy, if any). On
  // error the current revision keeps serving and the error is returned. With
  // a redis:// policy, asks the follower to check Redis now.
  absl::Status Reload();

  // Health turns NOT_SERVING, no new calls are accepted, in-flight calls get
  // up to the grace period to finish; then the server stops.
  void Shutdown();

  const PolicyRegistry& policies() const { return policies_; }
  const DecisionStats& stats() const { return service_->stats(); }
  // "HOST:PORT" of the metrics endpoint (the real port); empty when off.
  std::string metrics_address() const {
    return metrics_endpoint_ ? metrics_endpoint_->address() : std::string();
  }
  // "redis: checks=.. commands=.. round_trips=.." or "in process: N keys".
  std::string StoreStatsLine() const;
  // Everything AdminService/GetStatus reports.
  v1::GetStatusResponse Status() const;

 private:
  explicit ToolgateServer(const ServerConfig& config);

  ServerConfig config_;
  PolicyRegistry policies_;
  // Before the store, whose I/O thread reports to it: destroyed after it.
  std::shared_ptr<Metrics> metrics_;  // Null when metrics are off.
  std::unique_ptr<CounterStore> store_;
  // Declared before the service, which uses them: destroyed after it.
  std::unique_ptr<DecisionLog> decision_log_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<DecisionServiceImpl> service_;
  std::unique_ptr<AdminServiceImpl> admin_;
  std::unique_ptr<class RedisPolicyFollower> follower_;
  const absl::Time started_at_;
  mutable absl::Mutex reload_mu_;
  std::string last_reload_error_ ABSL_GUARDED_BY(reload_mu_);
  absl::Time last_reload_at_ ABSL_GUARDED_BY(reload_mu_);
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APP_SERVER_H_
