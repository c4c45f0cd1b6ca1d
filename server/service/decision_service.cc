#include "server/service/decision_service.h"

#include <chrono>
#include <memory>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "absl/time/clock.h"
#include "server/base/log.h"
#include "server/telemetry/decision_log.h"
#include "server/telemetry/metrics.h"
#include "server/service/status_util.h"

namespace toolgate {

struct DecisionServiceImpl::Call {
  // The request and response live in an arena whose first block is part of
  // this object: a typical call's messages (the args Struct is a map of
  // Values) need no allocation of their own and are freed at once.
  static constexpr size_t kArenaBlock = 4096;
  alignas(16) char arena_block[kArenaBlock];
  google::protobuf::Arena arena{arena_block, kArenaBlock};
  v1::CheckRequest& request = *google::protobuf::Arena::CreateMessage<v1::CheckRequest>(&arena);
  v1::CheckResponse& response =
      *google::protobuf::Arena::CreateMessage<v1::CheckResponse>(&arena);

  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  grpc::ServerUnaryReactor* reactor = nullptr;
  grpc::ByteBuffer* response_buffer = nullptr;
  std::shared_ptr<const Policy> policy;  // Keeps the deciding rule alive.
  Evaluation evaluation;
  // The shadow revision's view (counters are not consulted for it):
  // its decision when final, or UNSPECIFIED for "allowed, subject to limits".
  std::shared_ptr<const Policy> shadow;
  v1::Decision shadow_decision = v1::DECISION_UNSPECIFIED;
  std::string shadow_rule;
};

namespace {

uint64_t RandomPrefix() {
  absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

// Protobuf nests three messages per level of a Struct (Value, Struct, map
// entry): allow that plus headroom, so that anything parseable is measured
// and reported by CheckArgsLimits with a precise message.
int RecursionLimitFor(int max_depth) { return 3 * max_depth + 16; }

}  // namespace

DecisionServiceImpl::DecisionServiceImpl(const PolicyRegistry* policies, CounterStore* store,
                                         Engine engine, ArgsLimits limits)
    : policies_(policies),
      store_(store),
      engine_(engine),
      limits_(limits),
      id_prefix_(RandomPrefix()) {}

// 32 lowercase hex digits: the process's random prefix, then a counter.
// (Written by hand: absl::StrFormat cost more than a whole lookup decision.)
std::string DecisionServiceImpl::NextDecisionId() {
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t words[2] = {id_prefix_, id_counter_.fetch_add(1, std::memory_order_relaxed) + 1};
  std::string id(32, '0');
  for (int w = 0; w < 2; ++w) {
    uint64_t v = words[w];
    for (int i = 15; i >= 0; --i, v >>= 4) id[w * 16 + i] = kHex[v & 0xf];
  }
  return id;
}

void DecisionServiceImpl::Finish(Call* call, const absl::Status& status) {
  std::unique_ptr<Call> owned(call);
  struct InFlightGuard {
    std::atomic<int64_t>& n;
    ~InFlightGuard() { n.fetch_sub(1, std::memory_order_release); }
  } guard{in_flight_};
  if (!status.ok()) {
    stats_.errors.fetch_add(1, std::memory_order_relaxed);
    if (metrics_ != nullptr) {
      metrics_->RecordError(status.code(), absl::FromChrono(std::chrono::steady_clock::now() -
                                                            call->started));
    }
    call->reactor->Finish(ToGrpcStatus(status));
    return;
  }
  switch (call->response.decision()) {
    case v1::DECISION_ALLOW:
      stats_.allow.fetch_add(1, std::memory_order_relaxed);
      break;
    case v1::DECISION_DENY:
      stats_.deny.fetch_add(1, std::memory_order_relaxed);
      break;
    case v1::DECISION_RATE_LIMITED:
      stats_.rate_limited.fetch_add(1, std::memory_order_relaxed);
      break;
    case v1::DECISION_REQUIRE_APPROVAL:
      stats_.require_approval.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      break;
  }
  call->response.set_decision_id(NextDecisionId());
  if (call->shadow != nullptr) CompareShadow(*call);
  bool own_buffer = false;
  grpc::Status s = grpc::SerializationTraits<v1::CheckResponse>::Serialize(
      call->response, call->response_buffer, &own_buffer);
  // Recorded before the answer leaves, so that a client that has its answer
  // also finds it in the metrics.
  if (metrics_ != nullptr || decision_log_ != nullptr) {
    const absl::Duration latency =
        absl::FromChrono(std::chrono::steady_clock::now() - call->started);
    if (metrics_ != nullptr) {
      metrics_->RecordCheck(call->response.decision(), call->response.rule(), latency);
    }
    if (decision_log_ != nullptr) LogDecision(call, latency);
  }
  call->reactor->Finish(s);
}

// The call is finished with: its request's fields move into the entry (the
// arguments are serialized on the log's writer thread, not here).
void DecisionServiceImpl::LogDecision(Call* call, absl::Duration latency) {
  DecisionLogEntry e;
  v1::CheckRequest& req = call->request;
  const v1::CheckResponse& resp = call->response;
  e.decision_id = resp.decision_id();
  e.time = absl::Now();
  e.tool = std::move(*req.mutable_tool());
  e.server = std::move(*req.mutable_server());
  e.grant = std::move(*req.mutable_grant());
  e.session = std::move(*req.mutable_session());
  e.request_id = std::move(*req.mutable_request_id());
  e.decision = std::string(DecisionLabel(resp.decision()));
  e.reason = resp.reason();
  e.rule = resp.rule();
  e.revision = resp.policy_version();
  e.latency_us = absl::ToInt64Microseconds(latency);
  // The request lives in the call's arena and the entry outlives it, so
  // the arguments are copied once (a Swap across arenas would copy more).
  e.args.CopyFrom(req.args());
  decision_log_->Log(std::move(e));
}

void DecisionServiceImpl::CompareShadow(const Call& call) {
  stats_.shadow_compared.fetch_add(1, std::memory_order_relaxed);
  const v1::Decision active = call.response.decision();
  // Both "allowed subject to limits": the same, whatever the counters said.
  const bool active_via_limits = !call.evaluation.final;
  const bool same = call.shadow_decision == v1::DECISION_UNSPECIFIED
                        ? active_via_limits
                        : (!active_via_limits && call.shadow_decision == active);
  if (same) return;
  stats_.shadow_differed.fetch_add(1, std::memory_order_relaxed);
  // Log at most 10 differences a second.
  const int64_t second = absl::ToUnixSeconds(absl::Now());
  if (shadow_log_second_.exchange(second) != second) shadow_logged_ = 0;
  if (shadow_logged_.fetch_add(1) >= 10) return;
  LogInfo("shadow revision ", call.shadow->revision(), " would decide ",
          call.shadow_decision == v1::DECISION_UNSPECIFIED
              ? std::string("ALLOW (subject to limits)")
              : v1::Decision_Name(call.shadow_decision),
          " (", call.shadow_rule, ") where ", call.policy->revision(), " decided ",
          v1::Decision_Name(active), " (", call.response.rule(), "): tool \"",
          call.request.tool(), "\" grant \"", call.request.grant(), "\" server \"",
          call.request.server(), "\"");
}

grpc::ServerUnaryReactor* DecisionServiceImpl::Check(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  auto* call = new Call();
  call->reactor = context->DefaultReactor();
  call->response_buffer = response;

  // Parse with a recursion limit sized for --max-args-depth.
  {
    grpc::ByteBuffer copy(*request);
    grpc::ProtoBufferReader reader(&copy);
    google::protobuf::io::CodedInputStream input(&reader);
    input.SetRecursionLimit(RecursionLimitFor(limits_.max_depth));
    if (!call->request.ParseFromCodedStream(&input)) {
      grpc::ServerUnaryReactor* reactor = call->reactor;
      Finish(call, absl::InvalidArgumentError(absl::StrCat(
                       "request could not be parsed: malformed, or args nested far deeper "
                       "than the limit of ",
                       limits_.max_depth, " (--max-args-depth)")));
      return reactor;
    }
  }
  grpc::ServerUnaryReactor* reactor = call->reactor;
  const v1::CheckRequest& req = call->request;
  if (req.tool().empty()) {
    Finish(call, absl::InvalidArgumentError("tool is required"));
    return reactor;
  }
  if (req.grant().empty()) {
    Finish(call, absl::InvalidArgumentError("grant is required"));
    return reactor;
  }
  if (absl::Status s = CheckArgsLimits(req.args(), limits_); !s.ok()) {
    Finish(call, s);
    return reactor;
  }
  absl::StatusOr<std::shared_ptr<const Policy>> policy = policies_->Get(req.policy_version());
  if (!policy.ok()) {
    Finish(call, policy.status());
    return reactor;
  }
  call->policy = *std::move(policy);
  call->evaluation = engine_.Evaluate(*call->policy, req, &call->response);
  if (std::shared_ptr<const Policy> shadow = policies_->shadow();
      shadow != nullptr && shadow != call->policy && req.policy_version().empty()) {
    v1::CheckResponse shadow_response;
    const Evaluation se = engine_.Evaluate(*shadow, req, &shadow_response);
    call->shadow = std::move(shadow);
    call->shadow_decision = se.final ? shadow_response.decision() : v1::DECISION_UNSPECIFIED;
    call->shadow_rule = shadow_response.rule();
  }
  if (call->evaluation.final) {
    Finish(call, absl::OkStatus());
    return reactor;
  }
  std::vector<LimitCheck> checks = std::move(call->evaluation.checks);
  store_->Acquire(std::move(checks), req.dry_run(),
                  [this, call](absl::StatusOr<AcquireResult> result) {
                    engine_.Complete(call->evaluation, result, &call->response);
                    Finish(call, absl::OkStatus());
                  });
  return reactor;
}

}  // namespace toolgate
