// toolgated's flags for Envoy's external authorization (--no-ext-authz,
// --ext-authz-*), apart from main.cc: registered on the FlagSet, then
// checked and applied to the ServerConfig once parsed.
#ifndef TOOLGATE_SERVER_APP_EXT_AUTHZ_FLAGS_H_
#define TOOLGATE_SERVER_APP_EXT_AUTHZ_FLAGS_H_

#include <string>

#include "absl/status/status.h"
#include "server/app/server.h"
#include "server/base/flags.h"

namespace toolgate {

struct ExtAuthzFlags {
  bool enabled = true;
  std::string grant_header = "x-toolgate-grant";
  std::string grant_from = "header";
  std::string other_methods = "allow";
  std::string deny_as = "tool_error";
};

void AddExtAuthzFlags(FlagSet* flags, ExtAuthzFlags* values);

// INVALID_ARGUMENT naming the flag and what it accepts when a value is
// not one of its choices, or the grant header is not a header name.
absl::Status ApplyExtAuthzFlags(const ExtAuthzFlags& values, ServerConfig* config);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APP_EXT_AUTHZ_FLAGS_H_
