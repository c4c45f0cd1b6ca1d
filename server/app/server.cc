#include "server/app/server.h"

#include <atomic>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/approvals/memory_approvals.h"
#include "server/approvals/redis_approvals.h"
#include "server/base/clock.h"
#include "server/base/log.h"
#include "server/counters/memory_store.h"
#include "server/counters/redis_store.h"
#include "server/policy/loader.h"
#include "server/provider/revision_signature.h"
#include "server/redis/url.h"
#include "server/reservations/memory_reservations.h"
#include "server/reservations/redis_reservations.h"

namespace toolgate {
namespace {

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

absl::StatusOr<std::unique_ptr<CounterStore>> MakeCounterStore(const ServerConfig& config,
                                                               RedisStoreObserver* observer) {
  if (config.redis_url.empty()) {
    return std::make_unique<MemoryCounterStore>(SystemClock::Get());
  }
  absl::StatusOr<RedisUrl> url = ParseRedisUrl(config.redis_url, config.redis_credentials);
  if (!url.ok()) return url.status();
  RedisStoreOptions options;
  options.url = *url;
  options.timeout_ms = config.redis_timeout_ms;
  options.wait_replicas = config.redis_wait_replicas;
  options.over_limit_cache = config.over_limit_cache;
  options.observer = observer;
  return std::make_unique<RedisCounterStore>(options);
}

}  // namespace

ToolgateServer::ToolgateServer(const ServerConfig& config)
    : config_(config),
      started_at_(absl::Now()),
      policies_(static_cast<size_t>(config.keep_revisions)),
      metrics_(std::make_shared<Metrics>()),
      metrics_observer_(metrics_.get()) {}

ToolgateServer::~ToolgateServer() {
  Shutdown();
  // Scrapes read the service and the store: stop serving them first.
  metrics_endpoint_.reset();
  // Waiters are answered; then the store's threads are joined (their last
  // events still find the hub), then the hub goes.
  if (approval_hub_ != nullptr) approval_hub_->Stop();
  approvals_.reset();
  approval_hub_.reset();
  reservations_.reset();
  if (decision_log_ != nullptr) decision_log_->Close();
}

absl::StatusOr<std::unique_ptr<ToolgateServer>> ToolgateServer::Start(const ServerConfig& config) {
  std::unique_ptr<ToolgateServer> s(new ToolgateServer(config));
  ProviderOptions policy_options = config.policy;
  policy_options.redis_credentials = config.redis_credentials;
  absl::StatusOr<std::unique_ptr<PolicyProvider>> provider = MakePolicyProvider(policy_options);
  if (!provider.ok()) return provider.status();
  s->provider_ = *std::move(provider);
  absl::StatusOr<std::shared_ptr<const Policy>> policy = s->provider_->Load();
  if (policy.ok()) {
    s->policies_.Activate(*policy);
  } else if (s->provider_->may_start_empty()) {
    LogWarning("no policy revision yet (", policy.status().message(),
               "): checks get UNAVAILABLE until one is active");
    // Said in status and in the checks' UNAVAILABLE until one is active.
    s->policies_.SetLoadError(policy.status().message());
    if (auto reason = RevisionRejectionReason(policy.status())) {
      s->metrics_->RecordPolicyRejected(*reason);
    }
    absl::MutexLock lock(&s->reload_mu_);
    s->last_reload_error_ = std::string(policy.status().message());
    s->last_reload_at_ = absl::Now();
  } else {
    return policy.status();
  }
  if (!config.shadow_policy_path.empty()) {
    absl::StatusOr<std::shared_ptr<const Policy>> shadow =
        LoadPolicyFromPath(config.shadow_policy_path);
    if (!shadow.ok()) return shadow.status();
    s->policies_.SetShadow(*shadow);
  }
  if (absl::Status started = s->StartServing(); !started.ok()) return started;
  ToolgateServer* self = s.get();
  if (absl::Status watching = s->provider_->Watch(
          policy.ok() ? *policy : nullptr,
          [self](absl::StatusOr<std::shared_ptr<const Policy>> revision,
                 absl::string_view trigger) { self->OnPolicy(std::move(revision), trigger); });
      !watching.ok()) {
    LogWarning(watching.message(), "; the policy is reloaded on SIGHUP only");
  }
  LogInfo("policy from ", s->provider_->Describe());
  return s;
}

absl::Status ToolgateServer::StartListener(const std::string& listen,
                                           std::vector<grpc::Service*> services, Listener* out) {
  grpc::ServerBuilder builder;
  // By default toolgated owns the listening socket (ConnectionGate) and hands
  // gRPC each connection; gRPC gets the per-connection limits either way.
  ApplyTransportLimits(config_.transport, &builder);
  int port = 0;
  std::unique_ptr<ConnectionGate> gate;
  if (config_.connection_gate) {
    absl::StatusOr<std::unique_ptr<ConnectionGate>> bound =
        ConnectionGate::Bind(listen, config_.transport);
    if (!bound.ok()) return bound.status();
    gate = *std::move(bound);
    port = gate->port();
  } else {
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  }
  for (grpc::Service* service : services) builder.RegisterService(service);
  // Room for the largest allowed args plus the rest of the request.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<size_t>(config_.args_limits.max_bytes * 2 + (1 << 20), INT32_MAX)));
  out->server = builder.BuildAndStart();
  if (out->server == nullptr || port == 0) {
    out->server.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  }
  if (gate != nullptr) {
    out->gate = std::move(gate);
    out->gate->Start(out->server.get(), tls_, &identities_);
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  out->address = absl::StrCat(host, ":", port);
  out->server->GetHealthCheckService()->SetServingStatus(true);
  return absl::OkStatus();
}

absl::Status ToolgateServer::StartServing() {
  if (!config_.decision_log.empty()) {
    DecisionLogOptions log_options;
    log_options.destination = config_.decision_log;
    log_options.args_tools = config_.decision_log_args;
    log_options.hashing.hash_grant = config_.decision_log_hash_grant;
    log_options.hashing.key = config_.decision_log_hash_key;
    log_options.queue_capacity =
        static_cast<size_t>(std::max<int64_t>(1, config_.decision_log_queue));
    log_options.queue_bytes =
        static_cast<size_t>(std::max<int64_t>(1, config_.decision_log_queue_bytes));
    absl::StatusOr<std::unique_ptr<DecisionLog>> log = DecisionLog::Open(std::move(log_options));
    if (!log.ok()) return log.status();
    decision_log_ = *std::move(log);
    log_observer_ = std::make_unique<DecisionLogObserver>(decision_log_.get());
  }
  absl::StatusOr<std::unique_ptr<CounterStore>> store = MakeCounterStore(config_, metrics_.get());
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  decider_ =
      std::make_unique<Decider>(store_.get(), Engine(config_.failure_mode), config_.args_limits);
  if (absl::Status s = StartApprovals(); !s.ok()) return s;
  decider_->set_approvals(approvals_.get());
  if (absl::Status s = StartReservations(); !s.ok()) return s;
  // The order the observers see a decision in: counted, compared, logged.
  std::vector<DecisionObserver*> observers = {&metrics_observer_, &shadow_comparer_};
  if (log_observer_ != nullptr) observers.push_back(log_observer_.get());
  if (config_.tls.enabled()) {
    if (!config_.connection_gate) {
      return absl::InvalidArgumentError(
          "--tls-cert: TLS is served by the connection gate; drop --no-connection-gate");
    }
    absl::StatusOr<std::shared_ptr<TlsServerContext>> tls = TlsServerContext::Load(config_.tls);
    if (!tls.ok()) return tls.status();
    tls_ = *std::move(tls);
  } else if (!config_.tls.key_file.empty() || !config_.tls.client_ca_file.empty()) {
    return absl::InvalidArgumentError("--tls-key and --tls-client-ca need --tls-cert");
  }
  if (!config_.allow_peers.empty() && config_.tls.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--allow-peer needs --tls-client-ca: only client certificates name callers");
  }
  for (const std::string& pattern : config_.allow_peers) {
    if (pattern.empty()) return absl::InvalidArgumentError("--allow-peer: empty pattern");
  }
  callers_ = std::make_unique<CallerCheck>(
      tls_ != nullptr && tls_->requires_client_certificate() ? &identities_ : nullptr,
      config_.allow_peers);
  if (!config_.admin_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<AdminToken>> token = AdminToken::Load(config_.admin_token_file);
    if (!token.ok()) return token.status();
    admin_token_ = *std::move(token);
  }
  service_ = std::make_unique<DecisionServiceImpl>(&policies_, decider_.get(), observers,
                                                   callers_.get());
  // Envoy's ext_authz decides as Check does: same decider, observers and ids.
  if (config_.ext_authz) {
    ext_authz_ = std::make_unique<ExtAuthzServiceImpl>(
        config_.ext_authz_options, &policies_, decider_.get(), std::move(observers),
        service_->decision_ids(), callers_.get());
  }
  service_->set_approvals(approval_hub_.get());
  approval_service_ = std::make_unique<ApprovalServiceImpl>(approvals_.get(), approval_hub_.get(),
                                                            callers_.get(), admin_token_.get());
  admin_ = std::make_unique<AdminServiceImpl>(
      [this] { return Status(); },
      [this](v1::CheckRequest req, std::string peer, ExplainCallback done) {
        absl::StatusOr<std::shared_ptr<const Policy>> policy = policies_.Get(req.policy_version());
        if (!policy.ok()) return done(policy.status());
        ExplainCheck(*decider_, *std::move(policy), std::move(req), std::move(done),
                     std::move(peer));
      },
      callers_.get(), admin_token_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  if (config_.connection_gate) {
    const int64_t open_files = RaiseOpenFileLimit();
    if (open_files < config_.transport.max_connections * 3 + 64) {
      LogWarning("the limit on open files (", open_files, ") is below what --max-connections=",
                 config_.transport.max_connections,
                 " needs (3 per connection, plus 64); connections past it are closed at once");
    }
  } else {
    LogWarning("--no-connection-gate: gRPC listens directly; no connection cap, no recovery "
               "from running out of descriptors, no HTTP/2 rapid-reset cut-off (use a proxy "
               "that has them)");
  }
  // Decisions and health on --listen; AdminService and health on
  // --admin-listen. Each listener is its own gRPC server, so that neither
  // serves (nor lists in reflection) the other's services.
  std::vector<grpc::Service*> decision_services = {service_.get()};
  if (ext_authz_ != nullptr) decision_services.push_back(ext_authz_.get());
  absl::Status started = StartListener(config_.listen, decision_services, &decision_);
  if (started.ok() && !config_.admin_listen.empty()) {
    started = StartListener(config_.admin_listen, {admin_.get(), approval_service_.get()},
                            &admin_listener_);
  }
  if (!started.ok()) return started;

  if (!config_.metrics_listen.empty()) {
    MetricsSources sources;
    sources.active_revision = [this] {
      const auto active = policies_.active();
      return active ? active->revision() : std::string();
    };
    sources.store_status = [this] { return store_->Status(); };
    if (decision_log_ != nullptr) {
      sources.decision_log_dropped = [this] { return decision_log_->dropped(); };
      sources.decision_log_write_errors = [this] { return decision_log_->write_errors(); };
    }
    sources.in_flight = [this] {
      return service_->in_flight() + (ext_authz_ != nullptr ? ext_authz_->in_flight() : 0);
    };
    sources.approvals_waiting = [this] { return static_cast<int64_t>(approval_hub_->waiting()); };
    sources.reservations_open = [this] { return reservations_->open(); };
    metrics_->SetSources(std::move(sources));
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start(config_.metrics_listen, metrics_);
    if (!endpoint.ok()) return endpoint.status();
    metrics_endpoint_ = *std::move(endpoint);
    LogInfo("metrics listening on ", metrics_endpoint_->address());
  }
  if (decision_log_ != nullptr) {
    LogInfo("decision log to ", config_.decision_log,
            config_.decision_log_args.empty()
                ? absl::StrCat(" (arguments as ",
                               config_.decision_log_hash_key.empty() ? "args_sha256"
                                                                     : "args_hmac_sha256",
                               " only)")
                : absl::StrCat(" (arguments in full for ",
                               absl::StrJoin(config_.decision_log_args, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::Status ToolgateServer::StartApprovals() {
  ApprovalEvents events;
  // This server's own events: counted and logged once across the fleet.
  events.local = [this](v1::ApprovalEventKind kind, const v1::Approval& a) {
    metrics_->RecordApprovalEvent(kind);
    if (decision_log_ != nullptr) LogApprovalEvent(decision_log_.get(), kind, a);
  };
  // Every event of the fleet: for waiters and watchers. The hub is made
  // before the store starts delivering (below), and outlives it.
  events.fleet = [this](v1::ApprovalEventKind kind, const v1::Approval& a) {
    if (ApprovalHub* hub = hub_for_events_.load(std::memory_order_acquire)) hub->OnEvent(kind, a);
  };
  ApprovalHubOptions hub_options;
  if (config_.redis_url.empty()) {
    approvals_ = std::make_unique<MemoryApprovalStore>(SystemClock::Get(), config_.approval_limits,
                                                       std::move(events));
  } else {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(config_.redis_url, config_.redis_credentials);
    if (!url.ok()) return url.status();
    RedisApprovalOptions options;
    options.url = *std::move(url);
    options.limits = config_.approval_limits;
    options.events = std::move(events);
    approvals_ = std::make_unique<RedisApprovalStore>(std::move(options));
    // A Redis subscription can miss events (a lost connection): waiters
    // read their approval again every second.
    hub_options.poll_ms = 1000;
  }
  approval_hub_ = std::make_unique<ApprovalHub>(approvals_.get(), hub_options);
  hub_for_events_.store(approval_hub_.get(), std::memory_order_release);
  return absl::OkStatus();
}

absl::Status ToolgateServer::StartReservations() {
  // Commits by timeout, reported by the server that created each one.
  ReservationExpiredFn on_expired = [this](const std::string& id, const std::string& decision_id) {
    metrics_->RecordSettlement("expired");
    if (decision_log_ != nullptr) {
      LogReservationEvent(decision_log_.get(), "reservation_expired", id, decision_id, "expired",
                          std::nullopt);
    }
  };
  if (config_.redis_url.empty()) {
    reservations_ = std::make_unique<MemoryReservationStore>(
        SystemClock::Get(), config_.reservations, std::move(on_expired));
  } else {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(config_.redis_url, config_.redis_credentials);
    if (!url.ok()) return url.status();
    RedisReservationOptions options;
    options.url = *std::move(url);
    options.reservations = config_.reservations;
    options.on_expired = std::move(on_expired);
    reservations_ = std::make_unique<RedisReservationStore>(std::move(options));
  }
  ReservationObserver observer;
  observer.settled = [this](const SettlementEvent& e) {
    metrics_->RecordSettlement(e.result);
    if (decision_log_ != nullptr && (e.result == "succeeded" || e.result == "failed")) {
      LogReservationEvent(decision_log_.get(), "reservation_settled", e.reservation_id,
                          e.decision_id, SettleOutcomeName(e.outcome), e.cost);
    }
  };
  // A store that fails (Redis down) fails every reservation: logged at most
  // every 10 s, with how many there were.
  struct Unlogged {
    absl::Mutex mu;
    int64_t last_ms ABSL_GUARDED_BY(mu) = 0;
    int64_t count ABSL_GUARDED_BY(mu) = 0;
  };
  auto unlogged = std::make_shared<Unlogged>();
  observer.not_reserved = [this, unlogged](absl::string_view why, absl::string_view message) {
    metrics_->RecordReservationNotRecorded(why);
    if (why == "full") return;  // Said in the call's reason, and counted.
    const int64_t now = SteadyClock::Get()->NowMillis();
    int64_t more = 0;
    {
      absl::MutexLock lock(&unlogged->mu);
      if (unlogged->last_ms != 0 && now - unlogged->last_ms < 10'000) {
        ++unlogged->count;
        return;
      }
      unlogged->last_ms = now;
      more = std::exchange(unlogged->count, 0);
    }
    LogWarning(
        "an admitted call got no reservation (its units are committed): ", message,
        more == 0 ? std::string() : absl::StrCat(" (and ", more, " more since the last warning)"));
  };
  decider_->set_reservations(reservations_.get(), std::move(observer));
  return absl::OkStatus();
}

void ToolgateServer::OnPolicy(absl::StatusOr<std::shared_ptr<const Policy>> revision,
                              absl::string_view trigger) {
  metrics_->RecordPolicyReload(revision.ok());
  if (auto reason = RevisionRejectionReason(revision.status())) {
    metrics_->RecordPolicyRejected(*reason);
  }
  {
    absl::MutexLock lock(&reload_mu_);
    last_reload_at_ = absl::Now();
    last_reload_error_ = revision.ok() ? "" : std::string(revision.status().message());
  }
  if (!revision.ok()) {
    const auto active = policies_.active();
    if (active == nullptr) policies_.SetLoadError(revision.status().message());
    LogError("policy reload rejected; revision ", active ? active->revision() : "(none)",
             " keeps serving (", trigger, "):\n", revision.status().message());
    return;
  }
  // Logged before it serves, so that whoever sees the new revision also
  // finds its log line.
  LogInfo("policy reloaded: revision ", (*revision)->revision(), " (", trigger, ")");
  policies_.Activate(*std::move(revision));
}

void ToolgateServer::ReloadShadow() {
  if (config_.shadow_policy_path.empty()) return;
  absl::StatusOr<std::shared_ptr<const Policy>> shadow =
      LoadPolicyFromPath(config_.shadow_policy_path);
  if (shadow.ok()) {
    policies_.SetShadow(*shadow);
  } else {
    LogError("shadow policy reload rejected: ", shadow.status().message());
  }
}

void ToolgateServer::Reload(absl::string_view trigger) {
  ReloadShadow();
  provider_->Reload(trigger);
}

v1::GetStatusResponse ToolgateServer::Status() const {
  v1::GetStatusResponse out;
  out.set_version(TOOLGATE_VERSION);
  SetTimestamp(started_at_, out.mutable_started_at());
  if (auto active = policies_.active()) out.set_active_revision(active->revision());
  for (const LoadedRevision& r : policies_.loaded()) {
    v1::PolicyRevision* p = out.add_loaded();
    p->set_revision(r.policy->revision());
    for (const std::string& s : r.policy->sources()) p->add_sources(s);
    SetTimestamp(r.loaded_at, p->mutable_loaded_at());
    p->set_exact_entries(static_cast<int64_t>(r.policy->exact_count()));
    p->set_glob_entries(static_cast<int64_t>(r.policy->glob_count()));
  }
  {
    absl::MutexLock lock(&reload_mu_);
    out.set_last_reload_error(last_reload_error_);
    if (last_reload_at_ != absl::Time())
      SetTimestamp(last_reload_at_, out.mutable_last_reload_at());
  }
  const CounterStoreStatus store = store_->Status();
  v1::CounterStoreStatus* cs = out.mutable_counter_store();
  cs->set_kind(store.kind);
  cs->set_address(store.address);
  cs->set_connected(store.connected);
  cs->set_keys(store.keys);
  cs->set_checks(store.checks);
  cs->set_commands(store.commands);
  cs->set_round_trips(store.round_trips);
  cs->set_cache_hits(store.cache_hits);
  cs->set_timeouts(store.timeouts);
  cs->set_failures(store.failures);
  cs->set_connects(store.connects);
  cs->set_script_reloads(store.script_reloads);
  cs->set_redirects(store.redirects);
  cs->set_refunds(store.refunds);
  cs->set_refund_failures(store.refund_failures);
  cs->set_topology_changes(store.topology_changes);
  cs->set_last_error(store.last_error);
  const Metrics::Totals totals = metrics_->CheckTotals();
  v1::DecisionCounts* dc = out.mutable_decisions();
  dc->set_allow(totals.by_decision[v1::DECISION_ALLOW]);
  dc->set_deny(totals.by_decision[v1::DECISION_DENY]);
  dc->set_rate_limited(totals.by_decision[v1::DECISION_RATE_LIMITED]);
  dc->set_require_approval(totals.by_decision[v1::DECISION_REQUIRE_APPROVAL]);
  dc->set_errors(totals.errors);
  if (auto shadow = policies_.shadow()) out.set_shadow_revision(shadow->revision());
  out.set_shadow_compared(shadow_comparer_.compared());
  out.set_shadow_differed(shadow_comparer_.differed());
  return out;
}

void ToolgateServer::StopServing() {
  if (provider_ != nullptr) provider_->Stop();  // No policy changes while stopping.
  for (Listener* l : {&decision_, &admin_listener_}) {
    if (l->server != nullptr) l->server->GetHealthCheckService()->SetServingStatus(false);
  }
}

void ToolgateServer::Drain() {
  StopServing();
  if (drained_ || decision_.server == nullptr) return;
  drained_ = true;
  service_->StartDraining();
  if (ext_authz_ != nullptr) ext_authz_->StartDraining();
  auto in_flight = [this] {
    return service_->in_flight() + (ext_authz_ != nullptr ? ext_authz_->in_flight() : 0);
  };
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.shutdown_grace_ms);
  while (in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (const int64_t left = in_flight(); left > 0) {
    LogWarning(left, " checks were still being decided after --shutdown-grace (",
               config_.shutdown_grace_ms, " ms); their connections are closed");
  }
  // Let the answers just given leave before the connections close (new
  // calls, answered UNAVAILABLE at once, may keep this above zero).
  const auto sent_by = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (service_->open_calls() > 0 && std::chrono::steady_clock::now() < sent_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Stop accepting and close every connection: what a client sent and the
  // server has not read fails with UNAVAILABLE at the client, never
  // CANCELLED; a client that reconnects is refused.
  for (Listener* l : {&decision_, &admin_listener_}) {
    l->gate.reset();
    if (l->server != nullptr) grpc_server_cancel_all_calls(l->server->c_server());
  }
  // Every check has answered: write out the decision log.
  if (decision_log_ != nullptr) decision_log_->Close();
}

void ToolgateServer::Shutdown() {
  if (!drained_ && decision_.server != nullptr) {
    StopServing();
    std::this_thread::sleep_for(std::chrono::milliseconds(config_.shutdown_delay_ms));
  }
  Drain();
  if (shut_down_ || decision_.server == nullptr) return;
  shut_down_ = true;
  for (Listener* l : {&decision_, &admin_listener_}) {
    if (l->server == nullptr) continue;
    l->server->Shutdown(std::chrono::system_clock::now());
    l->server->Wait();
  }
}

}  // namespace toolgate
