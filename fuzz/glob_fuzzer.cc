// GlobMatch against a reference matcher written to be obviously right.
//
// The input's first byte is a separator; the pattern runs up to its next
// occurrence and the text is the rest (no second occurrence: the text is
// empty). A seed file "\ndelete_?\ndelete_\xc3\xa9" is pattern "delete_?" and
// text "delete_é".
//
// Semantics (server/base/glob.h): pattern and text are read as UTF-8; a byte
// that is not part of a well-formed UTF-8 sequence (Unicode Table 3-7: no
// overlong forms, no surrogates, nothing above U+10FFFF) is one character on
// its own. `*` matches any run of characters, including none; `?` exactly one
// character; every other character matches itself. The fuzzer stops at the
// first input on which GlobMatch and the reference disagree, or on which
// IsGlob disagrees with the pattern having a wildcard.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/base/glob.h"

namespace {

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when none
// starts there (Unicode Table 3-7).
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto in = [&](size_t k, unsigned lo, unsigned hi) {
    return k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  const unsigned b = byte(i);
  if (b <= 0x7F) return 1;
  if (b >= 0xC2 && b <= 0xDF) return in(i + 1, 0x80, 0xBF) ? 2 : 0;
  if (b == 0xE0) return in(i + 1, 0xA0, 0xBF) && in(i + 2, 0x80, 0xBF) ? 3 : 0;
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
    return in(i + 1, 0x80, 0xBF) && in(i + 2, 0x80, 0xBF) ? 3 : 0;
  }
  if (b == 0xED) return in(i + 1, 0x80, 0x9F) && in(i + 2, 0x80, 0xBF) ? 3 : 0;
  if (b == 0xF0) {
    return in(i + 1, 0x90, 0xBF) && in(i + 2, 0x80, 0xBF) && in(i + 3, 0x80, 0xBF) ? 4 : 0;
  }
  if (b >= 0xF1 && b <= 0xF3) {
    return in(i + 1, 0x80, 0xBF) && in(i + 2, 0x80, 0xBF) && in(i + 3, 0x80, 0xBF) ? 4 : 0;
  }
  if (b == 0xF4) {
    return in(i + 1, 0x80, 0x8F) && in(i + 2, 0x80, 0xBF) && in(i + 3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

// The characters of `s`: each a well-formed sequence's bytes, or one byte.
std::vector<std::string> Characters(absl::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) n = 1;
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// match[i][j]: the first i pattern characters match the first j text
// characters.
bool ReferenceMatch(absl::string_view pattern, absl::string_view text) {
  const std::vector<std::string> p = Characters(pattern);
  const std::vector<std::string> t = Characters(text);
  std::vector<std::vector<bool>> match(p.size() + 1, std::vector<bool>(t.size() + 1, false));
  match[0][0] = true;
  for (size_t i = 1; i <= p.size(); ++i) {
    for (size_t j = 0; j <= t.size(); ++j) {
      if (p[i - 1] == "*") {
        // None of the text (match[i-1][j]) or one more character.
        match[i][j] = match[i - 1][j] || (j > 0 && match[i][j - 1]);
      } else if (j > 0 && (p[i - 1] == "?" || p[i - 1] == t[j - 1])) {
        match[i][j] = match[i - 1][j - 1];
      }
    }
  }
  return match[p.size()][t.size()];
}

std::string Escaped(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The reference is quadratic; tool names are short.
  if (size == 0 || size > 4096) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t sep = input.find(static_cast<char>(data[0]));
  const absl::string_view pattern = input.substr(0, sep);
  const absl::string_view text =
      sep == absl::string_view::npos ? absl::string_view() : input.substr(sep + 1);

  const bool expected = ReferenceMatch(pattern, text);
  if (toolgate::GlobMatch(pattern, text) != expected) {
    fprintf(stderr, "GlobMatch(\"%s\", \"%s\") is %s, expected %s\n", Escaped(pattern).c_str(),
            Escaped(text).c_str(), expected ? "false" : "true", expected ? "true" : "false");
    __builtin_trap();
  }
  const bool has_wildcard = pattern.find_first_of("*?") != absl::string_view::npos;
  if (toolgate::IsGlob(pattern) != has_wildcard) __builtin_trap();
  // A pattern without wildcards matches exactly itself.
  if (!has_wildcard && !toolgate::GlobMatch(pattern, pattern)) __builtin_trap();
  return 0;
}
