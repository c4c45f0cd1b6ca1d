// DecisionService.ListVisibleTools: each tool classified from the policy
// alone (server/engine/visibility.h), answered on the calling thread.
//
// The request is read from its bytes by a scan of its own rather than by
// protobuf, which would fail the whole parse on a name that is not UTF-8
// (INTERNAL, and an error line in the log per request): here such a name
// gets INVALID_ARGUMENT naming it, as in Check. The scan also stops at the
// first tool over the bound instead of materialising them all.
#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "server/engine/visibility.h"
#include "server/service/decision_service.h"
#include "server/service/status_util.h"

namespace toolgate {
namespace {

using google::protobuf::internal::WireFormatLite;

// A ListVisibleToolsRequest as views into its bytes.
struct VisibleToolsRequest {
  absl::string_view grant, server, session, policy_version;
  std::vector<absl::string_view> tools;
};

// Field numbers of ListVisibleToolsRequest (decision.proto).
enum : int { kGrant = 1, kServer = 2, kSession = 3, kTools = 4, kPolicyVersion = 5 };

// Reads the request as protobuf would (the last of a repeated singular
// field wins; unknown fields are skipped), without checking UTF-8 yet.
absl::Status ScanRequest(absl::string_view wire, VisibleToolsRequest* out) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(wire.data()),
                                            static_cast<int>(wire.size()));
  const auto malformed = [] {
    return absl::InvalidArgumentError("request could not be parsed: malformed");
  };
  while (!in.ExpectAtEnd()) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return malformed();
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    if (field == 0) return malformed();  // As protobuf: no field is numbered 0.
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED ||
        field < kGrant || field > kPolicyVersion) {
      if (!WireFormatLite::SkipField(&in, tag)) return malformed();
      continue;
    }
    uint32_t length = 0;
    if (!in.ReadVarint32(&length)) return malformed();
    const size_t at = static_cast<size_t>(in.CurrentPosition());
    if (length > wire.size() - at || !in.Skip(static_cast<int>(length))) return malformed();
    const absl::string_view value = wire.substr(at, length);
    switch (field) {
      case kGrant:
        out->grant = value;
        break;
      case kServer:
        out->server = value;
        break;
      case kSession:
        out->session = value;
        break;
      case kTools:
        if (out->tools.size() == static_cast<size_t>(kMaxVisibleTools)) {
          return absl::InvalidArgumentError(absl::StrCat("tools: more than ", kMaxVisibleTools,
                                                         " tools; send at most ", kMaxVisibleTools,
                                                         " per call"));
        }
        out->tools.push_back(value);
        break;
      case kPolicyVersion:
        out->policy_version = value;
        break;
    }
  }
  return absl::OkStatus();
}

// The names checked as Check checks them (Decider::ValidateName).
absl::Status ValidateRequest(const VisibleToolsRequest& req, size_t max_name_bytes) {
  if (req.grant.empty()) return absl::InvalidArgumentError("grant is required");
  const struct {
    absl::string_view field;
    absl::string_view value;
  } names[] = {{"grant", req.grant},
               {"server", req.server},
               {"session", req.session},
               {"policy_version", req.policy_version}};
  for (const auto& n : names) {
    if (absl::Status s = Decider::ValidateName(n.field, n.value, max_name_bytes); !s.ok()) {
      return s;
    }
  }
  for (size_t i = 0; i < req.tools.size(); ++i) {
    // The index is written only into an error: a valid list builds nothing.
    if (req.tools[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("tool is required (tools[", i, "] is empty)"));
    }
    if (absl::Status s = Decider::ValidateName("tool", req.tools[i], max_name_bytes); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(s.message(), " (tools[", i, "])"));
    }
  }
  return absl::OkStatus();
}

// Owned by gRPC until OnDone, as DecisionServiceImpl::Call is: open_calls
// counts it until its answer has been sent.
class VisibleToolsCall final : public grpc::ServerUnaryReactor {
 public:
  explicit VisibleToolsCall(std::atomic<int64_t>* open_calls) : open_calls_(open_calls) {}
  void OnDone() override {
    std::atomic<int64_t>* open_calls = open_calls_;
    delete this;
    open_calls->fetch_sub(1, std::memory_order_seq_cst);
  }

 private:
  std::atomic<int64_t>* const open_calls_;
};

}  // namespace

grpc::ServerUnaryReactor* DecisionServiceImpl::ListVisibleTools(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  open_calls_.fetch_add(1, std::memory_order_seq_cst);
  // Counted before draining_ is read, as a check is (see Check).
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  auto* call = new VisibleToolsCall(&open_calls_);

  const auto answer = [&]() -> absl::Status {
    if (draining_.load(std::memory_order_seq_cst)) {
      return absl::UnavailableError(
          "toolgated is shutting down and takes no new calls; retry on another server");
    }
    std::string peer;  // For grants.<name>.peers, as in Check.
    if (callers_ != nullptr) {
      absl::StatusOr<std::string> admitted = callers_->Admit(*context);
      if (!admitted.ok()) return admitted.status();
      peer = *std::move(admitted);
    }
    grpc::Slice slice;
    if (!request->DumpToSingleSlice(&slice).ok()) {
      return absl::InvalidArgumentError("request could not be read");
    }
    VisibleToolsRequest req;
    if (absl::Status s = ScanRequest(
            absl::string_view(reinterpret_cast<const char*>(slice.begin()), slice.size()), &req);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ValidateRequest(req, decider_->limits().max_name_bytes); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::shared_ptr<const Policy>> policy =
        policies_->Get(std::string(req.policy_version));
    if (!policy.ok()) return policy.status();

    // The answer's strings live in an arena freed at once after serializing.
    google::protobuf::ArenaOptions options;
    options.start_block_size = 16 * 1024;
    options.max_block_size = 256 * 1024;
    google::protobuf::Arena arena(options);
    auto* out = google::protobuf::Arena::CreateMessage<v1::ListVisibleToolsResponse>(&arena);
    out->set_policy_version((*policy)->revision());
    out->mutable_tools()->Reserve(static_cast<int>(req.tools.size()));
    const ToolClassifier classifier(decider_->engine(), **policy, req.grant, req.server, peer);
    for (absl::string_view tool : req.tools) {
      v1::ToolVisibility* v = out->add_tools();
      v->set_tool(tool.data(), tool.size());
      classifier.Classify(tool, v);
    }
    bool own_buffer = false;
    grpc::Status s = grpc::SerializationTraits<v1::ListVisibleToolsResponse>::Serialize(
        *out, response, &own_buffer);
    if (!s.ok()) return absl::InternalError(s.error_message());
    return absl::OkStatus();
  };

  call->Finish(ToGrpcStatus(answer()));
  in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  return call;
}

}  // namespace toolgate
