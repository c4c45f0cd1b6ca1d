// What every toolgate command that calls a server shares: the exit codes
// and the flags that say how to reach the server (TLS, admin token).
#ifndef TOOLGATE_CLIENT_CLI_CONNECTION_H_
#define TOOLGATE_CLIENT_CLI_CONNECTION_H_

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "server/base/flags.h"
#include "toolgate/client.h"

namespace toolgate::cli {

// Exit codes. ALLOW is 0 so that `toolgate check ... && run-the-tool` works.
enum ExitCode : int {
  kExitAllow = 0,
  // lint found errors; test: a case failed or a file is invalid; approvals: the
  // approval is unknown or no longer pending
  kExitFailure = 1,
  kExitUsage = 2,  // bad flags or arguments
  kExitDeny = 3,
  kExitRateLimited = 4,
  kExitRequireApproval = 5,
  kExitRpcError = 6,  // the call could not be decided (or not reached)
};

// --tls-* and --admin-token-file: how to reach a server that serves TLS,
// mTLS, or an admin listener that needs a token.
struct ConnectionFlags {
  toolgate::ClientOptions options;
  std::string admin_token_file;

  void Register(toolgate::FlagSet& flags, bool admin) {
    flags.String("tls-ca", &options.tls_ca_file,
                 "PEM CA certificates that issued the server's certificate (turns TLS on).");
    flags.String("tls-cert", &options.tls_cert_file,
                 "PEM client certificate, for a server with --tls-client-ca (turns TLS on).");
    flags.String("tls-key", &options.tls_key_file, "PEM private key of --tls-cert.");
    flags.String("tls-server-name", &options.tls_server_name,
                 "Name the server's certificate must carry, when it is not the target's host "
                 "(turns TLS on).");
    if (admin) {
      flags.String("admin-token-file", &admin_token_file,
                   "File holding the token of the server's --admin-token-file.");
    }
  }

  // A client for `target`; nullptr after printing the error.
  std::unique_ptr<toolgate::Client> Connect(const std::string& command, const std::string& target) {
    if (!admin_token_file.empty()) {
      absl::StatusOr<std::string> token = toolgate::ReadClientFile(admin_token_file);
      if (!token.ok()) {
        std::cerr << "toolgate " << command << ": --admin-token-file: " << token.status().message()
                  << "\n";
        return nullptr;
      }
      options.admin_token = std::string(absl::StripAsciiWhitespace(*token));
    }
    absl::StatusOr<std::unique_ptr<toolgate::Client>> client =
        toolgate::Client::Connect(target, options);
    if (!client.ok()) {
      std::cerr << "toolgate " << command << ": " << client.status().message() << "\n";
      return nullptr;
    }
    return *std::move(client);
  }
};

}  // namespace toolgate::cli

#endif  // TOOLGATE_CLIENT_CLI_CONNECTION_H_
