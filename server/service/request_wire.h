// A pass over a serialized CheckRequest, before protobuf parses it: every
// string protobuf would verify as UTF-8 (the request's names, and the keys
// and string values of its args Struct) is checked here first, so that a
// request carrying invalid UTF-8 gets an INVALID_ARGUMENT naming the field
// (and protobuf, which would fail the parse with a generic message and log an
// error line per request, never sees it).
#ifndef TOOLGATE_SERVER_SERVICE_REQUEST_WIRE_H_
#define TOOLGATE_SERVER_SERVICE_REQUEST_WIRE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace toolgate {

// INVALID_ARGUMENT naming the first string field that is not valid UTF-8
// ("tool: not valid UTF-8 at byte 7", "args.a.b[2]: string value not valid
// UTF-8 at byte 0", "args.a: key not valid UTF-8 at byte 3"). OK otherwise,
// and also when `wire` is malformed or nested more than `max_nesting`
// messages deep: the scan stops there and the parse reports it. Iterates
// over fields and recurses once per nested message (at most `max_nesting`
// deep); no allocation unless it reports a problem.
absl::Status CheckRequestWireUtf8(absl::string_view wire, int max_nesting);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_REQUEST_WIRE_H_
