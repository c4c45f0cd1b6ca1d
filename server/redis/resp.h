// Encoding commands in RESP, the Redis protocol: an array of bulk strings,
// "*<argc>\r\n" then "$<len>\r\n<bytes>\r\n" per argument.
//
// Written directly into a caller's buffer, which keeps its capacity from one
// command to the next: no allocation per command once warm, and none of
// hiredis's printf-style formatting, which cost more per check than the
// decision itself.
#ifndef TOOLGATE_SERVER_REDIS_RESP_H_
#define TOOLGATE_SERVER_REDIS_RESP_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace toolgate {

// One command, argument by argument. The caller states the number of
// arguments up front and must then add exactly that many.
class RespCommand {
 public:
  // Replaces the content of `out` (not its capacity) with the command's header.
  RespCommand(std::string* out, size_t argc) : out_(out) {
    out_->clear();
    Header('*', argc);
  }

  void Arg(absl::string_view a) {
    Header('$', a.size());
    out_->append(a.data(), a.size());
    out_->append("\r\n", 2);
  }
  void Arg(int64_t v) { Arg(absl::AlphaNum(v).Piece()); }

  // One argument made of `pieces` one after the other, without building it
  // in a string first.
  void ArgOfPieces(std::initializer_list<absl::string_view> pieces) {
    size_t size = 0;
    for (absl::string_view p : pieces) size += p.size();
    Header('$', size);
    for (absl::string_view p : pieces) out_->append(p.data(), p.size());
    out_->append("\r\n", 2);
  }

 private:
  void Header(char type, size_t n) {
    out_->push_back(type);
    const absl::AlphaNum digits(n);
    out_->append(digits.data(), digits.size());
    out_->append("\r\n", 2);
  }

  std::string* out_;
};

// The command `argv` into `out` (replacing its content).
inline void EncodeCommand(absl::Span<const std::string> argv, std::string* out) {
  RespCommand cmd(out, argv.size());
  for (const std::string& a : argv) cmd.Arg(a);
}

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_RESP_H_
