// ParseJsonObject (CheckRequest.args_json) on any input: it never crashes,
// never recurses (a depth limit of 8 is checked on what it returns), and
// what it accepts survives a round trip: written back with CanonicalJson and
// parsed again, it is the same object. The fuzzer stops at the first input
// that breaks either.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/base/json.h"
#include "server/base/json_parse.h"

namespace {

constexpr int kMaxDepth = 8;

int Depth(const google::protobuf::Value& v) {
  if (v.has_struct_value()) {
    int d = 0;
    for (const auto& [k, f] : v.struct_value().fields()) d = std::max(d, Depth(f));
    return d + 1;
  }
  if (v.has_list_value()) {
    int d = 0;
    for (const auto& e : v.list_value().values()) d = std::max(d, Depth(e));
    return d + 1;
  }
  return 0;
}

void Fail(const char* what, absl::string_view input) {
  std::fprintf(stderr, "%s: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = toolgate::ParseJsonObject(input, kMaxDepth);
  if (!parsed.ok()) return 0;
  google::protobuf::Value root;
  *root.mutable_struct_value() = *parsed;
  if (Depth(root) > kMaxDepth) Fail("accepted an object nested past the limit", input);
  const std::string text = toolgate::CanonicalJson(*parsed);
  auto again = toolgate::ParseJsonObject(text, kMaxDepth);
  if (!again.ok()) Fail("its own canonical form does not parse", input);
  if (!google::protobuf::util::MessageDifferencer::Equals(*parsed, *again)) {
    Fail("the round trip changed the object", input);
  }
  return 0;
}
