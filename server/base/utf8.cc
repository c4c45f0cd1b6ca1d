#include "server/base/utf8.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace toolgate {

size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  const size_t left = s.size() - i;
  const auto cont = [&](size_t k) { return (byte(i + k) & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) return left >= 2 && cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (left < 3 || !cont(1) || !cont(2)) return 0;
    const unsigned char b1 = byte(i + 1);
    if (b0 == 0xE0 && b1 < 0xA0) return 0;  // Overlong.
    if (b0 == 0xED && b1 > 0x9F) return 0;  // Surrogate.
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (left < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    const unsigned char b1 = byte(i + 1);
    if (b0 == 0xF0 && b1 < 0x90) return 0;  // Overlong.
    if (b0 == 0xF4 && b1 > 0x8F) return 0;  // Above U+10FFFF.
    return 4;
  }
  return 0;  // A continuation byte, C0, C1 or F5..FF.
}

Utf8Problem FindUtf8Problem(absl::string_view s, bool forbid_control) {
  Utf8Problem p;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (forbid_control && (b < 0x20 || b == 0x7F)) {
        p.kind = Utf8Problem::kControl;
        p.offset = i;
        p.code_point = b;
        return p;
      }
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      p.kind = Utf8Problem::kInvalid;
      p.offset = i;
      return p;
    }
    // C1 controls are U+0080..U+009F: C2 80..C2 9F.
    if (forbid_control && b == 0xC2 && static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      p.kind = Utf8Problem::kControl;
      p.offset = i;
      p.code_point = static_cast<unsigned char>(s[i + 1]);
      return p;
    }
    i += n;
  }
  return p;
}

std::string DescribeUtf8Problem(const Utf8Problem& p) {
  switch (p.kind) {
    case Utf8Problem::kNone:
      return "";
    case Utf8Problem::kInvalid:
      return absl::StrCat("not valid UTF-8 at byte ", p.offset);
    case Utf8Problem::kControl:
      return absl::StrFormat("control character U+%04X at byte %d", p.code_point, p.offset);
  }
  return "";
}

std::string EscapeForLog(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b >= 0x20 && b < 0x7F) {
      if (b == '\\' || b == '"') out += '\\';
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    switch (b) {
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      default:
        break;
    }
    const size_t n = b < 0x80 ? 0 : Utf8SequenceLength(s, i);
    const bool c1 = n == 2 && b == 0xC2 && static_cast<unsigned char>(s[i + 1]) <= 0x9F;
    if (n == 0 || c1) {
      // A control byte or one that is not UTF-8; a C1 control as its two bytes.
      const size_t len = c1 ? 2 : 1;
      for (size_t k = 0; k < len; ++k) {
        absl::StrAppend(&out, "\\x",
                        absl::Hex(static_cast<unsigned char>(s[i + k]), absl::kZeroPad2));
      }
      i += len;
      continue;
    }
    out.append(s.data() + i, n);
    i += n;
  }
  return out;
}

}  // namespace toolgate
