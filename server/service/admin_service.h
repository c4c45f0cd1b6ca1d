// toolgate.v1.AdminService: the server's own state, for operators and the
// `toolgate status` command.
#ifndef TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_
#define TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_

#include <functional>

#include "server/decider/explain.h"
#include "server/service/status_util.h"
#include "toolgate/v1/admin.grpc.pb.h"

namespace toolgate {

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  using ExplainFn = std::function<void(v1::CheckRequest, ExplainCallback)>;

  // `status` builds GetStatus's answer (fast, thread-safe); `explain`
  // answers Explain asynchronously.
  AdminServiceImpl(std::function<v1::GetStatusResponse()> status, ExplainFn explain)
      : status_(std::move(status)), explain_(std::move(explain)) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override {
    *response = status_();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const v1::CheckRequest* request,
                                    v1::ExplainResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    explain_(*request, [reactor, response](absl::StatusOr<v1::ExplainResponse> r) {
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
  std::function<v1::GetStatusResponse()> status_;
  ExplainFn explain_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_
