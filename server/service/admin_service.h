// toolgate.v1.AdminService: the server's own state, for operators and the
// `toolgate status` command.
#ifndef TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_
#define TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_

#include <functional>

#include "toolgate/v1/admin.grpc.pb.h"

namespace toolgate {

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  // `status` builds the answer; it must be fast and thread-safe.
  explicit AdminServiceImpl(std::function<v1::GetStatusResponse()> status)
      : status_(std::move(status)) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override {
    *response = status_();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  std::function<v1::GetStatusResponse()> status_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_ADMIN_SERVICE_H_
