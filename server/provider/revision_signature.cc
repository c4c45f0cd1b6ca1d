#include "server/provider/revision_signature.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/base/digest.h"
#include "server/base/log.h"
#include "server/base/utf8.h"

namespace toolgate {
namespace {

constexpr char kReasonPayload[] = "type.toolgate.dev/policy-rejection-reason";

std::string LengthPrefix(size_t n) { return absl::StrFormat("%020u", n); }

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::Status Refuse(absl::string_view revision, absl::string_view reason, absl::string_view why) {
  return WithRejectionReason(
      absl::FailedPreconditionError(
          absl::StrCat("revision \"", EscapeForLog(revision), "\" from Redis refused: ", why)),
      reason);
}

}  // namespace

std::string RevisionDigest(const std::vector<PolicySource>& sources) {
  std::vector<const PolicySource*> sorted;
  for (const PolicySource& s : sources) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(), [](const PolicySource* a, const PolicySource* b) {
    return a->name != b->name ? a->name < b->name : a->content < b->content;
  });
  std::vector<std::string> prefixes;
  prefixes.reserve(1 + 2 * sorted.size());
  prefixes.push_back(LengthPrefix(sorted.size()));
  for (const PolicySource* s : sorted) {
    prefixes.push_back(LengthPrefix(s->name.size()));
    prefixes.push_back(LengthPrefix(s->content.size()));
  }
  std::vector<absl::string_view> parts = {"toolgate-policy-sources-v1\n", prefixes[0]};
  for (size_t i = 0; i < sorted.size(); ++i) {
    parts.insert(parts.end(),
                 {prefixes[1 + 2 * i], sorted[i]->name, prefixes[2 + 2 * i], sorted[i]->content});
  }
  return Sha256Hex(parts);
}

std::string RevisionSigningMessage(absl::string_view revision, absl::string_view digest) {
  return absl::StrCat("toolgate-policy-revision-v1\n", revision, "\n", digest);
}

RevisionMetadata MakeRevisionMetadata(absl::string_view revision,
                                      const std::vector<PolicySource>& sources,
                                      const Ed25519PrivateKey* key) {
  RevisionMetadata m;
  m.digest = RevisionDigest(sources);
  if (key != nullptr) {
    m.signature = absl::BytesToHexString(key->Sign(RevisionSigningMessage(revision, m.digest)));
    m.key = key->public_key().Fingerprint();
  }
  return m;
}

absl::Status VerifyRevision(absl::string_view revision, const std::vector<PolicySource>& sources,
                            const std::optional<RevisionMetadata>& metadata,
                            const std::vector<Ed25519PublicKey>& keys) {
  if (!metadata.has_value()) {
    if (!keys.empty()) {
      return Refuse(revision, "metadata",
                    "it has no recorded digest or signature (pushed by an older toolgate, or "
                    "written to Redis directly); push it with 'toolgate policy push "
                    "--signing-key KEY.pem'");
    }
    LogWarning("policy revision \"", EscapeForLog(revision),
               "\" in Redis has no recorded digest (pushed by an older toolgate); accepted "
               "because no --policy-verify-key is set");
    return absl::OkStatus();
  }
  if (metadata->digest.size() != 64 || !IsLowerHex(metadata->digest)) {
    return Refuse(revision, "metadata", "its recorded digest is malformed");
  }
  const std::string digest = RevisionDigest(sources);
  if (digest != metadata->digest) {
    return Refuse(revision, "digest",
                  absl::StrCat("its content in Redis does not match the digest recorded when it "
                               "was pushed (",
                               metadata->digest.substr(0, 16), "..., content ",
                               digest.substr(0, 16), "...): changed after the push"));
  }
  if (keys.empty()) return absl::OkStatus();
  if (metadata->signature.empty()) {
    return Refuse(revision, "unsigned",
                  "it is not signed, and --policy-verify-key requires a signature "
                  "('toolgate policy push --signing-key KEY.pem')");
  }
  std::string signature;
  if (metadata->signature.size() != 2 * kEd25519SignatureBytes ||
      !IsLowerHex(metadata->signature)) {
    return Refuse(revision, "signature", "its recorded signature is malformed");
  }
  signature = absl::HexStringToBytes(metadata->signature);
  const std::string message = RevisionSigningMessage(revision, digest);
  for (const Ed25519PublicKey& key : keys) {
    if (key.Verify(message, signature)) return absl::OkStatus();
  }
  return Refuse(revision, "signature",
                absl::StrCat("its signature (by key \"", EscapeForLog(metadata->key.substr(0, 64)),
                             "\") does not verify with any of the ", keys.size(),
                             " --policy-verify-key key(s)"));
}

absl::Status WithRejectionReason(absl::Status error, absl::string_view reason) {
  error.SetPayload(kReasonPayload, absl::Cord(reason));
  return error;
}

std::optional<std::string> RevisionRejectionReason(const absl::Status& status) {
  auto reason = status.GetPayload(kReasonPayload);
  if (!reason.has_value()) return std::nullopt;
  return std::string(*reason);
}

}  // namespace toolgate
