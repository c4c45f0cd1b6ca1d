#include "server/redis/url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/base/files.h"

namespace toolgate {

namespace {

constexpr absl::string_view kSingleScheme = "redis://";
constexpr absl::string_view kSentinelScheme = "redis+sentinel://";
constexpr absl::string_view kClusterScheme = "redis+cluster://";
constexpr int kSentinelPort = 26379;

// One "host[:port]" ("[v6]:port"); `default_port` when none is given.
absl::StatusOr<RedisHost> ParseHost(absl::string_view text, int default_port) {
  RedisHost out;
  out.port = default_port;
  absl::string_view host = text;
  if (const size_t colon = text.rfind(':');
      colon != absl::string_view::npos && text.find(']', colon) == absl::string_view::npos) {
    host = text.substr(0, colon);
    absl::string_view port = text.substr(colon + 1);
    if (!absl::SimpleAtoi(port, &out.port) || out.port <= 0 || out.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("port \"", port, "\" is not a port number"));
    }
  }
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return absl::InvalidArgumentError("the host is missing");
  out.host = std::string(host);
  return out;
}

absl::string_view Scheme(RedisMode mode) {
  switch (mode) {
    case RedisMode::kSentinel:
      return kSentinelScheme;
    case RedisMode::kCluster:
      return kClusterScheme;
    case RedisMode::kSingle:
      break;
  }
  return kSingleScheme;
}

}  // namespace

std::string RedisHost::ToString() const {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

bool IsRedisUrl(absl::string_view url) {
  return absl::StartsWith(url, kSingleScheme) || absl::StartsWith(url, kSentinelScheme) ||
         absl::StartsWith(url, kClusterScheme);
}

std::string RedisUrl::Redacted() const {
  std::string auth;
  if (!password.empty()) auth = absl::StrCat(username, ":***@");
  if (mode == RedisMode::kSingle) {
    return absl::StrCat(kSingleScheme, auth, RedisHost{host, port}.ToString(), "/", db);
  }
  std::vector<std::string> list;
  for (const RedisHost& h : hosts) list.push_back(h.ToString());
  std::string out = absl::StrCat(Scheme(mode), auth, absl::StrJoin(list, ","));
  if (mode == RedisMode::kSentinel) absl::StrAppend(&out, "/", master_name, "/", db);
  return out;
}

RedisUrl RedisUrl::At(const RedisHost& server) const {
  RedisUrl out;
  out.mode = RedisMode::kSingle;
  out.host = server.host;
  out.port = server.port;
  out.hosts = {server};
  out.username = username;
  out.password = password;
  out.db = db;
  return out;
}

absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid Redis URL: ", why,
        " (expected redis://[:password@]host:port[/db], "
        "redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db] or "
        "redis+cluster://[user:password@]host:port[,host:port...])"));
  };
  if (url.size() > kMaxRedisUrlBytes) {
    return bad(absl::StrCat("it is longer than ", kMaxRedisUrlBytes, " bytes"));
  }
  RedisUrl out;
  absl::string_view rest;
  if (absl::StartsWith(url, kSingleScheme)) {
    out.mode = RedisMode::kSingle;
  } else if (absl::StartsWith(url, kSentinelScheme)) {
    out.mode = RedisMode::kSentinel;
  } else if (absl::StartsWith(url, kClusterScheme)) {
    out.mode = RedisMode::kCluster;
  } else {
    return bad("it must start with redis://, redis+sentinel:// or redis+cluster://");
  }
  rest = url.substr(Scheme(out.mode).size());
  if (const size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = auth.find(':');
    if (colon == absl::string_view::npos) {
      out.password = std::string(auth);
    } else {
      out.username = std::string(auth.substr(0, colon));
      out.password = std::string(auth.substr(colon + 1));
    }
  }
  absl::string_view path;
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  absl::string_view db = path;
  if (out.mode == RedisMode::kSentinel) {
    const size_t slash = path.find('/');
    out.master_name = std::string(path.substr(0, slash));
    db = slash == absl::string_view::npos ? absl::string_view() : path.substr(slash + 1);
    if (out.master_name.empty()) {
      return bad("the master's name is missing (redis+sentinel://hosts/MASTER)");
    }
  } else if (out.mode == RedisMode::kCluster && !path.empty()) {
    return bad("a Redis Cluster has no databases but 0: nothing may follow the hosts");
  }
  if (!db.empty() && (!absl::SimpleAtoi(db, &out.db) || out.db < 0 || out.db > 65535)) {
    return bad(absl::StrCat("database \"", db, "\" is not a number"));
  }
  const int default_port = out.mode == RedisMode::kSentinel ? kSentinelPort : 6379;
  std::vector<absl::string_view> parts = {rest};
  if (out.mode != RedisMode::kSingle) parts = absl::StrSplit(rest, ',');
  if (parts.size() > kMaxRedisHosts) {
    return bad(absl::StrCat("more than ", kMaxRedisHosts, " hosts"));
  }
  for (absl::string_view part : parts) {
    absl::StatusOr<RedisHost> host = ParseHost(part, default_port);
    if (!host.ok()) return bad(host.status().message());
    out.hosts.push_back(*std::move(host));
  }
  out.host = out.hosts.front().host;
  out.port = out.hosts.front().port;
  return out;
}

absl::StatusOr<RedisCredentials> ReadRedisCredentials(const std::string& username_file,
                                                      const std::string& password_file) {
  RedisCredentials out;
  if (!username_file.empty() && password_file.empty()) {
    return absl::InvalidArgumentError(
        "--redis-username-file needs --redis-password-file (the ACL user's password)");
  }
  if (!username_file.empty()) {
    absl::StatusOr<std::string> user = ReadSecretFile(username_file, "--redis-username-file");
    if (!user.ok()) return user.status();
    out.username = *std::move(user);
  }
  if (!password_file.empty()) {
    absl::StatusOr<std::string> password = ReadSecretFile(password_file, "--redis-password-file");
    if (!password.ok()) return password.status();
    out.password = *std::move(password);
  }
  return out;
}

absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url, const RedisCredentials& credentials) {
  absl::StatusOr<RedisUrl> out = ParseRedisUrl(url);
  if (!out.ok()) return out.status();
  if (!credentials.password.empty()) {
    if (!out->password.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--redis-password-file: the Redis URL ", out->Redacted(),
          " also carries a password; give it in one place (the file), not in the URL"));
    }
    out->password = credentials.password;
  }
  if (!credentials.username.empty()) {
    if (!out->username.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--redis-username-file: the Redis URL ", out->Redacted(),
                       " also names a user; give it in one place (the file), not in the URL"));
    }
    out->username = credentials.username;
  }
  return out;
}

std::string InlinePasswordWarning(const std::vector<std::string>& urls) {
  std::vector<std::string> inline_urls;
  for (const std::string& text : urls) {
    if (!IsRedisUrl(text)) continue;
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(text);
    if (url.ok() && !url->password.empty()) inline_urls.push_back(url->Redacted());
  }
  if (inline_urls.empty()) return "";
  return absl::StrCat(
      "the Redis password is inline in ", absl::StrJoin(inline_urls, " and "),
      ": as a flag it is visible to every local user in /proc/PID/cmdline (as an environment "
      "variable, in /proc/PID/environ); put it in a file and pass --redis-password-file "
      "(TOOLGATE_REDIS_PASSWORD_FILE) instead");
}

}  // namespace toolgate
