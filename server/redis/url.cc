#include "server/redis/url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/base/files.h"

namespace toolgate {

std::string RedisUrl::Redacted() const {
  std::string auth;
  if (!password.empty()) auth = absl::StrCat(username, ":***@");
  return absl::StrCat("redis://", auth, host, ":", port, "/", db);
}

absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid Redis URL: ", why, " (expected redis://[:password@]host:port[/db])"));
  };
  constexpr absl::string_view kScheme = "redis://";
  if (!absl::StartsWith(url, kScheme)) return bad("it must start with redis://");
  absl::string_view rest = url.substr(kScheme.size());
  RedisUrl out;
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
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && (!absl::SimpleAtoi(db, &out.db) || out.db < 0 || out.db > 65535)) {
      return bad(absl::StrCat("database \"", db, "\" is not a number"));
    }
  }
  absl::string_view host = rest;
  if (const size_t colon = rest.rfind(':'); colon != absl::string_view::npos &&
                                            rest.find(']', colon) == absl::string_view::npos) {
    host = rest.substr(0, colon);
    absl::string_view port = rest.substr(colon + 1);
    if (!absl::SimpleAtoi(port, &out.port) || out.port <= 0 || out.port > 65535) {
      return bad(absl::StrCat("port \"", port, "\" is not a port number"));
    }
  }
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("the host is missing");
  out.host = std::string(host);
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
    if (!absl::StartsWith(text, "redis://")) continue;
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
