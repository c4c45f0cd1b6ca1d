#include "tests/integration/pki.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace toolgate_test {
namespace {

absl::Status Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  CommandResult r = RunCommand(args, {}, absl::Seconds(60));
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat("openssl ", args[1], " failed (", r.exit_code,
                                            "): ", r.err));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TestPki::MakeCa(const std::string& name) {
  return Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", Key(name), "-out", Cert(name), "-days", "2", "-subj",
                  "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign"});
}

absl::Status TestPki::Issue(const std::string& ca, const std::string& name, const std::string& cn,
                            const std::string& san) {
  const std::string tmp = absl::StrCat(dir_.path(), "/.issue-", ++serial_);
  std::string ext = "basicConstraints=CA:FALSE\n";
  if (!san.empty()) ext += "subjectAltName=" + san + "\n";
  dir_.WriteFile(absl::StrCat(".issue-", serial_, ".ext"), ext);
  if (absl::Status s = Openssl({"req", "-new", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp + ".key",
                                "-out", tmp + ".csr", "-subj", "/CN=" + cn});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Openssl({"x509", "-req", "-in", tmp + ".csr", "-CA", Cert(ca), "-CAkey",
                                Key(ca), "-set_serial", absl::StrCat(1000 + serial_), "-out",
                                tmp + ".crt", "-days", "2", "-extfile", tmp + ".ext"});
      !s.ok()) {
    return s;
  }
  if (std::rename((tmp + ".crt").c_str(), Cert(name).c_str()) != 0 ||
      std::rename((tmp + ".key").c_str(), Key(name).c_str()) != 0) {
    return absl::InternalError("cannot rename the new certificate into place");
  }
  return absl::OkStatus();
}

}  // namespace toolgate_test
