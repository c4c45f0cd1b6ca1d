// `toolgate approvals list|show|approve|deny|watch`: the ApprovalService of
// a toolgated's admin listener, for the humans who decide approvals.
#ifndef TOOLGATE_CLIENT_CLI_APPROVALS_H_
#define TOOLGATE_CLIENT_CLI_APPROVALS_H_

#include <string>
#include <vector>

namespace toolgate::cli {

// Runs `toolgate approvals ARGS...` (ARGS without "approvals"); returns the
// exit code.
int RunApprovals(const std::vector<std::string>& args);

}  // namespace toolgate::cli

#endif  // TOOLGATE_CLIENT_CLI_APPROVALS_H_
