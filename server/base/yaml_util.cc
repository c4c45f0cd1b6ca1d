#include "server/base/yaml_util.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace toolgate {

const char* YamlKindName(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "undefined";
  }
}

bool IsQuotedScalar(const YAML::Node& n) {
  return n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str";
}

std::string QuoteText(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(&out, "\\x", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out += c;
        }
    }
  }
  out += "\"";
  return out;
}

bool LooksNumeric(absl::string_view s) {
  size_t i = 0;
  auto digits = [&]() {
    const size_t start = i;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  const size_t int_digits = digits();
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    frac_digits = digits();
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

void ParseSingleDocument(absl::string_view text, absl::string_view empty, absl::string_view extra,
                         Diagnostics& diags, absl::FunctionRef<void(const YAML::Node&)> fn) {
  try {
    const std::vector<YAML::Node> docs = YAML::LoadAll(std::string(text));
    if (docs.empty() || docs[0].IsNull()) {
      diags.Error(std::string(empty));
    } else if (docs.size() > 1) {
      diags.Error(docs[1], std::string(extra));
    } else {
      fn(docs[0]);
    }
  } catch (const YAML::ParserException& e) {
    diags.Error(e.mark, absl::StrCat("syntax error: ", e.msg));
  } catch (const YAML::Exception& e) {
    diags.Error(e.mark, absl::StrCat("invalid document: ", e.msg));
  }
}

std::string MarkLocation(const std::string& file, const YAML::Mark& m) {
  if (m.line < 0) return file;
  return absl::StrCat(file, ":", m.line + 1, ":", m.column + 1);
}

}  // namespace toolgate
