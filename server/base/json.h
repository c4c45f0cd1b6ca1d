// Writing JSON (RFC 8259): strings, numbers, and google.protobuf.Value /
// Struct trees, compactly and deterministically (object keys sorted by their
// bytes, no spaces). The same input always gives the same bytes, so the text
// can be hashed (the decision log's args_sha256) or compared.
//
// JSON is written here directly: protobuf's JSON printer (through a type
// resolver) costs tens of microseconds a value, which would make e.g. the
// decision log's writer thread, not its destination, the log's limit.
#ifndef TOOLGATE_SERVER_BASE_JSON_H_
#define TOOLGATE_SERVER_BASE_JSON_H_

#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace toolgate {

// Appends `s` as a JSON string: `"` and `\` escaped; \n, \r and \t as such
// and every other control character (U+0000..U+001F) as \u00XX. Well-formed
// UTF-8 is copied; every byte that does not start a well-formed sequence
// (stray continuation bytes, truncated sequences, overlong forms, surrogates,
// code points past U+10FFFF) becomes U+FFFD, so the result is always valid
// JSON and valid UTF-8.
void AppendJsonString(absl::string_view s, std::string* out);

// A number as text: finite numbers in their shortest exact form (integers
// below 2^53 without a fraction or exponent: "42", "-3"; others with the
// fewest of 15 or 17 significant digits that read back to the same double:
// "0.1", "1e+300"); non-finite ones as "NaN", "Infinity", "-Infinity". For
// messages; AppendJsonNumber is the JSON form.
std::string FormatNumber(double v);

// Appends a number as JSON: FormatNumber for finite numbers; JSON has no
// non-finite numbers, so those are written as the strings "NaN",
// "Infinity" and "-Infinity".
void AppendJsonNumber(double v, std::string* out);

// Appends a value as JSON. A Value with no kind set is null. Recursion is
// as deep as the value is nested: callers bound the nesting of what they
// write (call arguments by --max-args-depth, schema values by the schema
// depth limit).
void AppendJsonValue(const google::protobuf::Value& v, std::string* out);
void AppendJsonStruct(const google::protobuf::Struct& s, std::string* out);

// The canonical JSON of a value or an object: AppendJsonValue /
// AppendJsonStruct into a new string.
std::string ToJson(const google::protobuf::Value& v);
std::string CanonicalJson(const google::protobuf::Struct& s);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_JSON_H_
