#include "server/provider/policy_watcher.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/base/digest.h"
#include "server/base/files.h"
#include "server/base/log.h"
#include "server/base/wakeup.h"
#include "server/policy/loader.h"

namespace toolgate {
namespace fs = std::filesystem;

// Content hashes keyed by file identity, so that an unchanged file is not
// read again on every check. An entry is trusted only when the file's
// timestamps are well older than the hash: timestamps are coarse (a clock
// tick, or more on some file systems), so a write just after the hash could
// leave every stat field as it was.
struct PolicyHashCache {
  struct Entry {
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    int64_t hashed_at_ns = 0;  // CLOCK_REALTIME, like file timestamps.
    std::string hash;
  };
  std::map<std::pair<dev_t, ino_t>, Entry> entries;
  std::set<std::pair<dev_t, ino_t>> used;  // Files seen by the current fingerprint.

  // Forgets files that the last fingerprint did not read.
  void Prune() {
    for (auto it = entries.begin(); it != entries.end();) {
      it = used.count(it->first) ? std::next(it) : entries.erase(it);
    }
    used.clear();
  }
};

namespace {

constexpr int64_t kRacyMarginNs = 2'000'000'000;
constexpr int kMaxSymlinkHops = 40;
constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF |
                                IN_MOVE_SELF | IN_ONLYDIR;

int64_t Nanos(const timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

int64_t RealtimeNowNs() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return Nanos(t);
}

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// The content hash of the file at `path` (through symlinks), or "error: ...".
std::string FileFingerprint(const std::string& path, PolicyHashCache* cache) {
  absl::StatusOr<RegularFile> file = RegularFile::Open(path);
  if (!file.ok()) return absl::StrCat("error: ", file.status().message());
  const struct stat& st = file->info();
  const auto key = std::make_pair(st.st_dev, st.st_ino);
  const int64_t mtime = Nanos(st.st_mtim), ctime = Nanos(st.st_ctim);
  if (cache != nullptr) {
    cache->used.insert(key);
    auto it = cache->entries.find(key);
    if (it != cache->entries.end() && it->second.size == st.st_size &&
        it->second.mtime_ns == mtime && it->second.ctime_ns == ctime &&
        it->second.hashed_at_ns - std::max(mtime, ctime) > kRacyMarginNs) {
      return it->second.hash;
    }
  }
  const int64_t hashed_at = RealtimeNowNs();
  const absl::StatusOr<std::string> content = file->ReadAll(kMaxInputFileBytes);
  std::string hash =
      content.ok() ? Sha256Hex(*content) : absl::StrCat("error: ", content.status().message());
  if (cache != nullptr && !absl::StartsWith(hash, "error:")) {
    cache->entries[key] = {st.st_size, mtime, ctime, hashed_at, hash};
  }
  return hash;
}

std::string Fingerprint(const std::string& path, PolicyHashCache* cache) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return absl::StrCat("missing: ", ErrnoText(errno), "\n");
  std::string out;
  if (S_ISDIR(st.st_mode)) {
    absl::StatusOr<std::vector<fs::path>> files = ListPolicyFiles(path);
    if (!files.ok()) return absl::StrCat("directory error: ", files.status().message(), "\n");
    out = "directory\n";
    for (const fs::path& f : *files) {
      absl::StrAppend(&out, f.filename().string(), "\t", FileFingerprint(f.string(), cache), "\n");
    }
  } else {
    out = absl::StrCat("file\t", FileFingerprint(path, cache), "\n");
  }
  if (cache != nullptr) cache->Prune();
  return out;
}

// Directory -> the entry names in it that matter ("*": every entry).
using WatchSet = std::map<std::string, std::set<std::string>>;
constexpr char kAnyName[] = "*";

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string ParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// Resolves absolute `path` component by component, as the kernel does, and
// records every (directory, name) whose change could change what `path`
// names: each symlink met on the way (e.g. a ConfigMap's "..data"), the
// final entry, and the first missing one (so that its creation is seen).
// Returns the resolved path, or "" when it does not (yet) exist.
std::string ResolveInto(const std::string& path, WatchSet* out) {
  std::vector<std::string> todo;  // Components left, last one first.
  const auto push_front = [&todo](const std::string& p) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (start <= p.size()) {
      const size_t slash = std::min(p.find('/', start), p.size());
      if (slash > start) parts.push_back(p.substr(start, slash - start));
      start = slash + 1;
    }
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  push_front(path);
  std::string cur = "/";
  int hops = 0;
  while (!todo.empty()) {
    const std::string comp = todo.back();
    todo.pop_back();
    if (comp == ".") continue;
    if (comp == "..") {
      cur = ParentDir(cur);
      continue;
    }
    const std::string next = JoinPath(cur, comp);
    struct stat st {};
    if (::lstat(next.c_str(), &st) != 0) {
      (*out)[cur].insert(comp);
      return "";
    }
    if (S_ISLNK(st.st_mode)) {
      (*out)[cur].insert(comp);
      std::vector<char> buf(PATH_MAX + 1);
      const ssize_t n = ::readlink(next.c_str(), buf.data(), buf.size() - 1);
      if (n <= 0 || ++hops > kMaxSymlinkHops) return "";
      const std::string target(buf.data(), static_cast<size_t>(n));
      if (target[0] == '/') cur = "/";
      push_front(target);
      continue;
    }
    if (todo.empty()) (*out)[cur].insert(comp);
    cur = next;
  }
  return cur;
}

}  // namespace

std::string PolicyFingerprint(const std::string& path) { return Fingerprint(path, nullptr); }

PolicyWatcher::PolicyWatcher(std::string path, PolicyWatcherOptions options, Callback callback)
    : path_(std::move(path)),
      options_(options),
      callback_(std::move(callback)),
      cache_(std::make_unique<PolicyHashCache>()) {
  absl::MutexLock lock(&mu_);
  last_fingerprint_ = Fingerprint(path_, cache_.get());
}

PolicyWatcher::~PolicyWatcher() { Stop(); }

absl::Status PolicyWatcher::Start() {
  if (thread_.joinable() || stopping_) {
    return absl::FailedPreconditionError("policy watcher: already started or stopped");
  }
  absl::StatusOr<std::unique_ptr<Wakeup>> wakeup = Wakeup::Create();
  if (!wakeup.ok()) {
    return absl::Status(wakeup.status().code(),
                        absl::StrCat("policy watcher: ", wakeup.status().message()));
  }
  wakeup_ = *std::move(wakeup);
  if (options_.use_inotify) {
    inotify_fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (inotify_fd_ < 0) {
      LogWarning("policy watcher: inotify unavailable (", ErrnoText(errno), "); checking ", path_,
                 " for changes every ", absl::FormatDuration(options_.interval), " only");
    }
  }
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::exception& e) {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    inotify_fd_ = -1;
    wakeup_.reset();
    return absl::InternalError(absl::StrCat("policy watcher: cannot start thread: ", e.what()));
  }
  return absl::OkStatus();
}

void PolicyWatcher::Stop() {
  stopping_ = true;
  if (wakeup_ != nullptr) wakeup_->Wake();
  if (thread_.joinable()) thread_.join();
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  inotify_fd_ = -1;
  wakeup_.reset();
}

void PolicyWatcher::CallBack(absl::string_view trigger) {
  ++callbacks_;
  try {
    callback_(trigger);
  } catch (const std::exception& e) {
    LogError("policy reload (", trigger, ") failed: ", e.what());
  } catch (...) {
    LogError("policy reload (", trigger, ") failed");
  }
}

void PolicyWatcher::ReloadNow(absl::string_view trigger) {
  absl::MutexLock lock(&mu_);
  last_fingerprint_ = Fingerprint(path_, cache_.get());
  CallBack(trigger);
}

void PolicyWatcher::CheckForChange(absl::string_view trigger) {
  absl::MutexLock lock(&mu_);
  ++checks_;
  // The fingerprint is taken before the callback reads the files: a change
  // made while it runs shows as a new fingerprint next time.
  std::string fingerprint = Fingerprint(path_, cache_.get());
  if (fingerprint == last_fingerprint_) return;
  last_fingerprint_ = std::move(fingerprint);
  CallBack(trigger);
}

void PolicyWatcher::UpdateWatches() {
  if (inotify_fd_ < 0) return;
  std::error_code ec;
  const std::string abs = fs::absolute(path_, ec).lexically_normal().string();
  if (ec) return;
  WatchSet want;
  const std::string real = ResolveInto(abs, &want);
  struct stat st {};
  if (!real.empty() && ::stat(real.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    want[real].insert(kAnyName);  // Any entry of a policy directory may matter.
    if (absl::StatusOr<std::vector<fs::path>> files = ListPolicyFiles(real); files.ok()) {
      for (const fs::path& f : *files) ResolveInto(f.string(), &want);
    }
  }
  std::map<int, Watch> now;
  for (const auto& [dir, names] : want) {
    const int wd = ::inotify_add_watch(inotify_fd_, dir.c_str(), kWatchMask);
    if (wd >= 0) {
      Watch& w = now[wd];  // Two names for one directory share a descriptor.
      w.dir = dir;
      w.names.insert(names.begin(), names.end());
    } else if (errno != ENOENT && errno != ENOTDIR && !warned_watch_failure_) {
      warned_watch_failure_ = true;
      LogWarning("policy watcher: cannot watch ", dir, " (", ErrnoText(errno),
                 "); changes there are seen by the periodic check, every ",
                 absl::FormatDuration(options_.interval));
    }
  }
  for (const auto& [wd, w] : watches_) {
    if (now.count(wd) == 0) ::inotify_rm_watch(inotify_fd_, wd);
  }
  watches_ = std::move(now);
}

bool PolicyWatcher::DrainEvents() {
  alignas(struct inotify_event) char buf[16 << 10];
  bool relevant = false;
  while (true) {
    const ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: drained.
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {  // Events were lost: check.
        relevant = true;
        continue;
      }
      auto it = watches_.find(ev->wd);
      if (it == watches_.end()) continue;  // A watch already dropped.
      if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (ev->mask & IN_IGNORED) watches_.erase(it);  // The directory is gone.
        relevant = true;
        continue;
      }
      // Events in a directory that matters only for some of its entries
      // (a busy /tmp above a policy directory) are filtered by name.
      const std::set<std::string>& names = it->second.names;
      if (names.count(kAnyName) ||
          (ev->len > 0 && names.count(std::string(ev->name, strnlen(ev->name, ev->len))))) {
        relevant = true;
      }
    }
  }
  return relevant;
}

void PolicyWatcher::Run() {
  using Clock = std::chrono::steady_clock;
  const auto to_chrono = [](absl::Duration d) { return absl::ToChronoMilliseconds(d); };
  const auto interval = std::max(to_chrono(options_.interval), std::chrono::milliseconds(1));
  const auto debounce = to_chrono(options_.debounce);
  const auto max_delay = std::max(to_chrono(options_.max_delay), debounce);

  // Anything that changed since the baseline (taken before the policy was
  // loaded) is picked up now.
  UpdateWatches();
  CheckForChange("policy changed on disk");
  auto next_poll = Clock::now() + interval;
  bool pending = false;
  Clock::time_point first_event, last_event;

  while (!stopping_) {
    auto now = Clock::now();
    Clock::time_point wake_at = next_poll;
    if (pending) wake_at = std::min(last_event + debounce, first_event + max_delay);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - now);
    // Round up, so as not to wake just before the deadline and spin.
    const int timeout_ms = wake_at <= now ? 0 : static_cast<int>(wait.count()) + 1;

    pollfd fd = {inotify_fd_, POLLIN, 0};  // Without inotify (-1): the wake-up only.
    const absl::StatusOr<bool> woken = wakeup_->Wait(absl::MakeSpan(&fd, 1), timeout_ms);
    if (stopping_) break;
    if (!woken.ok()) {
      LogError("policy watcher: ", woken.status().message(), "; stopped watching ", path_);
      return;
    }
    now = Clock::now();
    if ((fd.revents & POLLIN) && DrainEvents()) {
      if (!pending) first_event = now;
      pending = true;
      last_event = now;
    }
    if (pending) {
      if (now >= last_event + debounce || now >= first_event + max_delay) {
        pending = false;
        UpdateWatches();
        CheckForChange("policy changed on disk");
        next_poll = Clock::now() + interval;
      }
    } else if (now >= next_poll) {
      UpdateWatches();
      CheckForChange("policy changed on disk (periodic check)");
      next_poll = Clock::now() + interval;
    }
  }
}

}  // namespace toolgate
