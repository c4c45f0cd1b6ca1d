#include "server/approvals/approval_store.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "server/base/random_id.h"
#include "server/base/utf8.h"

namespace toolgate {
namespace {

// The enum value names without `prefix`, in lower case.
template <typename Enum, typename NameFn>
std::vector<std::string> LowerNames(int max, NameFn name, absl::string_view prefix) {
  std::vector<std::string> out;
  for (int v = 0; v <= max; ++v) {
    std::string n(name(static_cast<Enum>(v)));
    absl::string_view s = n;
    absl::ConsumePrefix(&s, prefix);
    out.push_back(absl::AsciiStrToLower(s));
  }
  return out;
}

std::string FormatMillisUtc(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

int64_t Millis(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000 + t.nanos() / 1'000'000;
}

}  // namespace

std::string NewApprovalId() { return NewRandomId("apr_"); }

bool IsApprovalId(absl::string_view id) { return IsRandomId("apr_", id); }

absl::string_view ApprovalStateName(v1::ApprovalState state) {
  static const std::vector<std::string>* const kNames = new std::vector<std::string>(
      LowerNames<v1::ApprovalState>(v1::ApprovalState_MAX, [](v1::ApprovalState v) { return v1::ApprovalState_Name(v); },
                                    "APPROVAL_STATE_"));
  return state >= 0 && state <= v1::ApprovalState_MAX ? absl::string_view((*kNames)[state])
                                                      : absl::string_view("unspecified");
}

absl::string_view ApprovalEventName(v1::ApprovalEventKind kind) {
  static const std::vector<std::string>* const kNames = new std::vector<std::string>(
      LowerNames<v1::ApprovalEventKind>(v1::ApprovalEventKind_MAX, [](v1::ApprovalEventKind v) { return v1::ApprovalEventKind_Name(v); },
                                        "APPROVAL_EVENT_"));
  return kind >= 0 && kind <= v1::ApprovalEventKind_MAX ? absl::string_view((*kNames)[kind])
                                                       : absl::string_view("unspecified");
}

std::string DescribeRedeemFailure(const RedeemResult& r, absl::string_view id) {
  const v1::Approval& a = r.approval;
  switch (r.outcome) {
    case RedeemOutcome::kRedeemed:
      return "";
    case RedeemOutcome::kNotFound:
      return absl::StrCat("approval ", id,
                          " is unknown (never created, or forgotten an hour after it expired)");
    case RedeemOutcome::kMismatch:
      return absl::StrCat("approval ", id, " was given for a call with different ", r.field,
                          r.field == "arguments" ? "" : " (it is bound to another one)",
                          "; ask for approval of this call");
    case RedeemOutcome::kPending:
      return absl::StrCat("approval ", id, " is still pending: no approver has decided yet");
    case RedeemOutcome::kDenied:
      return absl::StrCat("approval ", id, " was denied by ", EscapeForLog(a.decided_by()),
                          a.note().empty() ? "" : absl::StrCat(": ", EscapeForLog(a.note())));
    case RedeemOutcome::kExpired:
      return absl::StrCat("approval ", id, " expired at ", FormatMillisUtc(Millis(a.expires_at())));
    case RedeemOutcome::kUsed:
      return absl::StrCat("approval ", id, " was already used",
                          a.has_used_at() ? absl::StrCat(" at ", FormatMillisUtc(Millis(a.used_at())))
                                          : std::string(),
                          "; one approval admits one call");
  }
  return "";
}

}  // namespace toolgate
