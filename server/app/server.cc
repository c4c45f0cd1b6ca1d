#include "server/app/server.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "server/base/log.h"
#include "absl/strings/match.h"
#include "server/policy/loader.h"
#include "server/provider/redis_policy_follower.h"
#include "server/counters/memory_store.h"

namespace toolgate {

bool IsRedisPolicyPath(const std::string& policy_path) {
  return absl::StartsWith(policy_path, "redis://");
}

absl::StatusOr<std::shared_ptr<const Policy>> LoadConfiguredPolicy(const ServerConfig& config) {
  if (config.policy_path.empty()) {
    return LoadPolicyFromSources({PolicySource{kEmbeddedPolicyName, kEmbeddedPolicy}});
  }
  if (IsRedisPolicyPath(config.policy_path)) {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(config.policy_path);
    if (!url.ok()) return url.status();
    return LoadActivePolicyFromRedis(*url);
  }
  return LoadPolicyFromPath(config.policy_path);
}

ToolgateServer::ToolgateServer(const ServerConfig& config)
    : config_(config),
      policies_(static_cast<size_t>(config.keep_revisions)),
      started_at_(absl::Now()) {}

ToolgateServer::~ToolgateServer() {
  Shutdown();
  // Scrapes read the service and the store: stop serving them first.
  metrics_endpoint_.reset();
  if (decision_log_ != nullptr) decision_log_->Close();
}

absl::StatusOr<std::unique_ptr<ToolgateServer>> ToolgateServer::Start(const ServerConfig& config) {
  const bool from_redis = IsRedisPolicyPath(config.policy_path);
  absl::StatusOr<RedisUrl> policy_url;
  if (from_redis) {
    policy_url = ParseRedisUrl(config.policy_path);
    if (!policy_url.ok()) return policy_url.status();
  }
  absl::StatusOr<std::shared_ptr<const Policy>> policy = LoadConfiguredPolicy(config);
  // A file policy must be valid to start. A Redis one may not be reachable or
  // activated yet: serve UNAVAILABLE until the follower finds one.
  if (!policy.ok() && !from_redis) return policy.status();

  std::unique_ptr<ToolgateServer> s(new ToolgateServer(config));
  if (policy.ok()) {
    s->policies_.Activate(*policy);
  } else {
    LogWarning("no policy revision from Redis yet (", policy.status().message(),
               "): checks get UNAVAILABLE until one is active");
  }
  if (!config.shadow_policy_path.empty()) {
    absl::StatusOr<std::shared_ptr<const Policy>> shadow =
        LoadPolicyFromPath(config.shadow_policy_path);
    if (!shadow.ok()) return shadow.status();
    s->policies_.SetShadow(*shadow);
  }
  if (!config.metrics_listen.empty()) s->metrics_ = std::make_shared<Metrics>();
  if (!config.decision_log.empty()) {
    DecisionLogOptions log_options;
    log_options.destination = config.decision_log;
    log_options.args_tools = config.decision_log_args;
    log_options.queue_capacity = static_cast<size_t>(std::max<int64_t>(1, config.decision_log_queue));
    absl::StatusOr<std::unique_ptr<DecisionLog>> log = DecisionLog::Open(std::move(log_options));
    if (!log.ok()) return log.status();
    s->decision_log_ = *std::move(log);
  }
  if (config.redis_url.empty()) {
    s->store_ = std::make_unique<MemoryCounterStore>(SystemClock::Get());
  } else {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(config.redis_url);
    if (!url.ok()) return url.status();
    RedisStoreOptions options;
    options.url = *url;
    options.timeout_ms = config.redis_timeout_ms;
    options.over_limit_cache = config.over_limit_cache;
    options.observer = s->metrics_.get();
    s->store_ = std::make_unique<RedisCounterStore>(options);
  }
  s->service_ = std::make_unique<DecisionServiceImpl>(
      &s->policies_, s->store_.get(), Engine(config.failure_mode), config.args_limits);
  s->service_->SetObservers(s->metrics_.get(), s->decision_log_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(s->service_.get());
  ToolgateServer* self = s.get();
  s->admin_ = std::make_unique<AdminServiceImpl>(
      [self] { return self->Status(); },
      [self](v1::CheckRequest req, ExplainCallback done) {
        absl::StatusOr<std::shared_ptr<const Policy>> policy =
            self->policies_.Get(req.policy_version());
        if (!policy.ok()) return done(policy.status());
        ExplainCheck(*std::move(policy), self->store_.get(), self->service_->engine(),
                     std::move(req), std::move(done));
      });
  builder.RegisterService(s->admin_.get());
  // Room for the largest allowed args plus the rest of the request.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<size_t>(config.args_limits.max_bytes * 2 + (1 << 20), INT32_MAX)));
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen));
  }
  const std::string host = config.listen.substr(0, config.listen.rfind(':'));
  s->address_ = absl::StrCat(host, ":", port);
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  if (s->metrics_ != nullptr) {
    MetricsSources sources;
    ToolgateServer* self = s.get();
    sources.active_revision = [self] {
      const auto active = self->policies_.active();
      return active ? active->revision() : std::string();
    };
    sources.store_status = [self] { return self->store_->Status(); };
    if (s->decision_log_ != nullptr) {
      sources.decision_log_dropped = [self] { return self->decision_log_->dropped(); };
    }
    sources.in_flight = [self] { return self->service_->in_flight(); };
    s->metrics_->SetSources(std::move(sources));
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start(config.metrics_listen, s->metrics_);
    if (!endpoint.ok()) return endpoint.status();
    s->metrics_endpoint_ = *std::move(endpoint);
    LogInfo("metrics listening on ", s->metrics_endpoint_->address());
  }
  if (s->decision_log_ != nullptr) {
    LogInfo("decision log to ", config.decision_log,
            config.decision_log_args.empty()
                ? std::string(" (arguments as args_sha256 only)")
                : absl::StrCat(" (arguments in full for ",
                               absl::StrJoin(config.decision_log_args, ", "), ")"));
  }
  if (from_redis) {
    ToolgateServer* self = s.get();
    s->follower_ = std::make_unique<RedisPolicyFollower>(
        *policy_url, config.policy_check_interval_ms,
        policy.ok() ? (*policy)->revision() : std::string(),
        [self](std::shared_ptr<const Policy> p) {
          const std::string revision = p->revision();
          self->policies_.Activate(std::move(p));
          if (self->metrics_ != nullptr) self->metrics_->RecordPolicyReload(true);
          {
            absl::MutexLock lock(&self->reload_mu_);
            self->last_reload_at_ = absl::Now();
            self->last_reload_error_.clear();
          }
          LogInfo("policy revision ", revision, " from Redis is active");
        },
        [self](const absl::Status& error) {
          if (self->metrics_ != nullptr) self->metrics_->RecordPolicyReload(false);
          {
            absl::MutexLock lock(&self->reload_mu_);
            self->last_reload_at_ = absl::Now();
            self->last_reload_error_ = std::string(error.message());
          }
          LogError("policy from Redis rejected; the current revision keeps serving: ",
                   error.message());
        });
  }
  return s;
}

std::string ToolgateServer::StoreStatsLine() const { return store_->Status().Summary(); }

absl::Status ToolgateServer::Reload() {
  if (!config_.shadow_policy_path.empty()) {
    absl::StatusOr<std::shared_ptr<const Policy>> shadow =
        LoadPolicyFromPath(config_.shadow_policy_path);
    if (shadow.ok()) {
      policies_.SetShadow(*shadow);
    } else {
      LogError("shadow policy reload rejected: ", shadow.status().message());
    }
  }
  if (follower_ != nullptr) {
    follower_->CheckNow();
    return absl::OkStatus();
  }
  absl::StatusOr<std::shared_ptr<const Policy>> policy = LoadConfiguredPolicy(config_);
  {
    absl::MutexLock lock(&reload_mu_);
    last_reload_at_ = absl::Now();
    last_reload_error_ = policy.ok() ? "" : std::string(policy.status().message());
  }
  if (metrics_ != nullptr) metrics_->RecordPolicyReload(policy.ok());
  if (!policy.ok()) return policy.status();
  policies_.Activate(*std::move(policy));
  return absl::OkStatus();
}

namespace {
void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}
}  // namespace

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
    if (last_reload_at_ != absl::Time()) SetTimestamp(last_reload_at_, out.mutable_last_reload_at());
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
  cs->set_last_error(store.last_error);
  const DecisionStats& d = service_->stats();
  v1::DecisionCounts* dc = out.mutable_decisions();
  dc->set_allow(d.allow.load());
  dc->set_deny(d.deny.load());
  dc->set_rate_limited(d.rate_limited.load());
  dc->set_require_approval(d.require_approval.load());
  dc->set_errors(d.errors.load());
  if (auto shadow = policies_.shadow()) out.set_shadow_revision(shadow->revision());
  out.set_shadow_compared(d.shadow_compared.load());
  out.set_shadow_differed(d.shadow_differed.load());
  return out;
}

void ToolgateServer::Shutdown() {
  follower_.reset();  // No policy changes while draining.
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->GetHealthCheckService()->SetServingStatus(false);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.shutdown_grace_ms);
  // gRPC's graceful shutdown stops accepting calls at once, lets started
  // calls finish, and then waits for every client to acknowledge the
  // GOAWAY, which idle clients may take seconds to do. So: shut down on a
  // helper thread, and once no check is in flight, close the remaining
  // (idle) connections instead of waiting for them.
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(config_.shutdown_grace_ms));
    done = true;
  });
  // Let the shutdown begin (listeners closed, GOAWAY sent) before looking.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  while (!done && service_->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!done) grpc_server_cancel_all_calls(server_->c_server());
  stopper.join();
  server_->Wait();
  // Every check has answered: write out the decision log.
  if (decision_log_ != nullptr) decision_log_->Close();
}

}  // namespace toolgate
