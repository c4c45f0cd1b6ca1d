// Revision digests, signatures and their verification (revision_signature.h),
// and reading Ed25519 keys from PEM files (server/base/ed25519.h). Keys are
// generated at test time.
#include "server/provider/revision_signature.h"

#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

const std::vector<PolicySource> kSources = {
    {"a.yaml", "version: \"1\"\nrevision: \"r\"\n"},
    {"b.yaml", "version: \"1\"\ndefault: deny\n"},
};

std::string WriteTemp(const std::string& name, const std::string& text) {
  static const std::string dir = [] {
    std::string tmpl = ::testing::TempDir() + "revision_signature_test.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    return tmpl;
  }();
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(RevisionDigestTest, DoesNotDependOnTheOrderOfTheSources) {
  const std::vector<PolicySource> reversed = {kSources[1], kSources[0]};
  EXPECT_EQ(RevisionDigest(kSources), RevisionDigest(reversed));
  EXPECT_EQ(RevisionDigest(kSources).size(), 64u);
}

TEST(RevisionDigestTest, ChangesWithAnyByteOfContentOrName) {
  const std::string base = RevisionDigest(kSources);
  std::vector<PolicySource> content = kSources;
  content[1].content = "version: \"1\"\ndefault: allow\n";
  EXPECT_NE(RevisionDigest(content), base);
  std::vector<PolicySource> renamed = kSources;
  renamed[1].name = "c.yaml";
  EXPECT_NE(RevisionDigest(renamed), base);
  std::vector<PolicySource> more = kSources;
  more.push_back({"c.yaml", ""});
  EXPECT_NE(RevisionDigest(more), base) << "an empty file counts";
}

TEST(RevisionDigestTest, NameAndContentBoundariesAreUnambiguous) {
  // The same bytes split differently between name and content, or between
  // two files, must not give the same digest.
  EXPECT_NE(RevisionDigest({{"ab", "c"}}), RevisionDigest({{"a", "bc"}}));
  EXPECT_NE(RevisionDigest({{"a", "b"}, {"c", "d"}}), RevisionDigest({{"a", "bcd"}}));
  EXPECT_NE(RevisionDigest({{"a", "b\nc"}}), RevisionDigest({{"a", "b"}, {"c", ""}}));
  EXPECT_NE(RevisionDigest({}), RevisionDigest({{"", ""}}));
}

TEST(RevisionSigningMessageTest, BindsNameAndDigestWithADomainPrefix) {
  EXPECT_EQ(RevisionSigningMessage("r1", "ab"), "toolgate-policy-revision-v1\nr1\nab");
  EXPECT_NE(RevisionSigningMessage("r1", "ab"), RevisionSigningMessage("r", "1ab"));
}

TEST(VerifyRevisionTest, SignedRevisionVerifiesWithItsKey) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const RevisionMetadata meta = MakeRevisionMetadata("r", kSources, &key);
  EXPECT_EQ(meta.digest, RevisionDigest(kSources));
  EXPECT_EQ(meta.signature.size(), 128u);
  EXPECT_EQ(meta.key, key.public_key().Fingerprint());
  EXPECT_TRUE(VerifyRevision("r", kSources, meta, {key.public_key()}).ok());
  // Any one of several keys (rotation).
  const Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  EXPECT_TRUE(VerifyRevision("r", kSources, meta, {other.public_key(), key.public_key()}).ok());
}

TEST(VerifyRevisionTest, WrongKeyIsRefused) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const Ed25519PrivateKey other = Ed25519PrivateKey::Generate();
  const absl::Status s = VerifyRevision("r", kSources, MakeRevisionMetadata("r", kSources, &other),
                                        {key.public_key()});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("does not verify with any of the 1 --policy-verify-key"));
  EXPECT_THAT(RevisionRejectionReason(s), Optional(std::string("signature")));
}

TEST(VerifyRevisionTest, SignatureOfAnotherNameIsRefused) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const absl::Status s =
      VerifyRevision("r2", kSources, MakeRevisionMetadata("r", kSources, &key), {key.public_key()});
  EXPECT_THAT(RevisionRejectionReason(s), Optional(std::string("signature")));
}

TEST(VerifyRevisionTest, TamperedContentIsRefusedWithOrWithoutKeys) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const RevisionMetadata meta = MakeRevisionMetadata("r", kSources, &key);
  std::vector<PolicySource> tampered = kSources;
  tampered[1].content = "version: \"1\"\ndefault: allow\n";
  for (const auto& keys : {std::vector<Ed25519PublicKey>{}, {key.public_key()}}) {
    const absl::Status s = VerifyRevision("r", tampered, meta, keys);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(s.message(), HasSubstr("does not match the digest recorded"));
    EXPECT_THAT(RevisionRejectionReason(s), Optional(std::string("digest")));
  }
  // A digest recomputed for the new content does not carry the signature.
  RevisionMetadata forged = meta;
  forged.digest = RevisionDigest(tampered);
  EXPECT_THAT(RevisionRejectionReason(VerifyRevision("r", tampered, forged, {key.public_key()})),
              Optional(std::string("signature")));
  EXPECT_TRUE(VerifyRevision("r", tampered, forged, {}).ok()) << "without keys: digest only";
}

TEST(VerifyRevisionTest, UnsignedAndUnrecordedRevisions) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const RevisionMetadata unsigned_meta = MakeRevisionMetadata("r", kSources, nullptr);
  EXPECT_TRUE(unsigned_meta.signature.empty());
  EXPECT_TRUE(VerifyRevision("r", kSources, unsigned_meta, {}).ok());
  EXPECT_THAT(
      RevisionRejectionReason(VerifyRevision("r", kSources, unsigned_meta, {key.public_key()})),
      Optional(std::string("unsigned")));
  // Pushed by an older toolgate: accepted only without keys.
  EXPECT_TRUE(VerifyRevision("r", kSources, std::nullopt, {}).ok());
  const absl::Status s = VerifyRevision("r", kSources, std::nullopt, {key.public_key()});
  EXPECT_THAT(s.message(), HasSubstr("no recorded digest or signature"));
  EXPECT_THAT(RevisionRejectionReason(s), Optional(std::string("metadata")));
  // Malformed records.
  RevisionMetadata bad = unsigned_meta;
  bad.digest = "zz";
  EXPECT_THAT(RevisionRejectionReason(VerifyRevision("r", kSources, bad, {})),
              Optional(std::string("metadata")));
  bad = MakeRevisionMetadata("r", kSources, &key);
  bad.signature = "not hex";
  EXPECT_THAT(RevisionRejectionReason(VerifyRevision("r", kSources, bad, {key.public_key()})),
              Optional(std::string("signature")));
  EXPECT_FALSE(RevisionRejectionReason(absl::InternalError("x")).has_value());
}

TEST(Ed25519KeyTest, KeysRoundTripThroughPemFiles) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  auto priv = Ed25519PrivateKey::FromPemFile(WriteTemp("k.pem", key.PrivatePem()));
  ASSERT_TRUE(priv.ok()) << priv.status();
  auto pub = Ed25519PublicKey::FromPemFile(WriteTemp("k.pub.pem", key.PublicPem()));
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(pub->raw(), key.public_key().raw());
  const std::string sig = priv->Sign("message");
  EXPECT_TRUE(pub->Verify("message", sig));
  EXPECT_FALSE(pub->Verify("messagf", sig));
  std::string flipped = sig;
  flipped[0] ^= 1;
  EXPECT_FALSE(pub->Verify("message", flipped));
  EXPECT_FALSE(pub->Verify("message", sig.substr(1)));
}

TEST(Ed25519KeyTest, BadKeyFilesAreClearErrorsNamingTheFile) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const std::string priv = WriteTemp("private.pem", key.PrivatePem());
  const std::string pub = WriteTemp("public.pem", key.PublicPem());
  const std::string text = WriteTemp("text.pem", "just text\n");
  const std::string garbage =
      WriteTemp("garbage.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
  const std::string cert =
      WriteTemp("cert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  const std::string missing = ::testing::TempDir() + "/no-such-key.pem";

  auto expect_error = [](const absl::Status& s, const std::string& file, const std::string& why) {
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(file));
    EXPECT_THAT(s.message(), HasSubstr(why));
  };
  expect_error(Ed25519PublicKey::FromPemFile(priv).status(), priv, "a private key, not a public");
  expect_error(Ed25519PrivateKey::FromPemFile(pub).status(), pub, "a public key, not a private");
  expect_error(Ed25519PublicKey::FromPemFile(text).status(), text, "not a PEM file");
  expect_error(Ed25519PublicKey::FromPemFile(garbage).status(), garbage, "not a valid PEM key");
  expect_error(Ed25519PublicKey::FromPemFile(cert).status(), cert, "not a PEM key");
  expect_error(Ed25519PublicKey::FromPemFile(missing).status(), missing, "");
}

TEST(Ed25519KeyTest, KeysOfAnotherAlgorithmAreRefused) {
  // An EC P-256 public key (SubjectPublicKeyInfo).
  const std::string ec =
      WriteTemp("ec.pem",
                "-----BEGIN PUBLIC KEY-----\n"
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtmalDK9GJ5Nv68YCUkEZmT5rSWJg\n"
                "x6zVHn9wbA+Kj1l0No9D5JBCVQ061akYMeC7gEk9Xh8v95pV0lZ3sAXOhw==\n"
                "-----END PUBLIC KEY-----\n");
  auto key = Ed25519PublicKey::FromPemFile(ec);
  ASSERT_FALSE(key.ok());
  EXPECT_THAT(key.status().message(), HasSubstr(ec));
  EXPECT_THAT(key.status().message(), HasSubstr("not Ed25519"));
}

}  // namespace
}  // namespace toolgate
