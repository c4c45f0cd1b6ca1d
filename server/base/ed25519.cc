#include "server/base/ed25519.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/base/digest.h"
#include "server/base/files.h"

namespace toolgate {
namespace {

std::shared_ptr<EVP_PKEY> Own(EVP_PKEY* key) {
  return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
}

// Never asks for a passphrase (an encrypted key is an error, not a prompt).
int NoPassphrase(char*, int, int, void*) { return -1; }

// What a PEM text holds, judged by its first BEGIN line.
enum class PemKind { kNone, kPublic, kPrivate, kEncryptedPrivate, kOther };

PemKind KindOf(absl::string_view pem) {
  const size_t begin = pem.find("-----BEGIN ");
  if (begin == absl::string_view::npos) return PemKind::kNone;
  absl::string_view label = pem.substr(begin + 11);
  if (absl::StartsWith(label, "PUBLIC KEY-----")) return PemKind::kPublic;
  if (absl::StartsWith(label, "PRIVATE KEY-----")) return PemKind::kPrivate;
  if (absl::StartsWith(label, "ENCRYPTED PRIVATE KEY-----")) return PemKind::kEncryptedPrivate;
  return PemKind::kOther;
}

// Reads one key of the wanted kind from `pem`; errors name `name`.
absl::StatusOr<std::shared_ptr<EVP_PKEY>> ReadKey(absl::string_view pem, absl::string_view name,
                                                  bool want_private) {
  const char* const wanted = want_private ? "an Ed25519 private key (PEM \"PRIVATE KEY\", "
                                            "openssl genpkey -algorithm ed25519)"
                                          : "an Ed25519 public key (PEM \"PUBLIC KEY\", "
                                            "openssl pkey -in PRIVATE.pem -pubout)";
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", why, "; expected ", wanted));
  };
  const PemKind kind = KindOf(pem);
  switch (kind) {
    case PemKind::kNone:
      return invalid("not a PEM file");
    case PemKind::kPublic:
      if (want_private) return invalid("holds a public key, not a private key");
      break;
    case PemKind::kPrivate:
      if (!want_private) {
        return invalid("holds a private key, not a public key (give servers only the public key)");
      }
      break;
    case PemKind::kEncryptedPrivate:
      return invalid(want_private ? "an encrypted private key (give it unencrypted)"
                                  : "holds a private key, not a public key");
    case PemKind::kOther:
      return invalid("not a PEM key");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (bio == nullptr) std::abort();
  EVP_PKEY* key = want_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr)
                               : PEM_read_bio_PUBKEY(bio.get(), nullptr, NoPassphrase, nullptr);
  ERR_clear_error();
  if (key == nullptr) return invalid("not a valid PEM key");
  std::shared_ptr<EVP_PKEY> owned = Own(key);
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    return invalid(absl::StrCat(
        "a ", EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "non-Ed25519",
        " key, not Ed25519"));
  }
  return owned;
}

std::string RawPublic(EVP_PKEY* key) {
  unsigned char raw[32];
  size_t len = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != sizeof(raw)) std::abort();
  return std::string(reinterpret_cast<const char*>(raw), len);
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxKeyFileBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("key file: ", text.status().message()));
  }
  return text;
}

std::string WritePem(EVP_PKEY* key, bool private_key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (bio == nullptr) std::abort();
  const int ok =
      private_key ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                  : PEM_write_bio_PUBKEY(bio.get(), key);
  if (ok != 1) std::abort();
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPemFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadKeyFile(path);
  if (!text.ok()) return text.status();
  return FromPem(*text, path);
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPem(absl::string_view pem,
                                                           absl::string_view name) {
  absl::StatusOr<std::shared_ptr<EVP_PKEY>> key = ReadKey(pem, name, /*want_private=*/false);
  if (!key.ok()) return key.status();
  Ed25519PublicKey out;
  out.raw_ = RawPublic(key->get());
  out.key_ = *std::move(key);
  return out;
}

bool Ed25519PublicKey::Verify(absl::string_view message, absl::string_view signature) const {
  if (key_ == nullptr || signature.size() != kEd25519SignatureBytes) return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (ctx == nullptr) std::abort();
  const bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::string Ed25519PublicKey::Fingerprint() const { return Sha256Hex(raw_).substr(0, 16); }

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPemFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadKeyFile(path);
  if (!text.ok()) return text.status();
  return FromPem(*text, path);
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPem(absl::string_view pem,
                                                             absl::string_view name) {
  absl::StatusOr<std::shared_ptr<EVP_PKEY>> key = ReadKey(pem, name, /*want_private=*/true);
  if (!key.ok()) return key.status();
  Ed25519PrivateKey out;
  out.key_ = *std::move(key);
  absl::StatusOr<Ed25519PublicKey> pub =
      Ed25519PublicKey::FromPem(WritePem(out.key_.get(), false), name);
  if (!pub.ok()) return pub.status();
  out.public_key_ = *std::move(pub);
  return out;
}

Ed25519PrivateKey Ed25519PrivateKey::Generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) std::abort();
  absl::StatusOr<Ed25519PrivateKey> out = FromPem(WritePem(key, true), "generated key");
  EVP_PKEY_free(key);
  if (!out.ok()) std::abort();
  return *std::move(out);
}

std::string Ed25519PrivateKey::Sign(absl::string_view message) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char sig[kEd25519SignatureBytes];
  size_t len = sizeof(sig);
  // These fail only when OpenSSL cannot allocate.
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      len != sizeof(sig)) {
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(sig), len);
}

std::string Ed25519PrivateKey::PrivatePem() const { return WritePem(key_.get(), true); }
std::string Ed25519PrivateKey::PublicPem() const { return WritePem(key_.get(), false); }

}  // namespace toolgate
