// Follows the active policy revision stored in Redis (see
// server/policy/redis_policy_store.h): subscribes to the announcement channel
// and, as a safety net for lost messages or connections, also checks the
// active pointer every `check_interval_ms`. A new active revision is loaded,
// validated and handed to `activate`; one that fails is reported through
// `report` and the current revision keeps serving.
#ifndef TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_
#define TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "server/policy/policy.h"
#include "server/redis/url.h"

namespace toolgate {

// Loads the active revision from Redis (NOT_FOUND when none is active).
absl::StatusOr<std::shared_ptr<const Policy>> LoadActivePolicyFromRedis(const RedisUrl& url);

class RedisPolicyFollower {
 public:
  using ActivateFn = std::function<void(std::shared_ptr<const Policy>)>;
  using ReportFn = std::function<void(const absl::Status&)>;

  // `current` is the revision already serving (may be empty).
  RedisPolicyFollower(RedisUrl url, int64_t check_interval_ms, std::string current,
                      ActivateFn activate, ReportFn report);
  ~RedisPolicyFollower();

  // Checks the active pointer now (SIGHUP).
  void CheckNow();

 private:
  void Run();
  void Check();

  const RedisUrl url_;
  const int64_t interval_ms_;
  ActivateFn activate_;
  ReportFn report_;
  std::string current_;      // I/O thread only.
  std::string last_failed_;  // Don't report the same broken revision every second.
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> check_now_{false};
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_
