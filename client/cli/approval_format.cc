#include "client/cli/approval_format.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace toolgate::cli {
namespace {

// PrettyJson leaves deeper documents as they are: the server bounds the
// depth of arguments far below this, and indenting a hostile document of
// great depth would multiply its size.
constexpr int kMaxIndentDepth = 64;
// `watch` shows at most this much of the arguments on its one line.
constexpr size_t kEventArgsBytes = 160;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

std::string Rfc3339(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", ToTime(t), absl::UTCTimeZone());
}

// "in 12m" or "3m ago", relative to now.
std::string Relative(const google::protobuf::Timestamp& t, absl::Time now) {
  const absl::Duration d = ToTime(t) - now;
  return d > absl::ZeroDuration() ? absl::StrCat("in ", ShortDuration(d))
                                  : absl::StrCat(ShortDuration(-d), " ago");
}

std::string OrDash(absl::string_view s) { return s.empty() ? "-" : Printable(s); }

// key=value for a watch line; the value quoted when it holds a space, a
// quote or an equals sign (so that the line splits back into its fields).
std::string Field(absl::string_view key, absl::string_view value) {
  std::string v = Printable(value);
  if (v.empty() || v.find_first_of(" \"=\\") != std::string::npos) {
    std::string quoted = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    v = quoted + "\"";
  }
  return absl::StrCat(key, "=", v);
}

// At most `max` bytes of `s`, cut on a UTF-8 character boundary, with "..."
// when cut.
std::string Truncated(absl::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return absl::StrCat(s.substr(0, end), "...");
}

}  // namespace

std::string ApprovalStateName(v1::ApprovalState state) {
  const std::string full =
      v1::ApprovalState_Name(state);  // "APPROVAL_STATE_PENDING"; "" if unknown
  absl::string_view name = full;
  if (!absl::ConsumePrefix(&name, "APPROVAL_STATE_") || state == v1::APPROVAL_STATE_UNSPECIFIED) {
    return "unspecified";
  }
  return absl::AsciiStrToLower(std::string(name));
}

std::optional<v1::ApprovalState> ParseApprovalState(absl::string_view name) {
  for (v1::ApprovalState s :
       {v1::APPROVAL_STATE_PENDING, v1::APPROVAL_STATE_APPROVED, v1::APPROVAL_STATE_DENIED,
        v1::APPROVAL_STATE_EXPIRED, v1::APPROVAL_STATE_USED}) {
    if (absl::EqualsIgnoreCase(name, ApprovalStateName(s))) return s;
  }
  return std::nullopt;
}

std::string ApprovalEventName(v1::ApprovalEventKind kind) {
  const std::string full = v1::ApprovalEventKind_Name(kind);
  absl::string_view name = full;
  if (!absl::ConsumePrefix(&name, "APPROVAL_EVENT_") || kind == v1::APPROVAL_EVENT_UNSPECIFIED) {
    return "unspecified";
  }
  return absl::AsciiStrToLower(std::string(name));
}

std::string PrettyJson(absl::string_view json) {
  const std::string unchanged(json);
  std::string out;
  out.reserve(json.size() * 2);
  std::vector<char> open;  // '{' or '[' of each enclosing container
  bool in_string = false, escaped = false;
  auto newline = [&] {
    out += '\n';
    out.append(2 * open.size(), ' ');
  };
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      out += c;
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case ' ':
      case '\t':
      case '\n':
      case '\r':
        break;
      case '"':
        in_string = true;
        out += c;
        break;
      case '{':
      case '[': {
        const char close = c == '{' ? '}' : ']';
        size_t next = i + 1;
        while (next < json.size() && absl::ascii_isspace(static_cast<unsigned char>(json[next]))) {
          ++next;
        }
        out += c;
        if (next < json.size() && json[next] == close) {  // {} and [] stay on one line
          out += close;
          i = next;
          break;
        }
        open.push_back(c);
        if (open.size() > kMaxIndentDepth) return unchanged;
        newline();
        break;
      }
      case '}':
      case ']':
        if (open.empty() || open.back() != (c == '}' ? '{' : '[')) return unchanged;
        open.pop_back();
        newline();
        out += c;
        break;
      case ',':
        if (open.empty()) return unchanged;
        out += c;
        newline();
        break;
      case ':':
        if (open.empty() || open.back() != '{') return unchanged;
        out += ": ";
        break;
      default:
        out += c;
    }
  }
  if (in_string || !open.empty()) return unchanged;
  return out;
}

std::string ShortDuration(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = -d;
  const int64_t s = absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m");
  if (s < 86400) {
    return s % 3600 >= 60 ? absl::StrCat(s / 3600, "h", s % 3600 / 60, "m")
                          : absl::StrCat(s / 3600, "h");
  }
  return s % 86400 >= 3600 ? absl::StrCat(s / 86400, "d", s % 86400 / 3600, "h")
                           : absl::StrCat(s / 86400, "d");
}

std::string Printable(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatApprovalTable(const std::vector<v1::Approval>& approvals, absl::Time now) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "STATE", "GRANT", "TOOL", "SERVER", "SESSION", "AGE", "EXPIRES"});
  for (const v1::Approval& a : approvals) {
    const bool live = a.state() == v1::APPROVAL_STATE_PENDING ||
                      a.state() == v1::APPROVAL_STATE_APPROVED ||
                      a.state() == v1::APPROVAL_STATE_EXPIRED;
    rows.push_back({Printable(a.id()), ApprovalStateName(a.state()), OrDash(a.grant()),
                    OrDash(a.tool()), OrDash(a.server()), OrDash(a.session()),
                    IsSet(a.created_at()) ? ShortDuration(now - ToTime(a.created_at())) : "-",
                    live && IsSet(a.expires_at()) ? Relative(a.expires_at(), now) : "-"});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatApprovalDetails(const v1::Approval& a, absl::Time now) {
  std::string out;
  auto line = [&out](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&out, name, ":", std::string(16 - std::min<size_t>(15, name.size()), ' '),
                    value, "\n");
  };
  auto when = [&](const google::protobuf::Timestamp& t) {
    return IsSet(t) ? absl::StrCat(Rfc3339(t), " (", Relative(t, now), ")") : std::string("-");
  };
  line("id", Printable(a.id()));
  line("state", ApprovalStateName(a.state()));
  line("grant", OrDash(a.grant()));
  line("tool", OrDash(a.tool()));
  line("server", OrDash(a.server()));
  line("session", OrDash(a.session()));
  line("rule", OrDash(a.rule()));
  line("reason", OrDash(a.reason()));
  line("policy version", OrDash(a.policy_version()));
  line("request id", OrDash(a.request_id()));
  line("created", when(a.created_at()));
  line("expires", when(a.expires_at()));
  line("decided", IsSet(a.decided_at())
                      ? absl::StrCat(when(a.decided_at()), " by ", OrDash(a.decided_by()))
                      : std::string("-"));
  line("note", OrDash(a.note()));
  line("used", IsSet(a.used_at())
                   ? absl::StrCat(when(a.used_at()), " by decision ", OrDash(a.used_by_decision()))
                   : std::string("-"));
  line("args digest", OrDash(a.args_digest()));
  out += "arguments:\n";
  // Printable after indenting: the JSON's own newlines are kept, anything
  // else that could move the cursor is escaped.
  for (absl::string_view l :
       absl::StrSplit(PrettyJson(a.args_json().empty() ? "{}" : a.args_json()), '\n')) {
    absl::StrAppend(&out, "  ", Printable(l), "\n");
  }
  return out;
}

std::string FormatApprovalEvent(const v1::ApprovalEvent& event) {
  const v1::Approval& a = event.approval();
  google::protobuf::Timestamp at;
  switch (event.kind()) {
    case v1::APPROVAL_EVENT_APPROVED:
    case v1::APPROVAL_EVENT_DENIED:
      at = a.decided_at();
      break;
    case v1::APPROVAL_EVENT_USED:
      at = a.used_at();
      break;
    case v1::APPROVAL_EVENT_EXPIRED:
      at = a.expires_at();
      break;
    default:
      at = a.created_at();
  }
  std::vector<std::string> parts = {IsSet(at) ? Rfc3339(at) : std::string("-"),
                                    ApprovalEventName(event.kind()), Printable(a.id()),
                                    Field("grant", a.grant()), Field("tool", a.tool())};
  if (!a.server().empty()) parts.push_back(Field("server", a.server()));
  if (!a.session().empty()) parts.push_back(Field("session", a.session()));
  switch (event.kind()) {
    case v1::APPROVAL_EVENT_CREATED:
    case v1::APPROVAL_EVENT_PENDING:
      if (!a.rule().empty()) parts.push_back(Field("rule", a.rule()));
      if (IsSet(a.expires_at())) parts.push_back(Field("expires", Rfc3339(a.expires_at())));
      parts.push_back(Field("args", Truncated(a.args_json(), kEventArgsBytes)));
      break;
    case v1::APPROVAL_EVENT_APPROVED:
    case v1::APPROVAL_EVENT_DENIED:
      parts.push_back(Field("by", a.decided_by()));
      if (!a.note().empty()) parts.push_back(Field("note", a.note()));
      break;
    case v1::APPROVAL_EVENT_USED:
      if (!a.used_by_decision().empty()) parts.push_back(Field("decision", a.used_by_decision()));
      break;
    default:
      break;
  }
  return absl::StrJoin(parts, " ");
}

}  // namespace toolgate::cli
