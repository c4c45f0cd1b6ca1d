#include "tests/integration/h2_abuse.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace toolgate_test {
namespace {

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr uint8_t kData = 0x0, kHeaders = 0x1, kRstStream = 0x3, kSettings = 0x4, kPing = 0x6,
                  kGoaway = 0x7;
constexpr uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4;

void PutU32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

uint32_t GetU32(const std::string& in, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data() + at);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2),
// no Huffman coding; names and values are short (< 127 bytes).
void PutLiteral(std::string* out, const std::string& name, const std::string& value) {
  out->push_back('\0');
  out->push_back(static_cast<char>(name.size()));
  out->append(name);
  out->push_back(static_cast<char>(value.size()));
  out->append(value);
}

int64_t StatusKib(const std::string& status, const std::string& key) {
  const size_t at = status.find(key + ":");
  if (at == std::string::npos) return -1;
  const size_t end = status.find('\n', at);
  absl::string_view value(status.data() + at + key.size() + 1,
                          (end == std::string::npos ? status.size() : end) - at - key.size() - 1);
  value = absl::StripAsciiWhitespace(value);
  absl::ConsumeSuffix(&value, "kB");
  value = absl::StripAsciiWhitespace(value);
  int64_t kib = -1;
  return absl::SimpleAtoi(value, &kib) ? kib : -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<H2Connection>> H2Connection::Connect(int port, bool preface,
                                                                    absl::Duration timeout,
                                                                    const H2Tls* tls) {
  std::unique_ptr<H2Connection> c(new H2Connection());
  c->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
    }
    pollfd p{c->fd_, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) {
      return absl::DeadlineExceededError("connect: timed out");
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return absl::UnavailableError(absl::StrCat("connect: ", strerror(err)));
  }
  const int one = 1;
  setsockopt(c->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (tls != nullptr) {
    if (absl::Status s = c->Handshake(*tls, timeout); !s.ok()) return s;
  }
  if (preface) {
    c->out_.append(kPreface, sizeof(kPreface) - 1);
    c->QueueFrame(kSettings, 0, 0, "");
  }
  return c;
}

H2Connection::~H2Connection() {
  if (ssl_ != nullptr) SSL_free(static_cast<SSL*>(ssl_));
  if (ssl_ctx_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
  if (fd_ >= 0) close(fd_);
}

absl::Status H2Connection::Handshake(const H2Tls& tls, absl::Duration timeout) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ssl_ctx_ = ctx;
  if (SSL_CTX_load_verify_locations(ctx, tls.ca_file.c_str(), nullptr) != 1 ||
      (!tls.cert_file.empty() &&
       (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1))) {
    ERR_clear_error();
    return absl::InvalidArgumentError("cannot load the TLS files");
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  static const unsigned char kH2[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx, kH2, sizeof(kH2));
  SSL* ssl = SSL_new(ctx);
  ssl_ = ssl;
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_fd(ssl, fd_);
  SSL_set_connect_state(ssl);
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const int r = SSL_do_handshake(ssl);
    if (r == 1) return absl::OkStatus();
    const int e = SSL_get_error(ssl, r);
    if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || absl::Now() >= deadline) {
      ERR_clear_error();
      return absl::UnavailableError("TLS handshake failed");
    }
    pollfd p{fd_, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    poll(&p, 1, 50);
  }
}

namespace {

// What a non-blocking read(2) or send(2) would have returned for an OpenSSL
// call that returned `n`: n itself, 0 at the peer's close_notify (reads), or
// -1 with errno EAGAIN (TLS waits for the socket) or `error_errno`.
ssize_t SslIoResult(SSL* ssl, int n, int error_errno) {
  if (n > 0) return n;
  const int e = SSL_get_error(ssl, n);
  ERR_clear_error();
  if (e == SSL_ERROR_ZERO_RETURN && error_errno == ECONNRESET) return 0;
  errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : error_errno;
  return -1;
}

}  // namespace

ssize_t H2Connection::ReadSome(char* buf, size_t size) {
  if (ssl_ == nullptr) return read(fd_, buf, size);
  SSL* ssl = static_cast<SSL*>(ssl_);
  return SslIoResult(ssl, SSL_read(ssl, buf, static_cast<int>(size)), ECONNRESET);
}

ssize_t H2Connection::WriteSome(const char* buf, size_t size) {
  if (ssl_ == nullptr) return send(fd_, buf, size, MSG_NOSIGNAL);
  SSL* ssl = static_cast<SSL*>(ssl_);
  return SslIoResult(ssl, SSL_write(ssl, buf, static_cast<int>(size)), EPIPE);
}

void H2Connection::QueueFrame(uint8_t type, uint8_t flags, uint32_t stream_id,
                              const std::string& payload) {
  const uint32_t len = static_cast<uint32_t>(payload.size());
  out_.push_back(static_cast<char>(len >> 16));
  out_.push_back(static_cast<char>(len >> 8));
  out_.push_back(static_cast<char>(len));
  out_.push_back(static_cast<char>(type));
  out_.push_back(static_cast<char>(flags));
  PutU32(&out_, stream_id & 0x7fffffffu);
  out_.append(payload);
}

void H2Connection::QueueHeaders(uint32_t stream_id, bool end_stream, const std::string& path) {
  std::string block;
  PutLiteral(&block, ":method", "POST");
  PutLiteral(&block, ":scheme", "http");
  PutLiteral(&block, ":path", path);
  PutLiteral(&block, ":authority", "localhost");
  PutLiteral(&block, "content-type", "application/grpc");
  PutLiteral(&block, "te", "trailers");
  QueueFrame(kHeaders, kEndHeaders | (end_stream ? kEndStream : 0), stream_id, block);
}

void H2Connection::QueueMessage(uint32_t stream_id, const std::string& message, bool end_stream) {
  std::string payload(1, '\0');
  PutU32(&payload, static_cast<uint32_t>(message.size()));
  payload.append(message);
  QueueFrame(kData, end_stream ? kEndStream : 0, stream_id, payload);
}

void H2Connection::QueueRstStream(uint32_t stream_id, uint32_t error_code) {
  std::string payload;
  PutU32(&payload, error_code);
  QueueFrame(kRstStream, 0, stream_id, payload);
}

void H2Connection::QueuePing(uint64_t opaque) {
  std::string payload;
  PutU32(&payload, static_cast<uint32_t>(opaque >> 32));
  PutU32(&payload, static_cast<uint32_t>(opaque));
  QueueFrame(kPing, 0, 0, payload);
}

void H2Connection::HandleInput() {
  size_t at = 0;
  while (in_.size() - at >= 9) {
    const auto* h = reinterpret_cast<const unsigned char*>(in_.data() + at);
    const size_t len = (size_t{h[0]} << 16) | (size_t{h[1]} << 8) | h[2];
    if (in_.size() - at < 9 + len) break;
    const uint8_t type = h[3], flags = h[4];
    const std::string payload = in_.substr(at + 9, len);
    at += 9 + len;
    switch (type) {
      case kSettings:
        if ((flags & kAck) == 0) {
          settings_seen_ = true;
          for (size_t i = 0; i + 6 <= payload.size(); i += 6) {
            const uint16_t id = static_cast<uint16_t>((static_cast<unsigned char>(payload[i]) << 8) |
                                                      static_cast<unsigned char>(payload[i + 1]));
            if (id == 0x3) max_concurrent_streams_ = GetU32(payload, i + 2);
          }
          QueueFrame(kSettings, kAck, 0, "");
        }
        break;
      case kPing:
        if ((flags & kAck) == 0) QueueFrame(kPing, kAck, 0, payload);
        break;
      case kGoaway:
        goaway_seen_ = true;
        if (payload.size() >= 8) {
          goaway_error_ = GetU32(payload, 4);
          goaway_debug_ = payload.substr(8);
        }
        break;
      case kRstStream:
        ++resets_received_;
        break;
      case kHeaders:
        ++headers_received_;
        break;
      default:
        break;
    }
  }
  in_.erase(0, at);
}

bool H2Connection::Poll(absl::Duration timeout) {
  if (closed_) return false;
  pollfd p{fd_, POLLIN, 0};
  const bool buffered = ssl_ != nullptr && SSL_pending(static_cast<SSL*>(ssl_)) > 0;
  if (!buffered && poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) {
    return true;
  }
  char buf[16384];
  while (true) {
    const ssize_t n = ReadSome(buf, sizeof(buf));
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    closed_ = true;  // EOF or a reset.
    break;
  }
  HandleInput();
  return !closed_;
}

absl::Status H2Connection::Flush(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t sent = 0;
  while (sent < out_.size()) {
    if (closed_) return absl::UnavailableError("closed by the server");
    const ssize_t n = WriteSome(out_.data() + sent, out_.size() - sent);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      closed_ = true;
      out_.erase(0, sent);
      return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      out_.erase(0, sent);
      return absl::DeadlineExceededError("the server stopped reading");
    }
    pollfd p{fd_, POLLIN | POLLOUT, 0};
    poll(&p, 1, 50);
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const std::string pending = out_.substr(sent);
      out_.clear();
      Poll(absl::ZeroDuration());
      // Acknowledgements queued by Poll go after what was pending.
      out_ = pending + out_;
      sent = 0;
    }
  }
  out_.clear();
  Poll(absl::ZeroDuration());
  return absl::OkStatus();
}

RapidResetResult RapidReset(int port, absl::Duration duration, const std::string& message,
                            bool reconnect, bool wait_for_settings, const H2Tls* tls) {
  RapidResetResult r;
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  bool first = true;
  while (absl::Now() < end) {
    absl::StatusOr<std::unique_ptr<H2Connection>> c =
        H2Connection::Connect(port, /*preface=*/true, absl::Seconds(5), tls);
    if (!c.ok()) {
      if (first) r.error = std::string(c.status().message());
      if (!reconnect || first) return r;
      continue;
    }
    H2Connection& conn = **c;
    if (wait_for_settings) {
      // The server's SETTINGS, acknowledged (as a real client does).
      (void)conn.Flush();
      const absl::Time settings_deadline = absl::Now() + absl::Seconds(2);
      while (!conn.settings_seen() && !conn.closed() && absl::Now() < settings_deadline) {
        conn.Poll(absl::Milliseconds(10));
      }
      (void)conn.Flush();
    }
    uint32_t stream = 1;
    bool cut = false;
    while (absl::Now() < end && stream < 0x7fff0000u) {
      for (int i = 0; i < 64; ++i, stream += 2, ++r.streams) {
        conn.QueueHeaders(stream, message.empty());
        if (!message.empty()) conn.QueueMessage(stream, message, true);
        conn.QueueRstStream(stream);
      }
      const absl::Status flushed = conn.Flush(absl::Seconds(2));
      conn.Poll(absl::ZeroDuration());
      if (conn.goaway_seen() || conn.closed() || !flushed.ok()) {
        if (first) r.cut_off_after = absl::Now() - start;
        cut = conn.goaway_seen() || conn.closed() || absl::IsUnavailable(flushed);
        break;
      }
    }
    if (cut && first) {
      // Wait a little for the close that follows a GOAWAY (or the GOAWAY
      // that preceded a close), to report both.
      const absl::Time wait_until = absl::Now() + absl::Seconds(2);
      while (!conn.closed() && absl::Now() < wait_until) conn.Poll(absl::Milliseconds(50));
      r.goaway = conn.goaway_seen();
      r.goaway_error = conn.goaway_error();
      r.goaway_debug = conn.goaway_debug();
      r.closed = conn.closed();
    } else if (first) {
      r.cut_off_after = absl::InfiniteDuration();
    }
    first = false;
    if (!reconnect) break;
  }
  return r;
}

MemoryUse ReadMemoryUse(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  MemoryUse m;
  m.rss_kib = StatusKib(status, "VmRSS");
  m.hwm_kib = StatusKib(status, "VmHWM");
  return m;
}

}  // namespace toolgate_test
