// Argument schemas on untrusted text: the input is a schema document (YAML
// or JSON), then a NUL byte, then an arguments value (YAML or JSON). The
// schema is compiled as a policy's `args:` would be; when it compiles, the
// value (converted as `toolgate test` cases convert theirs) is validated
// against it, as a whole value and, when it is an object, as a call's args.
//
// Compiling must end with a schema or located errors, validation with a
// verdict that agrees with its violations, and neither may crash, leak, hang
// or exhaust memory.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"
#include "server/base/diagnostics.h"
#include "server/base/files.h"
#include "server/base/yaml_json.h"
#include "server/base/yaml_util.h"
#include "server/schema/schema.h"

namespace toolgate {
namespace {

// The nesting a call's args may have at most (--max-args-depth's default).
constexpr int kMaxArgsDepth = 32;

void CheckVerdict(bool ok, const std::vector<toolgate::SchemaViolation>& violations) {
  if (ok != violations.empty()) __builtin_trap();
  for (const SchemaViolation& v : violations) {
    if (v.message.empty() || v.ToString().empty()) __builtin_trap();
  }
}

}  // namespace
}  // namespace toolgate

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace toolgate;
  if (size > kMaxInputFileBytes) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const absl::string_view schema_text = input.substr(0, nul);
  const absl::string_view value_text =
      nul == absl::string_view::npos ? absl::string_view("{}") : input.substr(nul + 1);

  std::unique_ptr<const ArgsSchema> schema;
  Diagnostics schema_diags("schema.yaml");
  ParseSingleDocument(schema_text, "empty", "extra document", schema_diags,
                      [&](const YAML::Node& root) {
                        schema = ArgsSchema::Compile(root, "args", schema_diags);
                      });
  // A schema comes back exactly when no error was recorded.
  if ((schema != nullptr) != schema_diags.ok()) __builtin_trap();
  if (schema == nullptr) return 0;

  google::protobuf::Value value;
  bool have_value = false;
  Diagnostics value_diags("args.yaml");
  ParseSingleDocument(value_text, "empty", "extra document", value_diags,
                      [&](const YAML::Node& root) {
                        have_value = YamlToJson(root, "args", kMaxArgsDepth - 1, value_diags,
                                                &value);
                      });
  if (!have_value || !value_diags.ok()) return 0;

  std::vector<SchemaViolation> violations;
  CheckVerdict(schema->Validate(value, &violations), violations);
  if (schema->Validate(value, nullptr) != violations.empty()) __builtin_trap();
  if (value.kind_case() == google::protobuf::Value::kStructValue) {
    violations.clear();
    CheckVerdict(schema->Validate(value.struct_value(), &violations), violations);
  }
  return 0;
}
