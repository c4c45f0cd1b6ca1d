#include "server/redis/url.h"

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/redis/connection.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

RedisUrl Parse(absl::string_view text) {
  absl::StatusOr<RedisUrl> url = ParseRedisUrl(text);
  EXPECT_TRUE(url.ok()) << text << ": " << url.status();
  return url.value_or(RedisUrl());
}

TEST(ParseRedisUrlTest, HostAlone) {
  const RedisUrl url = Parse("redis://redis.internal");
  EXPECT_EQ(url.host, "redis.internal");
  EXPECT_EQ(url.port, 6379);
  EXPECT_EQ(url.db, 0);
  EXPECT_EQ(url.username, "");
  EXPECT_EQ(url.password, "");
}

TEST(ParseRedisUrlTest, PortAndDb) {
  const RedisUrl url = Parse("redis://127.0.0.1:6380/7");
  EXPECT_EQ(url.host, "127.0.0.1");
  EXPECT_EQ(url.port, 6380);
  EXPECT_EQ(url.db, 7);
  EXPECT_EQ(Parse("redis://h:1/").db, 0) << "an empty db is db 0";
  EXPECT_EQ(Parse("redis://h/65535").db, 65535);
}

TEST(ParseRedisUrlTest, Ipv6InBrackets) {
  RedisUrl url = Parse("redis://[::1]:7000/2");
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 7000);
  url = Parse("redis://[fe80::1]");
  EXPECT_EQ(url.host, "fe80::1");
  EXPECT_EQ(url.port, 6379) << "the colons inside the brackets are not a port";
}

TEST(ParseRedisUrlTest, PasswordWithoutUser) {
  const RedisUrl url = Parse("redis://:secret@redis:6379/0");
  EXPECT_EQ(url.username, "");
  EXPECT_EQ(url.password, "secret");
  EXPECT_EQ(url.host, "redis");
  // Without a colon, the whole of it is the password.
  EXPECT_EQ(Parse("redis://secret@redis").password, "secret");
}

TEST(ParseRedisUrlTest, UserAndPassword) {
  const RedisUrl url = Parse("redis://toolgate:s3cret@redis:6379");
  EXPECT_EQ(url.username, "toolgate");
  EXPECT_EQ(url.password, "s3cret");
}

TEST(ParseRedisUrlTest, PasswordWithSpecialCharacters) {
  // The host starts after the last '@'; the user ends at the first ':'. So
  // a password may hold '@', ':', '/' and '#', taken as written (no
  // percent-decoding).
  RedisUrl url = Parse("redis://admin:p@ss:w/rd#1@redis.internal:6380/3");
  EXPECT_EQ(url.username, "admin");
  EXPECT_EQ(url.password, "p@ss:w/rd#1");
  EXPECT_EQ(url.host, "redis.internal");
  EXPECT_EQ(url.port, 6380);
  EXPECT_EQ(url.db, 3);
  url = Parse("redis://:%40%3A x@h");
  EXPECT_EQ(url.password, "%40%3A x");
  EXPECT_EQ(url.host, "h");
}

TEST(ParseRedisUrlTest, Rejected) {
  struct Case {
    const char* url;
    const char* why;
  };
  for (const Case& c : {
           Case{"", "must start with redis://"},
           Case{"http://redis:6379", "must start with redis://"},
           Case{"rediss://redis:6379", "must start with redis://"},
           Case{"redis://", "host is missing"},
           Case{"redis://:6379", "host is missing"},
           Case{"redis://:pw@/1", "host is missing"},
           Case{"redis://redis:", "port \"\" is not a port number"},
           Case{"redis://redis:0", "port \"0\" is not a port number"},
           Case{"redis://redis:65536", "port \"65536\" is not a port number"},
           Case{"redis://redis:-1", "port \"-1\" is not a port number"},
           Case{"redis://redis:63x9", "port \"63x9\" is not a port number"},
           Case{"redis://redis:6379/x", "database \"x\" is not a number"},
           Case{"redis://redis:6379/-1", "database \"-1\" is not a number"},
           Case{"redis://redis:6379/65536", "database \"65536\" is not a number"},
       }) {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(c.url);
    ASSERT_FALSE(url.ok()) << c.url;
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_THAT(url.status().message(), HasSubstr(c.why)) << c.url;
    EXPECT_THAT(url.status().message(), HasSubstr("expected redis://")) << c.url;
  }
}

TEST(ParseRedisUrlTest, ErrorsDoNotShowThePassword) {
  absl::StatusOr<RedisUrl> url = ParseRedisUrl("redis://u:hunter2@redis:notaport");
  ASSERT_FALSE(url.ok());
  EXPECT_THAT(url.status().message(), Not(HasSubstr("hunter2")));
}

TEST(RedisUrlTest, RedactedHidesOnlyThePassword) {
  EXPECT_EQ(Parse("redis://redis").Redacted(), "redis://redis:6379/0");
  EXPECT_EQ(Parse("redis://:secret@redis:6380/2").Redacted(), "redis://:***@redis:6380/2");
  EXPECT_EQ(Parse("redis://admin:p@ss:w@redis/1").Redacted(), "redis://admin:***@redis:6379/1");
  const std::string redacted = Parse("redis://admin:p@ss:w@redis/1").Redacted();
  EXPECT_THAT(redacted, Not(HasSubstr("p@ss")));
  // A user without a password is shown as nothing: there is nothing to send.
  EXPECT_EQ(Parse("redis://admin:@redis").Redacted(), "redis://redis:6379/0");
}

TEST(ParseRedisUrlTest, Sentinel) {
  RedisUrl url = Parse("redis+sentinel://u:pw@s1:5000,s2,[::1]:5002/mymaster/3");
  EXPECT_EQ(url.mode, RedisMode::kSentinel);
  ASSERT_EQ(url.hosts.size(), 3u);
  EXPECT_EQ(url.hosts[0].ToString(), "s1:5000");
  EXPECT_EQ(url.hosts[1].ToString(), "s2:26379") << "Sentinel's own port by default";
  EXPECT_EQ(url.hosts[2].ToString(), "[::1]:5002");
  EXPECT_EQ(url.master_name, "mymaster");
  EXPECT_EQ(url.db, 3);
  EXPECT_EQ(url.username, "u");
  EXPECT_EQ(url.password, "pw");
  EXPECT_EQ(url.Redacted(), "redis+sentinel://u:***@s1:5000,s2:26379,[::1]:5002/mymaster/3");
  EXPECT_EQ(Parse("redis+sentinel://s1/m").db, 0);
  // At() keeps the credentials and db, at the master found.
  const RedisUrl master = url.At(RedisHost{"10.0.0.7", 6380});
  EXPECT_EQ(master.mode, RedisMode::kSingle);
  EXPECT_EQ(master.Redacted(), "redis://u:***@10.0.0.7:6380/3");
  EXPECT_EQ(master.password, "pw");
}

TEST(ParseRedisUrlTest, Cluster) {
  RedisUrl url = Parse("redis+cluster://:pw@n1:7000,n2:7001,n3");
  EXPECT_EQ(url.mode, RedisMode::kCluster);
  ASSERT_EQ(url.hosts.size(), 3u);
  EXPECT_EQ(url.hosts[2].ToString(), "n3:6379");
  EXPECT_EQ(url.host, "n1");
  EXPECT_EQ(url.port, 7000);
  EXPECT_EQ(url.Redacted(), "redis+cluster://:***@n1:7000,n2:7001,n3:6379");
  EXPECT_TRUE(IsRedisUrl("redis+cluster://x"));
  EXPECT_TRUE(IsRedisUrl("redis+sentinel://x/m"));
  EXPECT_FALSE(IsRedisUrl("rediss://x"));
}

TEST(ParseRedisUrlTest, SentinelAndClusterRejected) {
  struct Case {
    std::string url;
    const char* why;
  };
  std::string many = "redis+cluster://";
  for (int i = 0; i < 40; ++i) many += "h" + std::to_string(i) + ",";
  many += "h";
  for (const Case& c : {
           Case{"redis+sentinel://s1:26379", "master's name is missing"},
           Case{"redis+sentinel://s1:26379/", "master's name is missing"},
           Case{"redis+sentinel://s1,,s2/m", "host is missing"},
           Case{"redis+sentinel://s1:x/m", "port \"x\" is not a port number"},
           Case{"redis+sentinel://s1/m/x", "database \"x\" is not a number"},
           Case{"redis+cluster://n1:7000/0", "no databases but 0"},
           Case{"redis+cluster://", "host is missing"},
           Case{many, "more than 32 hosts"},
           Case{"redis://" + std::string(5000, 'h'), "longer than 4096 bytes"},
       }) {
    absl::StatusOr<RedisUrl> url = ParseRedisUrl(c.url);
    ASSERT_FALSE(url.ok()) << c.url;
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_THAT(url.status().message(), HasSubstr(c.why)) << c.url;
  }
  // A password never shows in an error.
  absl::StatusOr<RedisUrl> url = ParseRedisUrl("redis+sentinel://u:hunter2@s1:bad/m");
  ASSERT_FALSE(url.ok());
  EXPECT_THAT(url.status().message(), Not(HasSubstr("hunter2")));
}

std::string WriteTemp(const std::string& name, const std::string& content) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  return path;
}

TEST(RedisCredentialsTest, ReadFromFilesWithoutTheirNewline) {
  const std::string user = WriteTemp("redis_user", "toolgate\n");
  const std::string password = WriteTemp("redis_password", "p@ss:w/rd\n");
  absl::StatusOr<RedisCredentials> c = ReadRedisCredentials(user, password);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->username, "toolgate");
  EXPECT_EQ(c->password, "p@ss:w/rd");
  absl::StatusOr<RedisCredentials> none = ReadRedisCredentials("", "");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->username, "");
  EXPECT_EQ(none->password, "");
}

TEST(RedisCredentialsTest, BadFilesNameTheFlag) {
  const std::string empty = WriteTemp("redis_empty", "\n");
  const std::string password = WriteTemp("redis_password2", "pw");
  auto e = ReadRedisCredentials("", empty);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("--redis-password-file: "));
  EXPECT_THAT(e.status().message(), HasSubstr("is empty"));
  auto u = ReadRedisCredentials(empty, password);
  ASSERT_FALSE(u.ok());
  EXPECT_THAT(u.status().message(), HasSubstr("--redis-username-file: "));
  auto missing = ReadRedisCredentials("", WriteTemp("x", "") + ".missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("--redis-password-file: "));
  auto alone = ReadRedisCredentials(password, "");
  ASSERT_FALSE(alone.ok());
  EXPECT_THAT(alone.status().message(), HasSubstr("--redis-username-file needs"));
}

TEST(RedisCredentialsTest, AppliedToTheUrlAndSentInAuth) {
  RedisCredentials c{"toolgate", "s3cret"};
  absl::StatusOr<RedisUrl> url = ParseRedisUrl("redis://redis:6380/2", c);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->username, "toolgate");
  EXPECT_EQ(url->password, "s3cret");
  EXPECT_EQ(url->Redacted(), "redis://toolgate:***@redis:6380/2");
  EXPECT_THAT(url->Redacted(), Not(HasSubstr("s3cret")));
  const auto handshake = HandshakeCommands(*url);
  ASSERT_FALSE(handshake.empty());
  EXPECT_EQ(handshake[0], (std::vector<std::string>{"AUTH", "toolgate", "s3cret"}));
  // Password alone: AUTH for the default user, or the URL's user.
  absl::StatusOr<RedisUrl> plain = ParseRedisUrl("redis://redis", RedisCredentials{"", "pw"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(HandshakeCommands(*plain)[0], (std::vector<std::string>{"AUTH", "pw"}));
  absl::StatusOr<RedisUrl> user = ParseRedisUrl("redis://acl:@redis", RedisCredentials{"", "pw"});
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(HandshakeCommands(*user)[0], (std::vector<std::string>{"AUTH", "acl", "pw"}));
}

TEST(RedisCredentialsTest, ASecretInBothPlacesIsAnError) {
  auto both = ParseRedisUrl("redis://:inline@redis", RedisCredentials{"", "file"});
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(both.status().message(), HasSubstr("--redis-password-file"));
  EXPECT_THAT(both.status().message(), Not(HasSubstr("inline")));
  EXPECT_THAT(both.status().message(), Not(HasSubstr("file\"")));
  auto users = ParseRedisUrl("redis://a:@redis", RedisCredentials{"b", "pw"});
  ASSERT_FALSE(users.ok());
  EXPECT_THAT(users.status().message(), HasSubstr("--redis-username-file"));
  // Without credentials, the URL's own password still works.
  auto own = ParseRedisUrl("redis://:inline@redis", RedisCredentials{});
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own->password, "inline");
}

TEST(RedisCredentialsTest, InlinePasswordWarning) {
  EXPECT_EQ(InlinePasswordWarning({"", "redis://redis:6379", "/etc/toolgate"}), "");
  const std::string w = InlinePasswordWarning({"redis://:hunter2@redis:6379/0", "/etc/toolgate"});
  EXPECT_THAT(w, HasSubstr("/proc/PID/cmdline"));
  EXPECT_THAT(w, HasSubstr("--redis-password-file"));
  EXPECT_THAT(w, HasSubstr("redis://:***@redis:6379/0"));
  EXPECT_THAT(w, Not(HasSubstr("hunter2")));
  const std::string c = InlinePasswordWarning({"redis+cluster://:hunter2@n1:7000,n2:7001"});
  EXPECT_THAT(c, HasSubstr("redis+cluster://:***@n1:7000,n2:7001"));
  EXPECT_THAT(c, Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace toolgate
