// Helpers shared by the policy tests (parser_test.cc, loader_test.cc).
#ifndef TOOLGATE_SERVER_POLICY_POLICY_TESTING_H_
#define TOOLGATE_SERVER_POLICY_POLICY_TESTING_H_

#include <algorithm>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "server/base/digest.h"
#include "server/policy/loader.h"
#include "server/policy/policy.h"

namespace toolgate {

// gtest only (the unit tests do not link gmock).
inline ::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "\"" << text << "\"\ndoes not contain\n\"" << part << "\"";
}

inline size_t CountLines(const std::string& text) {
  if (text.empty()) return 0;
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
}

// "sha256:" + the first 12 hex digits of SHA-256(bytes), computed here from
// the bytes a revision is documented to cover, independently of the loader.
inline std::string ExpectedRevision(const std::string& bytes) {
  return "sha256:" + Sha256Hex(bytes).substr(0, 12);
}

inline absl::StatusOr<std::shared_ptr<const Policy>> Load(const std::string& text,
                                                          const std::string& name = "p.yaml") {
  return LoadPolicyFromSources({{name, text}});
}

inline std::shared_ptr<const Policy> MustLoad(const std::string& text,
                                              const std::string& name = "p.yaml") {
  auto p = Load(text, name);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : nullptr;
}

// The error message of a load that must fail with INVALID_ARGUMENT.
inline std::string LoadError(const std::string& text, const std::string& name = "p.yaml") {
  auto p = Load(text, name);
  EXPECT_FALSE(p.ok()) << "loaded, but should have failed:\n" << text;
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
  return std::string(p.status().message());
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_POLICY_POLICY_TESTING_H_
