// The one place where absl::Status becomes grpc::Status. absl::StatusCode
// values are gRPC's codes, so the mapping is one-to-one.
#ifndef TOOLGATE_SERVER_SERVICE_STATUS_UTIL_H_
#define TOOLGATE_SERVER_SERVICE_STATUS_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace toolgate {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_STATUS_UTIL_H_
