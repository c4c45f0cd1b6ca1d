#include "server/redis/url.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

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

}  // namespace
}  // namespace toolgate
