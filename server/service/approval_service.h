// toolgate.v1.ApprovalService, on the admin listener: approvers list, read,
// decide and watch approvals. Every call is admitted as AdminService's are
// (--allow-peer, --admin-token-file).
#ifndef TOOLGATE_SERVER_SERVICE_APPROVAL_SERVICE_H_
#define TOOLGATE_SERVER_SERVICE_APPROVAL_SERVICE_H_

#include "server/approvals/approval_hub.h"
#include "server/approvals/approval_store.h"
#include "server/service/callers.h"
#include "toolgate/v1/approval.grpc.pb.h"

namespace toolgate {

// Events a watcher may fall behind by before its stream is ended
// (RESOURCE_EXHAUSTED: it reads too slowly).
inline constexpr size_t kMaxWatchBacklog = 1024;

class ApprovalServiceImpl final : public v1::ApprovalService::CallbackService {
 public:
  // Everything given must outlive the service (callers, token: may be null).
  ApprovalServiceImpl(ApprovalStore* store, ApprovalHub* hub, const CallerCheck* callers,
                      const AdminToken* token)
      : store_(store), hub_(hub), callers_(callers), token_(token) {}

  grpc::ServerUnaryReactor* ListApprovals(grpc::CallbackServerContext* context,
                                          const v1::ListApprovalsRequest* request,
                                          v1::ListApprovalsResponse* response) override;
  grpc::ServerUnaryReactor* GetApproval(grpc::CallbackServerContext* context,
                                        const v1::GetApprovalRequest* request,
                                        v1::Approval* response) override;
  grpc::ServerUnaryReactor* DecideApproval(grpc::CallbackServerContext* context,
                                           const v1::DecideApprovalRequest* request,
                                           v1::Approval* response) override;
  grpc::ServerWriteReactor<v1::ApprovalEvent>* WatchApprovals(
      grpc::CallbackServerContext* context, const v1::WatchApprovalsRequest* request) override;

 private:
  class Watch;

  ApprovalStore* const store_;
  ApprovalHub* const hub_;
  const CallerCheck* const callers_;
  const AdminToken* const token_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_APPROVAL_SERVICE_H_
