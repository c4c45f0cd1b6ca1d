#include "server/service/decision_ids.h"

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace toolgate {
namespace {

uint64_t RandomPrefix() {
  absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

}  // namespace

DecisionIds::DecisionIds() : prefix_(RandomPrefix()) {}

std::string DecisionIds::Next() {
  const uint64_t words[2] = {prefix_, counter_.fetch_add(1, std::memory_order_relaxed) + 1};
  char bytes[16];
  for (int w = 0; w < 2; ++w) {
    for (int i = 0; i < 8; ++i) bytes[w * 8 + i] = static_cast<char>(words[w] >> (56 - 8 * i));
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

}  // namespace toolgate
