#include "server/service/decision_service.h"

#include <chrono>
#include <memory>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "server/base/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "server/service/observers.h"
#include "server/service/request_wire.h"
#include "server/service/status_util.h"

namespace toolgate {

// Per-call state, owned by the call's reactor: gRPC calls OnDone once it is
// done with the call (the answer sent, or the call cancelled), and that
// frees it.
class DecisionServiceImpl::Call final : public grpc::ServerUnaryReactor {
 public:
  explicit Call(std::atomic<int64_t>* open_calls) : open_calls_(open_calls) {}
  void OnDone() override {
    std::atomic<int64_t>* open_calls = open_calls_;
    delete this;
    open_calls->fetch_sub(1, std::memory_order_seq_cst);
  }

  // The request and response live in an arena whose first block is part of
  // this object: a typical call's messages (the args Struct is a map of
  // Values) need no allocation of their own and are freed at once.
  static constexpr size_t kArenaBlock = 4096;
  alignas(16) char arena_block[kArenaBlock];
  google::protobuf::Arena arena{arena_block, kArenaBlock};
  v1::CheckRequest& request = *google::protobuf::Arena::CreateMessage<v1::CheckRequest>(&arena);
  v1::CheckResponse& response = *google::protobuf::Arena::CreateMessage<v1::CheckResponse>(&arena);

  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  grpc::ByteBuffer* response_buffer = nullptr;
  DecisionTask task;
  ShadowView shadow;

  absl::Duration Elapsed() const {
    return absl::FromChrono(std::chrono::steady_clock::now() - started);
  }

 private:
  std::atomic<int64_t>* const open_calls_;
};

namespace {

// Protobuf nests three messages per level of a Struct (Value, Struct, map
// entry): allow that plus headroom, so that anything parseable is measured
// and reported by CheckArgsLimits with a precise message.
int RecursionLimitFor(int max_depth) { return 3 * max_depth + 16; }

}  // namespace

absl::Status ParseCheckRequest(const grpc::ByteBuffer& bytes, int max_args_depth,
                               v1::CheckRequest* request) {
  // Strings checked as UTF-8 first (see request_wire.h), then parsed with
  // a recursion limit sized for --max-args-depth.
  const int recursion_limit = RecursionLimitFor(max_args_depth);
  grpc::Slice slice;
  if (!bytes.DumpToSingleSlice(&slice).ok()) {
    return absl::InvalidArgumentError("request could not be read");
  }
  const absl::string_view wire(reinterpret_cast<const char*>(slice.begin()), slice.size());
  if (absl::Status s = CheckRequestWireUtf8(wire, recursion_limit); !s.ok()) return s;
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(wire.data()),
                                               static_cast<int>(wire.size()));
  input.SetRecursionLimit(recursion_limit);
  if (!request->ParseFromCodedStream(&input) || !input.ConsumedEntireMessage()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request could not be parsed: malformed, or args nested far deeper than the limit of ",
        max_args_depth, " (--max-args-depth)"));
  }
  return absl::OkStatus();
}

DecisionServiceImpl::DecisionServiceImpl(const PolicyRegistry* policies, const Decider* decider,
                                         std::vector<DecisionObserver*> observers,
                                         const CallerCheck* callers)
    : policies_(policies),
      decider_(decider),
      observers_(std::move(observers)),
      callers_(callers) {}

std::string DecisionServiceImpl::NextDecisionId() { return ids_.Next(); }

// Answers the call; `call` is not touched afterwards (OnDone may free it at
// once).
void DecisionServiceImpl::Finish(Call* call, const absl::Status& status) {
  struct InFlightGuard {
    std::atomic<int64_t>& n;
    ~InFlightGuard() { n.fetch_sub(1, std::memory_order_seq_cst); }
  } guard{in_flight_};
  if (!status.ok()) {
    const absl::Duration latency = call->Elapsed();
    for (DecisionObserver* o : observers_) o->OnError(status.code(), latency);
    call->Finish(ToGrpcStatus(status));
    return;
  }
  bool own_buffer = false;
  grpc::Status s = grpc::SerializationTraits<v1::CheckResponse>::Serialize(
      call->response, call->response_buffer, &own_buffer);
  // Observed before the answer leaves, so that a client that has its answer
  // also finds it in the metrics and the log.
  if (!observers_.empty()) {
    const DecisionRecord record{
        call->request, call->response,  *call->task.policy, call->task.decided_by_limits(),
        call->shadow,  call->Elapsed(), call->task.peer};
    for (DecisionObserver* o : observers_) o->OnDecision(record);
  }
  call->Finish(s);
}

grpc::ServerUnaryReactor* DecisionServiceImpl::Check(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  open_calls_.fetch_add(1, std::memory_order_seq_cst);
  // Counted before draining_ is read: once a drain sees in_flight() at 0,
  // every check that read draining_ as false has been answered.
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  auto* call = new Call(&open_calls_);
  call->response_buffer = response;
  grpc::ServerUnaryReactor* reactor = call;
  if (draining_.load(std::memory_order_seq_cst)) {
    Finish(call, absl::UnavailableError(
                     "toolgated is shutting down and takes no new checks; retry on another "
                     "server"));
    return reactor;
  }

  if (callers_ != nullptr) {
    absl::StatusOr<std::string> admitted = callers_->Admit(*context);
    if (!admitted.ok()) {
      Finish(call, admitted.status());
      return reactor;
    }
    call->task.peer = *std::move(admitted);  // For grants.<name>.peers and the log.
  }

  if (absl::Status s =
          ParseCheckRequest(*request, decider_->limits().max_depth, &call->request);
      !s.ok()) {
    Finish(call, s);
    return reactor;
  }
  if (absl::Status s = decider_->Prepare(&call->request); !s.ok()) {
    Finish(call, s);
    return reactor;
  }
  const v1::CheckRequest& req = call->request;
  absl::StatusOr<std::shared_ptr<const Policy>> policy = policies_->Get(req.policy_version());
  if (!policy.ok()) {
    Finish(call, policy.status());
    return reactor;
  }
  DecisionTask& task = call->task;
  task.policy = *std::move(policy);
  task.request = &call->request;
  task.response = &call->response;
  task.dry_run = req.dry_run();
  // A Check caller can report the call's outcome (Settle).
  task.reserve = true;
  // Known before deciding: an approval the call uses records it.
  call->response.set_decision_id(NextDecisionId());
  task.decision_id = call->response.decision_id();
  call->shadow =
      ShadowComparer::Evaluate(*policies_, decider_->engine(), *task.policy, req, task.peer);
  decider_->Decide(task, [this, call] { Finish(call, absl::OkStatus()); });
  return reactor;
}

namespace {

constexpr int64_t kDefaultWaitMs = 30'000;
constexpr int64_t kMaxWaitMs = 600'000;

// One WaitApproval call: answered by the hub's callback, or cancelled.
class WaitCall final : public grpc::ServerUnaryReactor {
 public:
  WaitCall(ApprovalHub* hub, v1::Approval* response) : hub_(hub), response_(response) {}

  void Start(const std::string& id, int64_t deadline_ms) {
    const uint64_t handle = hub_->Wait(id, deadline_ms, [this](absl::StatusOr<v1::Approval> a) {
      if (!a.ok()) {
        Finish(ToGrpcStatus(a.status()));
        return;
      }
      *response_ = *std::move(a);
      Finish(grpc::Status::OK);
    });
    bool cancel = false;
    {
      absl::MutexLock lock(&mu_);
      handle_ = handle;
      cancel = cancelled_;
    }
    if (cancel && handle != 0) hub_->Cancel(handle);
  }

  void OnCancel() override {
    uint64_t handle = 0;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      handle = handle_;
    }
    if (handle != 0) hub_->Cancel(handle);
  }
  void OnDone() override { delete this; }

 private:
  ApprovalHub* const hub_;
  v1::Approval* const response_;
  absl::Mutex mu_;
  uint64_t handle_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* DecisionServiceImpl::WaitApproval(grpc::CallbackServerContext* context,
                                                            const v1::WaitApprovalRequest* request,
                                                            v1::Approval* response) {
  absl::Status s;
  if (approvals_ == nullptr) {
    s = absl::UnimplementedError("approvals are not served by this server");
  } else if (draining_.load(std::memory_order_seq_cst)) {
    s = absl::UnavailableError("toolgated is shutting down; retry on another server");
  } else if (callers_ != nullptr) {
    s = callers_->Admit(*context).status();
  }
  if (s.ok() && request->approval_id().empty()) {
    s = absl::InvalidArgumentError("approval_id is required");
  } else if (s.ok() && !IsApprovalId(request->approval_id())) {
    s = absl::InvalidArgumentError("approval_id: not an approval id (\"apr_\" and 32 hex digits)");
  }
  int64_t wait_ms = kDefaultWaitMs;
  if (s.ok() && request->has_timeout()) {
    const google::protobuf::Duration& t = request->timeout();
    if (t.seconds() < 0 || t.nanos() < 0) {
      s = absl::InvalidArgumentError("timeout must not be negative");
    } else {
      wait_ms = std::min<int64_t>(kMaxWaitMs, t.seconds() * 1000 + t.nanos() / 1'000'000);
    }
  }
  if (!s.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  // Within the call's own deadline, with room to answer before it.
  const auto left = context->deadline() - std::chrono::system_clock::now();
  const int64_t left_ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count();
  if (left_ms < wait_ms) wait_ms = std::max<int64_t>(0, left_ms - std::max<int64_t>(20, left_ms / 20));
  auto* call = new WaitCall(approvals_, response);
  call->Start(request->approval_id(), SteadyClock::Get()->NowMillis() + wait_ms);
  return call;
}

namespace {

SettleOutcome ToOutcome(v1::SettleOutcome o) {
  return o == v1::SETTLE_OUTCOME_FAILED ? SettleOutcome::kFailed : SettleOutcome::kSucceeded;
}

v1::SettleOutcome FromOutcome(SettleOutcome o) {
  return o == SettleOutcome::kFailed ? v1::SETTLE_OUTCOME_FAILED : v1::SETTLE_OUTCOME_SUCCEEDED;
}

}  // namespace

grpc::ServerUnaryReactor* DecisionServiceImpl::Settle(grpc::CallbackServerContext* context,
                                                      const v1::SettleRequest* request,
                                                      v1::SettleResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  auto finish = [this, reactor](const absl::Status& s) {
    reactor->Finish(ToGrpcStatus(s));
    in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  };
  absl::Status s;
  if (draining_.load(std::memory_order_seq_cst)) {
    s = absl::UnavailableError("toolgated is shutting down; retry on another server");
  } else if (callers_ != nullptr) {
    s = callers_->Admit(*context).status();
  }
  if (s.ok()) {
    if (request->reservation_id().empty()) {
      s = absl::InvalidArgumentError("reservation_id is required");
    } else if (!IsReservationId(request->reservation_id())) {
      s = absl::InvalidArgumentError(
          "reservation_id: not a reservation id (\"rsv_\" and 32 hex digits, as "
          "CheckResponse.reservation_id gives it)");
    } else if (request->outcome() != v1::SETTLE_OUTCOME_SUCCEEDED &&
               request->outcome() != v1::SETTLE_OUTCOME_FAILED) {
      s = absl::InvalidArgumentError("outcome is required: SUCCEEDED or FAILED");
    } else if (request->has_cost() && request->cost() < 0) {
      s = absl::InvalidArgumentError("cost must not be negative");
    } else if (request->has_cost() && request->outcome() == v1::SETTLE_OUTCOME_FAILED) {
      s = absl::InvalidArgumentError(
          "cost is for a SUCCEEDED call; a FAILED one gives back "
          "every reserved unit");
    }
  }
  if (!s.ok()) {
    finish(s);
    return reactor;
  }
  std::optional<int64_t> cost;
  if (request->has_cost()) cost = request->cost();
  decider_->Settle(request->reservation_id(), ToOutcome(request->outcome()), cost,
                   [request, response, finish](absl::StatusOr<toolgate::Settlement> r) {
                     if (!r.ok()) {
                       finish(r.status());
                       return;
                     }
                     response->set_reservation_id(request->reservation_id());
                     response->set_outcome(FromOutcome(r->outcome));
                     if (r->cost.has_value()) response->set_cost(*r->cost);
                     response->set_already_settled(r->already_settled);
                     response->set_decision_id(r->decision_id);
                     finish(absl::OkStatus());
                   });
  return reactor;
}

}  // namespace toolgate
