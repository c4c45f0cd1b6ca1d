// Tests of the hex digests against published test vectors.
#include "server/base/digest.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

TEST(Sha256Hex, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(std::string("a\0b", 3)).size(), 64u);
}

TEST(Sha256Hex, PartsHashAsTheirConcatenation) {
  EXPECT_EQ(Sha256Hex({"a", "", "bc"}), Sha256Hex("abc"));
  EXPECT_EQ(Sha256Hex(absl::Span<const absl::string_view>()), Sha256Hex(""));
  const std::string nul(1, '\0');
  const std::vector<absl::string_view> parts = {"x.yaml", nul, "body", nul};
  EXPECT_EQ(Sha256Hex(parts), Sha256Hex(std::string("x.yaml") + nul + "body" + nul));
}

// RFC 4231, test cases 1 and 2.
TEST(HmacSha256Hex, KnownVectors) {
  EXPECT_EQ(HmacSha256Hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_NE(HmacSha256Hex("Jefe", "abc"), HmacSha256Hex("Jeff", "abc"));
  EXPECT_NE(HmacSha256Hex("Jefe", "abc"), Sha256Hex("abc"));
  EXPECT_EQ(HmacSha256Hex("", "abc").size(), 64u);
}

TEST(Sha1Hex, KnownVectors) {
  EXPECT_EQ(Sha1Hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(Sha1Hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
}

}  // namespace
}  // namespace toolgate
