// A running toolgated: the gRPC server with the decision and admin services,
// health and reflection; the policy provider and the registry of loaded
// revisions; the counter store; the decision observers (metrics, shadow
// comparison, decision log).
#ifndef TOOLGATE_SERVER_APP_SERVER_H_
#define TOOLGATE_SERVER_APP_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "server/app/transport.h"
#include "server/approvals/approval_hub.h"
#include "server/approvals/approval_store.h"
#include "server/counters/counter_store.h"
#include "server/decider/decider.h"
#include "server/engine/args_limits.h"
#include "server/engine/engine.h"
#include "server/policy/registry.h"
#include "server/provider/provider.h"
#include "server/reservations/reservation_store.h"
#include "server/service/admin_service.h"
#include "server/service/approval_service.h"
#include "server/service/decision_service.h"
#include "server/service/ext_authz.h"
#include "server/service/observers.h"
#include "server/telemetry/decision_log.h"
#include "server/telemetry/metrics.h"
#include "toolgate/v1/admin.pb.h"

namespace toolgate {

struct ServerConfig {
  // DecisionService and health.
  std::string listen = "0.0.0.0:50051";
  // AdminService and health; empty: not served.
  std::string admin_listen = "127.0.0.1:50052";
  // TLS on both listeners (off unless tls.cert_file is set); mTLS with
  // tls.client_ca_file.
  TlsServerOptions tls;
  // With mTLS: certificate identities (glob patterns) admitted on both
  // listeners; empty: every caller with a valid certificate.
  std::vector<std::string> allow_peers;
  // The bearer token admin calls must carry; empty: none needed.
  std::string admin_token_file;
  // Limits on gRPC clients (streams, memory, connections, idle and age).
  TransportLimits transport;
  // Accept gRPC connections through a ConnectionGate (connection cap,
  // descriptor recovery, rapid-reset cut-off); false: gRPC's own listener.
  bool connection_gate = true;
  // Where revisions come from: a file or directory (watched unless
  // `policy.watch` is false), "redis://..." (the revision active in Redis),
  // or empty (the embedded example policy).
  ProviderOptions policy;
  // A candidate revision evaluated beside the active one (file or
  // directory); empty: none.
  std::string shadow_policy_path;
  ArgsLimits args_limits;
  // Envoy's external authorization (ext_authz v3) on `listen`, and how it
  // reads requests and answers.
  bool ext_authz = true;
  ExtAuthzOptions ext_authz_options;
  int64_t keep_revisions = 5;
  int64_t shutdown_grace_ms = 10'000;
  // After SIGTERM, how long health says NOT_SERVING while checks are still
  // served, so that load balancers stop sending first.
  int64_t shutdown_delay_ms = 0;
  // Counters: in process when empty, else in Redis at this URL.
  std::string redis_url;
  // Applied to every Redis connection (counters and --policy redis://...).
  RedisCredentials redis_credentials;
  int64_t redis_timeout_ms = 25;
  int64_t redis_wait_replicas = 0;  // WAIT for this many replicas after each script run.
  FailureMode failure_mode = FailureMode::kClosed;
  bool over_limit_cache = true;
  // Approvals live where the counters do (in process, or in Redis).
  ApprovalLimits approval_limits;
  // Reservations (settle: required) too: --settlement-timeout,
  // --max-open-reservations.
  ReservationOptions reservations;
  // Prometheus metrics on http://HOST:PORT/metrics; empty: off.
  std::string metrics_listen;
  // Decision log: "stdout", "stderr" or a file path; empty: off.
  std::string decision_log;
  // Tools (names or globs) whose arguments the decision log holds in full.
  std::vector<std::string> decision_log_args;
  // The decision log's grant as a hash; with a key (the content of
  // --decision-log-hash-key-file), hashes are HMAC-SHA256 (decision_log.h).
  bool decision_log_hash_grant = false;
  std::string decision_log_hash_key;
  int64_t decision_log_queue = 10'000;
  int64_t decision_log_queue_bytes = 64 << 20;
};

class ToolgateServer {
 public:
  // Loads the policy, binds the address and starts serving. Errors: an
  // invalid policy (INVALID_ARGUMENT, with every problem listed), a missing
  // policy path (NOT_FOUND), an address that cannot be bound (UNAVAILABLE).
  static absl::StatusOr<std::unique_ptr<ToolgateServer>> Start(const ServerConfig& config);
  ~ToolgateServer();

  // The address actually bound ("127.0.0.1:50051"; the real port when 0 was asked).
  const std::string& address() const { return decision_.address; }
  // The admin listener's address (the real port); empty when not served.
  const std::string& admin_address() const { return admin_listener_.address; }

  // Loads the policy again (and the shadow policy, if any), as for SIGHUP.
  // The outcome is logged and recorded in status; on error the current
  // revision keeps serving. With Redis, asks the follower to check now.
  void Reload(absl::string_view trigger);

  // Stopping without cancelling a check that was accepted, in three steps:
  //  1. StopServing(): health turns NOT_SERVING; checks are still served
  //     (for --shutdown-delay, which the caller waits out, so that load
  //     balancers see the health change and stop sending first).
  //  2. Drain(): every new check is answered UNAVAILABLE ("shutting down") at
  //     once, and the checks already started get up to shutdown_grace_ms to
  //     be decided and answered; then every connection is closed (a call
  //     still on its way gets UNAVAILABLE from the client's transport) and
  //     the decision log is written out.
  //  3. Shutdown(): gRPC's server stops (in-process users; toolgated exits
  //     after Drain instead).
  // gRPC's own graceful shutdown is not used to drain: in gRPC 1.51 it
  // cancels (CANCELLED) every call whose headers it reads after it began,
  // including calls a client sent before the signal. All three idempotent.
  void StopServing();
  void Drain();

  // StopServing(), the shutdown delay, Drain(), then stop the gRPC server and
  // wait for it.
  void Shutdown();

  const PolicyRegistry& policies() const { return policies_; }
  // "HOST:PORT" of the metrics endpoint (the real port); empty when off.
  std::string metrics_address() const {
    return metrics_endpoint_ ? metrics_endpoint_->address() : std::string();
  }
  // One line about the counter store, for logs.
  std::string StoreStatsLine() const { return store_->Status().Summary(); }
  // Everything AdminService/GetStatus reports.
  v1::GetStatusResponse Status() const;

 private:
  explicit ToolgateServer(const ServerConfig& config);
  absl::Status StartServing();
  struct Listener {
    std::unique_ptr<grpc::Server> server;
    // Accepts the connections and hands them to `server`; declared after
    // it so that it stops first.
    std::unique_ptr<ConnectionGate> gate;
    std::string address;  // "HOST:PORT", the real port.
  };
  // Binds `listen` and serves `service` (and health, and reflection) there.
  absl::Status StartListener(const std::string& listen, std::vector<grpc::Service*> services, Listener* out);
  // Every revision or failure from the provider (and from Reload) ends here:
  // activated or rejected, recorded for status and metrics, logged.
  absl::Status StartApprovals();
  absl::Status StartReservations();
  void OnPolicy(absl::StatusOr<std::shared_ptr<const Policy>> revision, absl::string_view trigger);
  void ReloadShadow();

  const ServerConfig config_;
  const absl::Time started_at_;
  PolicyRegistry policies_;
  std::unique_ptr<PolicyProvider> provider_;
  // Metrics are always kept (status reads their tally); served only with
  // --metrics-listen. Before the store, whose I/O thread reports to them.
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<CounterStore> store_;
  // Approvals: the hub is stopped before the store goes, and goes after it
  // (the store's threads deliver events to it until they are joined).
  std::unique_ptr<ApprovalHub> approval_hub_;
  std::atomic<ApprovalHub*> hub_for_events_{nullptr};
  std::unique_ptr<ApprovalStore> approvals_;
  std::unique_ptr<ReservationStore> reservations_;
  std::unique_ptr<Decider> decider_;
  std::unique_ptr<DecisionLog> decision_log_;  // Null when off.
  MetricsObserver metrics_observer_;
  ShadowComparer shadow_comparer_;
  std::unique_ptr<DecisionLogObserver> log_observer_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<DecisionServiceImpl> service_;
  std::unique_ptr<ExtAuthzServiceImpl> ext_authz_;  // Null with --no-ext-authz.
  std::unique_ptr<AdminServiceImpl> admin_;
  std::unique_ptr<ApprovalServiceImpl> approval_service_;
  mutable absl::Mutex reload_mu_;
  std::string last_reload_error_ ABSL_GUARDED_BY(reload_mu_);
  absl::Time last_reload_at_ ABSL_GUARDED_BY(reload_mu_);
  // Before the listeners, whose gates use them.
  std::shared_ptr<TlsServerContext> tls_;  // Null: plaintext.
  ConnectionIdentities identities_;
  std::unique_ptr<CallerCheck> callers_;
  std::unique_ptr<AdminToken> admin_token_;
  Listener decision_;
  Listener admin_listener_;
  bool shut_down_ = false;
  bool drained_ = false;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APP_SERVER_H_
