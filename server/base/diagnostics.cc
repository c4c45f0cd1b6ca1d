#include "server/base/diagnostics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace toolgate {

std::string Diagnostic::ToString() const {
  if (line <= 0) return absl::StrCat(file, ": ", message);
  return absl::StrCat(file, ":", line, ":", column, ": ", message);
}

void Diagnostics::Error(const YAML::Node& node, std::string message) {
  Error(node.Mark(), std::move(message));
}

void Diagnostics::Error(const YAML::Mark& mark, std::string message) {
  // yaml-cpp marks are 0-based; a null mark has line -1.
  Diagnostic d{file_, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0,
               std::move(message)};
  errors_.push_back(std::move(d));
}

void Diagnostics::Error(std::string message) {
  errors_.push_back(Diagnostic{file_, 0, 0, std::move(message)});
}

void Diagnostics::Append(const Diagnostics& other) {
  errors_.insert(errors_.end(), other.errors_.begin(), other.errors_.end());
}

std::string Diagnostics::ToString() const {
  return absl::StrJoin(errors_, "\n",
                       [](std::string* out, const Diagnostic& d) { out->append(d.ToString()); });
}

absl::Status Diagnostics::ToStatus() const {
  if (ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(ToString());
}

}  // namespace toolgate
