#include "server/base/json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace toolgate {

namespace pb = ::google::protobuf;

namespace {

// The length of the well-formed UTF-8 sequence at the start of `p` (n bytes
// available, p[0] >= 0x80), or 0 when it is not one.
size_t Utf8SequenceLength(const unsigned char* p, size_t n) {
  size_t len = 0;
  uint32_t cp = 0;
  if ((p[0] & 0xE0) == 0xC0) {
    len = 2;
    cp = p[0] & 0x1F;
  } else if ((p[0] & 0xF0) == 0xE0) {
    len = 3;
    cp = p[0] & 0x0F;
  } else if ((p[0] & 0xF8) == 0xF0) {
    len = 4;
    cp = p[0] & 0x07;
  }
  if (len == 0 || len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  // No overlong forms, surrogates or code points past U+10FFFF.
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

// The two-character escape (a backslash and a character) JSON output uses for
// '"', '\\', newline, carriage return and tab; "" for any other character.
absl::string_view ShortEscape(unsigned char c) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      return "";
  }
}

}  // namespace

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c >= 0x80) {
      const size_t len = Utf8SequenceLength(p + i, n - i);
      if (len == 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD
        ++i;
      } else {
        out->append(s.data() + i, len);
        i += len;
      }
      continue;
    }
    if (const absl::string_view escape = ShortEscape(c); !escape.empty()) {
      out->append(escape.data(), escape.size());
    } else if (c < 0x20) {
      absl::StrAppendFormat(out, "\\u%04x", c);
    } else {
      out->push_back(static_cast<char>(c));
    }
    ++i;
  }
  out->push_back('"');
}

std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {  // 2^53
    return absl::StrCat(static_cast<int64_t>(v));                 // Also -0 as "0".
  }
  std::string text = absl::StrFormat("%.15g", v);
  double back = 0;
  if (!absl::SimpleAtod(text, &back) || back != v) text = absl::StrFormat("%.17g", v);
  return text;
}

void AppendJsonNumber(double v, std::string* out) {
  if (std::isfinite(v)) {
    out->append(FormatNumber(v));
  } else {
    absl::StrAppend(out, "\"", FormatNumber(v), "\"");
  }
}

void AppendJsonStruct(const pb::Struct& s, std::string* out) {
  std::vector<const pb::MapPair<std::string, pb::Value>*> fields;
  fields.reserve(s.fields_size());
  for (const auto& field : s.fields()) fields.push_back(&field);
  std::sort(fields.begin(), fields.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  out->push_back('{');
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(fields[i]->first, out);
    out->push_back(':');
    AppendJsonValue(fields[i]->second, out);
  }
  out->push_back('}');
}

void AppendJsonValue(const pb::Value& v, std::string* out) {
  switch (v.kind_case()) {
    case pb::Value::kNumberValue:
      AppendJsonNumber(v.number_value(), out);
      break;
    case pb::Value::kStringValue:
      AppendJsonString(v.string_value(), out);
      break;
    case pb::Value::kBoolValue:
      out->append(v.bool_value() ? "true" : "false");
      break;
    case pb::Value::kStructValue:
      AppendJsonStruct(v.struct_value(), out);
      break;
    case pb::Value::kListValue: {
      out->push_back('[');
      const auto& values = v.list_value().values();
      for (int i = 0; i < values.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendJsonValue(values[i], out);
      }
      out->push_back(']');
      break;
    }
    case pb::Value::kNullValue:
    case pb::Value::KIND_NOT_SET:
      out->append("null");
      break;
  }
}

std::string ToJson(const pb::Value& v) {
  std::string out;
  AppendJsonValue(v, &out);
  return out;
}

std::string CanonicalJson(const pb::Struct& s) {
  std::string out;
  AppendJsonStruct(s, &out);
  return out;
}

}  // namespace toolgate
