#include "server/provider/policy_watcher.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace toolgate {
namespace {

namespace fs = std::filesystem;

// How long to wait for a callback or a check: 10x the slowest path that
// should deliver it (max_delay, 500 ms, of a burst of events).
constexpr absl::Duration kDeadline = absl::Seconds(5);

// A private temporary directory, removed with its contents.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "toolgate-watch-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `content` to `path` in place (truncate and write, same inode).
void WriteInPlace(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

// Writes a temporary file next to `path` and renames it over `path`, as
// editors save.
void WriteAndRename(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp~";
  WriteInPlace(tmp, content);
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0) << path;
}

std::string Policy(const std::string& revision) {
  return absl::StrCat("version: \"1\"\nrevision: \"", revision, "\"\ndefault: allow\n");
}

// Records callbacks (and, given a file, what the file held when each was
// made); waits for them with a deadline.
class Recorder {
 public:
  Recorder() = default;
  explicit Recorder(std::string read_path) : read_path_(std::move(read_path)) {}

  PolicyWatcher::Callback callback() {
    return [this](absl::string_view trigger) {
      std::string content;
      if (!read_path_.empty()) {
        std::ifstream in(read_path_, std::ios::binary);
        std::ostringstream buf;
        buf << in.rdbuf();
        content = buf.str();
      }
      std::lock_guard<std::mutex> lock(mu_);
      triggers_.emplace_back(trigger);
      contents_.push_back(std::move(content));
      cv_.notify_all();
    };
  }
  // True once at least `n` callbacks were made, false after the deadline.
  bool WaitFor(size_t n, absl::Duration timeout = kDeadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                        [&] { return triggers_.size() >= n; });
  }
  // True once a callback was made while the file held `content`.
  bool WaitForContent(const std::string& content, absl::Duration timeout = kDeadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] {
      return std::find(contents_.begin(), contents_.end(), content) != contents_.end();
    });
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu_);
    return triggers_.size();
  }
  std::vector<std::string> triggers() {
    std::lock_guard<std::mutex> lock(mu_);
    return triggers_;
  }
  std::vector<std::string> contents() {
    std::lock_guard<std::mutex> lock(mu_);
    return contents_;
  }

 private:
  const std::string read_path_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> triggers_;
  std::vector<std::string> contents_;
};

// Waits until the watcher has completed a whole check that started after
// this call: any change made before the call has then been seen (or not).
bool WaitForFreshCheck(const PolicyWatcher& w, absl::Duration timeout = kDeadline) {
  // A check counts itself when it starts, and checks run one at a time: so
  // once the count is two above what it is now, one check began after now
  // and has finished.
  const uint64_t target = w.checks() + 2;
  const absl::Time deadline = absl::Now() + timeout;
  while (w.checks() < target) {
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Only inotify can be what notices a change within the deadline.
PolicyWatcherOptions InotifyOnly() {
  PolicyWatcherOptions o;
  o.interval = absl::Hours(1);
  return o;
}

// Periodic checks only, often.
PolicyWatcherOptions PollOnly() {
  PolicyWatcherOptions o;
  o.use_inotify = false;
  o.interval = absl::Milliseconds(20);
  return o;
}

// Inotify and frequent periodic checks (so that "nothing happened" is quick
// to establish).
PolicyWatcherOptions Both() {
  PolicyWatcherOptions o;
  o.interval = absl::Milliseconds(20);
  return o;
}

// A Kubernetes ConfigMap volume: the data in a timestamped directory,
// "..data" a symlink to it, each key a symlink through "..data".
class ConfigMapDir {
 public:
  explicit ConfigMapDir(const std::string& dir) : dir_(dir) {}

  void Create(const std::string& content) {
    WriteVersion("..2026_01_01", content);
    fs::create_directory_symlink("..2026_01_01", dir_ + "/..data");
    fs::create_symlink("..data/policy.yaml", dir_ + "/policy.yaml");
  }
  // What the kubelet does on an update: new data directory, new "..data_tmp"
  // symlink renamed over "..data", old data directory removed.
  void Swap(const std::string& version, const std::string& content) {
    const std::string old = fs::read_symlink(dir_ + "/..data").string();
    WriteVersion(version, content);
    fs::create_directory_symlink(version, dir_ + "/..data_tmp");
    ASSERT_EQ(std::rename((dir_ + "/..data_tmp").c_str(), (dir_ + "/..data").c_str()), 0);
    fs::remove_all(dir_ + "/" + old);
  }

 private:
  void WriteVersion(const std::string& version, const std::string& content) {
    fs::create_directory(dir_ + "/" + version);
    WriteInPlace(dir_ + "/" + version + "/policy.yaml", content);
  }
  std::string dir_;
};

TEST(PolicyFingerprintTest, FollowsWhatTheLoaderReads) {
  ScratchDir dir;
  WriteInPlace(dir / "a.yaml", Policy("a"));
  const std::string file = PolicyFingerprint(dir / "a.yaml");
  const std::string directory = PolicyFingerprint(dir.path());
  EXPECT_NE(file, directory);

  // Files the loader skips do not count.
  WriteInPlace(dir / "notes.txt", "x");
  WriteInPlace(dir / ".hidden.yaml", "x");
  fs::create_directory(dir / "sub.yaml");
  EXPECT_EQ(PolicyFingerprint(dir.path()), directory);

  // A timestamp alone is no change.
  fs::last_write_time(dir / "a.yaml", fs::file_time_type::clock::now() - std::chrono::hours(1));
  EXPECT_EQ(PolicyFingerprint(dir / "a.yaml"), file);
  EXPECT_EQ(PolicyFingerprint(dir.path()), directory);

  // Content, names and presence do.
  WriteInPlace(dir / "a.yaml", Policy("b"));
  EXPECT_NE(PolicyFingerprint(dir / "a.yaml"), file);
  const std::string changed = PolicyFingerprint(dir.path());
  EXPECT_NE(changed, directory);
  WriteInPlace(dir / "b.yml", Policy("b"));
  EXPECT_NE(PolicyFingerprint(dir.path()), changed);
  EXPECT_NE(PolicyFingerprint(dir / "missing.yaml"), PolicyFingerprint(dir / "a.yaml"));
}

TEST(PolicyWatcherTest, FileRewrittenInPlace) {
  ScratchDir dir;
  const std::string path = dir / "policy.yaml";
  WriteInPlace(path, Policy("1"));
  Recorder rec;
  PolicyWatcher w(path, InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(w.using_inotify());

  WriteInPlace(path, Policy("2"));
  ASSERT_TRUE(rec.WaitFor(1)) << "no callback after an in-place write";
  WriteInPlace(path, Policy("3"));
  ASSERT_TRUE(rec.WaitFor(2)) << "no callback after a second in-place write";
}

TEST(PolicyWatcherTest, FileRenamedOverOnSave) {
  ScratchDir dir;
  const std::string path = dir / "policy.yaml";
  WriteInPlace(path, Policy("1"));
  Recorder rec;
  PolicyWatcher w(path, InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  WriteAndRename(path, Policy("2"));
  ASSERT_TRUE(rec.WaitFor(1)) << "no callback after rename-on-save";
  // The watch follows the new inode: a second save is seen too.
  WriteAndRename(path, Policy("3"));
  ASSERT_TRUE(rec.WaitFor(2)) << "no callback after a second rename-on-save";
}

TEST(PolicyWatcherTest, ConfigMapSwapOfTheDirectory) {
  ScratchDir dir;
  ConfigMapDir cm(dir.path());
  cm.Create(Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir.path(), InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  cm.Swap("..2026_01_02", Policy("2"));
  ASSERT_TRUE(rec.WaitFor(1)) << "no callback after the ..data swap";
  cm.Swap("..2026_01_03", Policy("3"));
  ASSERT_TRUE(rec.WaitFor(2)) << "no callback after a second ..data swap";
}

TEST(PolicyWatcherTest, ConfigMapSwapOfAFile) {
  ScratchDir dir;
  ConfigMapDir cm(dir.path());
  cm.Create(Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir / "policy.yaml", InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  cm.Swap("..2026_01_02", Policy("2"));
  ASSERT_TRUE(rec.WaitFor(1)) << "no callback after the ..data swap";
  cm.Swap("..2026_01_03", Policy("3"));
  ASSERT_TRUE(rec.WaitFor(2)) << "no callback after a second ..data swap";
}

TEST(PolicyWatcherTest, ConfigMapSwapToIdenticalContentIsNoChange) {
  ScratchDir dir;
  ConfigMapDir cm(dir.path());
  cm.Create(Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir.path(), Both(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  cm.Swap("..2026_01_02", Policy("1"));
  ASSERT_TRUE(WaitForFreshCheck(w));
  EXPECT_EQ(rec.count(), 0u);
}

TEST(PolicyWatcherTest, PolicyFileAddedToADirectory) {
  ScratchDir dir;
  WriteInPlace(dir / "a.yaml", Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir.path(), InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  WriteAndRename(dir / "b.json", "{}");
  ASSERT_TRUE(rec.WaitFor(1));
}

TEST(PolicyWatcherTest, UnrelatedChangesCauseNoCallback) {
  ScratchDir dir, elsewhere;
  const std::string path = dir / "policy.yaml";
  WriteInPlace(path, Policy("1"));
  WriteInPlace(elsewhere / "policy.yaml", Policy("1"));
  Recorder rec;
  PolicyWatcher w(path, Both(), rec.callback());
  ASSERT_TRUE(w.Start().ok());

  // A file in another directory, a sibling in the same directory, a
  // temporary file that comes and goes, a touch of the policy itself.
  WriteInPlace(elsewhere / "policy.yaml", Policy("2"));
  WriteAndRename(dir / "other.yaml", Policy("x"));
  WriteInPlace(dir / ".policy.yaml.swp", "x");
  fs::remove(dir / ".policy.yaml.swp");
  fs::last_write_time(path, fs::file_time_type::clock::now());
  ASSERT_TRUE(WaitForFreshCheck(w));
  ASSERT_TRUE(WaitForFreshCheck(w));
  EXPECT_EQ(rec.count(), 0u) << rec.triggers().front();
}

TEST(PolicyWatcherTest, NothingChangedNoCallback) {
  ScratchDir dir;
  WriteInPlace(dir / "policy.yaml", Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir / "policy.yaml", Both(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(WaitForFreshCheck(w));
  EXPECT_EQ(rec.count(), 0u);
}

TEST(PolicyWatcherTest, PeriodicCheckAloneSeesChanges) {
  ScratchDir dir;
  ConfigMapDir cm(dir.path());
  cm.Create(Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir.path(), PollOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  EXPECT_FALSE(w.using_inotify());
  ASSERT_TRUE(WaitForFreshCheck(w));  // Past the first check, which has its own trigger.

  cm.Swap("..2026_01_02", Policy("2"));
  ASSERT_TRUE(rec.WaitFor(1));
  EXPECT_EQ(rec.triggers()[0], "policy changed on disk (periodic check)");
  // Rewriting the file in place, same size, at once: timestamps may not
  // move, the content hash does.
  WriteInPlace(dir / "..2026_01_02/policy.yaml", Policy("3"));
  ASSERT_TRUE(rec.WaitFor(2));
}

TEST(PolicyWatcherTest, AMultiStepSaveCausesOneCallback) {
  ScratchDir dir;
  const std::string path = dir / "policy.yaml";
  WriteInPlace(path, Policy("1"));
  Recorder rec(path);
  PolicyWatcherOptions o = InotifyOnly();
  // The save's steps follow each other within microseconds; a quiet period
  // of 1 s is 10x more than even a busy machine (parallel tests, sanitizer
  // builds) leaves between them.
  o.debounce = absl::Seconds(1);
  o.max_delay = absl::Seconds(5);
  PolicyWatcher w(path, o, rec.callback());
  ASSERT_TRUE(w.Start().ok());
  // The watcher's first check (when it starts) must be over before the save
  // begins, or it could see the save half done. ReloadNow waits for a check
  // in progress (and calls back itself, before anything changed).
  const absl::Time started = absl::Now();
  while (w.checks() < 1) {
    ASSERT_LT(absl::Now() - started, kDeadline) << "the watcher never checked";
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  w.ReloadNow("test: the first check is over");
  ASSERT_EQ(rec.contents(), std::vector<std::string>{Policy("1")});

  // As vim saves without 'backupcopy': move the original aside, write the
  // new file in steps, remove the backup.
  ASSERT_EQ(std::rename(path.c_str(), (path + "~").c_str()), 0);
  {
    std::ofstream out(path, std::ios::binary);
    out << "version: \"1\"\n" << std::flush;
    out << "revision: \"2\"\n" << std::flush;
    out << "default: allow\n";
  }
  fs::remove(path + "~");
  ASSERT_TRUE(rec.WaitFor(2, 10 * o.max_delay));
  // Then one more change, saved atomically. Events are handled in order, so
  // once its callback has come, any other callback the save could cause
  // would have come before it.
  WriteAndRename(path, Policy("3"));
  ASSERT_TRUE(rec.WaitForContent(Policy("3"), 10 * o.max_delay)) << rec.contents().size();
  // One callback for the save, made when it was complete; one for the change.
  EXPECT_EQ(rec.contents(), (std::vector<std::string>{Policy("1"), Policy("2"), Policy("3")}));
}

TEST(PolicyWatcherTest, AChangeBeforeStartIsReported) {
  ScratchDir dir;
  const std::string path = dir / "policy.yaml";
  WriteInPlace(path, Policy("1"));
  Recorder rec;
  PolicyWatcher w(path, InotifyOnly(), rec.callback());
  // Changed after the baseline (which a server takes before loading) and
  // before the watcher runs: seen by its first check.
  WriteAndRename(path, Policy("2"));
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(rec.WaitFor(1));
}

TEST(PolicyWatcherTest, ReloadNowCallsBackAndRecordsTheFingerprint) {
  ScratchDir dir;
  const std::string path = dir / "policy.yaml";
  WriteInPlace(path, Policy("1"));
  Recorder rec;
  PolicyWatcher w(path, Both(), rec.callback());
  WriteAndRename(path, Policy("2"));
  w.ReloadNow("SIGHUP");  // Before Start: nothing else can call back yet.
  ASSERT_EQ(rec.count(), 1u);
  EXPECT_EQ(rec.triggers()[0], "SIGHUP");

  // The watcher does not load the same content again.
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(WaitForFreshCheck(w));
  EXPECT_EQ(rec.count(), 1u);

  // Unchanged content still reloads on demand.
  w.ReloadNow("SIGHUP");
  EXPECT_EQ(rec.count(), 2u);
}

TEST(PolicyWatcherTest, MissingPolicyAppearing) {
  ScratchDir dir;
  const std::string path = dir / "policy.yaml";
  Recorder rec;
  PolicyWatcher w(path, InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  WriteAndRename(path, Policy("1"));
  ASSERT_TRUE(rec.WaitFor(1));
  fs::remove(path);
  ASSERT_TRUE(rec.WaitFor(2));
}

TEST(PolicyWatcherTest, StopIsPrompt) {
  ScratchDir dir;
  WriteInPlace(dir / "policy.yaml", Policy("1"));
  Recorder rec;
  PolicyWatcher w(dir / "policy.yaml", InotifyOnly(), rec.callback());
  ASSERT_TRUE(w.Start().ok());
  const absl::Time start = absl::Now();
  w.Stop();
  // Stop wakes the thread instead of letting it finish its wait (an hour
  // here): 5 s is 10x more than waking and joining a thread can take on a
  // busy machine.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  w.Stop();  // Idempotent.
}

}  // namespace
}  // namespace toolgate
