// DecisionService.ListVisibleTools.
#include "server/service/decision_service.h"

namespace toolgate {

grpc::ServerUnaryReactor* DecisionServiceImpl::ListVisibleTools(
    grpc::CallbackServerContext* context, const v1::ListVisibleToolsRequest* request,
    v1::ListVisibleToolsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "not served yet"));
  return reactor;
}

}  // namespace toolgate
