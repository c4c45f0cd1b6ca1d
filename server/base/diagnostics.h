// Collected, located error messages for policy documents.
//
// Loading a policy never stops at the first problem: every error is recorded
// with the file, line and column it refers to, so one run of `toolgate lint`
// shows everything that is wrong.
#ifndef TOOLGATE_SERVER_BASE_DIAGNOSTICS_H_
#define TOOLGATE_SERVER_BASE_DIAGNOSTICS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "yaml-cpp/yaml.h"

namespace toolgate {

struct Diagnostic {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown.
  int column = 0;  // 1-based; 0 when unknown.
  std::string message;

  // "file:line:col: message"
  std::string ToString() const;
};

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  // Records an error located at `node` (its YAML mark).
  void Error(const YAML::Node& node, std::string message);
  // Records an error at an explicit mark.
  void Error(const YAML::Mark& mark, std::string message);
  // Records an error with no position (e.g. an unreadable file).
  void Error(std::string message);

  bool ok() const { return errors_.empty(); }
  const std::vector<Diagnostic>& errors() const { return errors_; }
  const std::string& file() const { return file_; }
  void Append(const Diagnostics& other);

  // All errors, one per line; INVALID_ARGUMENT status when there are any.
  std::string ToString() const;
  absl::Status ToStatus() const;

 private:
  std::string file_;
  std::vector<Diagnostic> errors_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_DIAGNOSTICS_H_
