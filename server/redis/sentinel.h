// Following the master that Redis Sentinel names, across failovers.
//
// A SentinelWatcher runs its own thread (so that the counter store's I/O
// thread never waits on a sentinel): it asks the sentinels, in turn, for
// the master's address (SENTINEL get-master-addr-by-name) every
// `recheck_ms` and at once when asked to (Recheck(): the store saw
// READONLY, LOADING or a lost connection), and it listens for
// +switch-master on one sentinel, so that a failover is seen as soon as the
// sentinels announce it. Each change of address bumps a generation number
// and calls `on_change` (from the watcher's thread; it must not block).
//
// The sentinels are asked with the URL's credentials; a sentinel that has
// no password set is asked again without them. Every exchange has a
// deadline (`timeout_ms`); an unreachable sentinel is skipped.
#ifndef TOOLGATE_SERVER_REDIS_SENTINEL_H_
#define TOOLGATE_SERVER_REDIS_SENTINEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/base/wakeup.h"
#include "server/redis/url.h"

namespace toolgate {

class RedisClient;

struct SentinelOptions {
  RedisUrl url;                  // A redis+sentinel:// URL.
  int64_t recheck_ms = 1000;     // How often the sentinels are asked.
  int64_t timeout_ms = 500;      // Deadline of each exchange with a sentinel.
  std::function<void()> on_change;  // May be empty.
};

class SentinelWatcher {
 public:
  // Starts the thread; the first answer comes in the background.
  explicit SentinelWatcher(SentinelOptions options);
  ~SentinelWatcher();
  SentinelWatcher(const SentinelWatcher&) = delete;
  SentinelWatcher& operator=(const SentinelWatcher&) = delete;

  struct Master {
    std::optional<RedisHost> address;  // None until a sentinel named it.
    uint64_t generation = 0;           // Bumped on each change of address.
    std::string error;                 // Why the last inquiry failed ("" when it did not).
  };
  Master Current() const;

  // Asks the sentinels again now (returns at once).
  void Recheck();

  // One inquiry, synchronously, of the sentinels in turn: the master's
  // address from the first that knows it. (For the watcher, and for
  // clients that connect once, like the CLI.)
  static absl::StatusOr<RedisHost> AskSentinels(const RedisUrl& url, int64_t timeout_ms);

 private:
  void Run();
  void Update(const absl::StatusOr<RedisHost>& answer);
  std::unique_ptr<RedisClient> Subscribe();

  const SentinelOptions options_;
  std::unique_ptr<Wakeup> wakeup_;
  size_t next_subscribe_ = 0;  // Which sentinel to subscribe to next.
  mutable absl::Mutex mu_;
  Master master_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_REDIS_SENTINEL_H_
