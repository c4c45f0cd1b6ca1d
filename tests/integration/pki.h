// Certificates made at test time with the openssl command: CAs, server and
// client certificates with chosen names, for the TLS and mTLS tests.
#ifndef TOOLGATE_TESTS_INTEGRATION_PKI_H_
#define TOOLGATE_TESTS_INTEGRATION_PKI_H_

#include <string>

#include "absl/status/status.h"
#include "tests/integration/process.h"

namespace toolgate_test {

class TestPki {
 public:
  TestPki() = default;

  // A self-signed CA: NAME.crt and NAME.key.
  absl::Status MakeCa(const std::string& name);
  // A certificate for `cn` with subjectAltName `san` ("URI:spiffe://...",
  // "DNS:a,IP:127.0.0.1"; empty: none), issued by CA `ca`: NAME.crt and
  // NAME.key (each written atomically, certificate first).
  absl::Status Issue(const std::string& ca, const std::string& name, const std::string& cn,
                     const std::string& san);

  std::string Cert(const std::string& name) const { return dir_.path() + "/" + name + ".crt"; }
  std::string Key(const std::string& name) const { return dir_.path() + "/" + name + ".key"; }
  const std::string& dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  int serial_ = 0;
};

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_INTEGRATION_PKI_H_
