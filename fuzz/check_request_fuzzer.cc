// A Check call's request bytes, as toolgated receives them: parsed by
// ParseCheckRequest with the default --max-args-depth, checked by
// Decider::Validate (tool, grant, the size and depth limits on args) and,
// when valid, decided against the example policies (examples/policy.yaml and
// examples/scoped-policy.yaml) with an in-process counter store, as the
// service would.
//
// Bytes that do not parse must get INVALID_ARGUMENT; a parsed request is
// either refused with INVALID_ARGUMENT or decided; nothing may crash, leak,
// hang or exhaust memory.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "server/base/clock.h"
#include "server/counters/memory_store.h"
#include "server/decider/decider.h"
#include "server/engine/args_limits.h"
#include "server/engine/engine.h"
#include "server/policy/loader.h"
#include "server/service/decision_service.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {
namespace {

std::vector<std::shared_ptr<const Policy>>* policies = nullptr;

std::shared_ptr<const Policy> Load(const char* file) {
  absl::StatusOr<std::shared_ptr<const Policy>> p =
      LoadPolicyFromPath(std::string(TOOLGATE_SOURCE_DIR "/examples/") + file);
  if (!p.ok()) {
    fprintf(stderr, "cannot load %s: %s\n", file, std::string(p.status().message()).c_str());
    abort();
  }
  return *p;
}

}  // namespace
}  // namespace toolgate

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // libprotobuf logs each string field with invalid UTF-8; not a finding.
  google::protobuf::SetLogHandler(nullptr);
  toolgate::policies = new std::vector<std::shared_ptr<const toolgate::Policy>>{
      toolgate::Load("policy.yaml"), toolgate::Load("scoped-policy.yaml")};
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace toolgate;
  const ArgsLimits limits;  // --max-args-bytes and --max-args-depth defaults.
  grpc::Slice slice(data, size);
  const grpc::ByteBuffer bytes(&slice, 1);
  v1::CheckRequest request;
  if (absl::Status s = ParseCheckRequest(bytes, limits.max_depth, &request); !s.ok()) {
    if (s.code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  ManualClock clock;
  MemoryCounterStore store(&clock);
  const Decider decider(&store, Engine(), limits);
  if (absl::Status s = decider.Validate(request); !s.ok()) {
    if (s.code() != absl::StatusCode::kInvalidArgument || s.message().empty()) __builtin_trap();
    return 0;
  }
  // Validated names and args are within the limits the decision relies on.
  if (ArgsDepth(request.args()) > limits.max_depth) __builtin_trap();
  for (const std::string* name : {&request.tool(), &request.grant(), &request.server(),
                                  &request.session(), &request.policy_version()}) {
    if (name->size() > limits.max_name_bytes) __builtin_trap();
  }
  for (const std::shared_ptr<const Policy>& policy : *policies) {
    v1::CheckResponse response;
    DecisionTask task;
    task.policy = policy;
    task.request = &request;
    task.response = &response;
    task.dry_run = request.dry_run();
    bool done = false;
    decider.Decide(task, [&done] { done = true; });
    // The in-process store answers at once; every call gets a decision.
    if (!done || response.decision() == v1::DECISION_UNSPECIFIED) __builtin_trap();
  }
  return 0;
}
