#include "server/base/yaml_util.h"

#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "server/base/utf8.h"
#include "yaml-cpp/eventhandler.h"

namespace toolgate {

namespace {

// Notes where a document's root node is, and keeps nothing else.
class RootMark final : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> mark;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { Note(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { Note(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Note(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Note(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Note(m);
  }
  void OnMapEnd() override {}

 private:
  void Note(const YAML::Mark& m) {
    if (!mark) mark = m;
  }
};

}  // namespace

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

std::string QuoteText(absl::string_view s) { return absl::StrCat("\"", EscapeForLog(s), "\""); }

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

namespace {

// Records an error at each of the first few bytes of `text` that are not
// part of valid UTF-8, located by line and byte column. False when there
// was one.
bool CheckTextUtf8(absl::string_view text, Diagnostics& diags) {
  constexpr int kMaxReported = 10;
  int reported = 0;
  size_t line_start = 0, line = 0, i = 0;
  while (i < text.size() && reported < kMaxReported) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      if (b == '\n') {
        ++line;
        line_start = i + 1;
      }
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(text, i);
    if (n > 0) {
      i += n;
      continue;
    }
    YAML::Mark mark;
    mark.pos = static_cast<int>(i);
    mark.line = static_cast<int>(line);
    mark.column = static_cast<int>(i - line_start);
    diags.Error(mark, absl::StrFormat("not valid UTF-8: byte 0x%02X (YAML and JSON text must be "
                                      "UTF-8; write non-ASCII characters in UTF-8)",
                                      b));
    ++reported;
    ++i;
  }
  return reported == 0;
}

}  // namespace

bool CheckYamlDocument(const YAML::Node& root, const YamlLimits& limits, Diagnostics& diags) {
  constexpr int kMaxReported = 10;
  size_t nodes = 0, scalar_bytes = 0;
  int utf8_errors = 0;
  // Returns false when the walk must stop (a bound was reached).
  struct Frame {
    YAML::const_iterator it, end;
    bool map;
  };
  auto visit = [&](const YAML::Node& n, std::vector<Frame>& stack) {
    if (++nodes > limits.max_nodes) {
      diags.Error(n, absl::StrCat("the document is too large with its aliases expanded: more than ",
                                  limits.max_nodes,
                                  " nodes (each use of an alias counts every node it repeats)"));
      return false;
    }
    if (n.IsScalar()) {
      const std::string& s = n.Scalar();
      scalar_bytes += s.size();
      if (scalar_bytes > limits.max_scalar_bytes) {
        diags.Error(n, absl::StrCat("the document is too large with its aliases expanded: more "
                                    "than ",
                                    limits.max_scalar_bytes,
                                    " bytes of scalar text (each use of an alias counts the text "
                                    "it repeats)"));
        return false;
      }
      const Utf8Problem p = FindUtf8Problem(s, /*forbid_control=*/false);
      if (!p.ok() && utf8_errors < kMaxReported) {
        ++utf8_errors;
        diags.Error(n, absl::StrCat("the value ", QuoteText(s), " is ", DescribeUtf8Problem(p)));
      }
    } else if (n.IsMap() || n.IsSequence()) {
      stack.push_back(Frame{n.begin(), n.end(), n.IsMap()});
    }
    return true;
  };
  std::vector<Frame> stack;
  if (!visit(root, stack)) return false;
  while (!stack.empty()) {
    Frame& top = stack.back();
    if (top.it == top.end) {
      stack.pop_back();
      continue;
    }
    // Copies: yaml-cpp's `it->` yields a temporary, and visiting may grow
    // the stack.
    const YAML::detail::iterator_value item = *top.it;
    const bool pair = top.map;
    ++top.it;
    if (pair) {
      if (!visit(item.first, stack) || !visit(item.second, stack)) return false;
    } else {
      if (!visit(item, stack)) return false;
    }
  }
  return utf8_errors == 0;
}

void ParseSingleDocument(absl::string_view text, absl::string_view empty, absl::string_view extra,
                         Diagnostics& diags, absl::FunctionRef<void(const YAML::Node&)> fn,
                         const YamlLimits& limits) {
  if (!CheckTextUtf8(text, diags)) return;
  try {
    // Not YAML::LoadAll: for a comma at the top level ("[a],", "\"a\",",
    // ",") yaml-cpp 0.7 yields an empty document without consuming the
    // comma, again and again, so LoadAll never returns and allocates until
    // memory runs out. Whether there is a second document is all we need,
    // so at most two are read (events only), then the first one is loaded.
    const std::string input(text);
    std::istringstream in(input);
    YAML::Parser parser(in);
    RootMark first, second;
    const bool has_first = parser.HandleNextDocument(first);
    const bool has_second = has_first && parser.HandleNextDocument(second);
    const YAML::Node root = has_first ? YAML::Load(input) : YAML::Node();
    if (!has_first || root.IsNull()) {
      diags.Error(std::string(empty));
    } else if (has_second) {
      diags.Error(second.mark.value_or(YAML::Mark::null_mark()), std::string(extra));
    } else if (CheckYamlDocument(root, limits, diags)) {
      fn(root);
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
