// Follows the active policy revision stored in Redis (see
// server/provider/redis_policy_store.h): subscribes to the announcement channel
// and, as a safety net for lost messages or connections, also checks the
// active pointer every `check_interval_ms`. A new active revision is loaded,
// validated and handed to `activate`; one that fails is reported through
// `report` and the current revision keeps serving.
#ifndef TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_
#define TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/base/wakeup.h"
#include "server/policy/policy.h"
#include "server/redis/client.h"
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
  // A connection subscribed to the announcement channel; null when Redis
  // cannot be reached (the periodic check still runs).
  std::unique_ptr<RedisClient> Subscribe();

  const RedisUrl url_;
  const int64_t interval_ms_;
  ActivateFn activate_;
  ReportFn report_;
  std::string current_;      // I/O thread only.
  std::string last_failed_;  // Don't report the same broken revision every second.
  std::unique_ptr<Wakeup> wakeup_;  // Null when it could not be created: no thread.
  std::thread thread_;
};

}  // namespace toolgate

#endif  // TOOLGATE_SERVER_PROVIDER_REDIS_POLICY_FOLLOWER_H_
