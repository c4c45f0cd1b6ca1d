// Ed25519 keys read from PEM files, signing and verification (OpenSSL's
// EVP API). Used to sign policy revisions (server/provider/
// revision_signature.h).
#ifndef TOOLGATE_SERVER_BASE_ED25519_H_
#define TOOLGATE_SERVER_BASE_ED25519_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace toolgate {

// Largest key file read, in bytes: a PEM Ed25519 key is about 120.
inline constexpr size_t kMaxKeyFileBytes = 64 * 1024;
// An Ed25519 signature, in bytes.
inline constexpr size_t kEd25519SignatureBytes = 64;

// A public key (PEM "PUBLIC KEY", SubjectPublicKeyInfo, as written by
// `openssl pkey -in KEY.pem -pubout`). Copyable; verification is thread-safe.
class Ed25519PublicKey {
 public:
  // INVALID_ARGUMENT naming `path` when the file is not a PEM Ed25519 public
  // key (a private key, another algorithm, not PEM); NOT_FOUND when it
  // cannot be read.
  static absl::StatusOr<Ed25519PublicKey> FromPemFile(const std::string& path);
  // The same from text; `name` is used in errors.
  static absl::StatusOr<Ed25519PublicKey> FromPem(absl::string_view pem, absl::string_view name);

  // True when `signature` is a valid signature of `message` by this key.
  bool Verify(absl::string_view message, absl::string_view signature) const;
  // The 32 raw key bytes.
  const std::string& raw() const { return raw_; }
  // A short name for logs: the first 16 hex digits of SHA-256 of the raw key.
  std::string Fingerprint() const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
  std::string raw_;
};

// A private key (PEM "PRIVATE KEY", PKCS#8, as written by
// `openssl genpkey -algorithm ed25519`).
class Ed25519PrivateKey {
 public:
  // Errors as Ed25519PublicKey::FromPemFile (a public key given is an error).
  static absl::StatusOr<Ed25519PrivateKey> FromPemFile(const std::string& path);
  static absl::StatusOr<Ed25519PrivateKey> FromPem(absl::string_view pem, absl::string_view name);
  // A new random key (tests, key generation).
  static Ed25519PrivateKey Generate();

  // The kEd25519SignatureBytes signature of `message`.
  std::string Sign(absl::string_view message) const;
  // Its public key.
  const Ed25519PublicKey& public_key() const { return public_key_; }
  // PEM texts of the private and the public key.
  std::string PrivatePem() const;
  std::string PublicPem() const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
  Ed25519PublicKey public_key_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_ED25519_H_
