#include "server/base/flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "server/base/duration.h"

namespace toolgate {

FlagSet::FlagSet(std::string usage, std::string env_prefix)
    : usage_(std::move(usage)), env_prefix_(std::move(env_prefix)) {}

void FlagSet::String(const std::string& name, std::string* target, const std::string& help) {
  flags_.push_back({name, help, *target, false, false, [target](const std::string& v) {
                      *target = v;
                      return absl::OkStatus();
                    }});
}

void FlagSet::Int(const std::string& name, int64_t* target, int64_t min, int64_t max,
                  const std::string& help) {
  flags_.push_back(
      {name, help, absl::StrCat(*target), false, false, [target, min, max](const std::string& v) {
         int64_t n = 0;
         if (!absl::SimpleAtoi(v, &n)) {
           return absl::InvalidArgumentError(absl::StrCat("\"", v, "\" is not an integer"));
         }
         if (n < min || n > max) {
           return absl::InvalidArgumentError(
               absl::StrCat(n, " is out of range [", min, ", ", max, "]"));
         }
         *target = n;
         return absl::OkStatus();
       }});
}

void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  flags_.push_back(
      {name, help, *target ? "true" : "false", true, false, [target](const std::string& v) {
         const std::string s = absl::AsciiStrToLower(v);
         if (s == "true" || s == "1" || s == "yes" || s.empty()) {
           *target = true;
         } else if (s == "false" || s == "0" || s == "no") {
           *target = false;
         } else {
           return absl::InvalidArgumentError(
               absl::StrCat("\"", v, "\" is not a boolean (true or false)"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::Duration(const std::string& name, int64_t* target, const std::string& help) {
  flags_.push_back(
      {name, help, FormatMillis(*target), false, false, [target](const std::string& v) {
         auto ms = ParseWindowText(v);
         if (!ms.ok()) {
           // Say what is wrong with a well-formed value; show the form otherwise.
           for (absl::string_view why : {"must be positive", "is longer than"}) {
             if (absl::StrContains(ms.status().message(), why)) {
               return absl::InvalidArgumentError(absl::StrCat(
                   "\"", v, "\": a duration ",
                   why == "must be positive" ? "must be more than zero"
                                             : "must be at most 31 days"));
             }
           }
           return absl::InvalidArgumentError(
               absl::StrCat("\"", v, "\" is not a duration (e.g. \"25ms\", \"2s\", \"1m\")"));
         }
         *target = *ms;
         return absl::OkStatus();
       }});
}

void FlagSet::List(const std::string& name, std::vector<std::string>* target,
                   const std::string& help) {
  flags_.push_back({name, help, "", false, true, [target](const std::string& v) {
                      target->push_back(v);
                      return absl::OkStatus();
                    }});
}

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string FlagSet::EnvName(const std::string& name) const {
  if (env_prefix_.empty()) return "";
  return env_prefix_ + absl::AsciiStrToUpper(absl::StrReplaceAll(name, {{"-", "_"}}));
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> errors;
  // Environment first: the command line overrides it.
  for (Flag& f : flags_) {
    const std::string env = EnvName(f.name);
    if (env.empty()) continue;
    if (const char* v = std::getenv(env.c_str()); v != nullptr && *v != '\0') {
      if (absl::Status s = f.set(v); !s.ok()) {
        errors.push_back(absl::StrCat("environment variable ", env, ": ", s.message()));
      }
    }
  }
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (arg.size() < 2 || arg[0] != '-' || arg == "-") {
      positional.push_back(arg);
      continue;
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    if (body == "help" || body == "h") {
      help_ = true;
      continue;
    }
    std::string name = body, value;
    bool has_value = false;
    if (const size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    Flag* f = Find(name);
    if (f == nullptr && !has_value && name.rfind("no-", 0) == 0) {
      Flag* neg = Find(name.substr(3));
      if (neg != nullptr && neg->is_bool) {
        (void)neg->set("false");
        continue;
      }
    }
    if (f == nullptr) {
      errors.push_back(absl::StrCat("unknown flag --", name));
      continue;
    }
    if (!has_value) {
      if (f->is_bool) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        errors.push_back(absl::StrCat("flag --", name, " needs a value"));
        continue;
      }
    }
    if (absl::Status s = f->set(value); !s.ok()) {
      errors.push_back(absl::StrCat("flag --", name, ": ", s.message()));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return positional;
}

std::string FlagSet::Usage() const {
  std::string out = usage_;
  if (!flags_.empty()) absl::StrAppend(&out, "\n\nFlags:\n");
  for (const Flag& f : flags_) {
    absl::StrAppend(&out, "  --", f.name, f.is_bool ? "" : " VALUE", "\n      ", f.help);
    if (!f.default_text.empty() && !f.is_list)
      absl::StrAppend(&out, " (default: ", f.default_text, ")");
    if (const std::string env = EnvName(f.name); !env.empty()) {
      absl::StrAppend(&out, "\n      env: ", env);
    }
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, "  --help\n      Show this help.\n");
  return out;
}

}  // namespace toolgate
