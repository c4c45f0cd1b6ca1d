// Tests of command-line and environment flags.
#include "server/base/flags.h"

#include <stdlib.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Values {
  std::string listen = "0.0.0.0:50051";
  int64_t depth = 32;
  bool watch = true;
  int64_t timeout_ms = 25;
  std::vector<std::string> tools;
};

FlagSet MakeFlags(Values* v) {
  FlagSet flags("usage text", "TGTEST_");
  flags.String("listen", &v->listen, "Address.");
  flags.Int("max-args-depth", &v->depth, 1, 256, "Depth.");
  flags.Bool("watch", &v->watch, "Watch.");
  flags.Duration("redis-timeout", &v->timeout_ms, "Deadline.");
  flags.List("decision-log-args", &v->tools, "Tools.");
  return flags;
}

TEST(FlagsTest, ParsesEveryForm) {
  Values v;
  FlagSet flags = MakeFlags(&v);
  auto rest = flags.Parse({"--listen", "127.0.0.1:0", "-max-args-depth=7", "--no-watch",
                           "--redis-timeout=2s", "--decision-log-args", "a",
                           "--decision-log-args=b*", "positional", "--", "--not-a-flag"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_THAT(*rest, ElementsAre("positional", "--not-a-flag"));
  EXPECT_EQ(v.listen, "127.0.0.1:0");
  EXPECT_EQ(v.depth, 7);
  EXPECT_FALSE(v.watch);
  EXPECT_EQ(v.timeout_ms, 2000);
  EXPECT_THAT(v.tools, ElementsAre("a", "b*"));
  EXPECT_FALSE(flags.help_requested());
}

TEST(FlagsTest, EveryErrorIsReportedAtOnce) {
  Values v;
  FlagSet flags = MakeFlags(&v);
  auto rest = flags.Parse({"--bogus", "--max-args-depth=0", "--watch=maybe", "--redis-timeout=soon",
                           "--redis-timeout=-1s", "--listen"});
  ASSERT_FALSE(rest.ok());
  const std::string m(rest.status().message());
  EXPECT_THAT(m, HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(m, HasSubstr("0 is out of range [1, 256]"));
  EXPECT_THAT(m, HasSubstr("\"maybe\" is not a boolean"));
  EXPECT_THAT(m, HasSubstr("\"soon\" is not a duration"));
  EXPECT_THAT(m, HasSubstr("flag --listen needs a value"));
  // Nothing half-applied that was refused.
  EXPECT_EQ(v.depth, 32);
  EXPECT_TRUE(v.watch);
}

TEST(FlagsTest, EnvironmentIsReadAndTheCommandLineWins) {
  Values v;
  FlagSet flags = MakeFlags(&v);
  EXPECT_EQ(flags.EnvName("max-args-depth"), "TGTEST_MAX_ARGS_DEPTH");
  setenv("TGTEST_MAX_ARGS_DEPTH", "9", 1);
  setenv("TGTEST_LISTEN", "10.0.0.1:1", 1);
  auto rest = flags.Parse({"--listen=127.0.0.1:5"});
  unsetenv("TGTEST_MAX_ARGS_DEPTH");
  unsetenv("TGTEST_LISTEN");
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(v.depth, 9);
  EXPECT_EQ(v.listen, "127.0.0.1:5");
}

TEST(FlagsTest, BadEnvironmentValueNamesTheVariable) {
  Values v;
  FlagSet flags = MakeFlags(&v);
  setenv("TGTEST_REDIS_TIMEOUT", "forever", 1);
  auto rest = flags.Parse({});
  unsetenv("TGTEST_REDIS_TIMEOUT");
  ASSERT_FALSE(rest.ok());
  EXPECT_THAT(rest.status().message(), HasSubstr("environment variable TGTEST_REDIS_TIMEOUT"));
}

TEST(FlagsTest, HelpListsFlagsWithDefaultsAndVariables) {
  Values v;
  FlagSet flags = MakeFlags(&v);
  ASSERT_TRUE(flags.Parse({"--help"}).ok());
  EXPECT_TRUE(flags.help_requested());
  const std::string usage = flags.Usage();
  EXPECT_THAT(usage, HasSubstr("usage text"));
  EXPECT_THAT(usage, HasSubstr("--max-args-depth"));
  EXPECT_THAT(usage, HasSubstr("TGTEST_MAX_ARGS_DEPTH"));
  EXPECT_THAT(usage, HasSubstr("0.0.0.0:50051"));
}

}  // namespace
}  // namespace toolgate
