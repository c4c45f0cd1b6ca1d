#include "server/redis/cluster.h"

#include <hiredis/hiredis.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/redis/reply.h"

namespace toolgate {
namespace {

uint16_t Crc16(absl::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data) {
    crc ^= static_cast<uint16_t>(c) << 8;
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

absl::Status Bad(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("unexpected CLUSTER SLOTS reply: ", why));
}

}  // namespace

int KeySlot(absl::string_view key) {
  if (const size_t open = key.find('{'); open != absl::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != absl::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) & (kClusterSlots - 1);
}

absl::StatusOr<std::vector<SlotRange>> ParseClusterSlots(const redisReply& reply,
                                                         const RedisHost& asked) {
  if (reply.type != REDIS_REPLY_ARRAY) return Bad("not an array");
  if (reply.elements > static_cast<size_t>(kClusterSlots)) return Bad("too many ranges");
  std::vector<SlotRange> out;
  out.reserve(reply.elements);
  for (size_t i = 0; i < reply.elements; ++i) {
    const redisReply* range = reply.element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        range->element[0]->type != REDIS_REPLY_INTEGER ||
        range->element[1]->type != REDIS_REPLY_INTEGER ||
        range->element[2]->type != REDIS_REPLY_ARRAY || range->element[2]->elements < 2) {
      return Bad("a range is not [first, last, [host, port, ...], ...]");
    }
    SlotRange r;
    r.first = static_cast<int>(range->element[0]->integer);
    r.last = static_cast<int>(range->element[1]->integer);
    if (range->element[0]->integer < 0 || range->element[1]->integer >= kClusterSlots ||
        r.first > r.last) {
      return Bad(absl::StrCat("slots ", range->element[0]->integer, "..",
                              range->element[1]->integer));
    }
    const redisReply* node = range->element[2];
    const redisReply* host = node->element[0];
    const redisReply* port = node->element[1];
    if ((host->type != REDIS_REPLY_STRING && host->type != REDIS_REPLY_NIL) ||
        port->type != REDIS_REPLY_INTEGER || port->integer <= 0 || port->integer > 65535) {
      return Bad("a master's address is not host, port");
    }
    const absl::string_view name =
        host->type == REDIS_REPLY_STRING ? ReplyText(*host) : absl::string_view();
    if (name.size() > 255) return Bad("a host name longer than 255 bytes");
    r.master.host = name.empty() || name == "?" ? asked.host : std::string(name);
    r.master.port = static_cast<int>(port->integer);
    out.push_back(std::move(r));
  }
  return out;
}

std::optional<Redirect> ParseRedirect(absl::string_view error, const RedisHost& asked) {
  Redirect out;
  if (absl::ConsumePrefix(&error, "MOVED ")) {
    out.ask = false;
  } else if (absl::ConsumePrefix(&error, "ASK ")) {
    out.ask = true;
  } else {
    return std::nullopt;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(error, ' ');
  if (parts.size() != 2) return std::nullopt;
  if (!absl::SimpleAtoi(parts[0], &out.slot) || out.slot < 0 || out.slot >= kClusterSlots) {
    return std::nullopt;
  }
  const size_t colon = parts[1].rfind(':');
  if (colon == absl::string_view::npos) return std::nullopt;
  absl::string_view host = parts[1].substr(0, colon);
  if (!absl::SimpleAtoi(parts[1].substr(colon + 1), &out.to.port) || out.to.port <= 0 ||
      out.to.port > 65535) {
    return std::nullopt;
  }
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  out.to.host = host.empty() ? asked.host : std::string(host);
  return out;
}

}  // namespace toolgate
