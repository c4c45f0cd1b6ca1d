// Envoy's external authorization (ext_authz v3) for MCP's Streamable HTTP
// traffic, as pure functions: what an HTTP request Envoy describes asks
// toolgate to decide (ReadMcpHttpRequest), and how toolgate's decisions go
// back to Envoy (AnswerAllowed, AnswerRefused, AnswerUndecidable). The
// service (ext_authz.h) decides in between.
//
// The request body is MCP JSON-RPC: one message, or a batch (an array).
// Every `tools/call` in it is one toolgate.v1 CheckRequest: tool =
// params.name, args = params.arguments, request_id = the JSON-RPC id; grant
// from a header (or the downstream peer's principal), server from the
// route's context_extensions["server"], the x-toolgate-server header, or
// :authority; session from mcp-session-id. Other messages (initialize,
// tools/list, notifications, responses) are let through or refused as a
// whole by ExtAuthzOptions::other_methods_allowed.
#ifndef TOOLGATE_SERVER_SERVICE_EXT_AUTHZ_MAPPING_H_
#define TOOLGATE_SERVER_SERVICE_EXT_AUTHZ_MAPPING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "envoy/service/auth/v3/external_auth.pb.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/struct.pb.h"
#include "server/engine/args_limits.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {

struct ExtAuthzOptions {
  // The request header that carries the grant (lower case, as Envoy sends
  // header names).
  std::string grant_header = "x-toolgate-grant";
  // Where the grant comes from: the header above, or the downstream peer's
  // certificate identity as Envoy reports it (attributes.source.principal).
  enum class GrantFrom { kHeader, kPrincipal };
  GrantFrom grant_from = GrantFrom::kHeader;
  // Messages other than tools/call (and requests without a JSON-RPC body:
  // GET, DELETE): let through, or refused.
  bool other_methods_allowed = true;
  // How a refusal reaches the client: as a JSON-RPC tool error (HTTP 200,
  // result.isError), which MCP clients show to the model without breaking
  // the session, or as HTTP 403 / 429 with a JSON-RPC error object.
  enum class DenyAs { kToolError, kHttp };
  DenyAs deny_as = DenyAs::kToolError;
};

// Bounds on what a request may hold, besides ArgsLimits (which every call's
// CheckRequest is validated against, as from any client).
// The body: at most --max-args-bytes plus this much for the JSON-RPC envelope
// (jsonrpc, id, method, params.name, ...).
inline constexpr size_t kMcpEnvelopeBytes = 16 * 1024;
// JSON nesting above the arguments: batch array, message, params.
inline constexpr int kMcpEnvelopeDepth = 3;
// Messages in a batch (each tools/call in it is a decision).
inline constexpr size_t kMaxMcpBatch = 32;
// A numeric JSON-RPC id: an integer of at most this magnitude (2^53, exact
// as a double), so that it is echoed back exactly.
inline constexpr double kMaxMcpNumericId = 9007199254740992.0;

// JSON-RPC error codes used in answers.
inline constexpr int kJsonRpcInvalidRequest = -32600;
inline constexpr int kJsonRpcInvalidParams = -32602;
inline constexpr int kJsonRpcInternalError = -32603;
// A refusal by policy (--ext-authz-deny-as http, or a message other than
// tools/call with --ext-authz-other-methods deny).
inline constexpr int kJsonRpcRefused = -32001;

// One message of the body.
struct McpMessage {
  enum class Kind {
    kToolCall,      // tools/call: decided.
    kOtherRequest,  // Another method with an id: answered by the MCP server.
    kNoReply,       // A notification, or a response to the server: no answer.
  };
  Kind kind = Kind::kNoReply;
  std::string method;          // Empty for a response.
  google::protobuf::Value id;  // As sent (string or integer); null when none.
  int call = -1;               // kToolCall: its index in McpHttpRequest::calls.
};

// What a request asks for.
struct McpHttpRequest {
  // The calls (and the parsed body) live on `arena` (null: the heap).
  explicit McpHttpRequest(google::protobuf::Arena* arena = nullptr) : arena(arena), calls(arena) {}

  google::protobuf::Arena* arena;
  bool batch = false;
  std::vector<McpMessage> messages;  // Empty: no JSON-RPC body (GET, DELETE).
  google::protobuf::RepeatedPtrField<v1::CheckRequest> calls;  // One per tools/call, in order.
  // Set when other methods are refused and the request holds one: what was
  // refused ("initialize", "a response", "HTTP GET"), and the id to answer.
  std::string refused_other;
  google::protobuf::Value refused_other_id;
};

// A request that cannot be decided: the HTTP status, the JSON-RPC error and
// the id to answer with.
struct McpHttpError {
  int http_status = 400;
  int jsonrpc_code = kJsonRpcInvalidRequest;
  std::string message;
  google::protobuf::Value id;  // Null when unknown.
};

// Reads the request. Every call's CheckRequest has tool, args, grant,
// server, session and request_id set, but is not validated yet (the caller
// runs Decider::Prepare, and maps its INVALID_ARGUMENT with
// UndecidableCall). Returns false with `error` set when the request cannot
// be decided:
//   - a POST without a body (Envoy not sending it: with_request_body), or
//     with a truncated one (x-envoy-auth-partial-body: true, or shorter than
//     its content-length: over Envoy's max_request_bytes): 400 / 413;
//   - a body over `limits.max_bytes` + kMcpEnvelopeBytes: 413;
//   - a body that is not JSON, nested deeper than limits.max_depth +
//     kMcpEnvelopeDepth, not an object or a non-empty array of at most
//     kMaxMcpBatch objects, with a method that is not a string or an id that
//     is neither a string, an integer (|id| <= 2^53) nor null: 400 -32600;
//   - a tools/call whose params is not an object, params.name not a
//     non-empty string, or params.arguments neither an object nor absent:
//     400 -32602;
//   - a tools/call without a grant (no header, or no principal with
//     GrantFrom::kPrincipal): 400 -32600.
bool ReadMcpHttpRequest(const envoy::service::auth::v3::CheckRequest& request,
                        const ExtAuthzOptions& options, const ArgsLimits& limits,
                        McpHttpRequest* out, McpHttpError* error);

// The error for call `call` whose CheckRequest Decider::Prepare refused
// with `message` (INVALID_ARGUMENT): 400 -32602.
McpHttpError UndecidableCall(const McpHttpRequest& request, int call, std::string message);

// Every tools/call allowed (`decisions[i]` for calls[i]; none when the
// request held no tools/call): OK, with x-toolgate-decision-id and
// x-toolgate-revision set on the request upstream (comma-separated for a
// batch), replacing any the client sent; without decisions, both removed.
void AnswerAllowed(const std::vector<const v1::CheckResponse*>& decisions,
                   envoy::service::auth::v3::CheckResponse* out);

// Call `refused` was not allowed (`decision`: DENY, RATE_LIMITED or
// REQUIRE_APPROVAL); calls after it were not decided. The answer, by
// options.deny_as:
//   - tool error: HTTP 200, content-type application/json, the JSON-RPC
//     response {"jsonrpc":"2.0","id":<id>,"result":{"content":[{"type":
//     "text","text":<reason, and the violations>}],"isError":true,"_meta":
//     {"toolgate/decision":{decision,rule,decision_id,revision,violations,
//     retry_after_ms (rate limited),approval_id (when one)}}}};
//   - http: 403 (429 when rate limited) with {"jsonrpc":"2.0","id":<id>,
//     "error":{"code":-32001,"message":<reason>,"data":{"toolgate/decision":
//     {...}}}}.
// RATE_LIMITED sets retry-after (whole seconds, rounded up). In a batch,
// the answer is an array with an answer for every message that expects
// one: the refused call as above, every other tools/call a tool error (or
// error) saying it was not sent because of the refused one, and every other
// request a JSON-RPC error saying the same.
void AnswerRefused(const McpHttpRequest& request, int refused, const v1::CheckResponse& decision,
                   const ExtAuthzOptions& options, envoy::service::auth::v3::CheckResponse* out);

// A message other than tools/call, refused (--ext-authz-other-methods
// deny): 403 with a JSON-RPC error -32001 naming the method.
void AnswerOtherRefused(const McpHttpRequest& request,
                        envoy::service::auth::v3::CheckResponse* out);

// A request that cannot be decided: `error.http_status` with a JSON-RPC
// error object; nothing was consumed.
void AnswerUndecidable(const McpHttpError& error, envoy::service::auth::v3::CheckResponse* out);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_EXT_AUTHZ_MAPPING_H_
