// TLS and mTLS on toolgated's listeners, caller identity (--allow-peer),
// certificate rotation, and the admin listener (--admin-listen,
// --admin-token-file), against real toolgated processes with certificates
// made at test time.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/h2_abuse.h"
#include "tests/integration/pki.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kWait = absl::Seconds(60);
constexpr char kPolicy[] = "version: \"1\"\nrevision: \"tls-1\"\ndefault: allow\n";

toolgate::v1::CheckRequest Req(const std::string& grant = "agent-7") {
  toolgate::v1::CheckRequest r;
  r.set_tool("read_file");
  r.set_grant(grant);
  return r;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pki_.MakeCa("ca").ok());
    ASSERT_TRUE(pki_.MakeCa("other-ca").ok());
    ASSERT_TRUE(pki_.Issue("ca", "server", "toolgate", "DNS:toolgate,IP:127.0.0.1").ok());
    ASSERT_TRUE(pki_.Issue("ca", "ci-bot", "ci-bot", "URI:spiffe://example.org/ns/ci/sa/ci-bot")
                    .ok());
    ASSERT_TRUE(
        pki_.Issue("ca", "agent", "agent", "URI:spiffe://example.org/ns/agents/sa/agent-7").ok());
    ASSERT_TRUE(pki_.Issue("ca", "gateway", "gateway", "DNS:gw.example.org").ok());
    ASSERT_TRUE(pki_.Issue("ca", "cn-only", "legacy-proxy", "").ok());
    ASSERT_TRUE(pki_.Issue("other-ca", "stranger", "ci-bot",
                           "URI:spiffe://example.org/ns/ci/sa/ci-bot")
                    .ok());
    policy_ = dir_.WriteFile("policy.yaml", kPolicy);
  }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy_};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = ServerProcess::Start(args);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  std::vector<std::string> MtlsFlags() const {
    return {"--tls-cert", pki_.Cert("server"), "--tls-key", pki_.Key("server"), "--tls-client-ca",
            pki_.Cert("ca")};
  }

  // A client presenting `identity`'s certificate (none when empty),
  // trusting `ca`.
  std::unique_ptr<toolgate::Client> Connect(const std::string& target, const std::string& identity,
                                            const std::string& ca = "ca") {
    toolgate::ClientOptions o;
    o.tls_ca_file = pki_.Cert(ca);
    if (!identity.empty()) {
      o.tls_cert_file = pki_.Cert(identity);
      o.tls_key_file = pki_.Key(identity);
    }
    auto client = toolgate::Client::Connect(target, o);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  TestPki pki_;
  TempDir dir_;
  std::string policy_;
};

TEST_F(TlsTest, PlaintextClientIsRefusedByATlsServer) {
  auto server = Start({"--tls-cert", pki_.Cert("server"), "--tls-key", pki_.Key("server")});
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->log(), HasSubstr(" (TLS) with policy revision tls-1"));

  auto plain = toolgate::Client::Connect(server->address());
  auto refused = plain->Check(Req(), absl::Seconds(5));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();

  // TLS without a client certificate is enough here.
  auto tls = Connect(server->address(), "");
  auto r = tls->Check(Req(), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW);
  // A client that does not trust the server's CA refuses it.
  auto distrustful = Connect(server->address(), "", "other-ca");
  EXPECT_EQ(distrustful->Check(Req(), absl::Seconds(5)).status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server->Running());
}

TEST_F(TlsTest, ClientCertificatesFromTheClientCaAreRequired) {
  auto server = Start(MtlsFlags());
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->log(), HasSubstr(" (mTLS) with policy revision tls-1"));

  // No certificate: the handshake fails.
  auto anonymous = Connect(server->address(), "");
  EXPECT_EQ(anonymous->Check(Req(), absl::Seconds(5)).status().code(),
            absl::StatusCode::kUnavailable);
  // A certificate from another CA, with the very same names: refused too.
  auto stranger = Connect(server->address(), "stranger");
  EXPECT_EQ(stranger->Check(Req(), absl::Seconds(5)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(server->WaitForLog("TLS handshake failed", kWait)) << server->log();

  auto ci = Connect(server->address(), "ci-bot");
  auto r = ci->Check(Req(), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW);
  ASSERT_TRUE(server->Running());
}

TEST_F(TlsTest, AllowPeerAdmitsTheNamedPeersOnly) {
  std::vector<std::string> flags = MtlsFlags();
  for (const char* p : {"spiffe://example.org/ns/ci/*", "gw.example.org", "legacy-proxy"}) {
    flags.push_back("--allow-peer");
    flags.push_back(p);
  }
  auto server = Start(flags);
  ASSERT_NE(server, nullptr);

  // The URI SAN (a SPIFFE ID), else the DNS SAN, else the subject CN.
  for (const char* admitted : {"ci-bot", "gateway", "cn-only"}) {
    auto r = Connect(server->address(), admitted)->Check(Req(), absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << admitted << ": " << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << admitted;
  }
  auto agent = Connect(server->address(), "agent");
  auto refused = agent->Check(Req(), absl::Seconds(10));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "caller \"spiffe://example.org/ns/agents/sa/agent-7\" is not admitted by --allow-peer");
  // The admin listener admits the same peers.
  auto status = Connect(server->admin_address(), "agent")->GetStatus(absl::Seconds(10));
  EXPECT_EQ(status.status().code(), absl::StatusCode::kPermissionDenied);
  auto ok_status = Connect(server->admin_address(), "ci-bot")->GetStatus(absl::Seconds(10));
  ASSERT_TRUE(ok_status.ok()) << ok_status.status();
  EXPECT_EQ(ok_status->active_revision(), "tls-1");
  // A refused caller consumed nothing and was counted as an error.
  EXPECT_EQ(ok_status->decisions().allow(), 3u);
  EXPECT_EQ(ok_status->decisions().errors(), 1u);
}

// mTLS identities reach the policy: a grant section's `peers` says who may
// assert it, and the decision log records who called.
TEST_F(TlsTest, GrantPeersBindGrantsToTheCallersCertificate) {
  const std::string policy = dir_.WriteFile("peers.yaml", R"(version: "1"
revision: "peers-1"
default: allow
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
    tools:
      read_file:
        action: allow
        limits:
          - {counter: reads, max: 2, window: 1h, scope: grant}
)");
  const std::string log_path = dir_.path() + "/decisions.log";
  std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy,
                                   "--decision-log", log_path};
  for (const std::string& f : MtlsFlags()) args.push_back(f);
  auto started = ServerProcess::Start(args);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);

  auto ci = Connect(server->address(), "ci-bot");
  auto agent = Connect(server->address(), "agent");
  // Another caller asserting ci-bot: denied by the rule, nothing consumed.
  for (int i = 0; i < 3; ++i) {
    auto r = agent->Check(Req("ci-bot"), absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);
    EXPECT_EQ(r->rule(), "grants.ci-bot.peers");
    EXPECT_THAT(r->reason(), HasSubstr("spiffe://example.org/ns/agents/sa/agent-7"));
  }
  // ci-bot itself: its full quota is there.
  for (int i = 0; i < 2; ++i) {
    auto r = ci->Check(Req("ci-bot"), absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_ALLOW) << r->reason();
  }
  auto third = ci->Check(Req("ci-bot"), absl::Seconds(10));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->decision(), toolgate::v1::DECISION_RATE_LIMITED);
  // Grants without peers: any admitted caller.
  auto other = agent->Check(Req("agent-7"), absl::Seconds(10));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->decision(), toolgate::v1::DECISION_ALLOW);

  // Explain, on the admin listener, as a given caller; and the same offline.
  toolgate::ClientOptions admin_options;
  admin_options.tls_ca_file = pki_.Cert("ca");
  admin_options.tls_cert_file = pki_.Cert("ci-bot");
  admin_options.tls_key_file = pki_.Key("ci-bot");
  auto admin = *toolgate::Client::Connect(server->admin_address(), admin_options);
  auto as_agent = admin->Explain(Req("ci-bot"), absl::Seconds(10),
                                 "spiffe://example.org/ns/agents/sa/agent-7");
  ASSERT_TRUE(as_agent.ok()) << as_agent.status();
  EXPECT_EQ(as_agent->decision().rule(), "grants.ci-bot.peers");
  auto as_ci = admin->Explain(Req("ci-bot"), absl::Seconds(10),
                              "spiffe://example.org/ns/ci/sa/ci-bot");
  ASSERT_TRUE(as_ci.ok()) << as_ci.status();
  EXPECT_EQ(as_ci->decision().decision(), toolgate::v1::DECISION_RATE_LIMITED)
      << "explained as ci-bot: its quota is used up";
  const std::vector<std::string> offline = {CliBin(), "check", "--policy", policy, "--tool",
                                            "read_file", "--grant", "ci-bot"};
  std::vector<std::string> with_peer = offline;
  with_peer.insert(with_peer.end(), {"--peer", "spiffe://example.org/ns/ci/sa/ci-bot"});
  EXPECT_EQ(RunCommand(with_peer).exit_code, 0) << "offline, as ci-bot: ALLOW";
  CommandResult without = RunCommand(offline);
  EXPECT_EQ(without.exit_code, 3) << without.out;
  EXPECT_THAT(without.out, HasSubstr("caller presented no client certificate"));

  std::string log;
  ASSERT_TRUE(PollUntil(
      [&] {
        log = ReadFileOrEmpty(log_path);
        return std::count(log.begin(), log.end(), '\n') >= 7;
      },
      kWait))
      << log;
  EXPECT_THAT(log, HasSubstr("\"peer\":\"spiffe://example.org/ns/agents/sa/agent-7\""));
  EXPECT_THAT(log, HasSubstr("\"peer\":\"spiffe://example.org/ns/ci/sa/ci-bot\""));
}

TEST_F(TlsTest, RotatedCertificateIsServedWithoutRestartAndNoCallFails) {
  ASSERT_TRUE(pki_.Issue("ca", "live", "toolgate", "DNS:toolgate,DNS:old.toolgate").ok());
  auto server = Start({"--tls-cert", pki_.Cert("live"), "--tls-key", pki_.Key("live")});
  ASSERT_NE(server, nullptr);
  // Each client has its own connection (no subchannel shared between
  // channels), so each new one makes a new handshake.
  const std::string ca = ReadFileOrEmpty(pki_.Cert("ca"));
  auto with_name = [&](const std::string& name) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca;
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(name);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return std::make_unique<toolgate::Client>(
        grpc::CreateCustomChannel(server->address(), grpc::SslCredentials(ssl), args));
  };
  ASSERT_TRUE(with_name("old.toolgate")->Check(Req(), absl::Seconds(10)).ok());

  // Calls go on throughout, on a connection made before the rotation and on
  // a new connection each time.
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, failures{0};
  std::string first_failure;
  std::thread caller([&] {
    auto kept = with_name("toolgate");
    while (!stop.load()) {
      auto fresh = with_name("toolgate");
      for (toolgate::Client* c : {kept.get(), fresh.get()}) {
        auto r = c->Check(Req(), absl::Seconds(30));
        ++calls;
        if (!r.ok() && failures++ == 0) first_failure = r.status().ToString();
      }
    }
  });
  PollUntil([&] { return calls.load() >= 10; }, kWait);

  // The certificate is replaced first, the key a moment later (as a
  // half-done rotation would look): the mismatch is refused, the old pair
  // stays in use, then the new pair is taken up.
  ASSERT_TRUE(pki_.Issue("ca", "next", "toolgate", "DNS:toolgate,DNS:new.toolgate").ok());
  ASSERT_EQ(std::rename(pki_.Cert("next").c_str(), pki_.Cert("live").c_str()), 0);
  EXPECT_TRUE(server->WaitForLog("TLS files changed but do not load", kWait)) << server->log();
  EXPECT_TRUE(with_name("old.toolgate")->Check(Req(), absl::Seconds(10)).ok())
      << "the previous certificate must stay in use while the new pair does not load";
  ASSERT_EQ(std::rename(pki_.Key("next").c_str(), pki_.Key("live").c_str()), 0);
  EXPECT_TRUE(PollUntil([&] { return with_name("new.toolgate")->Check(Req(), absl::Seconds(10)).ok(); },
                        kWait))
      << server->log();
  EXPECT_THAT(server->log(), HasSubstr("TLS certificate re-read from"));
  const int before = calls.load();
  PollUntil([&] { return calls.load() >= before + 10; }, kWait);
  stop = true;
  caller.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_GE(calls.load(), before + 10);
  // New connections no longer get the old certificate.
  EXPECT_FALSE(with_name("old.toolgate")->Check(Req(), absl::Seconds(5)).ok());
  ASSERT_TRUE(server->Running());
}

TEST_F(TlsTest, CliChecksAndReportsStatusOverMtls) {
  auto server = Start(MtlsFlags());
  ASSERT_NE(server, nullptr);
  const std::vector<std::string> tls = {"--tls-ca",  pki_.Cert("ca"),     "--tls-cert",
                                        pki_.Cert("ci-bot"), "--tls-key", pki_.Key("ci-bot"),
                                        "--tls-server-name", "toolgate"};
  std::vector<std::string> check = {CliBin(), "check", "--target", server->address(), "--tool",
                                    "read_file", "--grant", "agent-7", "--timeout", "10s"};
  check.insert(check.end(), tls.begin(), tls.end());
  CommandResult checked = RunCommand(check);
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  EXPECT_THAT(checked.out, HasSubstr("decision:    ALLOW"));

  std::vector<std::string> status = {CliBin(), "status", "--target", server->admin_address(),
                                     "--timeout", "10s"};
  status.insert(status.end(), tls.begin(), tls.end());
  CommandResult reported = RunCommand(status);
  EXPECT_EQ(reported.exit_code, 0) << reported.out << reported.err;
  EXPECT_THAT(reported.out, HasSubstr("active revision:  tls-1"));

  // Health, for exec probes (kubelet's gRPC probes speak no TLS): on both
  // listeners.
  for (const std::string& target : {server->address(), server->admin_address()}) {
    std::vector<std::string> health = {CliBin(), "health", "--target", target, "--timeout", "10s"};
    health.insert(health.end(), tls.begin(), tls.end());
    CommandResult healthy = RunCommand(health);
    EXPECT_EQ(healthy.exit_code, 0) << target << ": " << healthy.out << healthy.err;
    EXPECT_EQ(healthy.out, "SERVING\n");
  }
  CommandResult unreachable =
      RunCommand({CliBin(), "health", "--target", server->address(), "--timeout", "5s"});
  EXPECT_EQ(unreachable.exit_code, 6) << "plaintext to a TLS listener";

  // Without a client certificate the CLI cannot get a decision.
  CommandResult refused =
      RunCommand({CliBin(), "check", "--target", server->address(), "--tool", "read_file",
                  "--grant", "agent-7", "--tls-ca", pki_.Cert("ca"), "--timeout", "5s"});
  EXPECT_EQ(refused.exit_code, 6) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("UNAVAILABLE"));
  // A key file that does not exist is a usage error naming it.
  CommandResult bad = RunCommand({CliBin(), "check", "--target", server->address(), "--tool", "t",
                                  "--grant", "g", "--tls-ca", pki_.Cert("ca"), "--tls-cert",
                                  pki_.Cert("ci-bot"), "--tls-key", "/nonexistent/key.pem"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("/nonexistent/key.pem"));
}

// Connects to 127.0.0.1:`port`; -1 on failure.
int ConnectTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// True when the server closes `fd` within `timeout` (what it sends first is
// read and dropped).
bool ClosedByServer(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  while (absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

TEST_F(TlsTest, ClientsThatDoNotSpeakTlsAreDisconnected) {
  auto server = Start(MtlsFlags());
  ASSERT_NE(server, nullptr);
  // Plaintext HTTP/2 (a gRPC client without TLS): closed at once.
  const int h2c = ConnectTcp(server->port());
  ASSERT_GE(h2c, 0);
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  ASSERT_EQ(write(h2c, preface.data(), preface.size()), static_cast<ssize_t>(preface.size()));
  EXPECT_TRUE(ClosedByServer(h2c, kWait));
  close(h2c);
  // A client that connects and says nothing holds its connection for the
  // handshake timeout (10 s) at most; others are served meanwhile.
  const int silent = ConnectTcp(server->port());
  ASSERT_GE(silent, 0);
  auto ci = Connect(server->address(), "ci-bot");
  auto r = ci->Check(Req(), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ClosedByServer(silent, kWait));
  close(silent);
  EXPECT_TRUE(server->WaitForLog("TLS connection closed: no handshake within 10s", kWait))
      << server->log();
  ASSERT_TRUE(ci->Check(Req(), absl::Seconds(10)).ok());
}

// The gate's HTTP/2 checks hold inside TLS: a client that resets every
// stream it opens is sent GOAWAY (ENHANCE_YOUR_CALM) through the TLS
// session and disconnected, and a well-behaved client is served after it.
TEST_F(TlsTest, RapidResetInsideTlsIsCutOff) {
  auto server = Start(MtlsFlags());
  ASSERT_NE(server, nullptr);
  const H2Tls tls{pki_.Cert("ca"), pki_.Cert("ci-bot"), pki_.Key("ci-bot")};
  // A plain HTTP/2 exchange works through the TLS relay first.
  auto probe = H2Connection::Connect(server->port(), true, absl::Seconds(10), &tls);
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_TRUE((*probe)->Flush().ok());
  EXPECT_TRUE(PollUntil(
      [&] {
        (*probe)->Poll(absl::Milliseconds(50));
        return (*probe)->settings_seen();
      },
      kWait));
  EXPECT_EQ((*probe)->max_concurrent_streams(), 100u);

  toolgate::v1::CheckRequest abusive = Req("abuser");
  const RapidResetResult r = RapidReset(server->port(), absl::Seconds(30),
                                        abusive.SerializeAsString(), /*reconnect=*/false,
                                        /*wait_for_settings=*/true, &tls);
  EXPECT_TRUE(r.error.empty()) << r.error;
  EXPECT_TRUE(r.goaway) << "streams: " << r.streams;
  EXPECT_EQ(r.goaway_error, 0xbu);
  EXPECT_EQ(r.goaway_debug, "too many reset streams");
  EXPECT_TRUE(r.closed);
  EXPECT_LT(r.streams, 100'000u) << "cut off long before the test's 30 s";
  auto after = Connect(server->address(), "ci-bot")->Check(Req(), absl::Seconds(10));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(server->WaitForLog("gRPC connection cut off (GOAWAY ENHANCE_YOUR_CALM)", kWait));
}

TEST_F(TlsTest, BadTlsConfigurationStopsTheServerAtStart) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert", pki_.Cert("server"), "--tls-key", pki_.Key("ci-bot")},
       "is not the key of the certificate"},
      {{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", pki_.Key("server")},
       "/nonexistent/cert.pem"},
      {{"--tls-cert", pki_.Key("server"), "--tls-key", pki_.Key("server")},
       "holds no PEM certificate"},
      {{"--tls-cert", pki_.Cert("server")}, "--tls-cert and --tls-key go together"},
      {{"--tls-key", pki_.Key("server")}, "need --tls-cert"},
      {{"--allow-peer", "x"}, "--allow-peer needs --tls-client-ca"},
      {{"--tls-cert", pki_.Cert("server"), "--tls-key", pki_.Key("server"),
        "--no-connection-gate"},
       "drop --no-connection-gate"},
      {{"--admin-token-file", "/nonexistent/token"}, "--admin-token-file"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--policy", policy_};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    auto server = ServerProcess::Spawn(args);
    ASSERT_TRUE(server.ok());
    std::optional<int> status = (*server)->WaitExit(kWait);
    ASSERT_TRUE(status.has_value()) << c.message;
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << c.message;
    EXPECT_THAT((*server)->log(), HasSubstr(c.message));
  }
}

// The raw bytes of the reflection service's answer to list_services on
// `target` (empty when the call fails).
std::string ReflectionServices(const std::string& target) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::CompletionQueue cq;
  void* tag = nullptr;
  bool ok = false;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  std::string out;
  call->StartCall(reinterpret_cast<void*>(1));
  if (cq.Next(&tag, &ok) && ok) {
    // ServerReflectionRequest{list_services (7): "*"}.
    const char request[] = {0x3a, 0x01, '*'};
    grpc::Slice slice(request, sizeof(request));
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    if (cq.Next(&tag, &ok) && ok) {
      grpc::ByteBuffer response;
      call->Read(&response, reinterpret_cast<void*>(3));
      if (cq.Next(&tag, &ok) && ok) {
        std::vector<grpc::Slice> slices;
        (void)response.Dump(&slices);
        for (const grpc::Slice& s : slices) {
          out.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
    }
  }
  ctx.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

TEST(AdminListenerTest, AdminServiceIsServedOnTheAdminListenerOnly) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", policy});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string decisions = (*server)->address(), admin = (*server)->admin_address();
  ASSERT_FALSE(admin.empty());
  ASSERT_NE(decisions, admin);

  auto on_decision_port = toolgate::Client::Connect(decisions);
  EXPECT_EQ(on_decision_port->GetStatus(absl::Seconds(10)).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(on_decision_port->Explain(Req(), absl::Seconds(10)).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(on_decision_port->Check(Req(), absl::Seconds(10)).ok());

  auto on_admin_port = toolgate::Client::Connect(admin);
  EXPECT_TRUE(on_admin_port->GetStatus(absl::Seconds(10)).ok());
  EXPECT_TRUE(on_admin_port->Explain(Req(), absl::Seconds(10)).ok());
  EXPECT_EQ(on_admin_port->Check(Req(), absl::Seconds(10)).status().code(),
            absl::StatusCode::kUnimplemented);

  // Reflection on each port lists what that port serves, and health is on
  // both.
  const std::string listed_decisions = ReflectionServices(decisions);
  EXPECT_THAT(listed_decisions, HasSubstr("toolgate.v1.DecisionService"));
  EXPECT_THAT(listed_decisions, HasSubstr("grpc.health.v1.Health"));
  EXPECT_THAT(listed_decisions, Not(HasSubstr("toolgate.v1.AdminService")));
  const std::string listed_admin = ReflectionServices(admin);
  EXPECT_THAT(listed_admin, HasSubstr("toolgate.v1.AdminService"));
  EXPECT_THAT(listed_admin, HasSubstr("grpc.health.v1.Health"));
  EXPECT_THAT(listed_admin, Not(HasSubstr("toolgate.v1.DecisionService")));
}

TEST(AdminListenerTest, AdminCallsNeedTheTokenWhenOneIsSet) {
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  const std::string token_file = dir.WriteFile("admin-token", "s3cret-token-1\n");
  auto server = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", policy, "--admin-token-file", token_file});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string admin = (*server)->admin_address();
  EXPECT_THAT((*server)->log(), HasSubstr("(token required)"));

  auto with_token = [&](const std::string& token) {
    toolgate::ClientOptions o;
    o.admin_token = token;
    return *toolgate::Client::Connect(admin, o);
  };
  auto none = with_token("")->GetStatus(absl::Seconds(10));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("authorization: Bearer"));
  for (const char* wrong : {"s3cret-token-2", "s3cret-token-1x", "s3cret-token-", "x"}) {
    EXPECT_EQ(with_token(wrong)->GetStatus(absl::Seconds(10)).status().code(),
              absl::StatusCode::kUnauthenticated)
        << wrong;
    EXPECT_EQ(with_token(wrong)->Explain(Req(), absl::Seconds(10)).status().code(),
              absl::StatusCode::kUnauthenticated)
        << wrong;
  }
  EXPECT_TRUE(with_token("s3cret-token-1")->GetStatus(absl::Seconds(10)).ok());
  // Decisions need no token.
  EXPECT_TRUE(toolgate::Client::Connect((*server)->address())->Check(Req(), absl::Seconds(10)).ok());

  // The CLI reads the token from a file.
  CommandResult cli = RunCommand({CliBin(), "status", "--target", admin, "--admin-token-file",
                                  token_file, "--timeout", "10s"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  CommandResult cli_without = RunCommand({CliBin(), "status", "--target", admin});
  EXPECT_EQ(cli_without.exit_code, 6);
  EXPECT_THAT(cli_without.err, HasSubstr("UNAUTHENTICATED"));

  // A rotated token file is read again: the new token works, the old does not.
  dir.WriteFile("admin-token", "s3cret-token-2\n");
  EXPECT_TRUE(PollUntil(
      [&] { return with_token("s3cret-token-2")->GetStatus(absl::Seconds(10)).ok(); }, kWait));
  EXPECT_EQ(with_token("s3cret-token-1")->GetStatus(absl::Seconds(10)).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A rotation to an empty file keeps the current token.
  // (The file is looked at on each admin call.)
  dir.WriteFile("admin-token", "\n");
  EXPECT_TRUE(with_token("s3cret-token-2")->GetStatus(absl::Seconds(10)).ok());
  EXPECT_TRUE((*server)->WaitForLog("the previous admin token stays in use", kWait));
  EXPECT_TRUE(with_token("s3cret-token-2")->GetStatus(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace toolgate_test
