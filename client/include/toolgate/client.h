// toolgate client library: ask a toolgated whether a tool call may proceed.
//
//   auto client = toolgate::Client::Connect("localhost:50051");
//   auto args = toolgate::ParseArgsJson(R"({"command": "ls"})");
//   toolgate::v1::CheckRequest req;
//   req.set_tool("run_command");
//   req.set_grant("agent-7");
//   *req.mutable_args() = *args;
//   absl::StatusOr<toolgate::v1::CheckResponse> r = (*client)->Check(req);
//
// A decision of any kind is an OK result; a non-OK status means the call
// could not be decided (bad request, unknown revision, server unreachable,
// deadline exceeded). absl status codes equal gRPC's.
#ifndef TOOLGATE_CLIENT_INCLUDE_TOOLGATE_CLIENT_H_
#define TOOLGATE_CLIENT_INCLUDE_TOOLGATE_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "grpcpp/channel.h"
#include "toolgate/v1/admin.grpc.pb.h"
#include "toolgate/v1/approval.grpc.pb.h"
#include "toolgate/v1/decision.grpc.pb.h"

namespace toolgate {

// Parses a JSON object ("{...}") into the Struct carried as CheckRequest.args.
absl::StatusOr<google::protobuf::Struct> ParseArgsJson(absl::string_view json);

// "DECISION_ALLOW" -> "ALLOW".
absl::string_view DecisionName(v1::Decision d);

// How to reach a toolgated that serves TLS (--tls-cert) or mTLS
// (--tls-client-ca), and the token its admin listener may require.
struct ClientOptions {
  // PEM CA certificates that issued the server's certificate. Setting this,
  // tls_cert_file or tls_server_name turns TLS on; with TLS on and this
  // empty, the system's roots are used.
  std::string tls_ca_file;
  // PEM client certificate (and chain) and its key, for mTLS.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server's certificate must carry, when it is not the
  // target's host (e.g. connecting by IP address).
  std::string tls_server_name;
  // Sent with admin calls (GetStatus, Explain, ApprovalService) as "authorization: Bearer
  // ...", for a server started with --admin-token-file.
  std::string admin_token;

  bool tls() const {
    return !tls_ca_file.empty() || !tls_cert_file.empty() || !tls_server_name.empty();
  }
};

// Files the client reads (certificates, keys, token) may be at most this
// large.
inline constexpr size_t kMaxClientFileBytes = 1 << 20;

// Reads a file for ClientOptions (at most kMaxClientFileBytes); an error
// naming the file otherwise.
absl::StatusOr<std::string> ReadClientFile(const std::string& path);

class Client {
 public:
  // Opens an insecure channel to `target` ("host:port", or any gRPC target
  // such as "dns:///toolgate.default.svc:50051").
  static std::unique_ptr<Client> Connect(const std::string& target);
  // Opens a channel with `options` (TLS when options.tls()). INVALID_ARGUMENT
  // naming the file when a certificate or key cannot be read, or when only
  // one of tls_cert_file and tls_key_file is given.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                         const ClientOptions& options);
  explicit Client(std::shared_ptr<grpc::Channel> channel, std::string admin_token = "");

  // Blocking check with a deadline.
  absl::StatusOr<v1::CheckResponse> Check(const v1::CheckRequest& request,
                                          absl::Duration timeout = absl::Seconds(2));

  // Non-blocking check: `done` runs once on a gRPC thread.
  void CheckAsync(const v1::CheckRequest& request, absl::Duration timeout,
                  std::function<void(absl::StatusOr<v1::CheckResponse>)> done);

  // Reports how a call admitted with a reservation went
  // (DecisionService/Settle): `reservation_id` from its CheckResponse,
  // FAILED to give its units back, SUCCEEDED to keep them (optionally with
  // the cost it really had, at most what was reserved).
  absl::StatusOr<v1::SettleResponse> Settle(const v1::SettleRequest& request,
                                            absl::Duration timeout = absl::Seconds(2));

  // The server's state (toolgate.v1.AdminService/GetStatus).
  absl::StatusOr<v1::GetStatusResponse> GetStatus(absl::Duration timeout = absl::Seconds(2));

  // How the server decides `request`, as a dry run (AdminService/Explain);
  // with `as_peer`, as if made by the mTLS caller of that identity (for
  // grants.<name>.peers).
  absl::StatusOr<v1::ExplainResponse> Explain(const v1::CheckRequest& request,
                                              absl::Duration timeout = absl::Seconds(2),
                                              const std::string& as_peer = "");

  // The standard health check (grpc.health.v1.Health/Check, whole server):
  // true while SERVING, false when NOT_SERVING (e.g. draining), an error
  // when it cannot be asked.
  absl::StatusOr<bool> Serving(absl::Duration timeout = absl::Seconds(2));

  // ApprovalService (on the admin listener; admin_token is sent).
  absl::StatusOr<v1::ListApprovalsResponse> ListApprovals(
      const v1::ListApprovalsRequest& request, absl::Duration timeout = absl::Seconds(2));
  absl::StatusOr<v1::Approval> GetApproval(const std::string& id,
                                           absl::Duration timeout = absl::Seconds(2));
  absl::StatusOr<v1::Approval> DecideApproval(const v1::DecideApprovalRequest& request,
                                              absl::Duration timeout = absl::Seconds(2));

  // A running ApprovalService/WatchApprovals stream: Next() blocks for the
  // next event; Cancel() (from any thread) ends the stream, after which
  // Next() returns CANCELLED.
  class ApprovalWatch {
   public:
    virtual ~ApprovalWatch() = default;
    // The next event; an error once the stream has ended (OK from the
    // server is reported as UNAVAILABLE: a watch only ends when the server
    // stops).
    virtual absl::StatusOr<v1::ApprovalEvent> Next() = 0;
    virtual void Cancel() = 0;
  };
  // Opens the stream (no deadline: it runs until cancelled). The watch must
  // not outlive this Client.
  std::unique_ptr<ApprovalWatch> WatchApprovals(const v1::WatchApprovalsRequest& request);

  grpc::Channel* channel() const { return channel_.get(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DecisionService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::ApprovalService::Stub> approvals_;
  const std::string admin_token_;
};

}  // namespace toolgate

#endif  // TOOLGATE_CLIENT_INCLUDE_TOOLGATE_CLIENT_H_
