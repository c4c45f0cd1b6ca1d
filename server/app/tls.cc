#include "server/app/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "server/base/files.h"
#include "server/base/log.h"
#include "server/base/utf8.h"

namespace toolgate {

namespace {

// The oldest OpenSSL error on this thread's queue (and clears the queue).
std::string OpenSslError() {
  unsigned long first = ERR_get_error();
  char buf[256] = {};
  if (first == 0) return "unknown error";
  ERR_error_string_n(first, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxTlsFileBytes);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", text.status().message()));
  }
  if (text->empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is empty"));
  return text;
}

// Every certificate in a PEM text, in order.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& flag,
                                                       const std::string& path,
                                                       const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (true) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    certs.emplace_back(x);
  }
  ERR_clear_error();  // The end of the text reads as an error.
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM certificate"));
  }
  return certs;
}

// ALPN: gRPC clients offer "h2" and insist that the server selects it.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

absl::StatusOr<CtxPtr> BuildContext(const TlsServerOptions& o) {
  absl::StatusOr<std::string> cert_pem = ReadPem("--tls-cert", o.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadPem("--tls-key", o.key_file);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::vector<X509Ptr>> chain =
      ParseCertificates("--tls-cert", o.cert_file, *cert_pem);
  if (!chain.ok()) return chain.status();

  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (ctx == nullptr) return absl::InternalError("TLS: " + OpenSslError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                     SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(ctx.get(), SelectAlpn, nullptr);
  if (SSL_CTX_use_certificate(ctx.get(), (*chain)[0].get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert: ", o.cert_file, ": ", OpenSslError()));
  }
  for (size_t i = 1; i < chain->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx.get(), (*chain)[i].get()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-cert: ", o.cert_file, ": ", OpenSslError()));
    }
  }
  Bio key_bio(BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
  Pkey key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key: ", o.key_file, " holds no unencrypted PEM private key (", OpenSslError(), ")"));
  }
  if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls-key: ", o.key_file,
                                                   " is not the key of the certificate in ",
                                                   o.cert_file));
  }
  if (!o.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadPem("--tls-client-ca", o.client_ca_file);
    if (!ca_pem.ok()) return ca_pem.status();
    absl::StatusOr<std::vector<X509Ptr>> cas =
        ParseCertificates("--tls-client-ca", o.client_ca_file, *ca_pem);
    if (!cas.ok()) return cas.status();
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    for (const X509Ptr& ca : *cas) {
      if (X509_STORE_add_cert(store, ca.get()) != 1 ||
          SSL_CTX_add_client_CA(ctx.get(), ca.get()) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tls-client-ca: ", o.client_ca_file, ": ", OpenSslError()));
      }
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_verify_depth(ctx.get(), 8);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

// A name found in a certificate, if it is usable as an identity.
std::string UsableName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxPeerIdentityBytes) return "";
  if (!FindUtf8Problem(name, /*forbid_control=*/true).ok()) return "";
  return std::string(name);
}

absl::string_view Asn1Text(const ASN1_STRING* s) {
  return absl::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           static_cast<size_t>(ASN1_STRING_length(s)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<TlsServerContext>> TlsServerContext::Load(
    const TlsServerOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  std::shared_ptr<TlsServerContext> tls(new TlsServerContext(options));
  const Stamps stamps = tls->StatFiles();
  absl::StatusOr<CtxPtr> ctx = BuildContext(options);
  if (!ctx.ok()) return ctx.status();
  absl::MutexLock lock(&tls->mu_);
  tls->ctx_ = ctx->release();
  tls->loaded_ = stamps;
  tls->next_check_ = absl::Now() + options.check_interval;
  return tls;
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

TlsServerContext::Stamps TlsServerContext::StatFiles() const {
  return Stamps{StampFile(options_.cert_file), StampFile(options_.key_file),
                StampFile(options_.client_ca_file)};
}

void TlsServerContext::MaybeReload() {
  const absl::Time now = absl::Now();
  if (now < next_check_) return;
  next_check_ = now + options_.check_interval;
  const Stamps stamps = StatFiles();
  // Unchanged, or the same files that already failed to load.
  if (stamps == loaded_ || stamps == failed_) return;
  absl::StatusOr<CtxPtr> ctx = BuildContext(options_);
  if (!ctx.ok()) {
    failed_ = stamps;
    ++reload_failures_;
    LogWarning("TLS files changed but do not load (", ctx.status().message(),
               "); new connections keep the previous certificate");
    return;
  }
  SSL_CTX_free(ctx_);
  ctx_ = ctx->release();
  loaded_ = stamps;
  failed_ = Stamps{};
  ++reloads_;
  LogInfo("TLS certificate re-read from ", options_.cert_file);
}

SSL* TlsServerContext::NewConnection() {
  absl::MutexLock lock(&mu_);
  MaybeReload();
  return SSL_new(ctx_);
}

int64_t TlsServerContext::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

int64_t TlsServerContext::reload_failures() const {
  absl::MutexLock lock(&mu_);
  return reload_failures_;
}

std::string PeerIdentity(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return "";
  std::string uri, dns;
  if (auto* names = static_cast<GENERAL_NAMES*>(
          X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
      if (n->type == GEN_URI && uri.empty()) uri = UsableName(Asn1Text(n->d.uniformResourceIdentifier));
      if (n->type == GEN_DNS && dns.empty()) dns = UsableName(Asn1Text(n->d.dNSName));
    }
    GENERAL_NAMES_free(names);
  }
  if (!uri.empty()) return uri;
  if (!dns.empty()) return dns;
  X509_NAME* subject = X509_get_subject_name(cert);
  const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0) return "";
  ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, cn);
  if (len < 0) return "";
  std::string name = UsableName(absl::string_view(reinterpret_cast<char*>(utf8), len));
  OPENSSL_free(utf8);
  return name;
}

}  // namespace toolgate
