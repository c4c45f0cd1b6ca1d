#include "server/base/glob.h"

#include <cstring>

#include "absl/strings/string_view.h"
#include "server/base/utf8.h"

namespace toolgate {

bool IsGlob(absl::string_view name) { return name.find_first_of("*?") != absl::string_view::npos; }

bool GlobMatch(absl::string_view pattern, absl::string_view text) {
  // Classic greedy matcher with a single backtrack point at the last `*`,
  // stepping over characters (UTF-8 sequences, or single stray bytes)
  // instead of bytes. An ASCII byte is always a whole character, so ASCII
  // compares byte to byte.
  size_t p = 0, t = 0;
  size_t star = absl::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      const unsigned char pc = static_cast<unsigned char>(pattern[p]);
      if (pc == '*') {
        star = p++;
        star_t = t;
        continue;
      }
      if (pc == '?') {
        ++p;
        t += Utf8CharLength(text, t);
        continue;
      }
      if (pc < 0x80) {
        if (static_cast<unsigned char>(text[t]) == pc) {
          ++p;
          ++t;
          continue;
        }
      } else {
        const size_t pn = Utf8CharLength(pattern, p);
        if (pn == Utf8CharLength(text, t) &&
            std::memcmp(pattern.data() + p, text.data() + t, pn) == 0) {
          p += pn;
          t += pn;
          continue;
        }
      }
    }
    if (star == absl::string_view::npos) return false;
    p = star + 1;
    star_t += Utf8CharLength(text, star_t);
    t = star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace toolgate
