#include "server/base/runtime.h"

#include "absl/synchronization/mutex.h"

namespace toolgate {

void ConfigureServingRuntime() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace toolgate
