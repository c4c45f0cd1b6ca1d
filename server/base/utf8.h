// UTF-8 checks shared by request validation, policy loading and glob
// matching. "Valid" is well-formed UTF-8 as RFC 3629 defines it: no overlong
// forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
#ifndef TOOLGATE_SERVER_BASE_UTF8_H_
#define TOOLGATE_SERVER_BASE_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace toolgate {

// The most --max-name-bytes may be set to. A policy names no tool, server,
// grant or class longer than this (it could never match).
inline constexpr size_t kMaxNameBytesCeiling = 1024;

// The length (1-4) of the valid UTF-8 sequence starting at s[i], or 0 when
// s[i] does not start one. Requires i < s.size().
size_t Utf8SequenceLength(absl::string_view s, size_t i);

// The length of the character starting at s[i] as globs count characters:
// a valid sequence is one character, any other byte is one character on its
// own. Requires i < s.size(); always at least 1.
inline size_t Utf8CharLength(absl::string_view s, size_t i) {
  if (static_cast<unsigned char>(s[i]) < 0x80) return 1;
  const size_t n = Utf8SequenceLength(s, i);
  return n == 0 ? 1 : n;
}

// The first problem in a text, if any.
struct Utf8Problem {
  enum Kind { kNone, kInvalid, kControl };
  Kind kind = kNone;
  size_t offset = 0;        // Byte offset of the problem.
  uint32_t code_point = 0;  // The control character, when kControl.
  bool ok() const { return kind == kNone; }
};

// Finds the first byte that is not part of valid UTF-8 and, when
// `forbid_control`, the first control character (C0 U+0000..U+001F, DEL
// U+007F, C1 U+0080..U+009F), whichever comes first.
Utf8Problem FindUtf8Problem(absl::string_view s, bool forbid_control);

// "not valid UTF-8 at byte 7" or "control character U+000A at byte 4"
// (bytes counted from 0). Empty when `p` is ok.
std::string DescribeUtf8Problem(const Utf8Problem& p);

// `s` with control characters and bytes that are not valid UTF-8 escaped
// (C-style: \n, \t, \x1b, ...; backslashes and double quotes too), so that a
// value written into a log line cannot start a line of its own or pass for
// another field. Valid non-ASCII characters are kept as they are.
std::string EscapeForLog(absl::string_view s);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_UTF8_H_
