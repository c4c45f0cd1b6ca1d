#include "server/service/callers.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "server/base/digest.h"
#include "server/base/files.h"
#include "server/base/glob.h"
#include "server/base/log.h"
#include "server/base/utf8.h"

namespace toolgate {

void ConnectionIdentities::Set(int fd, std::string identity) {
  absl::MutexLock lock(&mu_);
  if (identity.empty()) {
    by_fd_.erase(fd);
  } else {
    by_fd_[fd] = std::move(identity);
  }
}

std::string ConnectionIdentities::Lookup(absl::string_view grpc_peer) const {
  int fd = -1;
  if (!absl::ConsumePrefix(&grpc_peer, "fd:") || !absl::SimpleAtoi(grpc_peer, &fd)) return "";
  absl::MutexLock lock(&mu_);
  auto it = by_fd_.find(fd);
  return it == by_fd_.end() ? std::string() : it->second;
}

absl::StatusOr<std::string> CallerCheck::Admit(const grpc::ServerContextBase& context) const {
  if (identities_ == nullptr) {
    if (allow_peers_.empty()) return std::string();
    return absl::PermissionDeniedError(
        "caller presented no client certificate; --allow-peer admits only named peers");
  }
  std::string identity = identities_->Lookup(context.peer());
  if (allow_peers_.empty()) return identity;
  if (identity.empty()) {
    return absl::PermissionDeniedError(
        "caller's certificate names no usable identity; --allow-peer admits only named peers");
  }
  for (const std::string& pattern : allow_peers_) {
    if (GlobMatch(pattern, identity)) return identity;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("caller \"", EscapeForLog(identity), "\" is not admitted by --allow-peer"));
}

absl::StatusOr<std::string> AdminToken::ReadToken(const std::string& path) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxAdminTokenBytes);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin-token-file: ", text.status().message()));
  }
  const absl::string_view token = absl::StripAsciiWhitespace(*text);
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--admin-token-file: ", path, " is empty"));
  }
  for (char c : token) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--admin-token-file: ", path,
          " must hold one token of printable ASCII without spaces (as sent in a header)"));
    }
  }
  return Sha256Hex(token);
}

absl::StatusOr<std::unique_ptr<AdminToken>> AdminToken::Load(const std::string& path) {
  std::unique_ptr<AdminToken> token(new AdminToken(path));
  const FileStamp stamp = StampFile(path);
  absl::StatusOr<std::string> digest = ReadToken(path);
  if (!digest.ok()) return digest.status();
  absl::MutexLock lock(&token->mu_);
  token->digest_ = *std::move(digest);
  token->stamp_ = stamp;
  return token;
}

absl::Status AdminToken::Check(const grpc::ServerContextBase& context) const {
  std::string expected;
  {
    absl::MutexLock lock(&mu_);
    if (const FileStamp now = StampFile(path_); now != stamp_) {
      stamp_ = now;  // Tried once per change.
      if (absl::StatusOr<std::string> digest = ReadToken(path_); digest.ok()) {
        digest_ = *std::move(digest);
        LogInfo("admin token re-read from ", path_);
      } else {
        LogWarning(digest.status().message(), "; the previous admin token stays in use");
      }
    }
    expected = digest_;
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "admin calls need the token of --admin-token-file (authorization: Bearer TOKEN)");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") && !absl::ConsumePrefix(&value, "bearer ")) {
    return absl::UnauthenticatedError("authorization: expected \"Bearer TOKEN\"");
  }
  // Digests of equal length, compared in constant time: neither the token's
  // content nor its length shows in how long the comparison takes.
  const std::string presented = Sha256Hex(absl::StripAsciiWhitespace(value));
  if (CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) != 0) {
    return absl::UnauthenticatedError("admin token not accepted");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> AdmitAdmin(const grpc::ServerContextBase& context,
                                       const CallerCheck* callers, const AdminToken* token) {
  std::string who;
  if (callers != nullptr) {
    absl::StatusOr<std::string> admitted = callers->Admit(context);
    if (!admitted.ok()) return admitted.status();
    who = *std::move(admitted);
  }
  if (token != nullptr) {
    if (absl::Status s = token->Check(context); !s.ok()) return s;
  }
  return who;
}

}  // namespace toolgate
