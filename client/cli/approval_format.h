// How `toolgate approvals` prints approvals: names, durations, the table of
// `list`, the fields of `show`, the one-line events of `watch`. Pure
// functions of their inputs (the time "now" included), so tested without a
// server.
#ifndef TOOLGATE_CLIENT_CLI_APPROVAL_FORMAT_H_
#define TOOLGATE_CLIENT_CLI_APPROVAL_FORMAT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "toolgate/v1/approval.pb.h"

namespace toolgate::cli {

// "pending" for APPROVAL_STATE_PENDING; "unspecified" when unknown.
std::string ApprovalStateName(v1::ApprovalState state);
// The state named by `name` ("pending", any case); nullopt when none is.
std::optional<v1::ApprovalState> ParseApprovalState(absl::string_view name);
// "created" for APPROVAL_EVENT_CREATED; "unspecified" when unknown.
std::string ApprovalEventName(v1::ApprovalEventKind kind);

// `json` indented by two spaces, one member or element a line, without
// changing a character of its tokens (key order, number text, escapes).
// Text that is not well-formed enough to indent is returned unchanged.
std::string PrettyJson(absl::string_view json);

// A short, rounded duration: "45s", "12m", "3h5m", "2d4h".
std::string ShortDuration(absl::Duration d);

// `text` safe to print on a terminal on one line: control characters and
// DEL become \xNN (an approver's note or a tool name can hold anything the
// server accepted; it must not move the cursor or start a new line).
std::string Printable(absl::string_view text);

// The table of `approvals list`: a header, then one row per approval
// (ID, STATE, GRANT, TOOL, SERVER, SESSION, AGE, EXPIRES), columns aligned.
std::string FormatApprovalTable(const std::vector<v1::Approval>& approvals, absl::Time now);

// Every field of one approval, one per line, the arguments pretty-printed.
std::string FormatApprovalDetails(const v1::Approval& approval, absl::Time now);

// One line (no newline) for one event of `approvals watch`: the time of the
// event, its kind, the id, the call it is bound to, and who decided.
std::string FormatApprovalEvent(const v1::ApprovalEvent& event);

}  // namespace toolgate::cli

#endif  // TOOLGATE_CLIENT_CLI_APPROVAL_FORMAT_H_
