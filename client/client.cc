#include "toolgate/client.h"

#include <chrono>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"

namespace toolgate {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

absl::StatusOr<google::protobuf::Struct> ParseArgsJson(absl::string_view json) {
  google::protobuf::Struct out;
  const auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &out);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("args must be a JSON object: ", status.message().ToString()));
  }
  return out;
}

absl::string_view DecisionName(v1::Decision d) {
  absl::string_view name = v1::Decision_Name(d);  // "DECISION_ALLOW"; "" when unknown.
  if (!absl::ConsumePrefix(&name, "DECISION_")) return "UNSPECIFIED";
  return name;
}

absl::StatusOr<std::string> ReadClientFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot be opened"));
  std::string out(kMaxClientFileBytes + 1, '\0');
  in.read(&out[0], static_cast<std::streamsize>(out.size()));
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot be read"));
  out.resize(static_cast<size_t>(in.gcount()));
  if (out.size() > kMaxClientFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kMaxClientFileBytes, " bytes"));
  }
  return out;
}

std::unique_ptr<Client> Client::Connect(const std::string& target) {
  return std::make_unique<Client>(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target,
                                                        const ClientOptions& options) {
  if (!options.tls()) {
    if (!options.tls_key_file.empty()) {
      return absl::InvalidArgumentError("--tls-key needs --tls-cert");
    }
    return std::make_unique<Client>(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()),
                                     options.admin_token);
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslCredentialsOptions ssl;
  struct File {
    const std::string& path;
    std::string* into;
  };
  for (const File& f : {File{options.tls_ca_file, &ssl.pem_root_certs},
                        File{options.tls_cert_file, &ssl.pem_cert_chain},
                        File{options.tls_key_file, &ssl.pem_private_key}}) {
    if (f.path.empty()) continue;
    absl::StatusOr<std::string> text = ReadClientFile(f.path);
    if (!text.ok()) return text.status();
    *f.into = *std::move(text);
  }
  grpc::ChannelArguments args;
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  return std::make_unique<Client>(
      grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args), options.admin_token);
}

Client::Client(std::shared_ptr<grpc::Channel> channel, std::string admin_token)
    : channel_(std::move(channel)),
      stub_(v1::DecisionService::NewStub(channel_)),
      admin_(v1::AdminService::NewStub(channel_)),
      approvals_(v1::ApprovalService::NewStub(channel_)),
      admin_token_(std::move(admin_token)) {}

namespace {

// One unary call with a deadline; a gRPC error becomes the matching status.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> CallUnary(Stub& stub,
                                   grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                                const Request&, Response*),
                                   const Request& request, absl::Duration timeout,
                                   const std::string& bearer = "",
                                   const std::string& as_peer = "") {
  grpc::ClientContext ctx;
  if (!bearer.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer);
  if (!as_peer.empty()) ctx.AddMetadata("toolgate-peer", as_peer);
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  Response response;
  grpc::Status s = (stub.*method)(&ctx, request, &response);
  if (!s.ok()) return FromGrpc(s);
  return response;
}

}  // namespace

absl::StatusOr<v1::ExplainResponse> Client::Explain(const v1::CheckRequest& request,
                                                    absl::Duration timeout,
                                                    const std::string& as_peer) {
  return CallUnary(*admin_, &v1::AdminService::Stub::Explain, request, timeout, admin_token_,
                   as_peer);
}

absl::StatusOr<v1::GetStatusResponse> Client::GetStatus(absl::Duration timeout) {
  return CallUnary(*admin_, &v1::AdminService::Stub::GetStatus, v1::GetStatusRequest(), timeout,
                   admin_token_);
}

absl::StatusOr<v1::ListApprovalsResponse> Client::ListApprovals(
    const v1::ListApprovalsRequest& request, absl::Duration timeout) {
  return CallUnary(*approvals_, &v1::ApprovalService::Stub::ListApprovals, request, timeout,
                   admin_token_);
}

absl::StatusOr<v1::Approval> Client::GetApproval(const std::string& id, absl::Duration timeout) {
  v1::GetApprovalRequest request;
  request.set_id(id);
  return CallUnary(*approvals_, &v1::ApprovalService::Stub::GetApproval, request, timeout,
                   admin_token_);
}

absl::StatusOr<v1::Approval> Client::DecideApproval(const v1::DecideApprovalRequest& request,
                                                    absl::Duration timeout) {
  return CallUnary(*approvals_, &v1::ApprovalService::Stub::DecideApproval, request, timeout,
                   admin_token_);
}

namespace {

class GrpcApprovalWatch final : public Client::ApprovalWatch {
 public:
  GrpcApprovalWatch(v1::ApprovalService::Stub& stub, const v1::WatchApprovalsRequest& request,
                    const std::string& bearer) {
    if (!bearer.empty()) ctx_.AddMetadata("authorization", "Bearer " + bearer);
    reader_ = stub.WatchApprovals(&ctx_, request);
  }
  ~GrpcApprovalWatch() override {
    if (!ended_) {
      ctx_.TryCancel();
      v1::ApprovalEvent drain;
      while (reader_->Read(&drain)) {
      }
      (void)reader_->Finish();
    }
  }

  absl::StatusOr<v1::ApprovalEvent> Next() override {
    if (ended_) return final_;
    v1::ApprovalEvent event;
    if (reader_->Read(&event)) return event;
    ended_ = true;
    const grpc::Status s = reader_->Finish();
    final_ = s.ok() ? absl::UnavailableError("the server ended the watch") : FromGrpc(s);
    return final_;
  }

  void Cancel() override { ctx_.TryCancel(); }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::ApprovalEvent>> reader_;
  bool ended_ = false;
  absl::Status final_;
};

}  // namespace

std::unique_ptr<Client::ApprovalWatch> Client::WatchApprovals(
    const v1::WatchApprovalsRequest& request) {
  return std::make_unique<GrpcApprovalWatch>(*approvals_, request, admin_token_);
}

absl::StatusOr<bool> Client::Serving(absl::Duration timeout) {
  // Without grpc.health.v1's generated code: the request (service "") is
  // empty, and the answer is HealthCheckResponse{status (1): SERVING = 1}.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  const grpc::internal::RpcMethod method("/grpc.health.v1.Health/Check",
                                         grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::ByteBuffer request, response;
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  grpc::Status s = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel_.get(), method, &ctx, request, &response);
  if (!s.ok()) return FromGrpc(s);
  grpc::Slice slice;
  if (!response.DumpToSingleSlice(&slice).ok()) return false;
  const absl::string_view bytes(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return bytes == absl::string_view("\x08\x01", 2);
}

absl::StatusOr<v1::CheckResponse> Client::Check(const v1::CheckRequest& request,
                                                absl::Duration timeout) {
  return CallUnary(*stub_, &v1::DecisionService::Stub::Check, request, timeout);
}

absl::StatusOr<v1::SettleResponse> Client::Settle(const v1::SettleRequest& request,
                                                  absl::Duration timeout) {
  return CallUnary(*stub_, &v1::DecisionService::Stub::Settle, request, timeout);
}

void Client::CheckAsync(const v1::CheckRequest& request, absl::Duration timeout,
                        std::function<void(absl::StatusOr<v1::CheckResponse>)> done) {
  struct State {
    grpc::ClientContext ctx;
    v1::CheckRequest request;
    v1::CheckResponse response;
    std::function<void(absl::StatusOr<v1::CheckResponse>)> done;
  };
  // Shared by this frame and the callback: gRPC may run the callback inline,
  // before Check() returns (a call that fails at once), and Check() still
  // uses the context then.
  auto state = std::make_shared<State>();
  state->done = std::move(done);
  state->request = request;
  state->ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  State* raw = state.get();
  stub_->async()->Check(&raw->ctx, &raw->request, &raw->response,
                        [state](grpc::Status s) mutable {
                          std::shared_ptr<State> owned = std::move(state);
                          if (s.ok()) {
                            owned->done(std::move(owned->response));
                          } else {
                            owned->done(FromGrpc(s));
                          }
                        });
}

}  // namespace toolgate
