#include "server/service/ext_authz.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "server/service/observers.h"
#include "server/service/status_util.h"

namespace toolgate {

namespace auth = envoy::service::auth::v3;

// Per-call state, owned by the call's reactor (freed in OnDone).
class ExtAuthzServiceImpl::Call final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override { delete this; }

  // Envoy's request (headers, body) and the answer live in an arena whose
  // first block is part of this object.
  static constexpr size_t kArenaBlock = 8192;
  alignas(16) char arena_block[kArenaBlock];
  google::protobuf::Arena arena{arena_block, kArenaBlock};
  auth::CheckRequest* request = google::protobuf::Arena::CreateMessage<auth::CheckRequest>(&arena);
  auth::CheckResponse* response =
      google::protobuf::Arena::CreateMessage<auth::CheckResponse>(&arena);
  grpc::ByteBuffer* response_buffer = nullptr;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string peer;  // The proxy's certificate identity; empty without mTLS.
  McpHttpRequest mcp{&arena};
  std::shared_ptr<const Policy> policy;  // One revision decides every call of a batch.
  // decisions[i] for mcp.calls[i].
  google::protobuf::RepeatedPtrField<v1::CheckResponse> decisions{&arena};
  size_t next = 0;  // The call being decided.
  DecisionTask task;
  ShadowView shadow;

  absl::Duration Elapsed() const {
    return absl::FromChrono(std::chrono::steady_clock::now() - started);
  }
};

ExtAuthzServiceImpl::ExtAuthzServiceImpl(ExtAuthzOptions options, const PolicyRegistry* policies,
                                         const Decider* decider,
                                         std::vector<DecisionObserver*> observers, DecisionIds* ids,
                                         const CallerCheck* callers)
    : options_(std::move(options)),
      policies_(policies),
      decider_(decider),
      observers_(std::move(observers)),
      ids_(ids),
      callers_(callers) {}

// Answers the call (with call->response when `status` is OK); `call` is not
// touched afterwards.
void ExtAuthzServiceImpl::Finish(Call* call, const grpc::Status& status) {
  grpc::Status s = status;
  if (s.ok()) {
    bool own_buffer = false;
    s = grpc::SerializationTraits<auth::CheckResponse>::Serialize(
        *call->response, call->response_buffer, &own_buffer);
  }
  in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  call->Finish(s);
}

namespace {

// Envoy's request from its bytes. protobuf checks every string field as
// UTF-8 (Envoy sends header values as UTF-8; raw_body is bytes).
absl::Status ParseEnvoyRequest(const grpc::ByteBuffer& bytes, auth::CheckRequest* request) {
  grpc::Slice slice;
  if (!bytes.DumpToSingleSlice(&slice).ok()) {
    return absl::InvalidArgumentError("request could not be read");
  }
  google::protobuf::io::CodedInputStream input(slice.begin(), static_cast<int>(slice.size()));
  if (!request->ParseFromCodedStream(&input) || !input.ConsumedEntireMessage()) {
    return absl::InvalidArgumentError(
        "request could not be parsed as envoy.service.auth.v3.CheckRequest: malformed, or a "
        "string field (a header, body) that is not valid UTF-8 (configure ext_authz with "
        "pack_as_bytes: the body then comes as raw_body)");
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* ExtAuthzServiceImpl::Check(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request_bytes,
                                                     grpc::ByteBuffer* response_bytes) {
  // Counted before draining_ is read (see DecisionServiceImpl::Check).
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  auto* call = new Call;
  call->response_buffer = response_bytes;
  auth::CheckRequest* request = call->request;
  auth::CheckResponse* response = call->response;
  if (draining_.load(std::memory_order_seq_cst)) {
    Finish(call, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "toolgated is shutting down and takes no new checks; retry on "
                              "another server"));
    return call;
  }
  if (callers_ != nullptr) {
    absl::StatusOr<std::string> admitted = callers_->Admit(*context);
    if (!admitted.ok()) {
      for (DecisionObserver* o : observers_) o->OnError(admitted.status().code(), call->Elapsed());
      Finish(call, ToGrpcStatus(admitted.status()));
      return call;
    }
    call->peer = *std::move(admitted);
  }

  // A request that cannot be decided is answered at once, before anything
  // is consumed: every call of a batch is read and validated first.
  auto undecidable = [&](const McpHttpError& error, absl::StatusCode code) {
    AnswerUndecidable(error, response);
    for (DecisionObserver* o : observers_) o->OnError(code, call->Elapsed());
    Finish(call, grpc::Status::OK);
    return call;
  };
  if (absl::Status s = ParseEnvoyRequest(*request_bytes, request); !s.ok()) {
    for (DecisionObserver* o : observers_) o->OnError(s.code(), call->Elapsed());
    Finish(call, ToGrpcStatus(s));
    return call;
  }
  McpHttpError error;
  if (!ReadMcpHttpRequest(*request, options_, decider_->limits(), &call->mcp, &error)) {
    return undecidable(error, absl::StatusCode::kInvalidArgument);
  }
  if (!call->mcp.refused_other.empty()) {
    AnswerOtherRefused(call->mcp, response);
    Finish(call, grpc::Status::OK);
    return call;
  }
  if (call->mcp.calls.empty()) {
    AnswerAllowed({}, response);
    Finish(call, grpc::Status::OK);
    return call;
  }
  for (int i = 0; i < call->mcp.calls.size(); ++i) {
    if (absl::Status s = decider_->Prepare(call->mcp.calls.Mutable(i)); !s.ok()) {
      return undecidable(UndecidableCall(call->mcp, static_cast<int>(i), std::string(s.message())),
                         s.code());
    }
  }
  absl::StatusOr<std::shared_ptr<const Policy>> policy = policies_->Get("");
  if (!policy.ok()) {
    McpHttpError e;
    e.http_status = 503;
    e.jsonrpc_code = kJsonRpcInternalError;
    e.message = std::string(policy.status().message());
    return undecidable(e, policy.status().code());
  }
  call->policy = *std::move(policy);
  for (int i = 0; i < call->mcp.calls.size(); ++i) call->decisions.Add();
  DecideNext(call);
  return call;
}

// Decides call->next; the next one from its completion, until one is
// refused or all are allowed. (A store may complete on its I/O thread, and
// may be asked again from there.)
void ExtAuthzServiceImpl::DecideNext(Call* call) {
  if (call->next == static_cast<size_t>(call->mcp.calls.size())) {
    std::vector<const v1::CheckResponse*> decided;
    decided.reserve(call->decisions.size());
    for (const v1::CheckResponse& d : call->decisions) decided.push_back(&d);
    AnswerAllowed(decided, call->response);
    Finish(call, grpc::Status::OK);
    return;
  }
  const size_t i = call->next;
  const v1::CheckRequest& req = call->mcp.calls[static_cast<int>(i)];
  v1::CheckResponse& decision = *call->decisions.Mutable(static_cast<int>(i));
  call->task = DecisionTask{};
  DecisionTask& task = call->task;
  task.policy = call->policy;
  task.request = &req;
  task.response = &decision;
  task.peer = call->peer;
  decision.set_decision_id(ids_->Next());
  task.decision_id = decision.decision_id();
  call->shadow =
      ShadowComparer::Evaluate(*policies_, decider_->engine(), *task.policy, req, task.peer);
  decider_->Decide(task, [this, call, i] {
    const v1::CheckResponse& d = call->decisions[static_cast<int>(i)];
    if (!observers_.empty()) {
      const DecisionRecord record{call->mcp.calls[static_cast<int>(i)],
                                  d,
                                  *call->task.policy,
                                  call->task.decided_by_limits(),
                                  call->shadow,
                                  call->Elapsed(),
                                  call->task.peer,
                                  CheckApi::kExtAuthz};
      for (DecisionObserver* o : observers_) o->OnDecision(record);
    }
    if (d.decision() != v1::DECISION_ALLOW) {
      AnswerRefused(call->mcp, static_cast<int>(i), d, options_, call->response);
      Finish(call, grpc::Status::OK);
      return;
    }
    ++call->next;
    DecideNext(call);
  });
}

}  // namespace toolgate
