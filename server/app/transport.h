// Limits on what gRPC clients may take from a toolgated, for every gRPC
// listener:
//
// - ApplyTransportLimits(): channel arguments and a resource quota on a
//   grpc::ServerBuilder: MAX_CONCURRENT_STREAMS announced, gRPC's memory
//   bounded, idle and old connections closed, keepalive pings enforced.
// - ConnectionGate: a listening socket owned by toolgated instead of gRPC.
//   It accepts connections itself (so it keeps accepting after EMFILE once
//   descriptors are free again, and caps the number of connections) and
//   relays each one to the gRPC server through a socket pair, reading the
//   client's HTTP/2 frame headers on the way: a client that resets the
//   streams it opens (rapid reset, CVE-2023-44487), or that resets streams
//   while all clients together reset more than a server-wide rate, is sent
//   GOAWAY (ENHANCE_YOUR_CALM) and disconnected, which the gRPC in Debian 12
//   (1.51) does not do by itself.
//
// With TLS, the gate terminates it (OpenSSL, tls.h): it does the handshake,
// records the client certificate's identity for the connection
// (ConnectionIdentities), hands the connection to gRPC only once the
// handshake is done, and reads the same HTTP/2 frames inside TLS. A client
// that has not finished its handshake within 10 s is disconnected.
#ifndef TOOLGATE_SERVER_APP_TRANSPORT_H_
#define TOOLGATE_SERVER_APP_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "server/app/tls.h"
#include "server/service/callers.h"

namespace toolgate {

struct TransportLimits {
  // Streams a client may have open on one connection (announced in SETTINGS;
  // one more is refused).
  int64_t max_concurrent_streams = 100;
  // Memory gRPC may use for connections and calls (its resource quota):
  // past it, idle connections are sent GOAWAY and streams are cancelled
  // (RESOURCE_EXHAUSTED).
  int64_t max_memory_mib = 128;
  // Connections open at once through a ConnectionGate; one more is accepted
  // and closed at once.
  int64_t max_connections = 1000;
  // A connection without calls for this long is sent GOAWAY and closed.
  int64_t max_connection_idle_ms = 5 * 60 * 1000;
  // A connection this old (±10%) is sent GOAWAY; its calls get the grace
  // period to finish, then it is closed.
  int64_t max_connection_age_ms = 30 * 60 * 1000;
  int64_t max_connection_age_grace_ms = 30 * 1000;
  // Keepalive pings closer together than this (with or without calls) are
  // strikes; after kMaxPingStrikes the connection is sent GOAWAY
  // (too_many_pings) and closed.
  int64_t keepalive_min_interval_ms = 10 * 1000;
  // Rapid reset: every time a client has opened this many streams on a
  // connection, if it reset at least half of them itself, the connection
  // is cut off.
  int64_t reset_check_streams = 200;
  // Rapid reset from many connections (a new one each time one is cut
  // off): streams all clients together may reset per second (at most one
  // second's worth at once); a connection that resets a stream past it is
  // cut off.
  int64_t max_stream_resets_per_second = 1000;
};

inline constexpr int kMaxPingStrikes = 2;

// Sets the limits above (all but the connection cap and the rapid-reset
// check, which a ConnectionGate enforces) on a server being built.
void ApplyTransportLimits(const TransportLimits& limits, grpc::ServerBuilder* builder);

// Raises the soft limit on open descriptors to the hard limit; returns the
// limit in effect.
int64_t RaiseOpenFileLimit();

// Caps the allocator's arenas (glibc: at most 4, fewer with fewer cores)
// unless MALLOC_ARENA_MAX is set, so that a burst of work spread over gRPC's
// threads (e.g. a flood of connections) does not leave each thread's arena
// holding its peak. Call before any thread starts.
void LimitAllocatorArenas();

class ConnectionGate {
 public:
  // Binds `listen` (HOST:PORT; port 0 picks a free one; every address HOST
  // resolves to). UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<ConnectionGate>> Bind(const std::string& listen,
                                                              const TransportLimits& limits);
  // Stops accepting and closes every connection (gRPC then sees them end).
  // Must be destroyed before the server it feeds.
  ~ConnectionGate();
  ConnectionGate(const ConnectionGate&) = delete;
  ConnectionGate& operator=(const ConnectionGate&) = delete;

  int port() const { return port_; }

  // Starts accepting; connections are handed to `server` (built without a
  // listening port, with ApplyTransportLimits). With `tls`, connections are
  // TLS (each gets tls->NewConnection()) and, when `identities` is not null,
  // each connection's client certificate identity is recorded there before
  // gRPC sees it. `identities` must outlive the gate.
  void Start(grpc::Server* server, std::shared_ptr<TlsServerContext> tls = nullptr,
             ConnectionIdentities* identities = nullptr);

 private:
  class Loop;
  ConnectionGate() = default;

  std::vector<int> listeners_;
  int port_ = 0;
  TransportLimits limits_;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_APP_TRANSPORT_H_
