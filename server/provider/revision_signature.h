// What binds a policy revision in Redis to its content and to whoever
// pushed it (server/provider/redis_policy_store.h):
//
//   - the content digest: SHA-256 over a canonical serialization of the
//     revision's sources (RevisionDigest), recorded at push;
//   - optionally an Ed25519 signature over a domain-separated message
//     binding the revision name and that digest (RevisionSigningMessage),
//     made by `toolgate policy push --signing-key`.
//
// A server checks both before activating a revision from Redis
// (VerifyRevision). A refusal carries a reason (RevisionRejectionReason),
// counted in the metrics as toolgate_policy_rejected_total{reason}.
#ifndef TOOLGATE_SERVER_PROVIDER_REVISION_SIGNATURE_H_
#define TOOLGATE_SERVER_PROVIDER_REVISION_SIGNATURE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/base/ed25519.h"
#include "server/policy/loader.h"

namespace toolgate {

// SHA-256 (64 hex digits) over the sources sorted by name (then content):
// "toolgate-policy-sources-v1\n", the number of sources, then for each its
// name and its content, every number a 20-digit decimal length prefix. The
// order the sources come in does not matter; no two different lists of
// (name, content) share a serialization.
std::string RevisionDigest(const std::vector<PolicySource>& sources);

// The message a revision's signature covers:
// "toolgate-policy-revision-v1\n" + revision + "\n" + digest (hex).
std::string RevisionSigningMessage(absl::string_view revision, absl::string_view digest);

// What `toolgate policy push` records beside a revision's sources.
struct RevisionMetadata {
  std::string digest;     // RevisionDigest of the sources, hex.
  std::string signature;  // Hex Ed25519 signature; empty: unsigned.
  std::string key;        // Fingerprint of the signer's public key; empty: unsigned.
};

// The metadata of `sources` pushed as `revision`, signed with `key` if any.
RevisionMetadata MakeRevisionMetadata(absl::string_view revision,
                                      const std::vector<PolicySource>& sources,
                                      const Ed25519PrivateKey* key);

// Decides whether a revision read from Redis may be activated:
//   - no metadata: accepted (with a warning logged) when `keys` is empty
//     (pushed by an older toolgate), else refused ("metadata");
//   - the sources' digest differs from the recorded one: refused ("digest");
//   - with `keys`: no signature ("unsigned"), or one that verifies with none
//     of them ("signature"): refused.
// A refusal is FAILED_PRECONDITION naming the revision and saying why, with
// the reason attached (RevisionRejectionReason).
absl::Status VerifyRevision(absl::string_view revision, const std::vector<PolicySource>& sources,
                            const std::optional<RevisionMetadata>& metadata,
                            const std::vector<Ed25519PublicKey>& keys);

// `error` with `reason` attached (one of "metadata", "digest", "unsigned",
// "signature", "revision").
absl::Status WithRejectionReason(absl::Status error, absl::string_view reason);
// The reason a revision was refused; nullopt for other errors.
std::optional<std::string> RevisionRejectionReason(const absl::Status& status);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_REVISION_SIGNATURE_H_
