// The ext_authz body reader on any body: ReadMcpHttpRequest never crashes
// and never recurses past its bound; every answer it leads to is valid JSON
// (the refusals with each kind of decision, and the error of an undecidable
// request); every call it accepts names a tool and carries arguments no
// deeper than the limit. The first byte picks the options (grant from a
// header or not, other methods allowed or not, tool error or HTTP).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "server/base/json_parse.h"
#include "server/service/ext_authz_mapping.h"

namespace {

namespace auth = envoy::service::auth::v3;

void Fail(const char* what, absl::string_view input) {
  std::fprintf(stderr, "%s: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

void ExpectJson(const auth::CheckResponse& r, absl::string_view input) {
  if (!toolgate::ParseJsonValue(r.denied_response().body(), 64, "test").ok()) {
    Fail("an answer that is not JSON", input);
  }
}

int Depth(const google::protobuf::Value& v) {
  int d = 0;
  if (v.has_struct_value()) {
    for (const auto& [k, f] : v.struct_value().fields()) d = std::max(d, Depth(f));
    return d + 1;
  }
  if (v.has_list_value()) {
    for (const auto& e : v.list_value().values()) d = std::max(d, Depth(e));
    return d + 1;
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const absl::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  toolgate::ExtAuthzOptions options;
  options.other_methods_allowed = (flags & 1) == 0;
  options.deny_as = (flags & 2) ? toolgate::ExtAuthzOptions::DenyAs::kHttp
                                : toolgate::ExtAuthzOptions::DenyAs::kToolError;
  toolgate::ArgsLimits limits;
  limits.max_depth = 6;
  limits.max_bytes = 4096;

  auth::CheckRequest request;
  auto* http = request.mutable_attributes()->mutable_request()->mutable_http();
  http->set_method("POST");
  http->set_host("fuzz:1");
  if ((flags & 4) == 0) (*http->mutable_headers())["x-toolgate-grant"] = "g";
  http->set_raw_body(std::string(body));

  toolgate::McpHttpRequest read;
  toolgate::McpHttpError error;
  if (!toolgate::ReadMcpHttpRequest(request, options, limits, &read, &error)) {
    if (error.message.empty()) Fail("an error without a message", body);
    auth::CheckResponse answer;
    toolgate::AnswerUndecidable(error, &answer);
    ExpectJson(answer, body);
    return 0;
  }
  for (const toolgate::v1::CheckRequest& call : read.calls) {
    if (call.tool().empty()) Fail("a call without a tool", body);
    google::protobuf::Value args;
    *args.mutable_struct_value() = call.args();
    if (Depth(args) > limits.max_depth + toolgate::kMcpEnvelopeDepth) {
      Fail("arguments nested past the bound", body);
    }
  }
  if (!read.refused_other.empty()) {
    auth::CheckResponse answer;
    toolgate::AnswerOtherRefused(read, &answer);
    ExpectJson(answer, body);
  }
  for (int i = 0; i < read.calls.size(); ++i) {
    for (toolgate::v1::Decision d :
         {toolgate::v1::DECISION_DENY, toolgate::v1::DECISION_RATE_LIMITED,
          toolgate::v1::DECISION_REQUIRE_APPROVAL}) {
      toolgate::v1::CheckResponse decision;
      decision.set_decision(d);
      decision.set_reason(read.calls[i].tool());  // Whatever the body held.
      decision.mutable_retry_after()->set_seconds(3);
      decision.add_violations()->set_path(read.calls[i].request_id());
      auth::CheckResponse answer;
      toolgate::AnswerRefused(read, i, decision, options, &answer);
      ExpectJson(answer, body);
    }
  }
  return 0;
}
