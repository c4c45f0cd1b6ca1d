// toolgate.v1.AdminService: the server's own state, for operators and the
// `toolgate status` command.
#ifndef TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_
#define TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_

#include <functional>

#include "server/decider/explain.h"
#include "server/service/callers.h"
#include "server/service/status_util.h"
#include "toolgate/v1/admin.grpc.pb.h"

namespace toolgate {

// Metadata of an Explain call: the caller identity to explain it for.
inline constexpr char kExplainPeerHeader[] = "toolgate-peer";

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  // The request, and the caller identity to explain it for (empty: none).
  using ExplainFn = std::function<void(v1::CheckRequest, std::string, ExplainCallback)>;

  // `status` builds GetStatus's answer (fast, thread-safe); `explain`
  // answers Explain asynchronously. `callers` (--allow-peer) and `token`
  // (--admin-token-file) are checked on every call when not null; both must
  // outlive the service.
  AdminServiceImpl(std::function<v1::GetStatusResponse()> status, ExplainFn explain,
                   const CallerCheck* callers = nullptr, const AdminToken* token = nullptr)
      : status_(std::move(status)),
        explain_(std::move(explain)),
        callers_(callers),
        token_(token) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (absl::Status admitted = Admit(*context); !admitted.ok()) {
      reactor->Finish(ToGrpcStatus(admitted));
      return reactor;
    }
    *response = status_();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const v1::CheckRequest* request,
                                    v1::ExplainResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (absl::Status admitted = Admit(*context); !admitted.ok()) {
      reactor->Finish(ToGrpcStatus(admitted));
      return reactor;
    }
    // Operators may explain a call as a given mTLS caller would make it
    // (grants.<name>.peers): metadata "toolgate-peer".
    std::string peer;
    const auto& metadata = context->client_metadata();
    if (auto it = metadata.find(kExplainPeerHeader); it != metadata.end()) {
      peer.assign(it->second.data(), it->second.size());
    }
    explain_(*request, std::move(peer), [reactor, response](absl::StatusOr<v1::ExplainResponse> r) {
      if (!r.ok()) {
        reactor->Finish(ToGrpcStatus(r.status()));
        return;
      }
      *response = *std::move(r);
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

 private:
  // The caller admitted by --allow-peer and holding the admin token.
  absl::Status Admit(const grpc::ServerContextBase& context) const {
    return AdmitAdmin(context, callers_, token_).status();
  }

  std::function<v1::GetStatusResponse()> status_;
  ExplainFn explain_;
  const CallerCheck* const callers_;
  const AdminToken* const token_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_
