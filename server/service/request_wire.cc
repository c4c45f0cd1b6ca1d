#include "server/service/request_wire.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/base/utf8.h"

namespace toolgate {
namespace {

// Field numbers of toolgate.v1.CheckRequest and google.protobuf's Struct,
// Value and ListValue (and a map entry: key 1, value 2).
constexpr uint32_t kStructFields = 1, kEntryKey = 1, kEntryValue = 2;
constexpr uint32_t kValueString = 3, kValueStruct = 5, kValueList = 6, kListValues = 1;
constexpr uint32_t kRequestArgs = 2;

enum class Scan { kOk, kStop, kBad };

// A cursor over one message's fields.
class Fields {
 public:
  explicit Fields(absl::string_view data) : data_(data) {}

  // Reads the next field: false at the end, or when malformed (malformed()).
  // For a length-delimited field, *bytes is its content.
  bool Next(uint32_t* field, uint32_t* wire_type, absl::string_view* bytes) {
    if (pos_ >= data_.size()) return false;
    uint64_t tag = 0;
    if (!Varint(&tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX) return Fail();
    *field = static_cast<uint32_t>(tag >> 3);
    *wire_type = static_cast<uint32_t>(tag & 7);
    uint64_t n = 0;
    switch (*wire_type) {
      case 0:
        return Varint(&n) || Fail();
      case 1:
        return Skip(8) || Fail();
      case 5:
        return Skip(4) || Fail();
      case 2:
        if (!Varint(&n) || n > data_.size() - pos_) return Fail();
        *bytes = data_.substr(pos_, n);
        pos_ += n;
        return true;
      default:  // Groups: not in these messages.
        return Fail();
    }
  }
  bool malformed() const { return malformed_; }

 private:
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && pos_ < data_.size(); shift += 7) {
      const uint8_t b = static_cast<uint8_t>(data_[pos_++]);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Skip(size_t n) {
    if (n > data_.size() - pos_) return false;
    pos_ += n;
    return true;
  }
  bool Fail() {
    malformed_ = true;
    return false;
  }

  absl::string_view data_;
  size_t pos_ = 0;
  bool malformed_ = false;
};

// The path to the value being scanned: keys and list indexes below `args`.
struct PathPart {
  absl::string_view key;
  int64_t index = -1;  // A list index when >= 0.
};

class ArgsScanner {
 public:
  explicit ArgsScanner(int max_nesting) : max_nesting_(max_nesting) {}

  Scan Struct(absl::string_view data, int depth) {
    if (depth > max_nesting_) return Scan::kStop;
    Fields f(data);
    uint32_t field, type;
    absl::string_view bytes;
    while (f.Next(&field, &type, &bytes)) {
      if (field != kStructFields || type != 2) continue;
      if (Scan s = Entry(bytes, depth + 1); s != Scan::kOk) return s;
    }
    return f.malformed() ? Scan::kStop : Scan::kOk;
  }

  const std::string& problem() const { return problem_; }

 private:
  Scan Entry(absl::string_view data, int depth) {
    if (depth > max_nesting_) return Scan::kStop;
    Fields f(data);
    uint32_t field, type;
    absl::string_view bytes, key;
    bool has_key = false;
    while (f.Next(&field, &type, &bytes)) {
      if (type != 2) continue;
      if (field == kEntryKey) {
        if (const Utf8Problem p = FindUtf8Problem(bytes, false); !p.ok()) {
          return Bad("key", p);
        }
        key = bytes;
        has_key = true;
      } else if (field == kEntryValue) {
        path_.push_back(PathPart{has_key ? key : absl::string_view("?"), -1});
        const Scan s = Value(bytes, depth + 1);
        path_.pop_back();
        if (s != Scan::kOk) return s;
      }
    }
    return f.malformed() ? Scan::kStop : Scan::kOk;
  }

  Scan Value(absl::string_view data, int depth) {
    if (depth > max_nesting_) return Scan::kStop;
    Fields f(data);
    uint32_t field, type;
    absl::string_view bytes;
    while (f.Next(&field, &type, &bytes)) {
      if (type != 2) continue;
      Scan s = Scan::kOk;
      if (field == kValueString) {
        if (const Utf8Problem p = FindUtf8Problem(bytes, false); !p.ok()) {
          return Bad("string value", p);
        }
      } else if (field == kValueStruct) {
        s = Struct(bytes, depth + 1);
      } else if (field == kValueList) {
        s = List(bytes, depth + 1);
      }
      if (s != Scan::kOk) return s;
    }
    return f.malformed() ? Scan::kStop : Scan::kOk;
  }

  Scan List(absl::string_view data, int depth) {
    if (depth > max_nesting_) return Scan::kStop;
    Fields f(data);
    uint32_t field, type;
    absl::string_view bytes;
    int64_t index = 0;
    while (f.Next(&field, &type, &bytes)) {
      if (field != kListValues || type != 2) continue;
      path_.push_back(PathPart{absl::string_view(), index++});
      const Scan s = Value(bytes, depth + 1);
      path_.pop_back();
      if (s != Scan::kOk) return s;
    }
    return f.malformed() ? Scan::kStop : Scan::kOk;
  }

  Scan Bad(absl::string_view what, const Utf8Problem& p) {
    std::string where = "args";
    for (const PathPart& part : path_) {
      if (part.index >= 0) {
        absl::StrAppend(&where, "[", part.index, "]");
      } else {
        absl::StrAppend(&where, ".", EscapeForLog(part.key));
      }
    }
    problem_ = absl::StrCat(where, ": ", what, " ", DescribeUtf8Problem(p));
    return Scan::kBad;
  }

  const int max_nesting_;
  std::vector<PathPart> path_;
  std::string problem_;
};

const char* RequestStringField(uint32_t field) {
  switch (field) {
    case 1:
      return "tool";
    case 3:
      return "grant";
    case 4:
      return "server";
    case 5:
      return "session";
    case 6:
      return "policy_version";
    case 8:
      return "request_id";
    case 10:
      return "args_json";
    default:
      return nullptr;
  }
}

}  // namespace

absl::Status CheckRequestWireUtf8(absl::string_view wire, int max_nesting) {
  Fields f(wire);
  uint32_t field, type;
  absl::string_view bytes;
  while (f.Next(&field, &type, &bytes)) {
    if (type != 2) continue;
    if (const char* name = RequestStringField(field)) {
      if (const Utf8Problem p = FindUtf8Problem(bytes, false); !p.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": ", DescribeUtf8Problem(p)));
      }
    } else if (field == kRequestArgs) {
      ArgsScanner scanner(max_nesting);
      const Scan s = scanner.Struct(bytes, 1);
      if (s == Scan::kBad) return absl::InvalidArgumentError(scanner.problem());
      if (s == Scan::kStop) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace toolgate
