// Redis Cluster's routing rules: which of the 16384 hash slots a key is in,
// which master serves which slots (CLUSTER SLOTS), and what a MOVED or ASK
// redirection says. No I/O: the counter store's I/O thread uses these.
#ifndef TOOLGATE_SERVER_REDIS_CLUSTER_H_
#define TOOLGATE_SERVER_REDIS_CLUSTER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/redis/url.h"

struct redisReply;

namespace toolgate {

inline constexpr int kClusterSlots = 16384;

// CRC16 (XMODEM) of the key's hash tag, modulo 16384: the part between the
// first '{' and the first '}' after it when that part is not empty, else
// the whole key (Redis Cluster's specification).
int KeySlot(absl::string_view key);

// A range of slots and the master serving it.
struct SlotRange {
  int first = 0;
  int last = 0;  // Inclusive.
  RedisHost master;
};

// Reads a CLUSTER SLOTS reply. A master announced without an address (an
// empty or "?" host) is taken to be `asked`'s host, as Redis means it.
// INVALID_ARGUMENT when the reply is not of that shape (slots outside
// 0..16383, a first after a last, more than 16384 ranges).
absl::StatusOr<std::vector<SlotRange>> ParseClusterSlots(const redisReply& reply,
                                                         const RedisHost& asked);

// "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>".
struct Redirect {
  bool ask = false;  // ASK: this one command, after ASKING; MOVED: for good.
  int slot = 0;
  RedisHost to;
};
// The redirection an error reply says, or nullopt for any other error. An
// empty host (":port", as Redis sends for an unknown endpoint) is
// `asked`'s host.
std::optional<Redirect> ParseRedirect(absl::string_view error, const RedisHost& asked);

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_CLUSTER_H_
