#include "server/base/json_parse.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/base/utf8.h"

namespace toolgate {
namespace {

namespace pb = google::protobuf;

class Parser {
 public:
  Parser(absl::string_view text, int max_depth, absl::string_view depth_limit_name)
      : s_(text), max_depth_(max_depth), depth_limit_name_(depth_limit_name) {}

  absl::Status RunValue(pb::Value* root) {
    SkipSpace();
    if (absl::Status st = ParseValue(root); !st.ok()) return st;
    SkipSpace();
    if (i_ != s_.size()) return Error("unexpected text after the value");
    return absl::OkStatus();
  }

  absl::StatusOr<pb::Struct> Run() {
    pb::Value root;
    SkipSpace();
    if (i_ >= s_.size() || s_[i_] != '{') return Error("expected an object");
    if (absl::Status st = ParseValue(&root); !st.ok()) return st;
    SkipSpace();
    if (i_ != s_.size()) return Error("unexpected text after the object");
    return std::move(*root.mutable_struct_value());
  }

 private:
  // An open object or array: where its next member goes.
  struct Frame {
    pb::Value* value;
    bool is_object;
  };

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", i_, ": ", what));
  }

  void SkipSpace() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }

  bool Literal(absl::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  absl::Status ParseString(std::string* out) {
    ++i_;  // The opening quote.
    while (true) {
      if (i_ >= s_.size()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("control character in a string (escape it)");
      if (c == '\\') {
        if (absl::Status st = ParseEscape(out); !st.ok()) return st;
        continue;
      }
      const size_t n = c < 0x80 ? 1 : Utf8SequenceLength(s_, i_);
      if (n == 0) return Error("not valid UTF-8");
      out->append(s_.data() + i_, n);
      i_ += n;
    }
  }

  bool Hex4(uint32_t* out) {
    if (i_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_ + k];
      v <<= 4;
      if (h >= '0' && h <= '9') {
        v |= h - '0';
      } else if (h >= 'a' && h <= 'f') {
        v |= h - 'a' + 10;
      } else if (h >= 'A' && h <= 'F') {
        v |= h - 'A' + 10;
      } else {
        return false;
      }
    }
    i_ += 4;
    *out = v;
    return true;
  }

  absl::Status ParseEscape(std::string* out) {
    ++i_;  // The backslash.
    if (i_ >= s_.size()) return Error("unterminated string");
    const char e = s_[i_++];
    switch (e) {
      case '"': out->push_back('"'); return absl::OkStatus();
      case '\\': out->push_back('\\'); return absl::OkStatus();
      case '/': out->push_back('/'); return absl::OkStatus();
      case 'b': out->push_back('\b'); return absl::OkStatus();
      case 'f': out->push_back('\f'); return absl::OkStatus();
      case 'n': out->push_back('\n'); return absl::OkStatus();
      case 'r': out->push_back('\r'); return absl::OkStatus();
      case 't': out->push_back('\t'); return absl::OkStatus();
      case 'u': break;
      default: --i_; return Error("unknown escape");
    }
    uint32_t cp = 0;
    if (!Hex4(&cp)) return Error("\\u needs four hex digits");
    if (cp >= 0xDC00 && cp <= 0xDFFF) return Error("lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t low = 0;
      if (!Literal("\\u") || !Hex4(&low) || low < 0xDC00 || low > 0xDFFF) {
        return Error("high surrogate without its low surrogate");
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return absl::OkStatus();
  }

  absl::Status ParseNumber(pb::Value* out) {
    const size_t start = i_;
    auto digits = [&] {
      const size_t from = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ > from;
    };
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      i_ = start;
      return Error("expected a value");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) return Error("expected digits after the decimal point");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return Error("expected digits in the exponent");
    }
    double v = 0;
    if (!absl::SimpleAtod(s_.substr(start, i_ - start), &v) || !std::isfinite(v)) {
      const size_t end = i_;
      i_ = start;
      absl::Status st = Error("number out of range");
      i_ = end;
      return st;
    }
    out->set_number_value(v);
    return absl::OkStatus();
  }

  // Parses the value at i_ into `out`; objects and arrays are filled
  // member by member with an explicit stack.
  absl::Status ParseValue(pb::Value* out) {
    std::vector<Frame> stack;
    pb::Value* target = out;
    while (true) {
      SkipSpace();
      if (i_ >= s_.size()) return Error("unexpected end of text");
      const char c = s_[i_];
      bool opened = false;
      if (c == '{' || c == '[') {
        if (static_cast<int>(stack.size()) >= max_depth_) {
          return Error(absl::StrCat("nested deeper than ", max_depth_, " (", depth_limit_name_, ")"));
        }
        ++i_;
        if (c == '{') {
          target->mutable_struct_value();
        } else {
          target->mutable_list_value();
        }
        stack.push_back(Frame{target, c == '{'});
        opened = true;
      } else if (c == '"') {
        if (absl::Status st = ParseString(target->mutable_string_value()); !st.ok()) return st;
      } else if (Literal("true")) {
        target->set_bool_value(true);
      } else if (Literal("false")) {
        target->set_bool_value(false);
      } else if (Literal("null")) {
        target->set_null_value(pb::NULL_VALUE);
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (absl::Status st = ParseNumber(target); !st.ok()) return st;
      } else {
        return Error("expected a value");
      }
      // After a value, or an opening bracket: close what ends here, then
      // find where the next value goes.
      bool after_value = !opened;
      while (true) {
        if (stack.empty()) return absl::OkStatus();
        Frame& top = stack.back();
        SkipSpace();
        if (i_ >= s_.size()) return Error("unexpected end of text");
        const char close = top.is_object ? '}' : ']';
        if (s_[i_] == close) {  // (Right after the opening bracket: empty.)
          ++i_;
          stack.pop_back();
          after_value = true;
          continue;
        }
        if (after_value) {
          if (s_[i_] != ',') {
            return Error(top.is_object ? "expected ',' or '}'" : "expected ',' or ']'");
          }
          ++i_;
          SkipSpace();
        }
        if (top.is_object) {
          if (i_ >= s_.size() || s_[i_] != '"') return Error("expected a key (a string)");
          const size_t key_at = i_;
          std::string key;
          if (absl::Status st = ParseString(&key); !st.ok()) return st;
          auto* fields = top.value->mutable_struct_value()->mutable_fields();
          if (fields->count(key) > 0) {
            i_ = key_at;
            return Error(absl::StrCat("duplicate key \"", EscapeForLog(key), "\""));
          }
          SkipSpace();
          if (i_ >= s_.size() || s_[i_] != ':') return Error("expected ':'");
          ++i_;
          target = &(*fields)[key];
        } else {
          target = top.value->mutable_list_value()->add_values();
        }
        break;
      }
    }
  }

  absl::string_view s_;
  const int max_depth_;
  const absl::string_view depth_limit_name_;
  size_t i_ = 0;
};

}  // namespace

absl::StatusOr<pb::Struct> ParseJsonObject(absl::string_view text, int max_depth) {
  return Parser(text, max_depth, "--max-args-depth").Run();
}

absl::StatusOr<pb::Value> ParseJsonValue(absl::string_view text, int max_depth,
                                         absl::string_view depth_limit_name) {
  pb::Value root;
  if (absl::Status s = ParseJsonValueInto(text, max_depth, depth_limit_name, &root); !s.ok()) {
    return s;
  }
  return root;
}

absl::Status ParseJsonValueInto(absl::string_view text, int max_depth,
                                absl::string_view depth_limit_name, pb::Value* out) {
  return Parser(text, max_depth, depth_limit_name).RunValue(out);
}

}  // namespace toolgate
