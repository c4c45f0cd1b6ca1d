// Watches a policy file or directory and calls back when what the policy
// loader would read there has changed, so that edits go live without a
// SIGHUP.
//
// Two mechanisms, both on the watcher's own thread:
//
//  - inotify (Linux) on the directories whose entries decide what the
//    loader reads. The path is resolved component by component and every
//    entry that matters is watched through its directory: each symlink on
//    the way (a Kubernetes ConfigMap's `..data`, swapped by a rename), the
//    file itself (rewritten in place, or replaced by an editor's
//    rename-on-save), a policy directory's every entry, and the same for
//    each file in it. Events on other entries of those directories are
//    ignored. A burst of events is debounced: the check runs once they have
//    been quiet for `debounce` (and at the latest `max_delay` after the
//    first), so an editor's multi-step save causes one reload.
//  - a safety net: every `interval` the fingerprint is checked anyway, for
//    file systems and changes inotify does not report (NFS, a symlink hop
//    outside the watched directories, watch limits).
//
// Either way the callback runs only when the fingerprint of the policy
// changed: the names of the files the loader would read (in its order) and
// the SHA-256 of each one's content, read through symlinks. Unrelated files
// in the same directories, touching a file, or a ConfigMap swap to identical
// content cause no reload. A fingerprint is recorded whether or not the
// reload it causes succeeds, so a rejected policy is not retried (nor its
// error logged again) until it changes again.
#ifndef TOOLGATE_SERVER_PROVIDER_POLICY_WATCHER_H_
#define TOOLGATE_SERVER_PROVIDER_POLICY_WATCHER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/base/wakeup.h"

namespace toolgate {

struct PolicyWatcherOptions {
  // Quiet period after the last file-system event before checking.
  absl::Duration debounce = absl::Milliseconds(100);
  // Longest wait after the first event of a burst that does not end.
  absl::Duration max_delay = absl::Milliseconds(500);
  // Period of the safety-net check.
  absl::Duration interval = absl::Seconds(1);
  // False: only the periodic check (for tests of that path).
  bool use_inotify = true;
};

// Content hashes of unchanged files, reused between fingerprints.
struct PolicyHashCache;

// The fingerprint of what LoadPolicyFromPath(path) would read. Never fails:
// a missing path or an unreadable file is part of the fingerprint.
std::string PolicyFingerprint(const std::string& path);

class PolicyWatcher {
 public:
  // Called with what caused the reload, e.g. "policy file changed" or
  // "SIGHUP". Runs on the watcher's thread (or the thread calling
  // ReloadNow), one call at a time; it must not call ReloadNow or Stop.
  using Callback = std::function<void(absl::string_view trigger)>;

  // Takes the baseline fingerprint at once: a change made after the
  // constructor returns is reported once Start() runs, even if it happened
  // before. So construct the watcher before loading the policy it watches.
  PolicyWatcher(std::string path, PolicyWatcherOptions options, Callback callback);
  ~PolicyWatcher();  // Stop()s.
  PolicyWatcher(const PolicyWatcher&) = delete;
  PolicyWatcher& operator=(const PolicyWatcher&) = delete;

  // Starts the watcher thread. Without inotify it logs a warning and relies
  // on the periodic check; it fails only when the thread or its wake-up
  // (server/base/wakeup.h) cannot be created (then nothing is watched).
  absl::Status Start();

  // Stops and joins the thread (waits for a callback in progress). Idempotent.
  void Stop();

  // Calls back at once on this thread, whether or not anything changed (as
  // for SIGHUP), and records the fingerprint so that the watcher does not
  // reload the same content again.
  void ReloadNow(absl::string_view trigger);

  const std::string& path() const { return path_; }
  // How many times the fingerprint was computed by the watcher thread, and
  // how many callbacks (from either path) were made. For tests and logs.
  uint64_t checks() const { return checks_.load(); }
  uint64_t callbacks() const { return callbacks_.load(); }
  // True while inotify is in use (false: periodic checks only).
  bool using_inotify() const { return inotify_fd_ >= 0; }

 private:
  void Run();
  // Runs the callback (with mu_ held); an exception it throws is logged.
  void CallBack(absl::string_view trigger) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Computes the fingerprint; calls back when it differs from the last one.
  void CheckForChange(absl::string_view trigger);
  // Brings the inotify watches in line with the directories that matter now.
  void UpdateWatches();
  // Reads every pending inotify event; true when any may matter.
  bool DrainEvents();

  const std::string path_;
  const PolicyWatcherOptions options_;
  const Callback callback_;

  absl::Mutex mu_;  // Serializes fingerprint + callback.
  std::string last_fingerprint_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<PolicyHashCache> cache_ ABSL_GUARDED_BY(mu_);

  int inotify_fd_ = -1;
  std::unique_ptr<Wakeup> wakeup_;  // Stop() wakes the thread.
  struct Watch {
    std::string dir;
    std::set<std::string> names;  // Entries that matter; "*" for all.
  };
  std::map<int, Watch> watches_;       // By watch descriptor (thread only).
  bool warned_watch_failure_ = false;  // Thread only.
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> checks_{0};
  std::atomic<uint64_t> callbacks_{0};
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_POLICY_WATCHER_H_
