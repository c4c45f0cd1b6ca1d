// Tests of the policy providers behind one interface: the embedded example,
// a watched file, a file reloaded on demand only, and a bad Redis URL.
// (The Redis provider's follower has tests of its own.)
#include "server/provider/provider.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

using ::testing::HasSubstr;

// Generous: a watched change is reported within about a second; this is
// 30x that, for a loaded machine.
constexpr absl::Duration kWait = absl::Seconds(30);

std::string PolicyText(const std::string& revision) {
  return "version: \"1\"\nrevision: \"" + revision + "\"\ndefault: allow\n";
}

class Recorder {
 public:
  PolicyProvider::Listener Listener() {
    return [this](absl::StatusOr<std::shared_ptr<const Policy>> r, absl::string_view trigger) {
      absl::MutexLock lock(&mu_);
      events_.push_back(absl::StrCat(
          trigger, ": ", r.ok() ? (*r)->revision() : std::string(r.status().message())));
    };
  }
  // Waits until an event contains `text`; returns all events seen.
  std::vector<std::string> WaitFor(const std::string& text) {
    absl::MutexLock lock(&mu_);
    auto found = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      for (const std::string& e : events_) {
        if (e.find(text) != std::string::npos) return true;
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&found), kWait);
    return events_;
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

class ProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "provider_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    file_ = dir_ + "/policy.yaml";
  }
  void TearDown() override {
    unlink(file_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& text) {
    const std::string tmp = file_ + ".tmp";
    std::ofstream(tmp) << text;
    ASSERT_EQ(rename(tmp.c_str(), file_.c_str()), 0);
  }

  std::string dir_, file_;
};

TEST_F(ProviderTest, EmbeddedExampleLoadsAndReloads) {
  auto provider = MakePolicyProvider(ProviderOptions());
  ASSERT_TRUE(provider.ok()) << provider.status();
  auto policy = (*provider)->Load();
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_GT((*policy)->exact_count(), 0u);
  EXPECT_FALSE((*provider)->may_start_empty());
  EXPECT_THAT((*provider)->Describe(), HasSubstr("compiled into the binary"));
  Recorder r;
  ASSERT_TRUE((*provider)->Watch(*policy, r.Listener()).ok());
  (*provider)->Reload("SIGHUP");
  EXPECT_THAT(r.events(), ::testing::ElementsAre("SIGHUP: " + (*policy)->revision()));
}

TEST_F(ProviderTest, WatchedFileReportsChangesAndRejections) {
  Write(PolicyText("w-1"));
  ProviderOptions options;
  options.path = file_;
  options.watch_interval = absl::Milliseconds(100);
  auto provider = MakePolicyProvider(options);
  ASSERT_TRUE(provider.ok());
  auto policy = (*provider)->Load();
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ((*policy)->revision(), "w-1");
  Recorder r;
  ASSERT_TRUE((*provider)->Watch(*policy, r.Listener()).ok());
  EXPECT_THAT((*provider)->Describe(), HasSubstr("watched"));

  Write(PolicyText("w-2"));
  EXPECT_THAT(r.WaitFor(": w-2"), ::testing::Contains(HasSubstr(": w-2")));
  Write("version: \"1\"\ndefault: maybe\n");
  EXPECT_THAT(r.WaitFor("default"), ::testing::Contains(HasSubstr("policy.yaml:2")));
  // SIGHUP reports even without a change.
  (*provider)->Reload("SIGHUP");
  EXPECT_THAT(r.events(), ::testing::Contains(HasSubstr("SIGHUP: ")));

  (*provider)->Stop();
  const size_t seen = r.events().size();
  Write(PolicyText("w-3"));
  (*provider)->Reload("after stop");
  EXPECT_EQ(r.events().size(), seen);
}

TEST_F(ProviderTest, UnwatchedFileLoadsOnReloadOnly) {
  Write(PolicyText("u-1"));
  ProviderOptions options;
  options.path = file_;
  options.watch = false;
  auto provider = MakePolicyProvider(options);
  ASSERT_TRUE(provider.ok());
  Recorder r;
  ASSERT_TRUE((*provider)->Watch(nullptr, r.Listener()).ok());
  EXPECT_THAT((*provider)->Describe(), HasSubstr("SIGHUP only"));
  Write(PolicyText("u-2"));
  (*provider)->Reload("SIGHUP");
  EXPECT_THAT(r.events(), ::testing::ElementsAre("SIGHUP: u-2"));
}

TEST_F(ProviderTest, MissingFileIsNotFound) {
  ProviderOptions options;
  options.path = dir_ + "/absent.yaml";
  options.watch = false;
  auto provider = MakePolicyProvider(options);
  ASSERT_TRUE(provider.ok());
  EXPECT_EQ((*provider)->Load().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProviderTest, RedisProviderNeedsAValidUrlAndMayStartEmpty) {
  ProviderOptions options;
  options.path = "redis://localhost:notaport";
  EXPECT_FALSE(MakePolicyProvider(options).ok());
  options.path = "redis://127.0.0.1:1";
  auto provider = MakePolicyProvider(options);
  ASSERT_TRUE(provider.ok()) << provider.status();
  EXPECT_TRUE((*provider)->may_start_empty());
  EXPECT_THAT((*provider)->Describe(), HasSubstr("Redis at redis://127.0.0.1:1"));
  EXPECT_FALSE((*provider)->Load().ok());  // Nothing listens on port 1.
}

}  // namespace
}  // namespace toolgate
