// Message digests in lower-case hex (OpenSSL's implementations).
#ifndef TOOLGATE_SERVER_BASE_DIGEST_H_
#define TOOLGATE_SERVER_BASE_DIGEST_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace toolgate {

// SHA-256 of `data`: 64 hex digits.
std::string Sha256Hex(absl::string_view data);

// SHA-256 of the concatenation of `parts` (without copying them together).
std::string Sha256Hex(absl::Span<const absl::string_view> parts);

// HMAC-SHA256 of `data` keyed with `key` (RFC 2104): 64 hex digits.
std::string HmacSha256Hex(absl::string_view key, absl::string_view data);

// SHA-1 of `data`: 40 hex digits (what Redis names scripts by; not for
// anything that needs collision resistance).
std::string Sha1Hex(absl::string_view data);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_DIGEST_H_
