#include "server/engine/counter_key.h"

#include "absl/strings/str_cat.h"

namespace toolgate {

std::string CounterKey(const LimitSpec& spec, absl::string_view grant, absl::string_view session) {
  // Counter names never contain '|', so the first '|' ends the name; the
  // grant's length makes (grant, session) pairs unambiguous.
  switch (spec.scope) {
    case Scope::kGlobal:
      return absl::StrCat(spec.counter, "|*");
    case Scope::kGrant:
      return absl::StrCat(spec.counter, "|g|", grant);
    case Scope::kSession:
      return absl::StrCat(spec.counter, "|s|", grant.size(), ":", grant, "|", session);
  }
  return spec.counter;
}

}  // namespace toolgate
