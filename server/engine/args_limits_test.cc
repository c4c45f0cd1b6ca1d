// Tests of the size and depth limits on a call's arguments.
#include "server/engine/args_limits.h"

#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

namespace pb = ::google::protobuf;

::testing::AssertionResult HasSubstr(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

pb::Struct Obj(const std::string& json) {
  pb::Struct s;
  auto status = pb::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return s;
}

// {"a": {"a": ... {}}} with `depth` levels in all (the outer object is 1).
pb::Struct NestedObjects(int depth) {
  pb::Struct root;
  pb::Struct* cur = &root;
  for (int i = 1; i < depth; ++i) cur = (*cur->mutable_fields())["a"].mutable_struct_value();
  return root;
}

// {"a": [[...[]...]]} with `depth` levels in all.
pb::Struct NestedLists(int depth) {
  pb::Struct root;
  if (depth < 2) return root;
  pb::ListValue* cur = (*root.mutable_fields())["a"].mutable_list_value();
  for (int i = 2; i < depth; ++i) cur = cur->add_values()->mutable_list_value();
  return root;
}

// Takes a deeply nested value apart iteratively, so that the test itself does
// not depend on the recursion of protobuf's destructors.
void Dismantle(pb::Struct* s) {
  std::vector<pb::Value> pending;
  for (auto& [k, v] : *s->mutable_fields()) pending.push_back(std::move(v));
  s->mutable_fields()->clear();
  while (!pending.empty()) {
    pb::Value v = std::move(pending.back());
    pending.pop_back();
    if (v.has_struct_value()) {
      for (auto& [k, child] : *v.mutable_struct_value()->mutable_fields()) {
        pending.push_back(std::move(child));
      }
      v.mutable_struct_value()->mutable_fields()->clear();
    } else if (v.has_list_value()) {
      for (pb::Value& child : *v.mutable_list_value()->mutable_values()) {
        pending.push_back(std::move(child));
      }
      v.mutable_list_value()->clear_values();
    }
  }
}

TEST(ArgsDepth, Objects) {
  EXPECT_EQ(ArgsDepth(pb::Struct()), 1);
  EXPECT_EQ(ArgsDepth(Obj("{}")), 1);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": 1, "b": "x", "c": null, "d": true})")), 1);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": {}})")), 2);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": {"b": {"c": 1}}})")), 3);
  EXPECT_EQ(ArgsDepth(NestedObjects(7)), 7);
}

TEST(ArgsDepth, Arrays) {
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": []})")), 2);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": [1, 2, 3]})")), 2);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": [[1]]})")), 3);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": [{"b": {}}]})")), 4);
  EXPECT_EQ(ArgsDepth(NestedLists(9)), 9);
}

TEST(ArgsDepth, DeepestBranchCounts) {
  EXPECT_EQ(ArgsDepth(Obj(R"({"shallow": {}, "deep": {"x": [{"y": [[]]}]}, "flat": 1})")), 6);
  EXPECT_EQ(ArgsDepth(Obj(R"({"a": [1, {"b": [2, [3, {"c": 4}]]}], "z": [[[]]]})")), 6);
}

TEST(CheckArgsLimits, WithinLimits) {
  EXPECT_TRUE(CheckArgsLimits(Obj(R"({"command": "ls"})"), ArgsLimits()).ok());
  EXPECT_TRUE(CheckArgsLimits(pb::Struct(), ArgsLimits()).ok());
  // Exactly at the depth limit is fine.
  ArgsLimits limits;
  EXPECT_EQ(limits.max_depth, 32);
  EXPECT_TRUE(CheckArgsLimits(NestedObjects(32), limits).ok());
}

TEST(CheckArgsLimits, TooLarge) {
  ArgsLimits limits;
  limits.max_bytes = 1000;
  pb::Struct small = Obj("{\"s\": \"" + std::string(900, 'x') + "\"}");
  EXPECT_TRUE(CheckArgsLimits(small, limits).ok());
  pb::Struct big = Obj("{\"s\": \"" + std::string(1000, 'x') + "\"}");
  absl::Status st = CheckArgsLimits(big, limits);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(st.message());
  EXPECT_TRUE(HasSubstr(msg, "--max-args-bytes"));
  EXPECT_TRUE(HasSubstr(msg, std::to_string(big.ByteSizeLong())));
  EXPECT_TRUE(HasSubstr(msg, "1000"));
  // The default limit is 64 KiB.
  EXPECT_FALSE(CheckArgsLimits(Obj("{\"s\": \"" + std::string(70'000, 'x') + "\"}"), ArgsLimits())
                   .ok());
}

TEST(CheckArgsLimits, TooDeep) {
  ArgsLimits limits;
  limits.max_depth = 4;
  EXPECT_TRUE(CheckArgsLimits(NestedLists(4), limits).ok());
  absl::Status st = CheckArgsLimits(NestedLists(5), limits);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(st.message());
  EXPECT_TRUE(HasSubstr(msg, "--max-args-depth"));
  EXPECT_TRUE(HasSubstr(msg, "nested 5 levels"));
  EXPECT_TRUE(HasSubstr(msg, "limit of 4"));
  EXPECT_FALSE(CheckArgsLimits(NestedObjects(33), ArgsLimits()).ok());
}

TEST(CheckArgsLimits, TenThousandLevelsDoNotCrash) {
  pb::Struct deep = NestedObjects(10'000);
  EXPECT_EQ(ArgsDepth(deep), 10'000);
  absl::Status st = CheckArgsLimits(deep, ArgsLimits());
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  Dismantle(&deep);

  pb::Struct lists = NestedLists(10'000);
  EXPECT_EQ(ArgsDepth(lists), 10'000);
  ArgsLimits big_bytes;
  big_bytes.max_bytes = size_t{1} << 30;
  st = CheckArgsLimits(lists, big_bytes);
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(HasSubstr(std::string(st.message()), "--max-args-depth"));
  Dismantle(&lists);
}

}  // namespace
}  // namespace toolgate
