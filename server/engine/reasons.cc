#include "server/engine/reasons.h"

#include "absl/strings/str_cat.h"

namespace toolgate {

std::string DefaultReason(const Resolution& r, absl::string_view tool) {
  switch (r.action) {
    case Action::kDeny:
      return r.is_default
                 ? absl::StrCat("tool \"", tool, "\" is not allowed by the policy")
                 : absl::StrCat("tool \"", tool, "\" is denied by policy entry ", r.rule_id);
    case Action::kRequireApproval:
      return r.is_default ? absl::StrCat("tool \"", tool,
                                         "\" is not listed in the policy and needs approval")
                          : absl::StrCat("tool \"", tool, "\" needs approval (policy entry ",
                                         r.rule_id, ")");
    case Action::kAllow:
      return "";
  }
  return "";
}

}  // namespace toolgate
