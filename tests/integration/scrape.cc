#include "tests/integration/scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace toolgate_test {

std::string HttpGet(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) return "";
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", address,
                                           "\r\nConnection: close\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.1 200") || body == std::string::npos) return "";
  std::string out = response.substr(body + 4);
  // civetweb may answer with chunked encoding: strip the chunk framing.
  if (absl::StrContains(absl::AsciiStrToLower(response.substr(0, body)),
                        "transfer-encoding: chunked")) {
    std::string plain;
    size_t pos = 0;
    while (pos < out.size()) {
      const size_t eol = out.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = 0;
      if (!absl::SimpleHexAtoi(out.substr(pos, eol - pos), &len) || len == 0) break;
      plain += out.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    out = plain;
  }
  return out;
}

double Sample(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return -1;
}

std::string MetricsAddress(ServerProcess& server) {
  const std::string log = server.log();
  const std::string needle = "metrics listening on ";
  const size_t at = log.find(needle);
  if (at == std::string::npos) return "";
  const size_t end = log.find('\n', at);
  return log.substr(at + needle.size(), end - at - needle.size());
}

}  // namespace toolgate_test
