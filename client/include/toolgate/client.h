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
#include "toolgate/v1/decision.grpc.pb.h"

namespace toolgate {

// Parses a JSON object ("{...}") into the Struct carried as CheckRequest.args.
absl::StatusOr<google::protobuf::Struct> ParseArgsJson(absl::string_view json);

// "DECISION_ALLOW" -> "ALLOW".
absl::string_view DecisionName(v1::Decision d);

class Client {
 public:
  // Opens an insecure channel to `target` ("host:port", or any gRPC target
  // such as "dns:///toolgate.default.svc:50051").
  static std::unique_ptr<Client> Connect(const std::string& target);
  explicit Client(std::shared_ptr<grpc::Channel> channel);

  // Blocking check with a deadline.
  absl::StatusOr<v1::CheckResponse> Check(const v1::CheckRequest& request,
                                          absl::Duration timeout = absl::Seconds(2));

  // Non-blocking check: `done` runs once on a gRPC thread.
  void CheckAsync(const v1::CheckRequest& request, absl::Duration timeout,
                  std::function<void(absl::StatusOr<v1::CheckResponse>)> done);

  // The server's state (toolgate.v1.AdminService/GetStatus).
  absl::StatusOr<v1::GetStatusResponse> GetStatus(absl::Duration timeout = absl::Seconds(2));

  // How the server decides `request`, as a dry run (AdminService/Explain).
  absl::StatusOr<v1::ExplainResponse> Explain(const v1::CheckRequest& request,
                                              absl::Duration timeout = absl::Seconds(2));

  grpc::Channel* channel() const { return channel_.get(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DecisionService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

}  // namespace toolgate

#endif  // TOOLGATE_CLIENT_INCLUDE_TOOLGATE_CLIENT_H_
