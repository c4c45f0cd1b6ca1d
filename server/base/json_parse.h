// Reading JSON (RFC 8259) into a google.protobuf.Struct, for call arguments
// sent as text (CheckRequest.args_json), with the same bounds as arguments
// sent as a Struct, and for JSON-RPC bodies (ext_authz). Strict: no
// trailing commas, no comments, no NaN or Infinity, no duplicate keys, strings valid UTF-8
// (escapes included: a lone surrogate is an error), numbers finite as a
// double. Iterative (an explicit stack): no recursion, whatever the input.
#ifndef TOOLGATE_SERVER_BASE_JSON_PARSE_H_
#define TOOLGATE_SERVER_BASE_JSON_PARSE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace toolgate {

// The object `text` holds. INVALID_ARGUMENT "invalid JSON at byte N: what"
// (bytes counted from 0) when it is not one JSON object, or when objects
// and arrays nest deeper than `max_depth` (the top object is depth 1).
absl::StatusOr<google::protobuf::Struct> ParseJsonObject(absl::string_view text, int max_depth);

// Any one JSON value (an object, an array, a string, ...), by the same
// rules; e.g. a JSON-RPC message or batch. The depth error names the limit
// as `depth_limit_name` ("nested deeper than 67 (<name>)").
absl::StatusOr<google::protobuf::Value> ParseJsonValue(absl::string_view text, int max_depth,
                                                       absl::string_view depth_limit_name);
// The same, into `out` (which should be empty): e.g. a Value on an arena,
// whose whole tree then lives there. On error `out` holds part of the text.
absl::Status ParseJsonValueInto(absl::string_view text, int max_depth,
                                absl::string_view depth_limit_name, google::protobuf::Value* out);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_JSON_PARSE_H_
