// Who is calling, and whether they may: the identity the transport learnt
// from each connection's client certificate (mTLS), the --allow-peer
// patterns that admit callers, and the bearer token the admin listener can
// require.
#ifndef TOOLGATE_SERVER_SERVICE_CALLERS_H_
#define TOOLGATE_SERVER_SERVICE_CALLERS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "server/base/files.h"

namespace toolgate {

// Certificate identities by connection. The transport hands gRPC each
// connection as a descriptor ("fd:N" is then the call's peer) and records
// the identity of that descriptor first; gRPC keeps the descriptor open
// while any call on the connection is alive, so a call always finds its own
// connection's identity.
class ConnectionIdentities {
 public:
  void Set(int fd, std::string identity);
  // The identity recorded for a call whose peer (ServerContext::peer()) is
  // `grpc_peer`; empty when none (not "fd:N", or no certificate).
  std::string Lookup(absl::string_view grpc_peer) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, std::string> by_fd_ ABSL_GUARDED_BY(mu_);
};

// --allow-peer: which certificate identities may call at all.
class CallerCheck {
 public:
  // `identities`: null when the listener has no client certificates (every
  // caller is anonymous); must outlive the check. `allow_peers`: glob
  // patterns (server/base/glob.h); empty admits every caller.
  CallerCheck(const ConnectionIdentities* identities, std::vector<std::string> allow_peers)
      : identities_(identities), allow_peers_(std::move(allow_peers)) {}

  // The caller's identity (empty without mTLS), or PERMISSION_DENIED naming
  // the caller when --allow-peer admits no such peer.
  absl::StatusOr<std::string> Admit(const grpc::ServerContextBase& context) const;

 private:
  const ConnectionIdentities* const identities_;
  const std::vector<std::string> allow_peers_;
};

// The longest admin token file read.
inline constexpr size_t kMaxAdminTokenBytes = 4096;

// --admin-token-file: the bearer token admin calls must carry
// ("authorization: Bearer TOKEN"), compared in constant time. The file is
// read again when it changes (checked on each admin call), so the token can
// be rotated without a restart; a change that does not load keeps the
// previous token.
class AdminToken {
 public:
  // INVALID_ARGUMENT naming the file when it cannot be read or holds no
  // token (surrounding whitespace is ignored; the token is one line).
  static absl::StatusOr<std::unique_ptr<AdminToken>> Load(const std::string& path);

  // OK when the call carries the token; UNAUTHENTICATED otherwise.
  absl::Status Check(const grpc::ServerContextBase& context) const;

 private:
  explicit AdminToken(std::string path) : path_(std::move(path)) {}
  static absl::StatusOr<std::string> ReadToken(const std::string& path);

  const std::string path_;
  mutable absl::Mutex mu_;
  mutable std::string digest_ ABSL_GUARDED_BY(mu_);  // SHA-256 of the token.
  mutable FileStamp stamp_ ABSL_GUARDED_BY(mu_);
};

// An admin call: admitted by --allow-peer (`callers`, null: everyone) and
// holding the admin token (`token`, null: none needed). The caller's
// certificate identity (empty without mTLS), or why not.
absl::StatusOr<std::string> AdmitAdmin(const grpc::ServerContextBase& context,
                                       const CallerCheck* callers, const AdminToken* token);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_SERVICE_CALLERS_H_
