#include "server/base/glob.h"

#include "absl/strings/string_view.h"

namespace toolgate {

bool IsGlob(absl::string_view name) { return name.find_first_of("*?") != absl::string_view::npos; }

bool GlobMatch(absl::string_view pattern, absl::string_view text) {
  // Classic greedy matcher with a single backtrack point at the last `*`.
  size_t p = 0, t = 0;
  size_t star = absl::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (star != absl::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace toolgate
