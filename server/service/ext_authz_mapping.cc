#include "server/service/ext_authz_mapping.h"

#include <cmath>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/base/json.h"
#include "server/base/json_parse.h"
#include "server/engine/engine.h"

namespace toolgate {
namespace {

namespace pb = google::protobuf;
using envoy::config::core::v3::HeaderValueOption;
using envoy::service::auth::v3::AttributeContext;

constexpr absl::string_view kDecisionIdHeader = "x-toolgate-decision-id";
constexpr absl::string_view kRevisionHeader = "x-toolgate-revision";
// Names looked up in the request's header map (std::string: no copy per
// lookup).
const std::string& ServerHeader() {
  static const auto* name = new std::string("x-toolgate-server");
  return *name;
}
const std::string& SessionHeader() {
  static const auto* name = new std::string("mcp-session-id");
  return *name;
}
const std::string& PartialBodyHeader() {
  static const auto* name = new std::string("x-envoy-auth-partial-body");
  return *name;
}
const std::string& ContentLengthHeader() {
  static const auto* name = new std::string("content-length");
  return *name;
}

// google.rpc.Code values.
constexpr int kRpcOk = 0;
constexpr int kRpcInvalidArgument = 3;
constexpr int kRpcPermissionDenied = 7;
constexpr int kRpcResourceExhausted = 8;
constexpr int kRpcUnavailable = 14;

// A request header's value (Envoy sends names in lower case): from
// `headers`, or from `header_map` when Envoy encodes raw headers.
const std::string* FindHeader(const AttributeContext::HttpRequest& http, const std::string& name) {
  if (auto it = http.headers().find(name); it != http.headers().end()) return &it->second;
  for (const auto& h : http.header_map().headers()) {
    if (h.key() == name) return h.raw_value().empty() ? &h.value() : &h.raw_value();
  }
  return nullptr;
}

// At most `max` bytes of `s` (valid UTF-8), cut on a character boundary:
// what a client named, quoted back in a message (proto strings must stay
// valid UTF-8).
std::string Clip(absl::string_view s, size_t max = 128) {
  if (s.size() <= max) return std::string(s);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return absl::StrCat(s.substr(0, n), "...");
}

McpHttpError Error(int http_status, int code, std::string message,
                   const pb::Value& id = pb::Value()) {
  McpHttpError e;
  e.http_status = http_status;
  e.jsonrpc_code = code;
  e.message = std::move(message);
  e.id = id;
  if (e.id.kind_case() == pb::Value::KIND_NOT_SET) e.id.set_null_value(pb::NULL_VALUE);
  return e;
}

// The message's id, if it has a usable one: a string, an integer within
// ±2^53, or null. False (with `what`) otherwise.
bool ReadId(const pb::Struct& message, pb::Value* id, std::string* what) {
  id->set_null_value(pb::NULL_VALUE);
  auto it = message.fields().find("id");
  if (it == message.fields().end()) return true;
  const pb::Value& v = it->second;
  switch (v.kind_case()) {
    case pb::Value::kStringValue:
    case pb::Value::kNullValue:
      *id = v;
      return true;
    case pb::Value::kNumberValue:
      if (std::trunc(v.number_value()) == v.number_value() &&
          std::fabs(v.number_value()) <= kMaxMcpNumericId) {
        *id = v;
        return true;
      }
      *what = "id: a number must be an integer of at most 2^53";
      return false;
    default:
      *what = "id: must be a string, an integer or null";
      return false;
  }
}

// The id as CheckRequest.request_id: a string as it is, an integer in
// decimal, null as empty.
std::string IdText(const pb::Value& id) {
  if (id.kind_case() == pb::Value::kStringValue) return id.string_value();
  if (id.kind_case() == pb::Value::kNumberValue) return FormatNumber(id.number_value());
  return "";
}

HeaderValueOption* SetHeader(pb::RepeatedPtrField<HeaderValueOption>* headers,
                             absl::string_view key, std::string value) {
  HeaderValueOption* h = headers->Add();
  h->mutable_header()->set_key(std::string(key));
  h->mutable_header()->set_value(std::move(value));
  // Replace what the client sent (`append` false for Envoys that predate
  // append_action).
  h->set_append_action(HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
  h->mutable_append()->set_value(false);
  return h;
}

void AppendKey(absl::string_view key, std::string* out) {
  AppendJsonString(key, out);
  out->push_back(':');
}

// {"decision":...,"rule":...,...}: the "toolgate/decision" metadata.
void AppendDecisionMeta(const v1::CheckResponse& d, std::string* out) {
  out->push_back('{');
  AppendKey("decision", out);
  AppendJsonString(DecisionLabel(d.decision()), out);
  out->push_back(',');
  AppendKey("rule", out);
  AppendJsonString(d.rule(), out);
  out->push_back(',');
  AppendKey("decision_id", out);
  AppendJsonString(d.decision_id(), out);
  out->push_back(',');
  AppendKey("revision", out);
  AppendJsonString(d.policy_version(), out);
  out->push_back(',');
  AppendKey("violations", out);
  out->push_back('[');
  for (int i = 0; i < d.violations_size(); ++i) {
    if (i > 0) out->push_back(',');
    out->push_back('{');
    AppendKey("path", out);
    AppendJsonString(d.violations(i).path(), out);
    out->push_back(',');
    AppendKey("message", out);
    AppendJsonString(d.violations(i).message(), out);
    out->push_back('}');
  }
  out->push_back(']');
  if (d.decision() == v1::DECISION_RATE_LIMITED) {
    const int64_t ms = d.retry_after().seconds() * 1000 + d.retry_after().nanos() / 1'000'000;
    absl::StrAppend(out, ",\"retry_after_ms\":", ms);
  }
  if (!d.approval_id().empty()) {
    out->push_back(',');
    AppendKey("approval_id", out);
    AppendJsonString(d.approval_id(), out);
  }
  out->push_back('}');
}

// What the model reads: the reason, then each violation on its own line.
std::string ReasonText(const v1::CheckResponse& d) {
  std::string text = d.reason();
  for (const v1::Violation& v : d.violations()) {
    absl::StrAppend(&text, "\n- ", v.path().empty() ? "(arguments)" : v.path(), ": ", v.message());
  }
  return text;
}

// A JSON-RPC response whose result is an MCP tool error.
void AppendToolError(const pb::Value& id, absl::string_view text, const v1::CheckResponse* d,
                     std::string* out) {
  out->append("{\"jsonrpc\":\"2.0\",\"id\":");
  AppendJsonValue(id, out);
  out->append(",\"result\":{\"content\":[{\"type\":\"text\",\"text\":");
  AppendJsonString(text, out);
  out->append("}],\"isError\":true");
  if (d != nullptr) {
    out->append(",\"_meta\":{\"toolgate/decision\":");
    AppendDecisionMeta(*d, out);
    out->push_back('}');
  }
  out->append("}}");
}

// A JSON-RPC error response.
void AppendRpcError(const pb::Value& id, int code, absl::string_view message,
                    const v1::CheckResponse* d, std::string* out) {
  out->append("{\"jsonrpc\":\"2.0\",\"id\":");
  AppendJsonValue(id, out);
  absl::StrAppend(out, ",\"error\":{\"code\":", code, ",\"message\":");
  AppendJsonString(message, out);
  if (d != nullptr) {
    out->append(",\"data\":{\"toolgate/decision\":");
    AppendDecisionMeta(*d, out);
    out->push_back('}');
  }
  out->append("}}");
}

void Deny(int http_status, int rpc_code, absl::string_view rpc_message, std::string body,
          envoy::service::auth::v3::CheckResponse* out) {
  out->mutable_status()->set_code(rpc_code);
  out->mutable_status()->set_message(std::string(rpc_message));
  auto* denied = out->mutable_denied_response();
  denied->mutable_status()->set_code(static_cast<envoy::type::v3::StatusCode>(http_status));
  SetHeader(denied->mutable_headers(), "content-type", "application/json");
  denied->set_body(std::move(body));
}

// Reads one message of the body into `out` (and its tools/call into
// `request`'s calls).
bool ReadMessage(pb::Value& value, const v1::CheckRequest& common, const ExtAuthzOptions& options,
                 McpHttpRequest* request, McpHttpError* error) {
  if (value.kind_case() != pb::Value::kStructValue) {
    *error = Error(400, kJsonRpcInvalidRequest,
                   "body: a JSON-RPC message must be an object (or a batch: an array of them)");
    return false;
  }
  pb::Struct& m = *value.mutable_struct_value();
  McpMessage message;
  std::string what;
  if (!ReadId(m, &message.id, &what)) {
    *error = Error(400, kJsonRpcInvalidRequest, std::move(what));
    return false;
  }
  const bool has_id = m.fields().count("id") > 0;
  auto method = m.fields().find("method");
  if (method == m.fields().end()) {
    message.kind = McpMessage::Kind::kNoReply;  // A response (result or error) to the server.
    request->messages.push_back(std::move(message));
    return true;
  }
  if (method->second.kind_case() != pb::Value::kStringValue) {
    *error = Error(400, kJsonRpcInvalidRequest, "method: must be a string", message.id);
    return false;
  }
  message.method = method->second.string_value();
  if (message.method != "tools/call") {
    message.kind = has_id ? McpMessage::Kind::kOtherRequest : McpMessage::Kind::kNoReply;
    request->messages.push_back(std::move(message));
    return true;
  }
  // A tools/call is decided even without an id (a notification): nothing
  // reaches a tool unchecked.
  auto params = m.mutable_fields()->find("params");
  if (params == m.mutable_fields()->end() ||
      params->second.kind_case() != pb::Value::kStructValue) {
    *error = Error(400, kJsonRpcInvalidParams, "params: a tools/call needs an object", message.id);
    return false;
  }
  pb::Struct& p = *params->second.mutable_struct_value();
  auto name = p.fields().find("name");
  if (name == p.fields().end() || name->second.kind_case() != pb::Value::kStringValue ||
      name->second.string_value().empty()) {
    *error =
        Error(400, kJsonRpcInvalidParams, "params.name: must be a non-empty string", message.id);
    return false;
  }
  auto arguments = p.mutable_fields()->find("arguments");
  if (arguments != p.mutable_fields()->end() &&
      arguments->second.kind_case() != pb::Value::kStructValue) {
    *error = Error(400, kJsonRpcInvalidParams, "params.arguments: must be an object", message.id);
    return false;
  }
  if (common.grant().empty()) {
    *error =
        Error(400, kJsonRpcInvalidRequest,
              options.grant_from == ExtAuthzOptions::GrantFrom::kPrincipal
                  ? "grant: the downstream peer has no principal (attributes.source.principal; "
                    "--ext-authz-grant-from principal needs mTLS between the client and the proxy)"
                  : absl::StrCat("grant: missing (header ", options.grant_header, ")"),
              message.id);
    return false;
  }
  v1::CheckRequest& call = *request->calls.Add();
  call.CopyFrom(common);
  call.set_tool(name->second.string_value());
  // Moved, not copied: the parsed body is not needed after this.
  if (arguments != p.mutable_fields()->end()) {
    call.mutable_args()->Swap(arguments->second.mutable_struct_value());
  }
  call.set_request_id(IdText(message.id));
  message.kind = McpMessage::Kind::kToolCall;
  message.call = static_cast<int>(request->calls.size()) - 1;
  request->messages.push_back(std::move(message));
  return true;
}

}  // namespace

bool ReadMcpHttpRequest(const envoy::service::auth::v3::CheckRequest& request,
                        const ExtAuthzOptions& options, const ArgsLimits& limits,
                        McpHttpRequest* out, McpHttpError* error) {
  const AttributeContext& attributes = request.attributes();
  const AttributeContext::HttpRequest& http = attributes.request().http();

  // The parts every call shares.
  v1::CheckRequest common;
  if (options.grant_from == ExtAuthzOptions::GrantFrom::kPrincipal) {
    common.set_grant(attributes.source().principal());
  } else if (const std::string* grant = FindHeader(http, options.grant_header)) {
    common.set_grant(*grant);
  }
  if (auto it = attributes.context_extensions().find("server");
      it != attributes.context_extensions().end()) {
    common.set_server(it->second);
  } else if (const std::string* server = FindHeader(http, ServerHeader())) {
    common.set_server(*server);
  } else {
    common.set_server(http.host());
  }
  if (const std::string* session = FindHeader(http, SessionHeader())) {
    common.set_session(*session);
  }

  if (!absl::EqualsIgnoreCase(http.method(), "POST")) {
    // GET (the server's event stream), DELETE (end of session), ...: no
    // JSON-RPC body, no tool call.
    if (!options.other_methods_allowed) {
      out->refused_other = absl::StrCat("HTTP ", Clip(http.method(), 16));
      out->refused_other_id.set_null_value(pb::NULL_VALUE);
    }
    return true;
  }

  const absl::string_view body = !http.raw_body().empty() ? absl::string_view(http.raw_body())
                                                          : absl::string_view(http.body());
  if (const std::string* partial = FindHeader(http, PartialBodyHeader());
      partial != nullptr && absl::EqualsIgnoreCase(*partial, "true")) {
    *error = Error(413, kJsonRpcInvalidRequest,
                   absl::StrCat("request body truncated by the proxy (", body.size(),
                                " bytes sent; x-envoy-auth-partial-body): raise ext_authz "
                                "with_request_body.max_request_bytes to check this call"));
    return false;
  }
  int64_t declared = -1;
  if (const std::string* length = FindHeader(http, ContentLengthHeader())) {
    if (!absl::SimpleAtoi(*length, &declared)) declared = -1;
  }
  if (declared < 0 && http.size() > 0) declared = http.size();
  if (body.empty()) {
    *error = Error(400, kJsonRpcInvalidRequest,
                   declared > 0 ? "request body not sent to the check (configure ext_authz "
                                  "with_request_body): the call cannot be decided"
                                : "request body missing: a POST must carry a JSON-RPC message");
    return false;
  }
  if (declared > 0 && static_cast<uint64_t>(declared) > body.size()) {
    *error =
        Error(413, kJsonRpcInvalidRequest,
              absl::StrCat("request body truncated by the proxy (", body.size(), " of ", declared,
                           " bytes sent): raise ext_authz "
                           "with_request_body.max_request_bytes to check this call"));
    return false;
  }
  const size_t max_body = limits.max_bytes + kMcpEnvelopeBytes;
  if (body.size() > max_body) {
    *error = Error(
        413, kJsonRpcInvalidRequest,
        absl::StrCat("request body of ", body.size(), " bytes is over the limit of ", max_body,
                     " (--max-args-bytes plus ", kMcpEnvelopeBytes, " for the JSON-RPC envelope)"));
    return false;
  }
  const int max_depth = limits.max_depth + kMcpEnvelopeDepth;
  pb::Value* parsed = pb::Arena::CreateMessage<pb::Value>(out->arena);
  std::unique_ptr<pb::Value> owned(out->arena == nullptr ? parsed : nullptr);
  if (absl::Status s = ParseJsonValueInto(
          body, max_depth,
          absl::StrCat("--max-args-depth plus ", kMcpEnvelopeDepth, " for the JSON-RPC envelope"),
          parsed);
      !s.ok()) {
    *error = Error(400, kJsonRpcInvalidRequest, absl::StrCat("body: ", s.message()));
    return false;
  }
  if (parsed->kind_case() == pb::Value::kListValue) {
    auto& items = *parsed->mutable_list_value()->mutable_values();
    if (items.empty()) {
      *error = Error(400, kJsonRpcInvalidRequest, "body: an empty batch");
      return false;
    }
    if (static_cast<size_t>(items.size()) > kMaxMcpBatch) {
      *error = Error(400, kJsonRpcInvalidRequest,
                     absl::StrCat("body: a batch of ", items.size(),
                                  " messages is over the limit of ", kMaxMcpBatch));
      return false;
    }
    out->batch = true;
    for (pb::Value& item : items) {
      if (!ReadMessage(item, common, options, out, error)) return false;
    }
  } else if (!ReadMessage(*parsed, common, options, out, error)) {
    return false;
  }
  if (!options.other_methods_allowed) {
    for (const McpMessage& m : out->messages) {
      if (m.kind == McpMessage::Kind::kToolCall) continue;
      out->refused_other = m.method.empty() ? std::string("a JSON-RPC response") : Clip(m.method);
      out->refused_other_id = m.id;
      break;
    }
  }
  return true;
}

McpHttpError UndecidableCall(const McpHttpRequest& request, int call, std::string message) {
  pb::Value id;
  for (const McpMessage& m : request.messages) {
    if (m.call == call) id = m.id;
  }
  return Error(400, kJsonRpcInvalidParams, std::move(message), id);
}

void AnswerAllowed(const std::vector<const v1::CheckResponse*>& decisions,
                   envoy::service::auth::v3::CheckResponse* out) {
  out->mutable_status()->set_code(kRpcOk);
  auto* ok = out->mutable_ok_response();
  if (decisions.empty()) {
    // Nothing decided: no client may pass its own off as toolgate's.
    ok->add_headers_to_remove(std::string(kDecisionIdHeader));
    ok->add_headers_to_remove(std::string(kRevisionHeader));
    return;
  }
  std::vector<absl::string_view> ids, revisions;
  for (const v1::CheckResponse* d : decisions) {
    ids.push_back(d->decision_id());
    if (revisions.empty() || revisions.back() != d->policy_version()) {
      revisions.push_back(d->policy_version());
    }
  }
  SetHeader(ok->mutable_headers(), kDecisionIdHeader, absl::StrJoin(ids, ","));
  SetHeader(ok->mutable_headers(), kRevisionHeader, absl::StrJoin(revisions, ","));
}

void AnswerRefused(const McpHttpRequest& request, int refused, const v1::CheckResponse& decision,
                   const ExtAuthzOptions& options, envoy::service::auth::v3::CheckResponse* out) {
  const bool as_http = options.deny_as == ExtAuthzOptions::DenyAs::kHttp;
  const bool limited = decision.decision() == v1::DECISION_RATE_LIMITED;
  const std::string reason = ReasonText(decision);
  std::string body;
  if (request.batch) body.push_back('[');
  std::string refused_tool;
  for (const McpMessage& m : request.messages) {
    if (m.call == refused) refused_tool = request.calls[refused].tool();
  }
  const std::string not_sent =
      absl::StrCat("not sent: the tool call \"", refused_tool, "\" in the same batch was refused (",
                   decision.reason(), ")");
  bool first = true;
  for (const McpMessage& m : request.messages) {
    // Answers go to requests (a tools/call without an id is refused as the
    // whole request is, but has nothing to answer to in a batch).
    const bool answered = m.kind == McpMessage::Kind::kOtherRequest ||
                          (m.kind == McpMessage::Kind::kToolCall &&
                           (m.id.kind_case() != pb::Value::kNullValue || !request.batch));
    if (!answered) continue;
    if (!first) body.push_back(',');
    first = false;
    if (m.kind == McpMessage::Kind::kToolCall && m.call == refused) {
      if (as_http) {
        AppendRpcError(m.id, kJsonRpcRefused, reason, &decision, &body);
      } else {
        AppendToolError(m.id, reason, &decision, &body);
      }
    } else if (m.kind == McpMessage::Kind::kToolCall && !as_http) {
      AppendToolError(m.id, not_sent, nullptr, &body);
    } else {
      AppendRpcError(m.id, kJsonRpcRefused, not_sent, nullptr, &body);
    }
    if (!request.batch) break;
  }
  if (request.batch) body.push_back(']');
  const int http_status = !as_http ? 200 : limited ? 429 : 403;
  Deny(http_status, limited ? kRpcResourceExhausted : kRpcPermissionDenied, decision.reason(),
       std::move(body), out);
  if (limited) {
    const auto& r = decision.retry_after();
    int64_t seconds = r.seconds() + (r.nanos() > 0 ? 1 : 0);
    if (seconds < 1) seconds = 1;
    SetHeader(out->mutable_denied_response()->mutable_headers(), "retry-after",
              absl::StrCat(seconds));
  }
}

void AnswerOtherRefused(const McpHttpRequest& request,
                        envoy::service::auth::v3::CheckResponse* out) {
  const std::string message =
      absl::StrCat("\"", request.refused_other,
                   "\" is not allowed through this proxy: only tools/call is "
                   "(--ext-authz-other-methods deny)");
  std::string body;
  pb::Value id = request.refused_other_id;
  if (id.kind_case() == pb::Value::KIND_NOT_SET) id.set_null_value(pb::NULL_VALUE);
  AppendRpcError(id, kJsonRpcRefused, message, nullptr, &body);
  Deny(403, kRpcPermissionDenied, message, std::move(body), out);
}

void AnswerUndecidable(const McpHttpError& error, envoy::service::auth::v3::CheckResponse* out) {
  std::string body;
  pb::Value id = error.id;
  if (id.kind_case() == pb::Value::KIND_NOT_SET) id.set_null_value(pb::NULL_VALUE);
  AppendRpcError(id, error.jsonrpc_code, error.message, nullptr, &body);
  Deny(error.http_status, error.http_status >= 500 ? kRpcUnavailable : kRpcInvalidArgument,
       error.message, std::move(body), out);
}

}  // namespace toolgate
