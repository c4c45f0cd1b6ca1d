// Tool-name globs over Unicode code points: `*` matches any run of characters
// (including none), `?` exactly one character; every other character matches
// itself. Text and pattern are read as UTF-8; a byte that is not part of a
// valid UTF-8 sequence counts as one character on its own.
#ifndef TOOLGATE_SERVER_BASE_GLOB_H_
#define TOOLGATE_SERVER_BASE_GLOB_H_

#include "absl/strings/string_view.h"

namespace toolgate {

// True when `name` contains a wildcard and so is a glob, not an exact name.
bool IsGlob(absl::string_view name);

// Matches `text` against `pattern` in O(|pattern| * |text|) worst case, with
// no recursion and no allocation.
bool GlobMatch(absl::string_view pattern, absl::string_view text);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_GLOB_H_
