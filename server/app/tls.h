// TLS for toolgated's listeners, terminated by the ConnectionGate with
// OpenSSL (so that the gate's HTTP/2 checks also hold over TLS).
//
// TlsServerContext holds the certificate, key and (for mTLS) the client CA,
// and re-reads them when their files change: cert-manager and Kubernetes
// Secret volumes replace them in place, and new connections use the new
// ones without a restart, while open connections keep theirs. A change that
// does not load (e.g. a certificate and key that do not match, caught
// half-way through a rotation) keeps the previous ones and is retried.
#ifndef TOOLGATE_SERVER_APP_TLS_H_
#define TOOLGATE_SERVER_APP_TLS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/base/files.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace toolgate {

struct TlsServerOptions {
  std::string cert_file;  // PEM: the server's certificate, then its chain.
  std::string key_file;   // PEM: its private key.
  // PEM: CAs whose certificates clients must present (mTLS); empty: client
  // certificates are neither asked for nor checked.
  std::string client_ca_file;
  // How often the files are checked for changes (on the next connection).
  absl::Duration check_interval = absl::Seconds(1);

  bool enabled() const { return !cert_file.empty(); }
};

// Files larger than this are refused (a certificate chain is a few KiB).
inline constexpr int64_t kMaxTlsFileBytes = 1 << 20;
// The longest identity taken from a client certificate.
inline constexpr size_t kMaxPeerIdentityBytes = 1024;

class TlsServerContext {
 public:
  // Loads the files; INVALID_ARGUMENT naming the file and the problem.
  static absl::StatusOr<std::shared_ptr<TlsServerContext>> Load(const TlsServerOptions& options);
  ~TlsServerContext();

  // A new server-side SSL for one connection, with the newest certificate
  // that loaded (the files are checked first when check_interval has
  // passed). Null only when OpenSSL cannot allocate.
  SSL* NewConnection();

  bool requires_client_certificate() const { return !options_.client_ca_file.empty(); }
  // How many times changed files were loaded, and failed to load.
  int64_t reloads() const;
  int64_t reload_failures() const;

 private:
  struct Stamps {
    FileStamp cert, key, ca;
    bool operator==(const Stamps& o) const {
      return cert == o.cert && key == o.key && ca == o.ca;
    }
  };
  explicit TlsServerContext(const TlsServerOptions& options) : options_(options) {}
  Stamps StatFiles() const;
  void MaybeReload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsServerOptions options_;
  mutable absl::Mutex mu_;
  SSL_CTX* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  Stamps loaded_ ABSL_GUARDED_BY(mu_);
  Stamps failed_ ABSL_GUARDED_BY(mu_);  // The last stamps that did not load.
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reload_failures_ ABSL_GUARDED_BY(mu_) = 0;
};

// The identity of the client certificate `ssl` verified: its first URI SAN
// (e.g. a SPIFFE ID), else its first DNS SAN, else its subject CN. Empty
// when there is no certificate, or when the name found is not valid UTF-8,
// holds a control character or is longer than kMaxPeerIdentityBytes.
std::string PeerIdentity(SSL* ssl);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APP_TLS_H_
