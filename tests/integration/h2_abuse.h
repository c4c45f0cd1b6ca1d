// A raw HTTP/2 client for abusing a gRPC server on purpose: rapid reset
// (HEADERS [+ DATA] + RST_STREAM in a loop, the CVE-2023-44487 pattern),
// connections that stay idle, and streams that never send their message.
// Plaintext, prior knowledge (no upgrade), frames written by hand.
//
// Used by the transport integration tests and by the toolgate_h2abuse tool.
#ifndef TOOLGATE_TESTS_INTEGRATION_H2_ABUSE_H_
#define TOOLGATE_TESTS_INTEGRATION_H2_ABUSE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace toolgate_test {

// The gRPC path every abusive stream asks for.
inline constexpr char kCheckPath[] = "/toolgate.v1.DecisionService/Check";

// TLS for an H2Connection: the CA that issued the server's certificate, and
// a client certificate and key (for mTLS; empty: none).
struct H2Tls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// One HTTP/2 connection written frame by frame. Not thread-safe.
class H2Connection {
 public:
  // Connects to 127.0.0.1:`port` (TCP). With `preface`, sends the client
  // connection preface and an empty SETTINGS frame.
  // With `tls`, does a TLS handshake first (ALPN h2) and speaks HTTP/2
  // inside it.
  static absl::StatusOr<std::unique_ptr<H2Connection>> Connect(int port, bool preface = true,
                                                               absl::Duration timeout =
                                                                   absl::Seconds(5),
                                                               const H2Tls* tls = nullptr);
  ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // Queues frames (sent by Flush or when the queue grows).
  // HEADERS for a gRPC call to `path` (literal header fields without
  // indexing); END_STREAM when `end_stream`.
  void QueueHeaders(uint32_t stream_id, bool end_stream, const std::string& path = kCheckPath);
  // DATA carrying one gRPC message (5-byte prefix + `message`).
  void QueueMessage(uint32_t stream_id, const std::string& message, bool end_stream);
  void QueueRstStream(uint32_t stream_id, uint32_t error_code = 8 /* CANCEL */);
  // PING (not an acknowledgement) with 8 bytes of `opaque`.
  void QueuePing(uint64_t opaque);
  size_t queued() const { return out_.size(); }

  // Writes the queue, waiting (up to `timeout`) while the socket is full and
  // reading what the server sends meanwhile. An error once the server has
  // closed the connection (or reset it).
  absl::Status Flush(absl::Duration timeout = absl::Seconds(5));

  // Reads and handles what the server sent (SETTINGS are acknowledged,
  // PINGs answered, GOAWAY recorded), waiting up to `timeout` for something
  // to arrive. Returns false once the connection is closed.
  bool Poll(absl::Duration timeout);

  // Whether the server sent GOAWAY (and its error code and debug data), and
  // whether it closed the connection.
  bool goaway_seen() const { return goaway_seen_; }
  uint32_t goaway_error() const { return goaway_error_; }
  const std::string& goaway_debug() const { return goaway_debug_; }
  bool closed() const { return closed_; }
  // MAX_CONCURRENT_STREAMS from the server's SETTINGS (0 when not announced).
  uint32_t max_concurrent_streams() const { return max_concurrent_streams_; }
  bool settings_seen() const { return settings_seen_; }
  // Streams the server reset (RST_STREAM frames received).
  uint64_t resets_received() const { return resets_received_; }
  // HEADERS frames received (responses started or trailers).
  uint64_t headers_received() const { return headers_received_; }

 private:
  H2Connection() = default;
  void QueueFrame(uint8_t type, uint8_t flags, uint32_t stream_id, const std::string& payload);
  void HandleInput();
  // read(2) and send(2) on the socket, through TLS when there is a session
  // (with errno EAGAIN when TLS must wait for the socket).
  ssize_t ReadSome(char* buf, size_t size);
  ssize_t WriteSome(const char* buf, size_t size);
  absl::Status Handshake(const H2Tls& tls, absl::Duration timeout);

  int fd_ = -1;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*, SSL* (OpenSSL): null without TLS.
  void* ssl_ = nullptr;
  std::string out_;
  std::string in_;
  bool goaway_seen_ = false;
  uint32_t goaway_error_ = 0;
  std::string goaway_debug_;
  bool closed_ = false;
  bool settings_seen_ = false;
  uint32_t max_concurrent_streams_ = 0;
  uint64_t resets_received_ = 0;
  uint64_t headers_received_ = 0;
};

struct RapidResetResult {
  uint64_t streams = 0;      // Streams opened (and reset).
  bool goaway = false;       // The server sent GOAWAY...
  uint32_t goaway_error = 0;
  std::string goaway_debug;
  bool closed = false;       // ...or closed the connection.
  absl::Duration cut_off_after = absl::InfiniteDuration();  // When the first was seen.
  std::string error;         // Why the connection could not be used, if so.
};

// On one connection: HEADERS (+ DATA with `message` unless empty) +
// RST_STREAM, in a loop, for `duration` or until the server cuts the
// connection off. With `reconnect`, opens a new connection each time one is
// cut off and keeps going until `duration` is over (the result describes the
// first connection; `streams` counts all). With `wait_for_settings`, each
// connection first waits for the server's SETTINGS and acknowledges them,
// as a real client does; otherwise it starts at once.
RapidResetResult RapidReset(int port, absl::Duration duration, const std::string& message,
                            bool reconnect = false, bool wait_for_settings = true,
                            const H2Tls* tls = nullptr);

// The resident set size and its peak of process `pid`, in KiB (from
// /proc/PID/status VmRSS and VmHWM); -1 when unreadable.
struct MemoryUse {
  int64_t rss_kib = -1;
  int64_t hwm_kib = -1;
};
MemoryUse ReadMemoryUse(int pid);

}  // namespace toolgate_test

#endif  // TOOLGATE_TESTS_INTEGRATION_H2_ABUSE_H_
