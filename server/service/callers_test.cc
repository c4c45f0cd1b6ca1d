#include "server/service/callers.h"

#include <fstream>

#include "gtest/gtest.h"

namespace toolgate {
namespace {

TEST(ConnectionIdentitiesTest, LooksUpTheDescriptorOfAnFdPeer) {
  ConnectionIdentities ids;
  ids.Set(7, "spiffe://example.org/ns/ci/sa/ci-bot");
  EXPECT_EQ(ids.Lookup("fd:7"), "spiffe://example.org/ns/ci/sa/ci-bot");
  EXPECT_EQ(ids.Lookup("fd:8"), "");
  EXPECT_EQ(ids.Lookup("ipv4:127.0.0.1:7"), "") << "only connections the gate handed over";
  EXPECT_EQ(ids.Lookup("fd:"), "");
  EXPECT_EQ(ids.Lookup("fd:7x"), "");
  EXPECT_EQ(ids.Lookup("fd:-7"), "");
  // A descriptor number used again by a new connection gets its identity.
  ids.Set(7, "gw.example.org");
  EXPECT_EQ(ids.Lookup("fd:7"), "gw.example.org");
  // A new connection without a usable identity leaves nothing behind.
  ids.Set(7, "");
  EXPECT_EQ(ids.Lookup("fd:7"), "");
}

TEST(AdminTokenTest, RefusesFilesThatHoldNoUsableToken) {
  const std::string dir = ::testing::TempDir();
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << content;
    return path;
  };
  EXPECT_TRUE(AdminToken::Load(write("good", "  abc123\n")).ok());
  for (const auto& [name, content] :
       std::vector<std::pair<std::string, std::string>>{
           {"empty", ""}, {"blank", " \n\t\n"}, {"two-words", "abc def\n"}, {"nul", std::string("a\0b", 3)},
           {"huge", std::string(kMaxAdminTokenBytes + 1, 'a')}}) {
    auto token = AdminToken::Load(write(name, content));
    ASSERT_FALSE(token.ok()) << name;
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(token.status().message().find("--admin-token-file"), std::string::npos) << name;
  }
  EXPECT_FALSE(AdminToken::Load(dir + "/missing").ok());
  EXPECT_FALSE(AdminToken::Load(dir).ok()) << "a directory";
}

}  // namespace
}  // namespace toolgate
