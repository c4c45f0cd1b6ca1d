#include "server/app/transport.h"

#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "grpc/grpc.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server_posix.h"
#include "openssl/err.h"
#include "openssl/ssl.h"
#include "server/app/tls.h"
#include "server/base/log.h"
#include "server/base/utf8.h"

namespace toolgate {

void ApplyTransportLimits(const TransportLimits& limits, grpc::ServerBuilder* builder) {
  auto clamp = [](int64_t v) { return static_cast<int>(std::min<int64_t>(v, INT32_MAX)); };
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                              clamp(limits.max_concurrent_streams));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                              clamp(limits.max_connection_idle_ms));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                              clamp(limits.max_connection_age_ms));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                              clamp(limits.max_connection_age_grace_ms));
  // Pings from clients: allowed with or without calls, at most one per
  // interval; kMaxPingStrikes too many and the connection is closed.
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              clamp(limits.keepalive_min_interval_ms));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kMaxPingStrikes);
  grpc::ResourceQuota quota("toolgated-grpc");
  quota.Resize(static_cast<size_t>(limits.max_memory_mib) << 20);
  builder->SetResourceQuota(quota);
}

int64_t RaiseOpenFileLimit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
  if (r.rlim_cur < r.rlim_max) {
    rlimit raised = r;
    raised.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  return r.rlim_cur == RLIM_INFINITY ? INT64_MAX : static_cast<int64_t>(r.rlim_cur);
}

void LimitAllocatorArenas() {
  if (getenv("MALLOC_ARENA_MAX") != nullptr) return;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  mallopt(M_ARENA_MAX, std::clamp(cores, 2, 4));
}

namespace {

constexpr size_t kPrefaceSize = 24;  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
constexpr uint8_t kFrameHeaders = 0x1, kFrameRstStream = 0x3, kFrameSettings = 0x4;
constexpr size_t kReadChunk = 64 * 1024;
// A TLS client has this long from connecting to finishing its handshake.
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
// After accept() fails for want of descriptors (or memory), the listeners
// rest this long before trying again.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
constexpr absl::Duration kLogEvery = absl::Seconds(10);
// How long a cut-off connection is kept (its input read and dropped) so
// that the client gets the GOAWAY before the connection closes.
constexpr auto kCutLinger = std::chrono::milliseconds(1000);

// A warning logged at most once per kLogEvery, with the number of times it
// was suppressed in between.
class RateLimitedLog {
 public:
  template <typename... Args>
  void Warn(const Args&... args) {
    const absl::Time now = absl::Now();
    if (now - last_ < kLogEvery) {
      ++suppressed_;
      return;
    }
    if (suppressed_ > 0) {
      LogWarning(args..., " (", suppressed_, " more since the last such message)");
    } else {
      LogWarning(args...);
    }
    last_ = now;
    suppressed_ = 0;
  }

 private:
  absl::Time last_ = absl::InfinitePast();
  uint64_t suppressed_ = 0;
};

// Splits one direction of an HTTP/2 connection into frames: skips the
// client's connection preface (when told to), hands each 9-byte frame header
// to `on_header`, and skips the payloads.
class FrameSplitter {
 public:
  explicit FrameSplitter(size_t preface) : preface_left_(preface) {}

  template <typename OnHeader>
  void Feed(const char* data, size_t size, OnHeader on_header) {
    size_t at = 0;
    while (at < size) {
      if (preface_left_ > 0 || payload_left_ > 0) {
        size_t& left = preface_left_ > 0 ? preface_left_ : payload_left_;
        const size_t n = std::min(left, size - at);
        left -= n;
        at += n;
      } else {
        header_[header_len_++] = static_cast<unsigned char>(data[at++]);
        if (header_len_ == 9) {
          header_len_ = 0;
          payload_left_ = (size_t{header_[0]} << 16) | (size_t{header_[1]} << 8) | header_[2];
          on_header(header_);
        }
      }
    }
  }
  // Between two frames: a frame of our own (GOAWAY) may be inserted here.
  bool at_boundary() const { return preface_left_ == 0 && payload_left_ == 0 && header_len_ == 0; }

 private:
  size_t preface_left_;
  size_t payload_left_ = 0;
  unsigned char header_[9] = {};
  size_t header_len_ = 0;
};

// Reads the client's side of an HTTP/2 connection frame header by frame
// header (payloads are skipped) and counts the streams it opens and the
// streams it resets.
class FrameWatcher {
 public:
  // Feeds the next bytes the client sent.
  void Feed(const char* data, size_t size) {
    frames_.Feed(data, size, [this](const unsigned char* header) { OnFrame(header); });
  }
  uint64_t opened() const { return opened_; }
  uint64_t resets() const { return resets_; }
  uint32_t last_stream() const { return last_stream_; }
  // Whether the client acknowledged the server's SETTINGS (from then on
  // gRPC enforces MAX_CONCURRENT_STREAMS on it).
  bool settings_acked() const { return settings_acked_; }

 private:
  void OnFrame(const unsigned char* header) {
    const uint8_t type = header[3];
    const uint32_t stream = ((uint32_t{header[5]} << 24) | (uint32_t{header[6]} << 16) |
                             (uint32_t{header[7]} << 8) | header[8]) &
                            0x7fffffffu;
    if (type == kFrameHeaders && stream > last_stream_) {
      last_stream_ = stream;
      ++opened_;
    } else if (type == kFrameRstStream) {
      ++resets_;
    } else if (type == kFrameSettings && (header[4] & 0x1) != 0) {
      settings_acked_ = true;
    }
  }

  FrameSplitter frames_{kPrefaceSize};
  uint64_t opened_ = 0, resets_ = 0;
  uint32_t last_stream_ = 0;
  bool settings_acked_ = false;
};

std::string GoawayFrame(uint32_t last_stream, absl::string_view debug) {
  constexpr uint32_t kEnhanceYourCalm = 0xb;
  const size_t len = 8 + debug.size();
  std::string f;
  f.push_back(static_cast<char>(len >> 16));
  f.push_back(static_cast<char>(len >> 8));
  f.push_back(static_cast<char>(len));
  f.push_back(0x7);  // GOAWAY
  f.push_back(0);
  f.append(4, '\0');  // Stream 0.
  for (uint32_t v : {last_stream, kEnhanceYourCalm}) {
    for (int shift = 24; shift >= 0; shift -= 8) f.push_back(static_cast<char>(v >> shift));
  }
  f.append(debug.data(), debug.size());
  return f;
}

}  // namespace

// The gate's thread: accepts, relays, watches. Everything but the stop
// request is touched by that thread only.
class ConnectionGate::Loop {
 public:
  Loop(std::vector<int> listeners, const TransportLimits& limits, grpc::Server* server,
       std::shared_ptr<TlsServerContext> tls, ConnectionIdentities* identities)
      : listeners_(std::move(listeners)),
        limits_(limits),
        server_(server),
        tls_(std::move(tls)),
        identities_(identities) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    reserve_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    Add(wake_, EPOLLIN, &wake_tag_);
    for (int fd : listeners_) Add(fd, EPOLLIN, &listener_tag_);
  }

  ~Loop() {
    for (auto& [id, conn] : conns_) {
      if (conn->client >= 0) close(conn->client);
      if (conn->grpc >= 0) close(conn->grpc);
      if (conn->grpc_end >= 0) close(conn->grpc_end);
      if (conn->ssl != nullptr) SSL_free(conn->ssl);
    }
    if (reserve_ >= 0) close(reserve_);
    close(wake_);
    close(epoll_);
  }

  void Stop() {
    stopping_ = true;
    const uint64_t one = 1;
    (void)!write(wake_, &one, sizeof(one));
  }

  void Run() {
    epoll_event events[64];
    while (!stopping_) {
      int timeout_ms = ExpireDeadlines();
      if (paused_) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            resume_at_ - std::chrono::steady_clock::now());
        const int ms = static_cast<int>(std::max<int64_t>(0, left.count() + 1));
        timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
      }
      const int n = epoll_wait(epoll_, events, 64, timeout_ms);
      if (paused_ && std::chrono::steady_clock::now() >= resume_at_) ResumeAccepting();
      for (int i = 0; i < n; ++i) {
        void* tag = events[i].data.ptr;
        if (tag == &wake_tag_) continue;
        if (tag == &listener_tag_) {
          AcceptAll();
          continue;
        }
        auto* side = static_cast<Side*>(tag);
        Conn* conn = side->conn;
        if (dead_.count(conn) > 0) continue;
        OnEvent(conn, side->is_client, events[i].events);
      }
      for (Conn* c : dead_) {
        conns_.erase(c->id);
      }
      dead_.clear();
    }
  }

 private:
  struct Conn;
  struct Side {
    Conn* conn;
    bool is_client;
  };
  struct Conn {
    uint64_t id = 0;
    int client = -1, grpc = -1;
    Side client_side{this, true}, grpc_side{this, false};
    std::string to_grpc, to_client;  // Written when the other side can take it.
    bool client_eof = false, grpc_eof = false;
    bool cut = false;  // Cut off: flushing what is pending to the client, then closing.
    FrameWatcher watcher;
    // The server's side, followed only to know where a GOAWAY of our own
    // may be inserted.
    FrameSplitter server_frames{0};
    uint64_t checked_opened = 0, checked_resets = 0;
    uint32_t client_events = 0, grpc_events = 0;  // Registered interest.
    std::chrono::steady_clock::time_point linger_until;
    // TLS: the connection's state (memory BIOs: the gate reads and writes
    // the socket itself), and gRPC's end of the socket pair, handed to gRPC
    // once the handshake is done (-1 from then on).
    SSL* ssl = nullptr;
    int grpc_end = -1;
    std::chrono::steady_clock::time_point handshake_until;
  };

  void Add(int fd, uint32_t events, void* tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = tag;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }

  void PauseAccepting() {
    if (paused_) return;
    paused_ = true;
    resume_at_ = std::chrono::steady_clock::now() + kAcceptBackoff;
    for (int fd : listeners_) epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  }

  void ResumeAccepting() {
    paused_ = false;
    for (int fd : listeners_) Add(fd, EPOLLIN, &listener_tag_);
  }

  // Out of descriptors: close the reserve one, take the connection at the
  // head of the queue and close it (so that the client learns at once,
  // rather than waiting in the backlog), then rest a while.
  void Shed(int listener, int err) {
    accept_log_.Warn("cannot accept gRPC connections: ", strerror(err), " (", open_,
                     " open; the limit on open files is ", OpenFileLimit(),
                     "); closing new connections and retrying every ",
                     kAcceptBackoff.count(), " ms");
    if (reserve_ >= 0) {
      close(reserve_);
      reserve_ = -1;
      const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) close(fd);
      reserve_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    PauseAccepting();
  }

  static int64_t OpenFileLimit() {
    rlimit r{};
    return getrlimit(RLIMIT_NOFILE, &r) == 0 ? static_cast<int64_t>(r.rlim_cur) : -1;
  }

  void AcceptAll() {
    for (int listener : listeners_) {
      for (int i = 0; i < 256 && !paused_; ++i) {
        const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            Shed(listener, errno);
            return;
          }
          continue;  // ECONNABORTED, EINTR, EPROTO...: the next one.
        }
        if (open_ >= limits_.max_connections) {
          cap_log_.Warn("gRPC connection closed: --max-connections=", limits_.max_connections,
                        " connections are open");
          close(fd);
          continue;
        }
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) {
          const int err = errno;
          close(fd);
          Shed(listener, err);
          return;
        }
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        auto conn = std::make_unique<Conn>();
        conn->id = next_id_++;
        conn->client = fd;
        conn->grpc = pair[0];
        if (tls_ != nullptr) {
          conn->ssl = tls_->NewConnection();
          BIO* in = BIO_new(BIO_s_mem());
          BIO* out = BIO_new(BIO_s_mem());
          if (conn->ssl == nullptr || in == nullptr || out == nullptr) {
            BIO_free(in);
            BIO_free(out);
            if (conn->ssl != nullptr) SSL_free(conn->ssl);
            for (int f : {fd, pair[0], pair[1]}) close(f);
            ERR_clear_error();
            Shed(listener, ENOMEM);
            return;
          }
          SSL_set_bio(conn->ssl, in, out);
          SSL_set_accept_state(conn->ssl);
          conn->grpc_end = pair[1];
          conn->handshake_until = std::chrono::steady_clock::now() + kHandshakeTimeout;
        }
        Conn* c = conn.get();
        conns_.emplace(c->id, std::move(conn));
        ++open_;
        if (c->ssl != nullptr) {
          handshaking_.insert(c);
        } else {
          // gRPC owns pair[1] from here on.
          grpc::AddInsecureChannelFromFd(server_, pair[1]);
        }
        c->client_events = EPOLLIN | EPOLLRDHUP;
        c->grpc_events = EPOLLIN | EPOLLRDHUP;
        Add(c->client, c->client_events, &c->client_side);
        Add(c->grpc, c->grpc_events, &c->grpc_side);
      }
    }
  }

  void SetInterest(Conn* c) {
    auto want = [](bool read, bool write) {
      return (read ? static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP) : 0u) |
             (write ? static_cast<uint32_t>(EPOLLOUT) : 0u);
    };
    // Read a side only while the other has nothing pending from it
    // (back-pressure: a client cannot push faster than gRPC reads).
    const uint32_t client =
        want(!c->cut && !c->client_eof && c->grpc >= 0 && c->to_grpc.empty(),
             !c->to_client.empty());
    const uint32_t grpc =
        want(!c->cut && !c->grpc_eof && c->to_client.empty(), !c->to_grpc.empty() && !c->cut);
    if (client != c->client_events) {
      epoll_event ev{};
      ev.events = client;
      ev.data.ptr = &c->client_side;
      epoll_ctl(epoll_, EPOLL_CTL_MOD, c->client, &ev);
      c->client_events = client;
    }
    if (c->grpc >= 0 && grpc != c->grpc_events) {
      epoll_event ev{};
      ev.events = grpc;
      ev.data.ptr = &c->grpc_side;
      epoll_ctl(epoll_, EPOLL_CTL_MOD, c->grpc, &ev);
      c->grpc_events = grpc;
    }
  }

  void Close(Conn* c) {
    if (dead_.count(c) > 0) return;
    for (int fd : {c->client, c->grpc}) {
      if (fd < 0) continue;
      epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
      close(fd);
    }
    c->client = c->grpc = -1;
    if (c->grpc_end >= 0) close(c->grpc_end);
    c->grpc_end = -1;
    if (c->ssl != nullptr) SSL_free(c->ssl);
    c->ssl = nullptr;
    lingering_.erase(c);
    handshaking_.erase(c);
    --open_;
    dead_.insert(c);
  }

  // Writes as much of `pending` as `fd` takes; false on a write error.
  static bool Drain(int fd, std::string* pending) {
    while (!pending->empty()) {
      const ssize_t n = send(fd, pending->data(), pending->size(), MSG_NOSIGNAL);
      if (n > 0) {
        pending->erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
  }

  // Reads what `from` has and passes it on to `to` (keeping the rest in
  // `pending`); false when the connection must be closed now.
  bool Pump(Conn* c, bool from_client) {
    if (c->grpc < 0) return !from_client || c->to_grpc.empty();  // gRPC has gone.
    if (c->ssl != nullptr && from_client) return PumpTlsFromClient(c);
    const int from = from_client ? c->client : c->grpc;
    const int to = from_client ? c->grpc : c->client;
    std::string* pending = from_client ? &c->to_grpc : &c->to_client;
    char buf[kReadChunk];
    while (pending->empty()) {
      const ssize_t n = read(from, buf, sizeof(buf));
      if (n == 0) {
        (from_client ? c->client_eof : c->grpc_eof) = true;
        return true;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        return false;  // ECONNRESET and the like.
      }
      if (from_client) {
        const uint64_t resets_before = c->watcher.resets();
        c->watcher.Feed(buf, static_cast<size_t>(n));
        if (ResetTooMuch(c, c->watcher.resets() - resets_before)) return true;
      } else {
        c->server_frames.Feed(buf, static_cast<size_t>(n), [](const unsigned char*) {});
      }
      if (!from_client && c->ssl != nullptr) {
        if (!SendToClient(c, absl::string_view(buf, static_cast<size_t>(n)))) return false;
      } else {
        pending->assign(buf, static_cast<size_t>(n));
      }
      if (!Drain(to, pending)) return false;
      if (static_cast<size_t>(n) < sizeof(buf)) return true;
    }
    return true;
  }

  // The rapid-reset checks, and MAX_CONCURRENT_STREAMS for a client that
  // has not acknowledged it (gRPC 1.51 enforces it only once acknowledged);
  // cuts `c` off (true) when one fails. `new_resets`: the streams reset in
  // what was just read.
  bool ResetTooMuch(Conn* c, uint64_t new_resets) {
    const char* why = "too many reset streams";
    if (!c->watcher.settings_acked() &&
        c->watcher.opened() > static_cast<uint64_t>(limits_.max_concurrent_streams)) {
      reset_log_.Warn("gRPC connection cut off (GOAWAY ENHANCE_YOUR_CALM): the client opened ",
                      c->watcher.opened(), " streams without acknowledging SETTINGS");
      why = "too many streams before acknowledging SETTINGS";
    } else if (new_resets > 0 && !TakeResets(new_resets)) {
      reset_log_.Warn("gRPC connection cut off (GOAWAY ENHANCE_YOUR_CALM): clients reset more "
                      "than --max-stream-resets=",
                      limits_.max_stream_resets_per_second, " streams a second");
      why = "too many reset streams on this server";
    } else {
      const uint64_t opened = c->watcher.opened() - c->checked_opened;
      if (opened < static_cast<uint64_t>(limits_.reset_check_streams)) return false;
      const uint64_t resets = c->watcher.resets() - c->checked_resets;
      c->checked_opened = c->watcher.opened();
      c->checked_resets = c->watcher.resets();
      if (resets * 2 < opened) return false;
      reset_log_.Warn("gRPC connection cut off (GOAWAY ENHANCE_YOUR_CALM): the client reset ",
                      resets, " of the last ", opened, " streams it opened");
    }
    c->cut = true;
    // The GOAWAY goes after what gRPC has sent, if that ends on a frame
    // boundary; otherwise the connection is just closed.
    if (c->server_frames.at_boundary()) {
      (void)SendToClient(c, GoawayFrame(c->watcher.last_stream(), why));
    }
    // What the client sent in this read and after is dropped.
    c->to_grpc.clear();
    return true;
  }

  void OnEvent(Conn* c, bool is_client, uint32_t events) {
    if (c->cut) {
      // Cut off: the GOAWAY is on its way; what the client still sends is
      // read and dropped until it closes or kCutLinger is over (closing
      // with unread input would reset the connection and could lose the
      // GOAWAY).
      if (!Discard(c)) Close(c);
      return;
    }
    if (events & EPOLLERR) return Close(c);
    // A hang-up is reported whatever the interest, so it is dealt with at
    // once: the client gone, the connection closes; gRPC gone, what it sent
    // last goes to the client first.
    if (events & EPOLLHUP) {
      if (is_client) return Close(c);
      if (!TakeLastFromGrpc(c) || c->to_client.empty()) return Close(c);
    }
    if (events & EPOLLOUT) {
      std::string* pending = is_client ? &c->to_client : &c->to_grpc;
      if (!Drain(is_client ? c->client : c->grpc, pending)) return Close(c);
      // TLS: what was already read from the client and not yet decrypted
      // (held back while gRPC could not take more) goes on now.
      if (!is_client && c->ssl != nullptr && c->to_grpc.empty() && !Decrypt(c)) return Close(c);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
      if (!Pump(c, is_client)) return Close(c);
    }
    if (c->cut) {
      BeginLinger(c);
      return;
    }
    // Either side gone: the other gets what is pending, then both close.
    if ((c->client_eof || c->grpc_eof) && c->to_grpc.empty() && c->to_client.empty()) {
      return Close(c);
    }
    SetInterest(c);
  }

  // gRPC closed its end: reads what is left into to_client and closes
  // it; false on an error.
  bool TakeLastFromGrpc(Conn* c) {
    char buf[kReadChunk];
    bool ok = true;
    while (true) {
      const ssize_t n = read(c->grpc, buf, sizeof(buf));
      if (n > 0) {
        if (c->ssl != nullptr) {
          if (!SendToClient(c, absl::string_view(buf, static_cast<size_t>(n)))) ok = false;
        } else {
          c->to_client.append(buf, static_cast<size_t>(n));
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      ok = n == 0 || errno == EAGAIN || errno == EWOULDBLOCK;
      break;
    }
    c->grpc_eof = true;
    epoll_ctl(epoll_, EPOLL_CTL_DEL, c->grpc, nullptr);
    close(c->grpc);
    c->grpc = -1;
    return ok;
  }

  // After a cut: the GOAWAY written (as far as it goes), no more writes, the
  // gRPC side closed.
  void BeginLinger(Conn* c) {
    if (!Drain(c->client, &c->to_client)) return Close(c);
    shutdown(c->client, SHUT_WR);
    if (c->grpc >= 0) {
      epoll_ctl(epoll_, EPOLL_CTL_DEL, c->grpc, nullptr);
      close(c->grpc);
      c->grpc = -1;
    }
    c->linger_until = std::chrono::steady_clock::now() + kCutLinger;
    lingering_.insert(c);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = &c->client_side;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c->client, &ev);
  }

  // Takes `n` from the server-wide budget of stream resets (refilled at
  // --max-stream-resets a second, holding at most one second's worth);
  // false when there are not that many left.
  bool TakeResets(uint64_t n) {
    const auto now = std::chrono::steady_clock::now();
    const double rate = static_cast<double>(limits_.max_stream_resets_per_second);
    reset_tokens_ = std::min(
        rate, reset_tokens_ + rate * std::chrono::duration<double>(now - reset_refill_).count());
    reset_refill_ = now;
    if (reset_tokens_ < static_cast<double>(n)) return false;
    reset_tokens_ -= static_cast<double>(n);
    return true;
  }

  // Reads and drops the client's input; false at its end (or an error).
  bool Discard(Conn* c) {
    char buf[kReadChunk];
    while (true) {
      const ssize_t n = read(c->client, buf, sizeof(buf));
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }

  // Closes the cut-off connections whose linger time is over, and the TLS
  // connections whose handshake took too long; returns how long until the
  // next such deadline (-1: none).
  int ExpireDeadlines() {
    const auto now = std::chrono::steady_clock::now();
    int next = -1;
    auto expire = [&](const absl::flat_hash_set<Conn*>& set,
                      std::chrono::steady_clock::time_point Conn::*deadline, bool handshake) {
      const std::vector<Conn*> conns(set.begin(), set.end());
      for (Conn* c : conns) {
        if (c->*deadline <= now) {
          if (handshake) {
            tls_log_.Warn("TLS connection closed: no handshake within ",
                          absl::FormatDuration(absl::FromChrono(kHandshakeTimeout)));
          }
          Close(c);
        } else {
          const int ms = static_cast<int>(
              std::chrono::duration_cast<std::chrono::milliseconds>(c->*deadline - now).count() +
              1);
          next = next < 0 ? ms : std::min(next, ms);
        }
      }
    };
    expire(lingering_, &Conn::linger_until, false);
    expire(handshaking_, &Conn::handshake_until, true);
    return next;
  }

  // TLS: encrypts `plain` for the client (appended to to_client); false on
  // a TLS error.
  bool SendToClient(Conn* c, absl::string_view plain) {
    if (c->ssl == nullptr) {
      c->to_client.append(plain.data(), plain.size());
      return true;
    }
    while (!plain.empty()) {
      const int n = SSL_write(c->ssl, plain.data(),
                              static_cast<int>(std::min<size_t>(plain.size(), INT32_MAX)));
      if (n <= 0) {
        ERR_clear_error();
        return false;
      }
      plain.remove_prefix(static_cast<size_t>(n));
    }
    FlushTls(c);
    return true;
  }

  // TLS: moves what OpenSSL wrote (records, handshake messages, alerts) to
  // to_client.
  static void FlushTls(Conn* c) {
    BIO* out = SSL_get_wbio(c->ssl);
    for (size_t pending = BIO_ctrl_pending(out); pending > 0; pending = BIO_ctrl_pending(out)) {
      const size_t at = c->to_client.size();
      c->to_client.resize(at + pending);
      const int n = BIO_read(out, &c->to_client[at], static_cast<int>(pending));
      c->to_client.resize(at + static_cast<size_t>(std::max(n, 0)));
      if (n <= 0) break;
    }
  }

  // TLS, the client's side: reads what the socket has into OpenSSL and
  // decrypts it; false when the connection must be closed now.
  bool PumpTlsFromClient(Conn* c) {
    char buf[kReadChunk];
    BIO* in = SSL_get_rbio(c->ssl);
    while (c->to_grpc.empty() && !c->cut) {
      const ssize_t n = read(c->client, buf, sizeof(buf));
      if (n == 0) {
        c->client_eof = true;
        return true;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
      }
      BIO_write(in, buf, static_cast<int>(n));
      if (!Decrypt(c)) return false;
      if (static_cast<size_t>(n) < sizeof(buf)) break;
    }
    return true;
  }

  // TLS: advances the handshake (handing the connection to gRPC once it is
  // done), then decrypts what OpenSSL holds into to_grpc while gRPC takes
  // it; false when the connection must be closed now.
  bool Decrypt(Conn* c) {
    if (c->cut || c->grpc < 0) return true;
    if (c->grpc_end >= 0) {
      const int r = SSL_do_handshake(c->ssl);
      FlushTls(c);
      if (r != 1) {
        const int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
        const unsigned long why = ERR_peek_error();
        tls_log_.Warn("TLS handshake failed: ",
                      why != 0 ? ERR_reason_error_string(why) : "connection closed");
        ERR_clear_error();
        (void)Drain(c->client, &c->to_client);  // The alert, as far as it goes.
        return false;
      }
      // The caller's identity, recorded before gRPC can see a call.
      if (identities_ != nullptr) identities_->Set(c->grpc_end, PeerIdentity(c->ssl));
      handshaking_.erase(c);
      grpc::AddInsecureChannelFromFd(server_, c->grpc_end);  // gRPC owns it from here on.
      c->grpc_end = -1;
    }
    char buf[kReadChunk];
    while (c->to_grpc.empty()) {
      const int n = SSL_read(c->ssl, buf, sizeof(buf));
      if (n <= 0) {
        const int e = SSL_get_error(c->ssl, n);
        FlushTls(c);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
        if (e == SSL_ERROR_ZERO_RETURN) {
          c->client_eof = true;  // close_notify.
          return true;
        }
        return false;
      }
      const uint64_t resets_before = c->watcher.resets();
      c->watcher.Feed(buf, static_cast<size_t>(n));
      if (ResetTooMuch(c, c->watcher.resets() - resets_before)) return true;
      c->to_grpc.assign(buf, static_cast<size_t>(n));
      if (!Drain(c->grpc, &c->to_grpc)) return false;
    }
    return true;
  }

  const std::vector<int> listeners_;
  const TransportLimits limits_;
  grpc::Server* const server_;
  const std::shared_ptr<TlsServerContext> tls_;  // Null: plaintext.
  ConnectionIdentities* const identities_;        // Null: not recorded.
  int epoll_ = -1, wake_ = -1, reserve_ = -1;
  int wake_tag_ = 0, listener_tag_ = 0;
  std::atomic<bool> stopping_{false};
  bool paused_ = false;
  std::chrono::steady_clock::time_point resume_at_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  absl::flat_hash_set<Conn*> dead_;
  absl::flat_hash_set<Conn*> lingering_;
  absl::flat_hash_set<Conn*> handshaking_;  // TLS handshake not done yet.
  double reset_tokens_ = static_cast<double>(limits_.max_stream_resets_per_second);
  std::chrono::steady_clock::time_point reset_refill_ = std::chrono::steady_clock::now();
  RateLimitedLog accept_log_, cap_log_, reset_log_, tls_log_;
  int64_t open_ = 0;  // Connections relayed now (lingering ones included).
};

absl::StatusOr<std::unique_ptr<ConnectionGate>> ConnectionGate::Bind(
    const std::string& listen, const TransportLimits& limits) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.empty() || host == "*" ? nullptr : host.c_str(),
                                 port.c_str(), &hints, &found);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<ConnectionGate> gate(new ConnectionGate());
  gate->limits_ = limits;
  std::string error;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = strerror(errno);
      continue;
    }
    const int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    // "[::]" serves IPv4 as well, as gRPC's own listener does.
    if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    // Every address on the same port (the one the first got, for port 0).
    if (gate->port_ != 0) {
      if (a->ai_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_port = htons(gate->port_);
      } else if (a->ai_family == AF_INET6) {
        reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_port = htons(gate->port_);
      }
    }
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      error = strerror(errno);
      close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    const int p = bound.ss_family == AF_INET
                      ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                      : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    if (gate->port_ == 0) gate->port_ = p;
    gate->listeners_.push_back(fd);
    if (host.empty() || host == "*") break;  // The first wildcard (dual-stack) is enough.
  }
  freeaddrinfo(found);
  if (gate->listeners_.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ", error));
  }
  return gate;
}

void ConnectionGate::Start(grpc::Server* server, std::shared_ptr<TlsServerContext> tls,
                           ConnectionIdentities* identities) {
  loop_ = std::make_unique<Loop>(listeners_, limits_, server, std::move(tls), identities);
  thread_ = std::thread([this] { loop_->Run(); });
}

ConnectionGate::~ConnectionGate() {
  if (loop_ != nullptr) {
    loop_->Stop();
    thread_.join();
    loop_.reset();
  }
  for (int fd : listeners_) close(fd);
}

}  // namespace toolgate
