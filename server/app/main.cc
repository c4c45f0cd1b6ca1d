// toolgated: the toolgate policy decision server.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/app/ext_authz_flags.h"
#include "server/app/server.h"
#include "server/base/files.h"
#include "server/base/flags.h"
#include "server/base/log.h"
#include "server/base/runtime.h"
#include "server/base/utf8.h"
#include "server/redis/url.h"

namespace {

constexpr char kUsage[] =
    "toolgated: the toolgate policy decision server.\n"
    "\n"
    "Answers toolgate.v1.DecisionService/Check for every tool call an agent\n"
    "makes: allow, deny, rate-limited or require-approval, by the policy.\n"
    "\n"
    "Usage: toolgated [--listen HOST:PORT] [--policy PATH] [flags]\n"
    "\n"
    "The policy file or directory is watched (--watch): a change is live within\n"
    "a second or two. An invalid one is rejected, logged and shown in status,\n"
    "and the current revision keeps serving.\n"
    "\n"
    "Signals: SIGHUP reloads the policy (an invalid one is rejected and the\n"
    "current revision keeps serving). SIGTERM and SIGINT: health turns\n"
    "NOT_SERVING and checks are still served for --shutdown-delay; then new\n"
    "checks get UNAVAILABLE, checks already started are decided within\n"
    "--shutdown-grace, connections are closed, and toolgated exits 0.\n"
    "\n"
    "Exit codes: 0 after a clean shutdown, 1 when the policy is invalid or the\n"
    "address cannot be bound, 2 for bad flags.";

}  // namespace

int main(int argc, char** argv) {
  toolgate::ConfigureServingRuntime();
  toolgate::ServerConfig config;
  int64_t max_args_bytes = static_cast<int64_t>(config.args_limits.max_bytes);
  int64_t max_args_depth = config.args_limits.max_depth;
  int64_t max_name_bytes = static_cast<int64_t>(config.args_limits.max_name_bytes);

  toolgate::FlagSet flags(kUsage, "TOOLGATE_");
  flags.String("listen", &config.listen,
               "Address to serve gRPC on, HOST:PORT (port 0 picks a free one).");
  flags.String("admin-listen", &config.admin_listen,
               "Address to serve AdminService (status, explain) and health on, HOST:PORT; empty "
               "turns it off. The decision port (--listen) serves DecisionService and health "
               "only.");
  flags.String("tls-cert", &config.tls.cert_file,
               "PEM certificate (and chain): serve TLS on both listeners. Re-read when the file "
               "changes (new connections use the new one).");
  flags.String("tls-key", &config.tls.key_file, "PEM private key of --tls-cert.");
  flags.String("tls-client-ca", &config.tls.client_ca_file,
               "PEM CA certificates: require client certificates issued by them (mTLS); "
               "connections without one fail their handshake.");
  flags.List("allow-peer", &config.allow_peers,
             "With --tls-client-ca: a client identity (glob; the certificate's URI SAN, else DNS "
             "SAN, else subject CN) admitted on both listeners; other callers get "
             "PERMISSION_DENIED. Repeatable; none admits every verified client.");
  flags.String("admin-token-file", &config.admin_token_file,
               "File holding a token that admin calls must carry (authorization: Bearer TOKEN); "
               "others get UNAUTHENTICATED. Re-read when the file changes.");
  flags.String("policy", &config.policy.path,
               "Policy file (YAML or JSON) or directory of policy files. When empty, the example "
               "policy compiled into the binary is used.");
  flags.Int("max-args-bytes", &max_args_bytes, 1, 16 << 20,
            "Largest serialized args accepted; larger calls get INVALID_ARGUMENT.");
  flags.Int("max-args-depth", &max_args_depth, 1, 256,
            "Deepest nesting of args accepted (the args object is 1); deeper calls get "
            "INVALID_ARGUMENT.");
  flags.Int("max-name-bytes", &max_name_bytes, 1,
            static_cast<int64_t>(toolgate::kMaxNameBytesCeiling),
            "Longest tool, grant, server, session and policy_version accepted, in bytes "
            "(request_id: 4 times this); longer ones, and names that are not valid UTF-8 or "
            "hold control characters, get INVALID_ARGUMENT.");
  flags.Int("keep-revisions", &config.keep_revisions, 1, 100,
            "Policy revisions kept loaded for requests that pin policy_version.");
  flags.Duration("shutdown-grace", &config.shutdown_grace_ms,
                 "On SIGTERM, how long checks already started may take to be decided.");
  flags.Duration("shutdown-delay", &config.shutdown_delay_ms,
                 "On SIGTERM, how long health says NOT_SERVING while checks are still served, "
                 "before new checks are refused (UNAVAILABLE) and connections closed; set it to "
                 "how long your load balancer takes to stop sending (e.g. 5s in Kubernetes).");
  flags.String("redis", &config.redis_url,
               "Keep counters in Redis, shared by every server using it: "
               "redis://host:port[/db]; redis+sentinel://host:port[,host:port...]/MASTER[/db] "
               "(the master Sentinel names, followed across failovers); or "
               "redis+cluster://host:port[,host:port...] (a Redis Cluster, from seed nodes). "
               "Credentials: --redis-password-file; an inline [user:]password@ works but is "
               "visible in /proc. When empty, counters are kept in process.");
  std::string redis_password_file, redis_username_file;
  flags.String("redis-password-file", &redis_password_file,
               "File holding the Redis password (one trailing newline is ignored; at most 4 KiB), "
               "used for every Redis connection (--redis and --policy redis://...), so that it is "
               "on no command line and in no environment. A URL that also carries a password is "
               "an error.");
  flags.String("redis-username-file", &redis_username_file,
               "File holding the Redis ACL user name (with --redis-password-file).");
  flags.Duration("redis-timeout", &config.redis_timeout_ms,
                 "Deadline of each check's Redis work; past it the failure mode decides.");
  flags.Int("redis-wait-replicas", &config.redis_wait_replicas, 0, 16,
            "After each Redis script run, WAIT until this many replicas have its writes "
            "(within --redis-timeout; fewer in time: an admitted call is answered by the "
            "failure mode). Closes the window in which a failover loses counts not yet "
            "replicated, at the cost of a replica round trip per check. 0: do not wait.");
  std::string failure_mode = "closed";
  flags.String("redis-failure-mode", &failure_mode,
               "Decision when Redis fails or is late: closed (DENY) or open (ALLOW).");
  flags.Bool("redis-over-limit-cache", &config.over_limit_cache,
             "Refuse calls on counters Redis reported full, locally, until their retry_after; "
             "Redis is asked again every 100 ms per counter, and at once for a limit a reload "
             "changed.");
  flags.Int("max-open-approvals", &config.approval_limits.max_open, 1, 1'000'000,
            "Approvals open (pending or approved, not expired) at most at once, across the "
            "fleet when in Redis; past it, a call that needs approval gets REQUIRE_APPROVAL "
            "without an approval_id. Records held in all: 10 times this (each holds its "
            "call's arguments, up to --max-args-bytes).");
  flags.Int("max-open-approvals-per-grant", &config.approval_limits.max_open_per_grant, 1,
            1'000'000,
            "Approvals one grant may have open at once, so that one grant cannot crowd out "
            "the others.");
  flags.Duration("settlement-timeout", &config.reservations.timeout_ms,
                 "How long a reservation (a limit with settle: required) waits for Settle; "
                 "past it the reservation commits (its units stay consumed) and Settle answers "
                 "NOT_FOUND. 1s to 24h.");
  flags.Int("max-open-reservations", &config.reservations.max_open, 1, 10'000'000,
            "Reservations this server may have open at once (created here, not settled here, "
            "not past --settlement-timeout); past it a call is admitted with its units "
            "committed and no reservation_id (the reason says so; counted in metrics).");
  int64_t stats_interval_ms = 60'000;
  flags.Duration("stats-interval", &stats_interval_ms,
                 "How often to log counter-store statistics (when they changed).");
  int64_t policy_check_interval_ms = 1000;
  flags.String("shadow-policy", &config.shadow_policy_path,
               "A candidate policy (file or directory) evaluated beside the active one: the "
               "active one decides; calls the candidate would decide otherwise are counted "
               "(toolgate status) and logged.");
  flags.Duration("policy-check-interval", &policy_check_interval_ms,
                 "With --policy redis://...: how often the active revision is also polled "
                 "(changes are announced by pub/sub at once).");
  flags.List("policy-verify-key", &config.policy.verify_key_files,
             "With --policy redis://...: an Ed25519 public key (PEM) that policy revisions must "
             "be signed with ('toolgate policy push --signing-key'); unsigned, wrongly signed or "
             "changed revisions are refused and the current one keeps deciding. Repeatable (key "
             "rotation: any one key suffices). A file that is not an Ed25519 public key stops "
             "the start. Without it, anyone who can write the policy keys in Redis controls "
             "the policy.");
  flags.String("metrics-listen", &config.metrics_listen,
               "Serve Prometheus metrics on http://HOST:PORT/metrics (port 0 picks a free one). "
               "When empty, metrics are off.");
  flags.String("decision-log", &config.decision_log,
               "Write one JSON line per decision to stdout, stderr or this file (appended to). "
               "When empty, there is no decision log.");
  flags.List("decision-log-args", &config.decision_log_args,
             "A tool (name or glob) whose arguments the decision log holds in full; others "
             "get args_sha256 only. Repeatable.");
  flags.Bool("decision-log-hash-grant", &config.decision_log_hash_grant,
             "Log the grant as grant_sha256 (or grant_hmac_sha256 with a key) instead of its "
             "name, for deployments where grant names are secrets. Without a key a plain hash "
             "only hides names from casual readers.");
  std::string decision_log_hash_key_file;
  flags.String("decision-log-hash-key-file", &decision_log_hash_key_file,
               "File holding a key (16 bytes to 4 KiB; one trailing newline is ignored): the "
               "decision log's hashes become HMAC-SHA256 with it, as args_hmac_sha256 (instead "
               "of args_sha256) and grant_hmac_sha256, so the log cannot confirm guesses.");
  flags.Int("decision-log-queue", &config.decision_log_queue, 1, 10'000'000,
            "Decision log entries waiting to be written; when full, entries are dropped "
            "(counted), never waited for.");
  flags.Int("decision-log-queue-bytes", &config.decision_log_queue_bytes, 1 << 16, int64_t{1} << 34,
            "Bytes the waiting decision log entries may hold (an entry counts its names plus "
            "twice the serialized size of its arguments); past it entries are dropped (counted).");
  flags.Bool("watch", &config.policy.watch,
             "Watch the policy file or directory and reload it when it changes (including a "
             "Kubernetes ConfigMap update). --no-watch: reload on SIGHUP only.");
  int64_t watch_interval_ms = 1'000;
  flags.Duration("watch-interval", &watch_interval_ms,
                 "How often the watched policy is also checked for changes that file-system "
                 "events missed.");

  // gRPC transport limits (server/app/transport.h).
  toolgate::LimitAllocatorArenas();  // Before any thread starts.
  toolgate::TransportLimits& transport = config.transport;
  flags.Int("max-concurrent-streams", &transport.max_concurrent_streams, 1, 100'000,
            "Calls one gRPC connection may have open at once (announced to clients as "
            "MAX_CONCURRENT_STREAMS). A client that opens more is disconnected, also before it "
            "has acknowledged the setting.");
  flags.Int("max-memory", &transport.max_memory_mib, 16, 1 << 20,
            "MiB of memory gRPC may use for connections and calls (its resource quota). Past "
            "it, idle connections are sent GOAWAY and calls are cancelled with "
            "RESOURCE_EXHAUSTED. Keep it well under the container's memory limit.");
  flags.Int("max-connections", &transport.max_connections, 1, 1'000'000,
            "gRPC connections open at once; past it a new connection is closed at once "
            "(logged, rate-limited). Each takes 3 file descriptors.");
  flags.Duration("max-connection-idle", &transport.max_connection_idle_ms,
                 "A gRPC connection without calls for this long is sent GOAWAY and closed.");
  flags.Duration("max-connection-age", &transport.max_connection_age_ms,
                 "A gRPC connection this old (+-10%) is sent GOAWAY, so that clients "
                 "reconnect (and rebalance); its calls get --max-connection-age-grace.");
  flags.Duration("max-connection-age-grace", &transport.max_connection_age_grace_ms,
                 "How long calls on a connection past --max-connection-age may take before it "
                 "is closed (which also bounds a stream that never sends its request).");
  flags.Duration("keepalive-min-interval", &transport.keepalive_min_interval_ms,
                 "Client keepalive pings closer together than this are strikes; after 2 "
                 "strikes the connection is sent GOAWAY (too_many_pings) and closed.");
  flags.Int("reset-check-window", &transport.reset_check_streams, 10, 1'000'000,
            "Rapid-reset protection: every time a client has opened this many streams on a "
            "connection, if it reset at least half of them itself, the connection is sent "
            "GOAWAY (ENHANCE_YOUR_CALM) and closed.");
  flags.Int("max-stream-resets", &transport.max_stream_resets_per_second, 1, 10'000'000,
            "Rapid-reset protection across connections: streams all clients together may "
            "reset per second (one second's worth at once); past it, a connection that resets "
            "a stream is sent GOAWAY (ENHANCE_YOUR_CALM) and closed.");
  flags.Bool("connection-gate", &config.connection_gate,
             "Accept gRPC connections in toolgated and relay them to gRPC: a cap on connections, "
             "recovery after running out of descriptors, and HTTP/2 rapid-reset cut-off. "
             "--no-connection-gate lets gRPC listen directly (about 10% more throughput, none "
             "of those protections: only behind a proxy that has them).");
  toolgate::ExtAuthzFlags ext_authz;
  toolgate::AddExtAuthzFlags(&flags, &ext_authz);

  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<std::vector<std::string>> positional = flags.Parse(args);
  if (!positional.ok()) {
    std::cerr << "toolgated: " << positional.status().message()
              << "\nRun 'toolgated --help' for the list of flags.\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (!positional->empty()) {
    std::cerr << "toolgated: unexpected argument \"" << positional->front()
              << "\"\nRun 'toolgated --help' for the list of flags.\n";
    return 2;
  }
  if (failure_mode == "closed") {
    config.failure_mode = toolgate::FailureMode::kClosed;
  } else if (failure_mode == "open") {
    config.failure_mode = toolgate::FailureMode::kOpen;
  } else {
    std::cerr << "toolgated: flag --redis-failure-mode: must be closed or open, got \""
              << failure_mode << "\"\nRun 'toolgated --help' for the list of flags.\n";
    return 2;
  }
  if (config.reservations.timeout_ms < 1000 || config.reservations.timeout_ms > 86'400'000) {
    std::cerr << "toolgated: flag --settlement-timeout: must be between 1s and 24h, got "
              << config.reservations.timeout_ms
              << " ms\nRun 'toolgated --help' for the list of flags.\n";
    return 2;
  }
  if (absl::Status s = toolgate::ApplyExtAuthzFlags(ext_authz, &config); !s.ok()) {
    std::cerr << "toolgated: " << s.message() << "\nRun 'toolgated --help' for the list of flags.\n";
    return 2;
  }
  // Secrets from files; an error names the flag and changes nothing.
  const absl::StatusOr<toolgate::RedisCredentials> credentials =
      toolgate::ReadRedisCredentials(redis_username_file, redis_password_file);
  absl::StatusOr<std::string> hash_key = std::string();
  if (!decision_log_hash_key_file.empty()) {
    hash_key = toolgate::ReadSecretFile(decision_log_hash_key_file, "--decision-log-hash-key-file");
    if (hash_key.ok() && hash_key->size() < 16) {
      hash_key = absl::InvalidArgumentError(
          "--decision-log-hash-key-file: the key must be at least 16 bytes");
    }
  }
  std::vector<absl::Status> secret_errors = {credentials.status(), hash_key.status()};
  for (const std::string& url : {config.redis_url, config.policy.path}) {
    if (!credentials.ok() || !toolgate::IsRedisUrl(url)) continue;
    secret_errors.push_back(toolgate::ParseRedisUrl(url, *credentials).status());
  }
  for (const absl::Status& s : secret_errors) {
    if (s.ok()) continue;
    std::cerr << "toolgated: " << s.message()
              << "\nRun 'toolgated --help' for the list of flags.\n";
    return 2;
  }
  config.redis_credentials = *credentials;
  config.decision_log_hash_key = *hash_key;
  if (credentials->password.empty()) {
    const std::string warning =
        toolgate::InlinePasswordWarning({config.redis_url, config.policy.path});
    if (!warning.empty()) toolgate::LogWarning(warning);
  }
  config.args_limits.max_bytes = static_cast<size_t>(max_args_bytes);
  config.policy.watch_interval = absl::Milliseconds(watch_interval_ms);
  config.policy.redis_check_interval = absl::Milliseconds(policy_check_interval_ms);
  config.args_limits.max_depth = static_cast<int>(max_args_depth);
  config.args_limits.max_name_bytes = static_cast<size_t>(max_name_bytes);

  // Signals are taken synchronously by this thread; block them before any
  // other thread exists so that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<toolgate::ToolgateServer>> server =
      toolgate::ToolgateServer::Start(config);
  if (!server.ok()) {
    std::cerr << "toolgated: cannot start:\n" << server.status().message() << "\n";
    return 1;
  }
  // Who can reach a plaintext listener can assert any grant (and, on the
  // admin listener, read the server's state): say so when that is anyone.
  auto loopback = [](const std::string& listen) {
    const std::string host = listen.substr(0, listen.rfind(':'));
    return host == "localhost" || host.rfind("127.", 0) == 0 || host == "[::1]";
  };
  if (config.tls.client_ca_file.empty() && !loopback(config.listen)) {
    toolgate::LogWarning("the decision listener ", config.listen,
                         " takes calls from anyone who can reach it, for any grant they name; "
                         "use --tls-client-ca with --allow-peer (or grants.<name>.peers), or "
                         "listen on localhost (sidecar)");
  }
  if (!config.admin_listen.empty() && !loopback(config.admin_listen) &&
      config.admin_token_file.empty() && config.allow_peers.empty()) {
    toolgate::LogWarning("the admin listener ", config.admin_listen,
                         " is open to anyone who can reach it; set --admin-token-file or "
                         "--allow-peer");
  }
  if (!(*server)->admin_address().empty()) {
    toolgate::LogInfo("toolgated admin listening on ", (*server)->admin_address(),
                      config.admin_token_file.empty() ? "" : " (token required)");
  }
  if (const auto policy = (*server)->policies().active()) {
    toolgate::LogInfo("toolgated listening on ", (*server)->address(),
                      config.tls.enabled() ? (config.tls.client_ca_file.empty() ? " (TLS)" : " (mTLS)") : "",
                      " with policy revision ",
                      policy->revision(), " (", policy->exact_count(), " exact entries, ",
                      policy->glob_count(), " globs; counters ",
                      config.redis_url.empty() ? "in process" : "in Redis", ")");
  } else {
    // (Only a Redis policy may start empty: its URL, without the password.)
    const absl::StatusOr<toolgate::RedisUrl> url = toolgate::ParseRedisUrl(config.policy.path);
    toolgate::LogInfo("toolgated listening on ", (*server)->address(),
                      config.tls.enabled() ? (config.tls.client_ca_file.empty() ? " (TLS)" : " (mTLS)") : "",
                      " with no policy revision yet (following ",
                      url.ok() ? url->Redacted() : std::string("the policy source"), ")");
  }

  std::string last_stats;
  const timespec stats_every{stats_interval_ms / 1000, (stats_interval_ms % 1000) * 1'000'000};
  while (true) {
    const int sig = sigtimedwait(&signals, nullptr, &stats_every);
    if (sig < 0) {
      if (std::string line = (*server)->StoreStatsLine(); line != last_stats) {
        toolgate::LogInfo("counters ", line);
        last_stats = std::move(line);
      }
      continue;
    }
    if (sig == SIGHUP) {
      (*server)->Reload("SIGHUP");
      continue;
    }
    (*server)->StopServing();
    if (config.shutdown_delay_ms > 0) {
      toolgate::LogInfo("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                        ": health is NOT_SERVING; still serving for ", config.shutdown_delay_ms,
                        " ms (--shutdown-delay; a second SIGTERM or SIGINT ends it)");
      const absl::Time until = absl::Now() + absl::Milliseconds(config.shutdown_delay_ms);
      for (absl::Duration left; (left = until - absl::Now()) > absl::ZeroDuration();) {
        const timespec wait = absl::ToTimespec(left);
        const int again = sigtimedwait(&signals, nullptr, &wait);
        if (again == SIGTERM || again == SIGINT) break;  // SIGHUP: no reloads while stopping.
      }
    }
    toolgate::LogInfo("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                      ": draining: new checks get UNAVAILABLE, started ones are answered");
    (*server)->Drain();
    toolgate::LogInfo("counters ", (*server)->StoreStatsLine());
    toolgate::LogInfo("stopped");
    // Exit without gRPC's own shutdown, which would cancel (CANCELLED) the
    // calls of a client that reconnected after the drain closed its
    // connection; instead they fail with UNAVAILABLE when the process ends.
    std::_Exit(0);
  }
}
