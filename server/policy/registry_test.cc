#include "server/policy/registry.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace {

std::shared_ptr<const Policy> Revision(const std::string& name) {
  auto p = LoadPolicyFromSources(
      {{"p.yaml", absl::StrCat("version: \"1\"\nrevision: \"", name, "\"\n")}});
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

TEST(PolicyRegistryTest, NothingLoadedIsUnavailable) {
  PolicyRegistry registry;
  EXPECT_EQ(registry.Get("").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(registry.active(), nullptr);
}

TEST(PolicyRegistryTest, KeepsTheLastRevisionsForPinning) {
  PolicyRegistry registry(/*keep_revisions=*/3);
  for (int i = 1; i <= 5; ++i) registry.Activate(Revision(absl::StrCat("r", i)));
  EXPECT_EQ(registry.active()->revision(), "r5");
  EXPECT_EQ(registry.loaded_revisions(), (std::vector<std::string>{"r5", "r4", "r3"}));
  EXPECT_EQ((*registry.Get("r3"))->revision(), "r3");
  EXPECT_EQ((*registry.Get(""))->revision(), "r5");
  auto gone = registry.Get("r2");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("loaded: r5, r4, r3"), std::string::npos)
      << gone.status();
}

TEST(PolicyRegistryTest, ReactivatingALoadedRevisionDoesNotDuplicateIt) {
  PolicyRegistry registry(/*keep_revisions=*/5);
  registry.Activate(Revision("a"));
  registry.Activate(Revision("b"));
  registry.Activate(Revision("a"));  // A rollback.
  EXPECT_EQ(registry.active()->revision(), "a");
  EXPECT_EQ(registry.loaded_revisions(), (std::vector<std::string>{"a", "b"}));
}

TEST(PolicyRegistryTest, ShadowIsSeparateFromTheActiveRevision) {
  PolicyRegistry registry;
  registry.Activate(Revision("live"));
  EXPECT_EQ(registry.shadow(), nullptr);
  registry.SetShadow(Revision("candidate"));
  EXPECT_EQ(registry.shadow()->revision(), "candidate");
  EXPECT_EQ(registry.active()->revision(), "live");
  EXPECT_EQ(registry.Get("candidate").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace toolgate
