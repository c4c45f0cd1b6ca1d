// Unguessable identifiers: a prefix and 128 random bits as 32 lower-case hex
// digits ("apr_3f9c...", "rsv_..."). Whoever holds one may act on what it
// names (an approval, a reservation), so it comes from the operating
// system's generator, never from a counter or the clock.
#ifndef TOOLGATE_SERVER_BASE_RANDOM_ID_H_
#define TOOLGATE_SERVER_BASE_RANDOM_ID_H_

#include <string>

#include "absl/strings/string_view.h"

namespace toolgate {

// `prefix` followed by 32 random hex digits.
std::string NewRandomId(absl::string_view prefix);

// True when `id` is `prefix` followed by exactly 32 lower-case hex digits.
bool IsRandomId(absl::string_view prefix, absl::string_view id);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_RANDOM_ID_H_
