#include "server/base/digest.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/escaping.h"

namespace toolgate {
namespace {

std::string DigestHex(const EVP_MD* md, absl::Span<const absl::string_view> parts) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // These fail only when OpenSSL cannot allocate a few hundred bytes.
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) std::abort();
  for (absl::string_view part : parts) {
    if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) std::abort();
  }
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) std::abort();
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), static_cast<size_t>(len)));
}

}  // namespace

std::string HmacSha256Hex(absl::string_view key, absl::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // An empty key is valid HMAC; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* key_data = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  // Fails only when OpenSSL cannot allocate.
  if (HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
           &len) == nullptr) {
    std::abort();
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), static_cast<size_t>(len)));
}

std::string Sha256Hex(absl::string_view data) { return DigestHex(EVP_sha256(), {data}); }

std::string Sha256Hex(absl::Span<const absl::string_view> parts) {
  return DigestHex(EVP_sha256(), parts);
}

std::string Sha1Hex(absl::string_view data) { return DigestHex(EVP_sha1(), {data}); }

}  // namespace toolgate
