// Command-line flags with environment-variable fallbacks.
//
// Flags are written `--name=value` or `--name value`; booleans also as
// `--name` and `--no-name`. A flag's environment variable (for toolgated,
// TOOLGATE_ + the name in upper case with '-' as '_') supplies its value when
// the flag is not on the command line. Every bad flag or value is reported,
// with the flag's or variable's name.
//
// (Abseil's flags library cannot express the dashed names of toolgate's
// public flags, such as --max-args-bytes, hence this small parser.)
#ifndef TOOLGATE_SERVER_BASE_FLAGS_H_
#define TOOLGATE_SERVER_BASE_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace toolgate {

class FlagSet {
 public:
  // `env_prefix` (e.g. "TOOLGATE_") enables environment fallbacks; empty
  // disables them.
  FlagSet(std::string usage, std::string env_prefix);

  void String(const std::string& name, std::string* target, const std::string& help);
  void Int(const std::string& name, int64_t* target, int64_t min, int64_t max,
           const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  // A duration such as "25ms", "2s", "1m", stored in milliseconds.
  void Duration(const std::string& name, int64_t* target, const std::string& help);
  // A repeatable flag; each occurrence appends.
  void List(const std::string& name, std::vector<std::string>* target, const std::string& help);

  // Applies the environment, then `args` (without the program name). Returns
  // the positional arguments. Everything after "--" is positional.
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_; }
  // The usage text with every flag, its default and its variable.
  std::string Usage() const;
  // The environment variable a flag reads, or "" when there is none.
  std::string EnvName(const std::string& name) const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    bool is_list = false;
    std::function<absl::Status(const std::string&)> set;
  };
  Flag* Find(const std::string& name);

  std::string usage_;
  std::string env_prefix_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_BASE_FLAGS_H_
