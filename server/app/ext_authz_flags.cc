#include "server/app/ext_authz_flags.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace toolgate {
namespace {

// An HTTP field name (RFC 9110 token) of at most 128 bytes.
bool IsHeaderName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

absl::Status BadChoice(const std::string& flag, const std::string& value,
                       const std::string& choices) {
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", flag, ": must be ", choices, ", got \"", value, "\""));
}

}  // namespace

void AddExtAuthzFlags(FlagSet* flags, ExtAuthzFlags* values) {
  flags->Bool("ext-authz", &values->enabled,
              "Serve Envoy's external authorization (envoy.service.auth.v3.Authorization/Check) "
              "on --listen, for MCP traffic through Envoy; --no-ext-authz turns it off.");
  flags->String("ext-authz-grant-header", &values->grant_header,
                "ext_authz: the request header that carries the grant (case-insensitive).");
  flags->String("ext-authz-grant-from", &values->grant_from,
                "ext_authz: where the grant comes from: header (--ext-authz-grant-header) or "
                "principal (the downstream client's certificate identity Envoy reports, "
                "attributes.source.principal).");
  flags->String("ext-authz-other-methods", &values->other_methods,
                "ext_authz: MCP messages other than tools/call (initialize, tools/list, "
                "notifications, responses; and GET, DELETE): allow or deny.");
  flags->String("ext-authz-deny-as", &values->deny_as,
                "ext_authz: how a refused tool call reaches the client: tool_error (HTTP 200, a "
                "JSON-RPC result with isError, shown to the model) or http (403, or 429 when "
                "rate limited, with a JSON-RPC error).");
}

absl::Status ApplyExtAuthzFlags(const ExtAuthzFlags& values, ServerConfig* config) {
  config->ext_authz = values.enabled;
  ExtAuthzOptions& o = config->ext_authz_options;
  if (!IsHeaderName(values.grant_header)) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --ext-authz-grant-header: not an HTTP header name (letters, digits "
                     "and !#$%&'*+-.^_`|~, at most 128): \"",
                     values.grant_header, "\""));
  }
  // Envoy sends header names in lower case.
  o.grant_header = absl::AsciiStrToLower(values.grant_header);
  if (values.grant_from == "header") {
    o.grant_from = ExtAuthzOptions::GrantFrom::kHeader;
  } else if (values.grant_from == "principal") {
    o.grant_from = ExtAuthzOptions::GrantFrom::kPrincipal;
  } else {
    return BadChoice("ext-authz-grant-from", values.grant_from, "header or principal");
  }
  if (values.other_methods == "allow" || values.other_methods == "deny") {
    o.other_methods_allowed = values.other_methods == "allow";
  } else {
    return BadChoice("ext-authz-other-methods", values.other_methods, "allow or deny");
  }
  if (values.deny_as == "tool_error") {
    o.deny_as = ExtAuthzOptions::DenyAs::kToolError;
  } else if (values.deny_as == "http") {
    o.deny_as = ExtAuthzOptions::DenyAs::kHttp;
  } else {
    return BadChoice("ext-authz-deny-as", values.deny_as, "tool_error or http");
  }
  return absl::OkStatus();
}

}  // namespace toolgate
